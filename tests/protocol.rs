//! The strict decision parser against a corpus of good and bad outputs.

use serde_json::json;
use xct::protocol::{Decision, ErrorCode, MAX_DECISION_BYTES, Signal, parse_decision};

fn rejects(text: &str, needle: &str) {
    let err = parse_decision(text, false).expect_err(text);
    assert!(
        err.message.contains(needle),
        "output {text:?}: expected the message to mention {needle:?}, got {:?}",
        err.message
    );
    match err.to_signal() {
        Signal::Error { code, .. } => assert_eq!(code, ErrorCode::InvalidProposal),
        other => panic!("expected an error signal, got {other:?}"),
    }
}

#[test]
fn accepts_a_next_step() {
    let d = parse_decision(
        r#"{"next_step":{"tool":"fs.write","arguments":{"path":"config.json","content":"{}"},"goal":"create it"}}"#,
        false,
    )
    .unwrap();
    let Decision::NextStep(step) = d else { panic!("expected next_step") };
    assert_eq!(step.tool, "fs.write");
    assert_eq!(step.arguments["path"], "config.json");
    assert_eq!(step.goal, "create it");
}

#[test]
fn accepts_done_with_surrounding_whitespace() {
    let d = parse_decision("\n  {\"done\": true, \"message\": \"ok\"}  \n", false).unwrap();
    assert_eq!(d, Decision::Done { message: "ok".into() });
}

#[test]
fn refuses_bad_outputs_with_precise_messages() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("   ", "empty"),
        ("I will now create the file.", "must start with '{'"),
        (r#"Sure! {"done":true,"message":"x"}"#, "must start with '{'"),
        (r#"{"done":true,"message":"a"}{"done":true,"message":"b"}"#, "after the JSON object"),
        (r#"{"done":true,"message":"a"} and that is all"#, "after the JSON object"),
        (r#"{"done":false,"message":"a"}"#, "must be true"),
        (r#"{"done":"true","message":"a"}"#, "boolean true"),
        (r#"{"done":1,"message":"a"}"#, "boolean true"),
        (r#"{"done":true}"#, "needs a \"message\""),
        (r#"{"done":true,"message":7}"#, "\"message\" must be a string"),
        (r#"{"done":true,"message":"a","extra":1}"#, "unknown key"),
        (r#"{"next_step":{"tool":"fs.read","arguments":{},"goal":"g"},"done":true}"#, "both"),
        (r#"{"next_step":{"tool":"fs.read","arguments":{},"goal":"g"},"why":"x"}"#, "unknown key"),
        (r#"{"next_step":"fs.read"}"#, "must be an object"),
        (r#"{"next_step":{"tool":"","arguments":{},"goal":"g"}}"#, "must not be empty"),
        (r#"{"next_step":{"tool":"  ","arguments":{},"goal":"g"}}"#, "must not be empty"),
        (r#"{"next_step":{"tool":5,"arguments":{},"goal":"g"}}"#, "tool\" must be a string"),
        (r#"{"next_step":{"arguments":{},"goal":"g"}}"#, "needs \"tool\""),
        (r#"{"next_step":{"tool":"fs.read","arguments":[],"goal":"g"}}"#, "must be an object, not an array"),
        (r#"{"next_step":{"tool":"fs.read","arguments":"path=x","goal":"g"}}"#, "must be an object, not a string"),
        (r#"{"next_step":{"tool":"fs.read","goal":"g"}}"#, "needs \"arguments\""),
        (r#"{"next_step":{"tool":"fs.read","arguments":{}}}"#, "needs \"goal\""),
        (r#"{"next_step":{"tool":"fs.read","arguments":{},"goal":null}}"#, "goal\" must be a string"),
        (r#"{"next_step":{"tool":"fs.read","arguments":{},"goal":"g","args":{}}}"#, "unknown key"),
        (r#"{"action":"fs.read"}"#, "neither"),
        (r#"{}"#, "neither"),
        (r#"{"done":true,"message":"a""#, "incomplete"),
        (r#"{"done":true,"message":"a",}"#, "not valid JSON"),
        (r#"{'done':true}"#, "not valid JSON"),
    ];
    for (text, needle) in cases {
        rejects(text, needle);
    }
}

#[test]
fn arrays_and_scalars_are_not_decisions() {
    rejects("[1,2]", "must start with '{'");
    rejects("42", "must start with '{'");
    rejects("null", "must start with '{'");
}

#[test]
fn truncated_output_says_it_was_cut_off() {
    let err =
        parse_decision(r#"{"next_step":{"tool":"fs.write","arguments":{"path":"a","content":"lo"#, true).unwrap_err();
    assert!(err.message.contains("cut off at the token limit"), "{}", err.message);
}

#[test]
fn deep_nesting_is_refused_without_panicking() {
    let deep = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let text = format!("{{\"next_step\":{{\"tool\":\"t\",\"arguments\":{deep},\"goal\":\"g\"}}}}");
    let err = parse_decision(&text, false).unwrap_err();
    assert!(err.message.contains("not valid JSON") || err.message.contains("bytes"), "{}", err.message);
    let arrays = format!("{{\"done\":true,\"message\":{}{}}}", "[".repeat(200), "]".repeat(200));
    assert!(parse_decision(&arrays, false).unwrap_err().message.contains("recursion limit"));
}

#[test]
fn megabyte_strings_are_refused_by_size() {
    let big = format!(r#"{{"done":true,"message":"{}"}}"#, "x".repeat(1024 * 1024));
    let err = parse_decision(&big, false).unwrap_err();
    assert!(err.message.contains(&MAX_DECISION_BYTES.to_string()), "{}", err.message);
    // Just under the limit is fine.
    let ok = format!(r#"{{"done":true,"message":"{}"}}"#, "x".repeat(MAX_DECISION_BYTES - 40));
    assert!(parse_decision(&ok, false).is_ok());
}

#[test]
fn odd_unicode_round_trips() {
    let d = parse_decision(r#"{"done":true,"message":"réussi ✓ \u0000 😀 \u202e"}"#, false).unwrap();
    let Decision::Done { message } = d else { panic!() };
    assert!(message.contains('😀') && message.contains('\u{202e}') && message.contains('\0'));
}

#[test]
fn signals_have_the_wire_shape() {
    assert_eq!(
        serde_json::to_value(Signal::success(json!({"a":1}))).unwrap(),
        json!({"status":"success","result":{"a":1}})
    );
    assert_eq!(
        serde_json::to_value(Signal::error(ErrorCode::PolicyVeto, "no")).unwrap(),
        json!({"status":"error","code":"POLICY_VETO","message":"no"})
    );
    assert_eq!(
        serde_json::to_value(Signal::error_with(ErrorCode::DryRunFailed, "no", json!({"x":1}))).unwrap(),
        json!({"status":"error","code":"DRY_RUN_FAILED","message":"no","details":{"x":1}})
    );
    for code in ErrorCode::ALL {
        assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
    }
}

#[test]
fn digest_ignores_goal_and_key_order() {
    let a = parse_decision(r#"{"next_step":{"tool":"t","arguments":{"a":1,"b":{"y":2,"x":1}},"goal":"one"}}"#, false)
        .unwrap();
    let b = parse_decision(r#"{"next_step":{"tool":"t","arguments":{"b":{"x":1,"y":2},"a":1},"goal":"two"}}"#, false)
        .unwrap();
    let c = parse_decision(r#"{"next_step":{"tool":"t","arguments":{"a":2,"b":{"x":1,"y":2}},"goal":"one"}}"#, false)
        .unwrap();
    let (Decision::NextStep(a), Decision::NextStep(b), Decision::NextStep(c)) = (a, b, c) else { panic!() };
    assert_eq!(a.digest(), b.digest());
    assert_ne!(a.digest(), c.digest());
    assert_eq!(a.digest().len(), 64);
}

/// `{"replicas":3,"replicas":0}`: serde_json keeps the last value, so the
/// recorded text would read 3 while 0 executed. Repeated keys are refused at
/// any depth, and so is a repeated top-level key.
#[test]
fn repeated_keys_are_refused_anywhere() {
    let cases = [
        r#"{"next_step":{"tool":"k8s.scale","arguments":{"kind":"Deployment","name":"web","replicas":3,"replicas":0},"goal":"g"}}"#,
        r#"{"next_step":{"tool":"k8s.apply","arguments":{"manifest":{"kind":"ConfigMap","metadata":{"name":"a","name":"b"}}},"goal":"g"}}"#,
        r#"{"next_step":{"tool":"k8s.get","tool":"k8s.delete","arguments":{},"goal":"g"}}"#,
        r#"{"done":true,"message":"a","message":"b"}"#,
        r#"{"next_step":{"tool":"t","arguments":{"list":[{"k":1,"k":2}]},"goal":"g"}}"#,
    ];
    for text in cases {
        let e = parse_decision(text, false).unwrap_err();
        assert!(e.message.contains("repeats the key"), "{text}: {}", e.message);
        assert_eq!(e.to_signal().code(), Some(ErrorCode::InvalidProposal));
    }
    // The same keys once each still parse, and equal keys in sibling objects are fine.
    let ok = r#"{"next_step":{"tool":"t","arguments":{"a":{"k":1},"b":{"k":1}},"goal":"g"}}"#;
    assert!(parse_decision(ok, false).is_ok());
}
