//! One history model: every file `xct` reads step histories from, read one
//! way, by `xct history verify`, `xct policy test` and the tests alike.
//!
//! A file is YAML with one or more documents; each document is
//! - an XctRun (`kubectl get xctrun NAME -o yaml`, `xct history show`),
//! - a List of them (`kubectl get xctrun -o yaml`), which may also hold the
//!   run's archive ConfigMaps (`kubectl get xctrun,cm -o yaml`),
//! - an archive ConfigMap (labelled with the run's UID),
//! - a run status with `steps` (what `xct local` writes), or
//! - a bare list of step records.
//!
//! A run whose oldest steps were archived is reassembled from its archive
//! ConfigMaps when the input holds them; otherwise it is kept partial and
//! says how many steps are missing. Documents of other kinds are skipped;
//! a file with no history at all is an error. Nothing here panics, whatever
//! the input (fuzzed in tests/fuzz.rs).
//!
//! The files `xct` writes (`xct history show`, `xct local`'s history) are
//! written by [`to_yaml`]: read by people as much as by these readers, they
//! show what a model wrote as escapes, never raw.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use serde_yaml::Value as Yaml;

use crate::crd::XctRunStatus;
use crate::engine::record::{ChainError, StepRecord, verify_chain};
use crate::operator::archive::{self, RUN_UID_LABEL};
use crate::text;

/// Largest history file read (a 1000-step run is ~2 MiB).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: not YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{path}: no step history in it (an XctRun, a List of them, an `xct local` history or a list of steps)")]
    Empty { path: PathBuf },
    #[error("{path}: {run}: no step history: {message}")]
    Run { path: PathBuf, run: String, message: String },
}

impl HistoryError {
    /// A static category, for logs and exit codes.
    pub fn category(&self) -> &'static str {
        match self {
            HistoryError::Read { .. } => "read",
            HistoryError::Yaml { .. } => "yaml",
            HistoryError::Empty { .. } => "empty",
            HistoryError::Run { .. } => "run",
        }
    }
}

/// One run's recorded history, as complete as the input allows.
#[derive(Debug, Clone)]
pub struct History {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// The run's metadata and spec as recorded (null for bare histories).
    pub metadata: Value,
    pub spec: Value,
    pub status: XctRunStatus,
    /// The steps in order: archived ones first where the input held them.
    pub steps: Vec<StepRecord>,
    /// Archived steps the input did not hold (they precede `steps`).
    pub missing: u32,
}

impl History {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Check the hash chain of the steps held, from where they start.
    pub fn verify(&self) -> Result<(), ChainError> {
        let start = if self.missing > 0 { self.status.chain_start() } else { "" };
        verify_chain(&self.steps, start, self.missing + 1)
    }

    /// Errors in the archived steps the input did not hold.
    pub fn missing_errors(&self) -> u32 {
        if self.missing == 0 { 0 } else { self.status.archive.iter().map(|a| a.errors).sum() }
    }
}

/// Every history in the file at `path`.
pub fn load(path: &Path) -> Result<Vec<History>, HistoryError> {
    let read = |message: String| HistoryError::Read { path: path.to_path_buf(), message };
    let size = std::fs::metadata(path).map_err(|e| read(e.to_string()))?.len();
    if size > MAX_FILE_BYTES {
        return Err(read(format!("{size} bytes; at most {MAX_FILE_BYTES} are read")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
    parse(&text, path)
}

/// Every history in `text` (read from `path`, named in errors).
pub fn parse(text: &str, path: &Path) -> Result<Vec<History>, HistoryError> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = <Value as serde::Deserialize>::deserialize(doc)
            .map_err(|e| HistoryError::Yaml { path: path.to_path_buf(), message: e.to_string() })?;
        match v["kind"].as_str() {
            Some(k) if k.ends_with("List") => docs.extend(v["items"].as_array().cloned().unwrap_or_default()),
            _ if !v.is_null() => docs.push(v),
            _ => {}
        }
    }
    let chunks: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ConfigMap").collect();
    let mut out = Vec::new();
    for doc in &docs {
        let fail =
            |run: &str, message: String| HistoryError::Run { path: path.to_path_buf(), run: run.into(), message };
        let (meta, status) = match (doc["kind"].as_str(), doc) {
            (Some("XctRun"), _) => (doc["metadata"].clone(), doc["status"].clone()),
            (None, Value::Object(m)) if m.contains_key("steps") => (Value::Null, doc.clone()),
            (None, Value::Array(_)) => (Value::Null, serde_json::json!({"steps": doc})),
            _ => continue,
        };
        let name = meta["name"].as_str().unwrap_or("local").to_string();
        let status: XctRunStatus = if status.is_null() {
            XctRunStatus::default()
        } else {
            serde_json::from_value(status).map_err(|e| fail(&name, e.to_string()))?
        };
        let uid = meta["uid"].as_str().unwrap_or_default();
        let found = |config_map: &str| {
            chunks
                .iter()
                .find(|c| c["metadata"]["name"] == config_map && c["metadata"]["labels"][RUN_UID_LABEL] == uid)
                .and_then(|c| c["data"][archive::DATA_KEY].as_str().map(str::to_string))
        };
        let (steps, missing) = match archive::reassemble(&status, found) {
            Ok(steps) => (steps, 0),
            Err(_) => (status.steps.clone(), status.archive.last().map_or(0, |a| a.last)),
        };
        out.push(History {
            namespace: meta["namespace"].as_str().unwrap_or("default").to_string(),
            labels: serde_json::from_value(meta["labels"].clone()).unwrap_or_default(),
            spec: doc["spec"].clone(),
            metadata: meta,
            name,
            status,
            steps,
            missing,
        });
    }
    if out.is_empty() {
        return Err(HistoryError::Empty { path: path.to_path_buf() });
    }
    Ok(out)
}

/// `value` as a history file's YAML: the same text for every reader, shown
/// to a person, never obeyed. libyaml escapes the C0 and C1 controls
/// itself, but writes bidirectional marks raw (YAML counts them printable)
/// and the line separators U+2028 and U+2029 raw (which YAML 1.1 readers
/// fold as line breaks). So each string holding one of those is written as
/// a double-quoted scalar with every character a terminal acts on as an
/// escape ([`quoted`]). libyaml cannot be told to, so such a string is
/// first replaced by a placeholder, a tag found nowhere in the file and
/// its number, and each placeholder then by the quoted string.
pub fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String, serde_yaml::Error> {
    let tree = serde_yaml::to_value(value)?;
    let plain = serde_yaml::to_string(&tree)?;
    let mut strings = Vec::new();
    let tag = (0u64..).map(|n| format!("xctq{n}q")).find(|t| !plain.contains(t.as_str())).unwrap_or_default();
    let held = placeheld(tree, &tag, &mut strings);
    if strings.is_empty() {
        return Ok(plain);
    }
    // Text, number, text, number, ..., text: a placeholder has no space
    // for libyaml to fold it at, and the tag is nowhere else.
    let yaml = serde_yaml::to_string(&held)?;
    let mut out = String::with_capacity(yaml.len());
    for (i, part) in yaml.split(tag.as_str()).enumerate() {
        match part.parse::<usize>().ok().and_then(|n| strings.get(n)).filter(|_| i % 2 == 1) {
            Some(s) => out.push_str(&quoted(s)),
            None => out.push_str(part),
        }
    }
    Ok(out)
}

/// Whether libyaml would write `s` with a character raw that a terminal
/// reorders by or a reader takes for a line break.
fn needs_quoting(s: &str) -> bool {
    s.chars().any(|c| text::reorders(c) || matches!(c, '\u{2028}' | '\u{2029}'))
}

/// `tree` with every string (keys too) that [`needs_quoting`] replaced by
/// `{tag}{n}{tag}`, where `n` is its index in `strings`.
fn placeheld(tree: Yaml, tag: &str, strings: &mut Vec<String>) -> Yaml {
    match tree {
        Yaml::String(s) if needs_quoting(&s) => {
            strings.push(s);
            Yaml::String(format!("{tag}{}{tag}", strings.len() - 1))
        }
        Yaml::Sequence(items) => Yaml::Sequence(items.into_iter().map(|v| placeheld(v, tag, strings)).collect()),
        Yaml::Mapping(map) => Yaml::Mapping(
            map.into_iter().map(|(k, v)| (placeheld(k, tag, strings), placeheld(v, tag, strings))).collect(),
        ),
        Yaml::Tagged(t) => {
            let t = *t;
            Yaml::Tagged(Box::new(serde_yaml::value::TaggedValue {
                tag: t.tag,
                value: placeheld(t.value, tag, strings),
            }))
        }
        other => other,
    }
}

/// `s` as a YAML double-quoted scalar: every character a terminal acts on
/// ([`text::acted_on`]) and every one YAML reads as a line break or does
/// not allow raw written as an escape; it reads back as `s`.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if text::acted_on(c) || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}') => {
                // Each is in the Basic Multilingual Plane: four digits.
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_string_that_reorders_text_double_quoted_and_every_other_as_libyaml_does() {
        let v =
            serde_json::json!({"tool": "k8s.\u{202e}eteled \"x\"\n", "plain": "ok", "lines": "a\nb", "esc": "\u{1b}"});
        let yaml = to_yaml(&v).unwrap();
        assert_eq!(yaml, "tool: \"k8s.\\u202Eeteled \\\"x\\\"\\n\"\nplain: ok\nlines: |-\n  a\n  b\nesc: \"\\e\"\n");
        assert_eq!(serde_yaml::from_str::<Value>(&yaml).unwrap(), v);
    }
}
