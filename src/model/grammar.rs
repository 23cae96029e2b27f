//! Constrained decoding support: JSON Schema -> GBNF (via llama.cpp's own
//! converter, behind its exception-catching wrapper) and a scanner that sees
//! where the first JSON object ends, so generation stops right there.

use serde_json::Value;

/// Convert a JSON Schema into a GBNF grammar.
pub fn schema_to_gbnf(schema: &Value) -> Result<String, String> {
    llama_cpp_2::json_schema_to_grammar(&schema.to_string())
        .map_err(|e| format!("cannot build a grammar from the schema: {e}"))
}

/// Tracks JSON structure byte by byte (strings and escapes included) and
/// reports when the top-level object is closed.
#[derive(Debug, Default, Clone)]
pub struct ObjectEnd {
    depth: u32,
    started: bool,
    in_string: bool,
    escaped: bool,
    done: bool,
}

impl ObjectEnd {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; returns true once the first top-level object is complete.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            if self.done {
                break;
            }
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    self.started = true;
                }
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.started && self.depth == 0 {
                        self.done = true;
                    }
                }
                _ => {}
            }
        }
        self.done
    }

    pub fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_after_the_first_object_only() {
        let mut s = ObjectEnd::new();
        assert!(!s.feed(br#"{"a":"}{\"","b":[1,{"#));
        assert!(!s.feed(b"}]"));
        assert!(s.feed(b"} trailing"));
    }

    #[test]
    fn split_escapes_are_handled() {
        let mut s = ObjectEnd::new();
        assert!(!s.feed(br#"{"a":"x\"#));
        assert!(!s.feed(br#""}"#)); // the quote was escaped: still inside the string
        assert!(s.feed(br#""}"#));
    }
}
