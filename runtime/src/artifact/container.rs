//! Reading the safetensors container safely. `safetensors` 0.8 adds the header's last data
//! offset to the header length unchecked, so a header whose offsets end near `usize::MAX`
//! overflows (a panic in debug builds). Every offset is checked against the file's length
//! first; then nothing it adds can overflow, and a truncated file gets a message naming the
//! tensor that is cut off.

use std::collections::HashMap;

use safetensors::SafeTensors;
use safetensors::tensor::Metadata;
use serde_json::Value;

/// The header length and parsed header of a safetensors file, or why it is not one.
pub fn read_metadata(bytes: &[u8]) -> Result<(usize, Metadata), String> {
    check_offsets(bytes)?;
    SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())
}

/// The tensors of a safetensors file, or why it is not one.
pub fn deserialize(bytes: &[u8]) -> Result<SafeTensors<'_>, String> {
    check_offsets(bytes)?;
    SafeTensors::deserialize(bytes).map_err(|e| e.to_string())
}

/// Every tensor's end offset lies within the data section. Anything this cannot read (short
/// file, bad length, bad JSON) is left for safetensors to report in its own words.
fn check_offsets(bytes: &[u8]) -> Result<(), String> {
    let Some(len_bytes) = bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
        return Ok(());
    };
    let Some(header_end) = usize::try_from(u64::from_le_bytes(len_bytes))
        .ok()
        .and_then(|n| n.checked_add(8))
    else {
        return Ok(());
    };
    let Some(header) = bytes.get(8..header_end) else {
        return Ok(());
    };
    let Ok(entries) = serde_json::from_slice::<HashMap<String, Value>>(header) else {
        return Ok(());
    };
    let data_len = bytes.len() - header_end;
    let mut names: Vec<&String> = entries.keys().filter(|k| *k != "__metadata__").collect();
    names.sort();
    for name in names {
        let end = entries[name]
            .get("data_offsets")
            .and_then(|o| o.get(1))
            .and_then(Value::as_u64);
        if let Some(end) = end.filter(|&e| e > data_len as u64) {
            return Err(format!(
                "tensor `{name}` ends at byte {end} of the data section, which has only {data_len}"
            ));
        }
        check_size(name, &entries[name])?;
    }
    Ok(())
}

/// The byte size of a safetensors dtype name, for the ones whose size is a whole byte count.
fn dtype_size(name: &str) -> Option<u64> {
    Some(match name {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

/// A tensor's data offsets span exactly dtype size × shape bytes (safetensors only says
/// "invalid info"; this names the tensor and both sizes). Entries it cannot read are left
/// for safetensors.
fn check_size(name: &str, entry: &Value) -> Result<(), String> {
    let offsets = entry
        .get("data_offsets")
        .and_then(Value::as_array)
        .and_then(|o| Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?)));
    let dtype = entry.get("dtype").and_then(Value::as_str);
    let shape: Option<Vec<u64>> = entry
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|dims| dims.iter().map(Value::as_u64).collect());
    let (Some((start, end)), Some(dtype), Some(shape)) = (offsets, dtype, shape) else {
        return Ok(());
    };
    let Some(size) = dtype_size(dtype) else {
        return Ok(());
    };
    let need = shape.iter().try_fold(size, |acc, &d| acc.checked_mul(d));
    let span = end.checked_sub(start);
    match (need, span) {
        (Some(need), Some(span)) if need == span => Ok(()),
        (need, Some(span)) => Err(format!(
            "tensor `{name}`: size mismatch: shape {shape:?} of {dtype} needs {} bytes, its data offsets span {span}",
            need.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string())
        )),
        (_, None) => Err(format!(
            "tensor `{name}`: data offsets [{start}, {end}] end before they start"
        )),
    }
}
