//! Bounding text that came from outside (a value a refusal quotes, a
//! message shown on one line) before it goes into a status, an Event or a
//! log line.

/// Longest refusal line that quotes outside text (a schema violation or a
/// serde error quotes the value it refused) in a status, an Event or a log.
pub const MAX_QUOTED_CHARS: usize = 300;

/// `s` cut to `max_chars` characters, with "..." when it was longer.
pub fn clip(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_on_characters_not_bytes() {
        assert_eq!(clip("héllo", 2), "hé...");
        assert_eq!(clip("héllo", 5), "héllo");
        assert_eq!(clip("", 0), "");
    }
}
