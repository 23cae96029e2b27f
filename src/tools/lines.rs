//! Finding lines in a text: what `grep` is to an operator, for the tools
//! that return text (`fs.read`, `k8s.logs`). The tool counts, so a count in
//! a done message can come from a result instead of the model's reading:
//! the eval model, asked how many requests in a six-line log returned 500,
//! read it and answered 2 where there were 3, in two of three sampled runs
//! (`xct-eval`, scenario fs-report-errors).

use serde_json::{Map, Value, json};

use super::ToolError;

/// Most characters of the text searched for.
pub const MAX_NEEDLE_CHARS: usize = 200;

/// The description of a tool's `contains` argument, one text for every tool
/// that has one.
pub const CONTAINS_DOC: &str = "Only the lines that contain this text (case ignored; where no line holds it as written, spaces and quotes are ignored too) are returned, with their count: use it to find or count lines.";

/// Characters a loose search ignores: spacing and quoting, which a model
/// writes differently from the text it searches.
fn ignored_loosely(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`')
}

/// `text` lowercased, without the characters a loose search ignores.
fn loosened(text: &str) -> String {
    text.chars().filter(|c| !ignored_loosely(*c)).flat_map(char::to_lowercase).collect()
}

/// A validated text to search lines for: not empty, one line, bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needle(String);

impl Needle {
    /// `text` from the argument `field`, or an invalid-arguments error that
    /// says what to send instead.
    fn new(field: &str, text: &str) -> Result<Self, ToolError> {
        if text.contains(['\n', '\r']) {
            return Err(ToolError::invalid(format!("{field} spans lines; a line search takes text from one line")));
        }
        let chars = text.chars().count();
        if chars > MAX_NEEDLE_CHARS {
            return Err(ToolError::invalid(format!(
                "{field} is {chars} characters; a line search takes at most {MAX_NEEDLE_CHARS}"
            )));
        }
        Ok(Needle(text.to_string()))
    }

    /// An optional argument: `None`, or an empty text (every line holds
    /// it), is no search. The eval model sent `"contains": ""` to read a
    /// whole file it was copying; refused, it wrote a placeholder instead
    /// (xct-eval, fs-copy).
    pub fn optional(field: &str, text: Option<&str>) -> Result<Option<Self>, ToolError> {
        text.filter(|t| !t.is_empty()).map(|t| Needle::new(field, t)).transpose()
    }

    /// The lines of `text` that hold the needle, how many were searched,
    /// and whether the match was loose. Case is ignored, as an operator's
    /// `grep -i`: the eval model searched a log for "error" where it said
    /// "ERROR". Where no line holds the needle so, spaces and quotes are
    /// ignored too: the eval model checked that `{"env":"dev"}` was in
    /// config.json by searching for `env:dev`, was told no line held it,
    /// and rewrote the file with what it already held (xct-eval,
    /// fs-already-done). Told now that the line holds it, it still
    /// rewrites the file, but what it is told matches what it meant.
    fn search<'a>(&self, text: &'a str) -> (Vec<&'a str>, usize, bool) {
        let all: Vec<&str> = text.lines().collect();
        let wanted = self.0.to_lowercase();
        let found: Vec<&str> = all.iter().copied().filter(|l| l.to_lowercase().contains(&wanted)).collect();
        if !found.is_empty() {
            return (found, all.len(), false);
        }
        let loose = loosened(&self.0);
        if loose.is_empty() {
            return (found, all.len(), false);
        }
        let found: Vec<&str> = all.iter().copied().filter(|l| loosened(l).contains(&loose)).collect();
        let is_loose = !found.is_empty();
        (found, all.len(), is_loose)
    }
}

/// What a tool that returns `text` shows: with a search, the text searched
/// for (`contains`), how many lines hold it (`count`) and those lines
/// (`lines`); without one, the tool's usual field `key` with the value
/// `whole` makes (only when shown). A loose match says so. A search that
/// finds nothing says so and shows `whole` too: the eval model filtered
/// logs it was asked to summarize for "error" and reported "no errors",
/// and searched a file it was copying for its own name.
pub fn show(needle: Option<&Needle>, text: &str, key: &str, whole: impl FnOnce() -> Value) -> Map<String, Value> {
    let mut fields = Map::new();
    let Some(needle) = needle else {
        fields.insert(key.into(), whole());
        return fields;
    };
    let (found, searched, loose) = needle.search(text);
    fields.insert("contains".into(), json!(needle.0));
    fields.insert("count".into(), json!(found.len()));
    if loose {
        let note = format!(
            "no line contains {:?} as written; these hold it when case, spaces and quotes are ignored",
            needle.0
        );
        fields.insert("note".into(), json!(note));
    }
    if found.is_empty() {
        let note =
            format!("none of the {searched} lines contains {:?} (case ignored): all of them are shown", needle.0);
        fields.insert("note".into(), json!(note));
        fields.insert(key.into(), whole());
    } else {
        fields.insert("lines".into(), json!(found));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    const LOG: &str = "GET / 200\nGET /a 500\nPOST /b 201\nGET /c 500\n";

    fn searched(text: &str) -> Map<String, Value> {
        show(Some(&Needle::new("contains", text).unwrap()), LOG, "content", || json!(LOG))
    }

    #[test]
    fn a_search_counts_and_keeps_the_matching_lines_in_order() {
        let found = searched(" 500");
        assert_eq!(found["count"], json!(2));
        assert_eq!(found["lines"], json!(["GET /a 500", "GET /c 500"]));
        assert_eq!(found["contains"], json!(" 500"));
        assert_eq!((found.get("note"), found.get("content")), (None, None), "found lines replace the text");
        assert_eq!(searched("get /A")["lines"], json!(["GET /a 500"]), "case is ignored");
    }

    #[test]
    fn a_search_that_finds_nothing_says_so_and_shows_the_whole_text() {
        let none = searched("404");
        assert_eq!(none["count"], json!(0));
        assert_eq!(none["note"], json!("none of the 4 lines contains \"404\" (case ignored): all of them are shown"));
        assert_eq!(none["content"], json!(LOG));
        assert_eq!(none.get("lines"), None);
        let plain = show(None, LOG, "content", || json!(LOG));
        assert_eq!(Value::Object(plain), json!({"content": LOG}), "no search: the usual field alone");
    }

    #[test]
    fn a_search_that_finds_nothing_as_written_ignores_spaces_and_quotes() {
        const CONFIG: &str = "{\"env\": \"dev\"}\nport = 9090\n";
        let find =
            |text: &str| show(Some(&Needle::new("contains", text).unwrap()), CONFIG, "content", || json!(CONFIG));
        let loose = find("env:dev");
        assert_eq!(loose["count"], json!(1));
        assert_eq!(loose["lines"], json!(["{\"env\": \"dev\"}"]));
        assert_eq!(
            loose["note"],
            json!("no line contains \"env:dev\" as written; these hold it when case, spaces and quotes are ignored")
        );
        assert_eq!(find("'PORT=9090'")["lines"], json!(["port = 9090"]));
        let exact = find("port = ");
        assert_eq!((exact["count"].clone(), exact.get("note")), (json!(1), None), "a match as written is not loose");
        let none = find("env:prod");
        assert_eq!(none["count"], json!(0));
        assert!(none["note"].as_str().unwrap().starts_with("none of the 2 lines"), "{none:?}");
        assert_eq!(find("\"\"")["count"], json!(0), "quotes alone are no loose search");
    }

    #[test]
    fn a_multiline_or_long_needle_is_refused_with_a_reason() {
        for (text, says) in [("a\nb", "spans lines"), (&"x".repeat(201)[..], "at most 200")] {
            let e = Needle::optional("contains", Some(text)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArguments);
            assert!(e.message.contains(says), "{text:?}: {}", e.message);
        }
        assert_eq!(Needle::optional("contains", None).unwrap(), None);
        assert_eq!(Needle::optional("contains", Some("")).unwrap(), None, "an empty search is no search");
        assert!(Needle::new("contains", &"x".repeat(MAX_NEEDLE_CHARS)).is_ok());
    }
}
