//! Text that came from outside, made safe for where it goes: bounded (a
//! value a refusal quotes, a message shown on one line) before a status,
//! an Event or a log line; escaped before a terminal.

use std::borrow::Cow;

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

/// Whether a terminal acts on `c` or reorders text by it: the C0 and C1
/// controls and DEL (ESC starts the sequences that clear a screen or
/// retitle a window; newline and carriage return add or overwrite a line),
/// and the bidirectional marks, embeddings, overrides and isolates that
/// reorder what a reader sees ("Trojan Source", CVE-2021-42574).
pub(crate) fn acted_on(c: char) -> bool {
    c.is_control() || reorders(c)
}

/// Whether `c` is a bidirectional mark, embedding, override or isolate.
pub(crate) fn reorders(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` as one line of a terminal shows it, never obeys it: every character
/// a terminal acts on ([`acted_on`]), newline and tab included, written as
/// its escape (`\u{1b}`). For every view of what a model wrote that is made
/// for a person: a step line, an approval review, a replayed verdict.
pub fn shown(s: &str) -> Cow<'_, str> {
    if !s.chars().any(acted_on) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if acted_on(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
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

    #[test]
    fn shows_controls_and_bidi_characters_as_escapes_and_nothing_else() {
        assert_eq!(shown("scale web to 3 (é, 日本, emoji 🙂)"), "scale web to 3 (é, 日本, emoji 🙂)");
        assert!(matches!(shown("plain"), Cow::Borrowed(_)));
        assert_eq!(
            shown("a\u{1b}[2Jb\n\tc\u{9b}d\u{202e}e\u{2069}"),
            "a\\u{1b}[2Jb\\u{a}\\u{9}c\\u{9b}d\\u{202e}e\\u{2069}"
        );
    }
}
