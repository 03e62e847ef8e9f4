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
    }
    Ok(())
}
