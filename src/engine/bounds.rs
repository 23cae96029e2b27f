//! How long the model's free texts may be, derived from the run's
//! `maxTokens`, so a grammar-constrained decision closes within its budget.
//!
//! A character is at most one token of ASCII text, so a string bounded to
//! `n` characters costs at most `n` tokens. The budget is split: the step's
//! `goal` gets a quarter of `maxTokens`, the free strings of a tool's
//! arguments (those the tool does not bound more tightly itself) share half,
//! the rest is left for the JSON around them. A done `message` gets half.
//!
//! An argument the grammar had to close is not the argument the model meant
//! (a file's content cut mid-sentence), so it must never execute. The
//! grammar therefore allows one character more than the schema the model is
//! shown and the gate checks ([`argument_schema`]): a string that reaches
//! the grammar's ceiling fails the gate's schema check and is refused with
//! INVALID_ARGUMENTS, naming the bound and how to raise it.
//!
//! Free objects (a patch, a manifest) are left to the generic JSON grammar:
//! llama.cpp's schema converter has no `maxProperties`, so their size cannot
//! be bounded by the grammar. A decision that runs out of tokens inside one
//! is cut off and refused as INVALID_PROPOSAL, like any cut-off decision.

use serde_json::Value;

use crate::tools::Tool;

/// Least length of any bounded free text, in characters.
pub const MIN_FREE_TEXT_CHARS: u32 = 16;

/// Longest `goal`, in characters: a quarter of `maxTokens`.
pub fn max_goal_chars(max_tokens: u32) -> u32 {
    (max_tokens / 4).max(MIN_FREE_TEXT_CHARS)
}

/// Longest done `message`, in characters: half of `maxTokens` (the done
/// object has little else).
pub fn max_message_chars(max_tokens: u32) -> u32 {
    (max_tokens / 2).max(MIN_FREE_TEXT_CHARS)
}

/// What a one-line text for people (a step's `goal`, a done `message`)
/// never holds, as a character class body: a double quote, a backslash, a
/// control character.
const NEVER_IN_TEXT: &str = r#""\\\x00-\x1F\x7F"#;

/// What such a text must not end with, besides [`NEVER_IN_TEXT`]: a space,
/// an opening bracket or a separator, which leave it unfinished.
const UNFINISHED_ENDINGS: &str = r"\x20{(=:,;";

/// The JSON Schema of a one-line text for people, at most `max_chars`
/// characters: nothing of [`NEVER_IN_TEXT`], and none of
/// [`UNFINISHED_ENDINGS`] at its end.
///
/// Small models meaning to quote a value inside their text wrote the quote
/// that closes the string instead, and the rest was lost: "contains the
/// value ", "returned status " (about one goal or message in forty in
/// xct-eval, among them a done message whose count was cut off). With no
/// quote allowed and no close after a space or a `{`, the model writes on
/// ('dev', dev) instead.
///
/// The pattern is read by two parties that see the string differently:
/// the gate's JSON Schema checks match the decoded string, llama.cpp's
/// converter matches the encoded text between the quotes. Leaving out `"`
/// and `\` (and control characters, which JSON escapes) makes the two the
/// same text, so both mean one rule.
pub fn free_text(max_chars: u32) -> Value {
    let body = max_chars.saturating_sub(1);
    let pattern = format!("^([^{NEVER_IN_TEXT}]{{0,{body}}}[^{NEVER_IN_TEXT}{UNFINISHED_ENDINGS}])?$");
    serde_json::json!({"type": "string", "maxLength": max_chars, "pattern": pattern})
}

/// Longest free string argument, in characters, when a tool's arguments
/// have `strings` free strings: they share half of `maxTokens` equally.
pub fn max_argument_chars(max_tokens: u32, strings: usize) -> u32 {
    let strings = u32::try_from(strings.max(1)).unwrap_or(u32::MAX);
    (max_tokens / 2 / strings).max(MIN_FREE_TEXT_CHARS)
}

/// The tool's argument schema with every free string bounded: what the
/// model is shown and what the gate checks.
pub fn argument_schema(tool: &dyn Tool, max_tokens: u32) -> Value {
    bounded(tool.schema(), max_tokens, 0)
}

/// The argument schema the grammar is built from: one character more than
/// [`argument_schema`] allows, so a string the grammar closed is refused.
pub fn argument_grammar(tool: &dyn Tool, max_tokens: u32) -> Value {
    bounded(tool.schema(), max_tokens, 1)
}

fn bounded(mut schema: Value, max_tokens: u32, slack: u32) -> Value {
    let chars = max_argument_chars(max_tokens, free_strings(&schema));
    bound_strings(&mut schema, chars, slack);
    schema
}

/// Whether a schema node admits strings (`"type": "string"` or a type list
/// with it) that are not fixed by `enum` or `const`.
fn is_free_string(node: &serde_json::Map<String, Value>) -> bool {
    let string = match node.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
        _ => false,
    };
    string && !node.contains_key("enum") && !node.contains_key("const")
}

/// The sub-schemas of a node that describe parts of the same value (all
/// of them hold at once).
fn parts(node: &serde_json::Map<String, Value>) -> impl Iterator<Item = &Value> {
    let props = node.get("properties").and_then(Value::as_object).into_iter().flat_map(|p| p.values());
    let items = node.get("items").into_iter();
    let all = node.get("allOf").and_then(Value::as_array).into_iter().flatten();
    props.chain(items).chain(all)
}

/// The sub-schemas of a node of which one describes the value.
fn alternatives(node: &serde_json::Map<String, Value>) -> impl Iterator<Item = &Value> {
    ["anyOf", "oneOf"].into_iter().filter_map(|k| node.get(k).and_then(Value::as_array)).flatten()
}

/// How many free strings the arguments hold: those of every part, and of
/// the alternative that holds the most (one alternative is written).
fn free_strings(schema: &Value) -> usize {
    let Some(node) = schema.as_object() else { return 0 };
    usize::from(is_free_string(node))
        + parts(node).map(free_strings).sum::<usize>()
        + alternatives(node).map(free_strings).max().unwrap_or(0)
}

fn bound_strings(schema: &mut Value, chars: u32, slack: u32) {
    let Some(node) = schema.as_object_mut() else { return };
    if is_free_string(node) {
        let own = node.get("maxLength").and_then(Value::as_u64).unwrap_or(u64::MAX);
        let limit = own.min(u64::from(chars) + u64::from(slack));
        node.insert("maxLength".into(), Value::from(limit));
    }
    if let Some(props) = node.get_mut("properties").and_then(Value::as_object_mut) {
        props.values_mut().for_each(|p| bound_strings(p, chars, slack));
    }
    if let Some(items) = node.get_mut("items") {
        bound_strings(items, chars, slack);
    }
    for k in ["anyOf", "oneOf", "allOf"] {
        if let Some(alts) = node.get_mut(k).and_then(Value::as_array_mut) {
            alts.iter_mut().for_each(|a| bound_strings(a, chars, slack));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn free_strings_share_half_the_budget_and_the_grammar_allows_one_more() {
        let mut shown = json!({"type": "object", "properties": {
            "path": {"type": "string"},
            "content": {"type": ["string", "null"]},
            "kind": {"type": "string", "enum": ["A", "B"]},
            "short": {"type": "string", "maxLength": 5},
            "patch": {"type": "object"},
        }});
        assert_eq!(free_strings(&shown), 3);
        let mut grammar = shown.clone();
        bound_strings(&mut shown, max_argument_chars(240, 3), 0);
        bound_strings(&mut grammar, max_argument_chars(240, 3), 1);
        assert_eq!(shown["properties"]["path"]["maxLength"], 40);
        assert_eq!(grammar["properties"]["path"]["maxLength"], 41);
        assert_eq!(shown["properties"]["content"]["maxLength"], 40);
        assert_eq!(shown["properties"]["short"]["maxLength"], 5, "a tighter bound of the tool's own is kept");
        assert_eq!(grammar["properties"]["short"]["maxLength"], 5);
        assert!(shown["properties"]["kind"].get("maxLength").is_none());
        assert_eq!(shown["properties"]["patch"], json!({"type": "object"}));
    }

    #[test]
    fn one_alternative_is_written_so_the_largest_counts() {
        let one = json!({"type": "object", "properties": {"name": {"type": "string"}, "kind": {"const": "A"}}});
        let two = json!({"type": "object", "properties": {"name": {"type": "string"}, "note": {"type": "string"}}});
        assert_eq!(free_strings(&json!({"oneOf": [one.clone(), two.clone()]})), 2);
        assert_eq!(free_strings(&json!({"anyOf": [one.clone(), one.clone(), one]})), 1);
        assert_eq!(free_strings(&json!({"allOf": [two.clone(), two]})), 4, "every part of allOf holds");
    }

    #[test]
    fn a_free_text_is_one_finished_line_without_quotes() {
        let schema = free_text(24);
        let fits = |text: &str| crate::engine::gate::check_schema(&schema, &json!(text)).is_ok();
        for ok in ["", "x", "the port is now 9090.", "set to 'dev'", "{'env':'dev'}", "24 characters: it fits!."] {
            assert!(fits(ok), "{ok:?}");
        }
        let refused = [
            "contains the value ",
            "contains {",
            "status=",
            "say \"hi\" now",
            "a \\ b",
            "two\nlines",
            "25 characters: too long.!",
        ];
        for bad in refused {
            assert!(!fits(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_bounds_never_fall_below_the_least_free_text() {
        assert_eq!(max_argument_chars(8, 4), MIN_FREE_TEXT_CHARS);
        assert_eq!(max_argument_chars(256, 0), 128);
        assert_eq!(max_goal_chars(256), 64);
        assert_eq!(max_message_chars(10), MIN_FREE_TEXT_CHARS);
    }
}
