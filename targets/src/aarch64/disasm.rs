//! Listings of emitted code with yaxpeax-arm: one instruction per line with its byte offset
//! and encoding, and the emitter's comments above the instructions they annotate.

use super::emit::Code;
use yaxpeax_arch::{Decoder, U8Reader};
use yaxpeax_arm::armv8::a64::{ARMv8, InstDecoder};

/// The listing of `code`: `  0040  4f801020  fmla v0.4s, v1.4s, v0.s[0]` per instruction,
/// `  ; text` lines for comments. Undecodable words print as `.inst 0x…` (never expected).
pub fn listing(code: &Code) -> String {
    let decoder = InstDecoder::default();
    let mut out = String::new();
    let mut comments = code.comments.iter().peekable();
    for (i, word) in code.bytes.chunks(4).enumerate() {
        let at = 4 * i;
        while let Some((_, text)) = comments.next_if(|(o, _)| *o <= at) {
            out.push_str(&format!("  ; {text}\n"));
        }
        let bits = match word.try_into() {
            Ok(w) => u32::from_le_bytes(w),
            Err(_) => {
                out.push_str(&format!("  {at:04x}  <{} trailing bytes>\n", word.len()));
                continue;
            }
        };
        let mut reader = U8Reader::new(word);
        let text = match Decoder::<ARMv8>::decode(&decoder, &mut reader) {
            Ok(inst) => inst.to_string(),
            Err(e) => format!(".inst {bits:#010x} ; {e}"),
        };
        out.push_str(&format!("  {at:04x}  {bits:08x}  {text}\n"));
    }
    for (_, text) in comments {
        out.push_str(&format!("  ; {text}\n"));
    }
    out
}

/// Just the instruction texts (for tests that check one instruction's encoding).
pub fn instructions(bytes: &[u8]) -> Vec<String> {
    let decoder = InstDecoder::default();
    bytes
        .chunks(4)
        .map(|word| {
            let mut reader = U8Reader::new(word);
            match Decoder::<ARMv8>::decode(&decoder, &mut reader) {
                Ok(inst) => inst.to_string(),
                Err(e) => format!("<{e}>"),
            }
        })
        .collect()
}
