//! Property tests: the protocol parser and the policy loader never panic,
//! and every rejection is a coded error.

use proptest::prelude::*;
use serde_json::Value;
use xct::crd::XctPolicySpec;
use xct::protocol::{ErrorCode, Signal, decision_from_value, parse_decision};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::String),
        prop_oneof![Just("next_step"), Just("done"), Just("tool"), Just("arguments"), Just("goal"), Just("message")]
            .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("next_step".to_string()),
                    Just("done".to_string()),
                    Just("tool".to_string()),
                    Just("arguments".to_string()),
                    Just("goal".to_string()),
                    Just("message".to_string()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Strings made of what YAML and terminals treat specially: quotes,
/// escapes, controls, bidi overrides, line separators, byte-order marks,
/// astral characters, YAML indicators, and the text of a placeholder.
const AWKWARD: &str = "([a-z \"'\\\\\n\t\r:#&*!|>%@`\u{1b}\u{7f}\u{85}\u{9b}\u{a0}\u{200f}\u{202e}\u{2066}\u{2028}\u{2029}\u{feff}\u{fffe}é🙂-]|xctq0q){0,12}";

/// JSON whose strings, keys included, are [`AWKWARD`].
fn awkward_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![Just(Value::Null), any::<i64>().prop_map(Value::from), AWKWARD.prop_map(Value::String)];
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(AWKWARD, inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn is_invalid_proposal(s: &Signal) -> bool {
    matches!(s, Signal::Error { code: ErrorCode::InvalidProposal, message, .. } if !message.is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parser_never_panics_on_text(text in ".{0,400}", truncated in any::<bool>()) {
        if let Err(e) = parse_decision(&text, truncated) {
            prop_assert!(is_invalid_proposal(&e.to_signal()));
        }
    }

    #[test]
    fn parser_never_panics_on_json(v in json_value(), trailing in prop_oneof![Just(""), Just(" "), Just("x"), Just("}")]) {
        let text = format!("{v}{trailing}");
        if let Err(e) = parse_decision(&text, false) {
            prop_assert!(is_invalid_proposal(&e.to_signal()));
        }
        if let Err(e) = decision_from_value(v) {
            prop_assert!(is_invalid_proposal(&e.to_signal()));
        }
    }

    #[test]
    fn policy_loader_never_panics(when in ".{0,120}", tools in prop::collection::vec("[a-z.*]{0,12}", 0..4), name in "[a-z-]{0,10}") {
        let spec = serde_json::json!({"rules": [{"name": name, "tools": tools, "effect": "Allow", "when": when}]});
        if let Ok(spec) = serde_json::from_value::<XctPolicySpec>(spec) {
            match xct::policy::load("fuzz", None, &spec) {
                xct::policy::Loaded::Invalid(p) => prop_assert!(!p.error.message.is_empty()),
                xct::policy::Loaded::Ready(_) => {}
            }
        }
    }

    #[test]
    fn policy_evaluation_on_arbitrary_arguments_never_panics(args in json_value(), pick in 0usize..5) {
        let exprs = [
            "proposal.arguments.replicas <= 5",
            "proposal.arguments.patch.spec.replicas > 2 && target == null",
            "has(proposal.arguments.kind) && proposal.arguments.kind == 'Secret'",
            "proposal.arguments.items.all(x, x > 1)",
            "size(proposal.arguments) > 1 || run.step > 3",
        ];
        let spec: XctPolicySpec = serde_json::from_value(serde_json::json!({"rules": [{"name": "r", "tools": ["*"], "effect": "Allow", "when": exprs[pick]}]})).unwrap();
        let loaded = xct::policy::load("fuzz", None, &spec);
        let input = xct::policy::PolicyInput {
            tool: "k8s.scale".into(),
            arguments: args,
            goal: String::new(),
            proposal_target: Value::Null,
            run: xct::policy::RunInfo::default(),
            target: Some(Value::Null),
        };
        let j = xct::policy::judge(std::slice::from_ref(&loaded), &input);
        // Either a rule matched, or it did not (default deny), or it failed closed.
        prop_assert!(j.verdict == xct::policy::Verdict::Allow || j.verdict == xct::policy::Verdict::Deny);
    }

    /// The linear matcher decides as trying every split of the name per
    /// star does (the matcher it replaced), Unicode included.
    #[test]
    fn glob_matches_as_every_split_would(pattern in "[ab.*é]{0,8}", name in "[ab.é]{0,8}") {
        prop_assert_eq!(xct::policy::judge::glob(&pattern, &name), every_split(&pattern, &name));
    }

    #[test]
    fn policy_yaml_never_panics(yaml in ".{0,200}") {
        if let Ok(spec) = serde_yaml::from_str::<XctPolicySpec>(&yaml) {
            let _ = xct::policy::load("fuzz", None, &spec);
        }
    }

    /// A history file `xct` writes reads back as the very value written,
    /// and holds no character raw that reorders text or breaks a line.
    #[test]
    fn a_history_file_reads_back_as_written_with_nothing_raw(v in awkward_value()) {
        let yaml = xct::history::to_yaml(&v).unwrap();
        let back: Value = serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{e}:\n{yaml}"));
        prop_assert_eq!(&back, &v, "{}", yaml);
        let raw: Vec<char> = yaml.chars().filter(|c| matches!(c, '\u{200f}' | '\u{202e}' | '\u{2066}' | '\u{2028}' | '\u{2029}' | '\u{1b}' | '\u{9b}')).collect();
        prop_assert!(raw.is_empty(), "{:?} raw in\n{}", raw, yaml);
    }

    #[test]
    fn history_loader_never_panics_on_text(text in ".{0,400}") {
        if let Ok(histories) = xct::history::parse(&text, std::path::Path::new("fuzz.yaml")) {
            for h in histories {
                let _ = h.verify();
            }
        }
    }

    /// A real history with one part replaced by anything (a step, the
    /// archive list, the kind, a ConfigMap's data), alone or in a List.
    #[test]
    fn history_loader_never_panics_on_damaged_histories(
        at in prop_oneof![
            Just("/status/steps/0"), Just("/status/steps"), Just("/status/archive"), Just("/status/steps/1/index"),
            Just("/kind"), Just("/metadata"), Just("/status/steps/2/digest"), Just("/status"),
        ],
        junk in json_value(),
        listed in any::<bool>(),
    ) {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gitops/histories/scale-web.yaml")).unwrap();
        let mut run: Value = serde_yaml::from_str(&text).unwrap();
        run["metadata"]["uid"] = serde_json::json!("u-1");
        run["status"]["archive"] = serde_json::json!([{"configMap": "xct-history-a", "first": 1, "last": 2, "lastDigest": "x", "errors": 0}]);
        if let Some(slot) = run.pointer_mut(at) {
            *slot = junk;
        }
        let doc = if listed {
            let chunk = serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "xct-history-a", "labels": {"xct.dev/run-uid": run.pointer("/metadata/uid").cloned()}}, "data": {"steps.yaml": "- {index: 1}\n"}});
            serde_json::json!({"kind": "List", "items": [run, chunk]})
        } else {
            run
        };
        let yaml = serde_yaml::to_string(&doc).unwrap();
        if let Ok(histories) = xct::history::parse(&yaml, std::path::Path::new("fuzz.yaml")) {
            for h in histories {
                let _ = h.verify();
            }
        }
    }
}

/// Glob by trying every split point of the name for each star: exponential,
/// but plainly right, on the short inputs of the property above.
fn every_split(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => name.strip_prefix(head).is_some_and(|tail| {
            tail.char_indices().map(|(i, _)| i).chain([tail.len()]).any(|i| every_split(rest, &tail[i..]))
        }),
    }
}
