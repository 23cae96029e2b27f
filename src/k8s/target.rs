//! The one object a Kubernetes tool call is about, validated before any
//! request exists.
//!
//! A model-chosen name becomes a URL path segment. Two layers keep it one:
//! [`ObjectName::new`] accepts only what kube-apiserver itself accepts as a
//! name of that kind (DNS-1123 subdomain or DNS-1035 label, with their
//! lengths), which excludes `/`, `?`, `%`, `:` and `..`; and [`segment`]
//! percent-encodes every path segment anyway, so a name that slipped past
//! the first layer would still be one segment naming one object.

use std::fmt;

use serde::Serialize;

use super::TargetKind;

/// Longest DNS-1123 subdomain (most object names).
pub const MAX_SUBDOMAIN: usize = 253;
/// Longest DNS-1123 / DNS-1035 label (Service and container names).
pub const MAX_LABEL: usize = 63;

/// Which of the Kubernetes name rules a name follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// Lowercase alphanumerics, `-` and `.`, alphanumeric at both ends, at
    /// most 253 characters (Deployments, ConfigMaps, Pods...).
    Subdomain,
    /// Lowercase alphanumerics and `-`, starting with a letter, at most 63
    /// characters (Services).
    Dns1035Label,
    /// Lowercase alphanumerics and `-`, alphanumeric at both ends, at most
    /// 63 characters (container names).
    Dns1123Label,
}

impl NameRule {
    /// The rule kube-apiserver applies to names of `kind`.
    pub fn of(kind: TargetKind) -> Self {
        match kind {
            TargetKind::Service => NameRule::Dns1035Label,
            _ => NameRule::Subdomain,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            NameRule::Subdomain => {
                "a DNS-1123 subdomain: at most 253 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit (e.g. \"web\", \"web-0\", \"app.v2\")"
            }
            NameRule::Dns1035Label => {
                "a DNS-1035 label: at most 63 lowercase letters, digits or '-', starting with a letter and ending with a letter or digit (e.g. \"web\")"
            }
            NameRule::Dns1123Label => {
                "a DNS-1123 label: at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit (e.g. \"web\")"
            }
        }
    }

    fn accepts(self, name: &str) -> bool {
        let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        let label = |l: &str, max: usize| {
            !l.is_empty()
                && l.len() <= max
                && l.chars().all(|c| alnum(c) || c == '-')
                && l.starts_with(alnum)
                && l.ends_with(alnum)
        };
        match self {
            NameRule::Subdomain => name.len() <= MAX_SUBDOMAIN && name.split('.').all(|l| label(l, MAX_SUBDOMAIN)),
            NameRule::Dns1123Label => label(name, MAX_LABEL),
            NameRule::Dns1035Label => label(name, MAX_LABEL) && name.starts_with(|c: char| c.is_ascii_lowercase()),
        }
    }
}

/// A name that passed its kind's rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ObjectName(String);

/// Why a name was refused: what was given, what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {shown} is not a valid name: it must be {rule}")]
pub struct NameError {
    pub field: String,
    shown: String,
    rule: &'static str,
}

/// A refused name is INVALID_ARGUMENTS for the model, saying the rule.
impl From<NameError> for crate::tools::ToolError {
    fn from(e: NameError) -> Self {
        crate::tools::ToolError::invalid(e.to_string())
    }
}

impl ObjectName {
    /// Check `name` (the argument `field`) against `rule`.
    pub fn new(field: &str, name: &str, rule: NameRule) -> Result<Self, NameError> {
        if rule.accepts(name) {
            return Ok(ObjectName(name.to_string()));
        }
        // Show the model what it sent, but never a huge string.
        let shown: String = name.chars().take(80).collect();
        let shown = if shown.len() < name.len() {
            format!("{shown:?}... ({} bytes)", name.len())
        } else {
            format!("{shown:?}")
        };
        Err(NameError { field: field.to_string(), shown, rule: rule.describe() })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One object in the run's namespace: the only thing a single-object tool
/// call can address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: TargetKind,
    pub namespace: String,
    pub name: ObjectName,
}

impl ObjectRef {
    /// Validate `name` (given as argument `field`) for `kind`.
    pub fn new(kind: TargetKind, namespace: &str, field: &str, name: &str) -> Result<Self, NameError> {
        Ok(ObjectRef {
            kind,
            namespace: namespace.to_string(),
            name: ObjectName::new(field, name, NameRule::of(kind))?,
        })
    }

    /// The name as a URL path segment (second line of defence).
    pub fn segment(&self) -> String {
        segment(self.name.as_str())
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// Percent-encode one URL path segment: everything but RFC 3986 unreserved
/// characters, and `.`/`..` whole, so the result can never be more or less
/// than one segment.
pub fn segment(s: &str) -> String {
    if s == "." || s == ".." {
        return s.bytes().map(|b| format!("%{b:02X}")).collect();
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Longest label selector `k8s.list` accepts.
pub const MAX_SELECTOR_BYTES: usize = 1024;

/// A label selector is a query parameter (encoded by the client), but its
/// own syntax is parsed by the server: allow only the characters label
/// selectors are made of, so nothing else reaches that parser.
pub fn check_label_selector(s: &str) -> Result<(), String> {
    if s.len() > MAX_SELECTOR_BYTES {
        return Err(format!("labelSelector is {} bytes; at most {MAX_SELECTOR_BYTES}", s.len()));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || " -_./=!,()".contains(c);
    match s.chars().find(|c| !ok(*c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "labelSelector contains {c:?}; a selector is built from label keys and values, '=', '!=', ',', '!' and 'in (a, b)' / 'notin (a, b)', e.g. \"app=web,tier!=db\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_accept_kubernetes_names_only() {
        for ok in ["web", "web-0", "a.b.c", "0abc", &"a".repeat(253)] {
            assert!(NameRule::Subdomain.accepts(ok), "{ok}");
        }
        for bad in [
            "",
            "?",
            "/",
            "a/status",
            "x:8080/proxy/y",
            "%2F",
            "..",
            ".",
            "a..b",
            "-a",
            "a-",
            "Web",
            "wéb",
            "a b",
            &"a".repeat(254),
        ] {
            assert!(!NameRule::Subdomain.accepts(bad), "{bad:?}");
        }
        assert!(NameRule::Dns1035Label.accepts("web"));
        assert!(!NameRule::Dns1035Label.accepts("0web"), "a Service name starts with a letter");
        assert!(!NameRule::Dns1035Label.accepts("a.b"));
        assert!(!NameRule::Dns1123Label.accepts(&"a".repeat(64)));
        assert!(NameRule::Dns1123Label.accepts("0web"));
    }

    #[test]
    fn segments_are_always_one_segment() {
        assert_eq!(segment("web-0.v2"), "web-0.v2");
        assert_eq!(segment("a/status?x"), "a%2Fstatus%3Fx");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("%2F"), "%252F");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn refusals_show_a_bounded_name() {
        let e = ObjectName::new("name", &"A".repeat(300), NameRule::Subdomain).unwrap_err().to_string();
        assert!(e.contains("(300 bytes)") && e.len() < 500, "{e}");
        assert!(check_label_selector("app=web,tier in (a, b)").is_ok());
        assert!(check_label_selector("app=web&watch=true").is_err());
    }
}
