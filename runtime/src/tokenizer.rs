//! The built-in byte-level tokenizer: token id = byte value. Models with `vocab > 256` leave
//! the ids above 255 unused; models with `vocab < 256` reject bytes they cannot represent.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteTokenizer {
    pub vocab: u32,
}

impl ByteTokenizer {
    pub fn new(vocab: u32) -> ByteTokenizer {
        ByteTokenizer { vocab }
    }

    /// Encodes text as bytes; errors name the first byte the vocabulary cannot hold.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.encode_bytes(text.as_bytes())
    }

    /// Encodes raw bytes (a prompt read from a file need not be UTF-8).
    pub fn encode_bytes(&self, bytes: &[u8]) -> Result<Vec<u32>, String> {
        bytes
            .iter()
            .copied()
            .enumerate()
            .map(|(i, b)| {
                if u32::from(b) < self.vocab {
                    Ok(u32::from(b))
                } else {
                    Err(format!(
                        "byte {b:#04x} at offset {i} of the prompt is outside the model's vocabulary of {} tokens",
                        self.vocab
                    ))
                }
            })
            .collect()
    }

    /// Decodes ids to text; ids ≥ 256 and invalid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .map(|&t| u8::try_from(t).unwrap_or(0xFF))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// A printable form of one token: the character (newline and tab included), or an
    /// escape for other control bytes and
    /// non-ASCII bytes (a lone byte of a UTF-8 sequence is not a character). A backslash is
    /// doubled so escapes stay unambiguous.
    pub fn display(&self, id: u32) -> String {
        match u8::try_from(id) {
            Ok(b'\\') => "\\\\".to_string(),
            Ok(b) if b.is_ascii_graphic() || matches!(b, b' ' | b'\n' | b'\t') => {
                (b as char).to_string()
            }
            Ok(b) => format!("\\x{b:02x}"),
            Err(_) => format!("<{id}>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_out_of_vocab() {
        let t = ByteTokenizer::new(256);
        let ids = t.encode("héllo").unwrap();
        assert_eq!(ids.len(), 6);
        assert_eq!(t.decode(&ids), "héllo");
        let small = ByteTokenizer::new(128);
        let err = small.encode("hé").unwrap_err();
        assert!(err.contains("offset 1"), "{err}");
        assert_eq!(t.display(10), "\n");
        assert_eq!(t.display(13), "\\x0d");
        assert_eq!(t.display(300), "<300>");
        assert_eq!(t.display(u32::from(b'\\')), "\\\\");
    }
}
