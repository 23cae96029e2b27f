//! The fs tools: every escape attempt is refused and nothing outside the
//! workspace is read or written.

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::{Value, json};
use xct::protocol::ErrorCode;
use xct::tools::fs::{MAX_READ_BYTES, Workspace, confine};
use xct::tools::{Tool, ToolSet};

struct Fixture {
    _root: tempfile::TempDir,
    ws: std::path::PathBuf,
    outside: std::path::PathBuf,
    tools: ToolSet,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let ws = root.path().join("ws");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "top secret").unwrap();
    symlink(&outside, ws.join("link-out")).unwrap();
    symlink(outside.join("secret.txt"), ws.join("secret-link")).unwrap();
    std::fs::write(ws.join("notes.txt"), "hello").unwrap();
    let workspace = Workspace::open(&ws).unwrap().with_max_write_bytes(1024);
    let tools = workspace.tools().into_iter().fold(ToolSet::new(), ToolSet::with);
    Fixture { _root: root, ws, outside, tools }
}

fn tool<'a>(f: &'a Fixture, name: &str) -> &'a dyn Tool {
    f.tools.get(name).unwrap().as_ref()
}

/// validate then execute, as the engine does; the error code of whichever refused.
async fn attempt(t: &dyn Tool, args: Value) -> Result<Value, ErrorCode> {
    t.validate(&args).await.map_err(|e| e.code)?;
    t.execute(&args).await.map_err(|e| e.code)
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in walk(dir) {
        let data = std::fs::read(&e).unwrap_or_default();
        out.push((e.display().to_string(), data));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn escapes_are_refused_and_nothing_outside_changes() {
    let f = fixture();
    let before = snapshot(&f.outside);
    let write = tool(&f, "fs.write");
    let attempts = [
        "../outside/pwned.txt",
        "../../etc/passwd",
        "/etc/passwd",
        "/tmp/pwned",
        "a/../../outside/pwned.txt",
        "link-out/pwned.txt",
        "secret-link",
        "link-out/../ws/x",
        "",
        "bad\0name",
    ];
    for path in attempts {
        let r = attempt(write, json!({"path": path, "content": "pwned"})).await;
        assert!(r.is_err(), "write to {path:?} must be refused, got {r:?}");
    }
    let read = tool(&f, "fs.read");
    for path in ["../outside/secret.txt", "/etc/hostname", "link-out/secret.txt", "secret-link"] {
        let r = attempt(read, json!({"path": path})).await;
        assert!(r.is_err(), "read of {path:?} must be refused, got {r:?}");
    }
    let list = tool(&f, "fs.list");
    for path in ["..", "/", "link-out"] {
        let r = attempt(list, json!({"path": path})).await;
        assert!(r.is_err(), "list of {path:?} must be refused, got {r:?}");
    }
    assert_eq!(snapshot(&f.outside), before, "nothing outside the workspace may change");
    assert!(!Path::new("/tmp/pwned").exists());
}

#[tokio::test]
async fn confinement_errors_are_invalid_arguments() {
    for p in ["/abs", "../x", "a/../../x", ""] {
        assert_eq!(confine(p).unwrap_err().code, ErrorCode::InvalidArguments, "{p}");
    }
    assert_eq!(confine("./a/./b").unwrap(), Path::new("a/b"));
    assert_eq!(confine(".").unwrap(), Path::new("."));
}

#[tokio::test]
async fn oversized_writes_are_refused_before_anything_is_written() {
    let f = fixture();
    let write = tool(&f, "fs.write");
    let r = attempt(write, json!({"path": "big.txt", "content": "x".repeat(2048)})).await;
    assert_eq!(r, Err(ErrorCode::InvalidArguments));
    assert!(!f.ws.join("big.txt").exists());
}

#[tokio::test]
async fn write_read_list_inside_the_workspace() {
    let f = fixture();
    let dry =
        tool(&f, "fs.write").validate(&json!({"path": "conf/config.json", "content": "{\"a\":1}"})).await.unwrap();
    assert!(dry.summary.contains("would create"), "{}", dry.summary);
    assert!(!f.ws.join("conf").exists(), "validation must not touch anything");
    let r = attempt(tool(&f, "fs.write"), json!({"path": "conf/config.json", "content": "{\"a\":1}"})).await.unwrap();
    assert_eq!(r["created"], true);
    assert_eq!(std::fs::read_to_string(f.ws.join("conf/config.json")).unwrap(), "{\"a\":1}");
    let dry = tool(&f, "fs.write").validate(&json!({"path": "conf/config.json", "content": "{}"})).await.unwrap();
    assert!(dry.summary.contains("would overwrite"), "{}", dry.summary);
    let r = attempt(tool(&f, "fs.read"), json!({"path": "./conf/config.json"})).await.unwrap();
    assert_eq!(r["content"], "{\"a\":1}");
    let r = attempt(tool(&f, "fs.list"), json!({"path": "."})).await.unwrap();
    let names: Vec<&str> = r["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["conf", "link-out", "notes.txt", "secret-link"]);
    assert_eq!(r["entries"][1]["type"], "symlink");
}

#[tokio::test]
async fn large_files_are_read_truncated_with_a_digest() {
    let f = fixture();
    std::fs::write(f.ws.join("big.txt"), "é".repeat(MAX_READ_BYTES)).unwrap();
    let r = attempt(tool(&f, "fs.read"), json!({"path": "big.txt"})).await.unwrap();
    assert_eq!(r["truncated"], true);
    assert_eq!(r["bytes"], 2 * MAX_READ_BYTES);
    assert_eq!(r["sha256"].as_str().unwrap().len(), 64);
    assert!(r["content"].as_str().unwrap().len() <= MAX_READ_BYTES);
    assert_eq!(tool(&f, "fs.read").value(&r), None, "a cut read stands for no file's text");
    std::fs::write(f.ws.join("small.txt"), "ok").unwrap();
    let small = attempt(tool(&f, "fs.read"), json!({"path": "small.txt"})).await.unwrap();
    assert_eq!(tool(&f, "fs.read").value(&small), Some(json!("ok")));
}

#[tokio::test]
async fn missing_files_are_execution_failures() {
    let f = fixture();
    assert_eq!(attempt(tool(&f, "fs.read"), json!({"path": "nope.txt"})).await, Err(ErrorCode::ExecutionFailed));
}

/// A FIFO would block a plain read forever (no writer ever comes): it is
/// refused at once, like anything that is not a regular file.
#[tokio::test]
async fn a_fifo_is_refused_without_blocking() {
    let f = fixture();
    let fifo = f.ws.join("pipe");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    let t = std::time::Instant::now();
    let r =
        tokio::time::timeout(std::time::Duration::from_secs(5), attempt(tool(&f, "fs.read"), json!({"path": "pipe"})))
            .await
            .expect("fs.read returned instead of blocking on the FIFO");
    assert_eq!(r, Err(ErrorCode::InvalidArguments));
    assert!(t.elapsed() < std::time::Duration::from_secs(1));
    let e = tool(&f, "fs.read").execute(&json!({"path": "pipe"})).await.unwrap_err();
    assert!(e.message.contains("not a regular file"), "{}", e.message);
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// A 512 MiB file is read in bounded memory: the head is kept, the rest is
/// only hashed while streaming (reading it whole used to cost 512 MiB).
#[tokio::test]
async fn a_huge_file_is_read_in_bounded_memory() {
    const SIZE: u64 = 512 * 1024 * 1024;
    let f = fixture();
    let file = std::fs::File::create(f.ws.join("huge.log")).unwrap();
    file.set_len(SIZE).unwrap(); // sparse: no disk space used
    let before = peak_rss();
    let r = attempt(tool(&f, "fs.read"), json!({"path": "huge.log"})).await.unwrap();
    let grew = peak_rss().saturating_sub(before);
    assert_eq!(r["bytes"], SIZE);
    assert_eq!(r["truncated"], true);
    assert_eq!(r["content"].as_str().unwrap().len(), MAX_READ_BYTES);
    // sha256 of 512 MiB of zeros, computed while streaming.
    assert_eq!(r["sha256"], "9acca8e8c22201155389f65abbf6bc9723edc7384ead80503839f49dcc56d767");
    assert!(grew < 32 * 1024 * 1024, "peak memory grew by {grew} bytes");
}

/// A free string argument is bounded by the run's maxTokens; the grammar
/// allows one character more, so a content the grammar had to close (the
/// model meant more) is refused at the gate and never written, while the
/// longest allowed one is written whole.
#[tokio::test]
async fn content_at_the_grammar_ceiling_is_refused_not_written_cut() {
    use xct::engine::{Engine, Limits, RunConfig, bounds, record::VerdictOutcome};
    let f = fixture();
    let max_tokens = 120;
    let chars = bounds::max_argument_chars(max_tokens, 2) as usize;
    assert_eq!(chars, 30, "path and content share 60 characters");
    let write = |path: &str, len: usize| {
        json!({"next_step": {"tool": "fs.write", "arguments": {"path": path, "content": "x".repeat(len)}, "goal": "g"}})
            .to_string()
    };
    let decider = xct::model::ScriptedDecider::new([write("cut.txt", chars + 1), write("whole.txt", chars)]);
    let cfg = RunConfig {
        id: "bounds".into(),
        acting_as: "tester".into(),
        goal: "write".into(),
        tools: f.tools.clone(),
        limits: Limits::default(),
        sampling: xct::model::Sampling { max_tokens, ..Default::default() },
    };
    let engine = Engine::new(&decider);
    let started = chrono::Utc::now();
    let cut = support::next(&engine, &cfg, &[], started).await.unwrap();
    assert_eq!(cut.verdict.outcome, VerdictOutcome::Vetoed);
    assert_eq!(cut.outcome_label(), "INVALID_ARGUMENTS");
    let told = cut.signal.as_ref().unwrap().to_json_string();
    assert!(told.contains("maxTokens (120)") && told.contains("longer than 30 characters"), "{told}");
    assert!(!f.ws.join("cut.txt").exists(), "a cut content is never written");
    let whole = support::next(&engine, &cfg, std::slice::from_ref(&cut), started).await.unwrap();
    assert_eq!(whole.outcome_label(), "Success");
    assert_eq!(std::fs::read_to_string(f.ws.join("whole.txt")).unwrap(), "x".repeat(chars));
}

/// A missing file is an error that shows what the nearest existing folder
/// holds (through the same confined handle), so the next proposal can name
/// a file that exists; nothing outside the workspace is named.
#[tokio::test]
async fn a_missing_file_names_what_the_nearest_folder_holds() {
    let f = fixture();
    std::fs::create_dir_all(f.ws.join("logs")).unwrap();
    std::fs::write(f.ws.join("logs/app.log"), "ok").unwrap();
    let read = tool(&f, "fs.read");
    let message = |args: Value| async move { read.execute(&args).await.unwrap_err() };
    let e = message(json!({"path": "logs/old/access.log"})).await;
    assert_eq!(e.code, ErrorCode::ExecutionFailed);
    assert!(e.message.contains("no such file; the folder \"logs\" holds: app.log"), "{}", e.message);
    let e = message(json!({"path": "access.log"})).await;
    assert!(e.message.contains("the folder \".\" holds: "), "{}", e.message);
    assert!(e.message.contains("notes.txt") && e.message.contains("logs"), "{}", e.message);
    assert!(!e.message.contains("secret.txt"), "nothing outside is named: {}", e.message);
}

/// A file content that is, whole, a call of another tool
/// (`fs.read(path='a.txt')`, the eval model's way of asking for a value it
/// has not read) is refused at the gate with INVALID_ARGUMENTS saying what to
/// do instead; nothing is written. Once that tool has run, the refusal
/// suggests the same proposal with the file's text in place of the call.
/// Content that only mentions a tool is written as it is.
#[tokio::test]
async fn a_tool_call_written_as_content_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let prepared = support::prepare_local(dir.path(), "nested", "fs.write, fs.read");
    let ws = dir.path().join("ws");
    std::fs::write(ws.join("a.txt"), "remember the milk").unwrap();
    let write = |path: &str, content: &str| {
        json!({"next_step": {"tool": "fs.write", "arguments": {"path": path, "content": content}, "goal": "copy"}})
            .to_string()
    };
    let read = json!({"next_step": {"tool": "fs.read", "arguments": {"path": "a.txt"}, "goal": "read"}}).to_string();
    let decider = xct::model::ScriptedDecider::new(vec![
        write("copy.txt", "fs.read(path='a.txt')"),
        read,
        write("copy.txt", "fs.read(path='a.txt')"),
        write("howto.txt", "call fs.read(path) first"),
        write("copy.txt", "remember the milk"),
        r#"{"done":true,"message":"ok"}"#.into(),
    ]);
    let mut out = Vec::new();
    let report = xct::local::run(&prepared, &decider, &dir.path().join("h.yaml"), &mut out).await.unwrap();
    let steps = report.status.steps;
    match &steps[0].signal {
        Some(xct::protocol::Signal::Error { code, message, details }) => {
            assert_eq!(*code, ErrorCode::InvalidArguments);
            assert!(message.contains("holds a call to fs.read") && message.contains("in its own step"), "{message}");
            assert!(!message.contains("already ran"), "fs.read has not run yet: {message}");
            assert_eq!(details.as_ref().unwrap()["argument"], "/content");
        }
        other => panic!("expected INVALID_ARGUMENTS, got {other:?}"),
    }
    match &steps[2].signal {
        Some(xct::protocol::Signal::Error { code, message, .. }) => {
            assert_eq!(*code, ErrorCode::InvalidArguments);
            assert!(message.contains("fs.read already ran in step 2"), "{message}");
            let instead = write("copy.txt", "remember the milk");
            assert!(
                message.contains(&format!("Propose instead: {instead}")),
                "the same proposal with the file's text in place of the call: {message}"
            );
            assert!(message.contains("You proposed exactly this in step 1"), "and named as a repeat: {message}");
        }
        other => panic!("expected INVALID_ARGUMENTS, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(ws.join("howto.txt")).unwrap(), "call fs.read(path) first");
    assert_eq!(steps[4].outcome_label(), "Success", "the suggestion, proposed, passes the gate");
    assert_eq!(std::fs::read_to_string(ws.join("copy.txt")).unwrap(), "remember the milk");
}

/// `content` may be a JSON object instead of text: the file gets its JSON
/// text (pretty, one final newline), so a model writing JSON has nothing to
/// escape. Any other value (a number, null, an array) is refused by the
/// schema with INVALID_ARGUMENTS and nothing is written; the size limit
/// counts the text written.
#[tokio::test]
async fn a_json_object_as_content_is_written_as_its_json_text() {
    let f = fixture();
    let write = tool(&f, "fs.write");
    let written =
        attempt(write, json!({"path": "config.json", "content": {"env": "dev", "debug": true}})).await.unwrap();
    let text = std::fs::read_to_string(f.ws.join("config.json")).unwrap();
    assert_eq!(text, "{\n  \"env\": \"dev\",\n  \"debug\": true\n}\n");
    assert_eq!(written["bytes"], text.len());
    let back: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back, json!({"env": "dev", "debug": true}));
    for bad in [json!(3), json!(null), json!([1, 2]), json!(true)] {
        assert_eq!(
            attempt(write, json!({"path": "other.json", "content": bad})).await,
            Err(ErrorCode::InvalidArguments),
            "{bad}"
        );
    }
    assert!(!f.ws.join("other.json").exists());
    let big = json!({"path": "big.json", "content": {"k": "x".repeat(xct::tools::fs::DEFAULT_MAX_WRITE_BYTES)}});
    assert_eq!(attempt(write, big).await, Err(ErrorCode::InvalidArguments));
    assert!(!f.ws.join("big.json").exists());
}

/// A `.json` file is only written with JSON: a stray character after the
/// object is refused at the dry run with INVALID_ARGUMENTS naming where, and
/// the file is not touched; other files take any text.
#[tokio::test]
async fn a_json_file_is_only_written_with_json() {
    let f = fixture();
    let write = tool(&f, "fs.write");
    let refused = attempt(write, json!({"path": "config.json", "content": "{\"env\":\"dev\"}\""})).await;
    assert_eq!(refused, Err(ErrorCode::InvalidArguments));
    let message = match write.validate(&json!({"path": "config.json", "content": "{\"env\":\"dev\"}\""})).await {
        Err(e) => e.to_signal(),
        Ok(d) => panic!("{d:?}"),
    };
    assert!(format!("{message:?}").contains(r#"is followed by \"\\\"\""#), "{message:?}");
    assert!(!f.ws.join("config.json").exists());
    assert!(attempt(write, json!({"path": "config.json", "content": "{\"env\":\"dev\"}"})).await.is_ok());
    assert!(attempt(write, json!({"path": "notes.txt", "content": "{\"env\":\"dev\"}\""})).await.is_ok());
    for bad in ["", "{\"env\":", "config.json"] {
        assert_eq!(
            attempt(write, json!({"path": "b.json", "content": bad})).await,
            Err(ErrorCode::InvalidArguments),
            "{bad:?}"
        );
    }
    assert!(
        attempt(write, json!({"path": "c.JSON", "content": "[1, 2]\n"})).await.is_ok(),
        "a newline after the value is fine"
    );
}

/// Writing what a file already holds changes nothing and says so (small
/// models otherwise rewrite it again and again); any other content is
/// written and reported as a change.
#[tokio::test]
async fn writing_what_a_file_already_holds_is_reported_unchanged() {
    let f = fixture();
    std::fs::write(f.ws.join("config.json"), r#"{"env":"dev"}"#).unwrap();
    let same =
        attempt(tool(&f, "fs.write"), json!({"path": "config.json", "content": r#"{"env":"dev"}"#})).await.unwrap();
    assert_eq!(same["changed"], false, "{same}");
    assert_eq!(same["note"], "config.json already held exactly this content: nothing changed");
    let longer =
        attempt(tool(&f, "fs.write"), json!({"path": "config.json", "content": r#"{"env":"dev"} "#})).await.unwrap();
    assert_eq!(longer["changed"], true, "a longer content is a change: {longer}");
    assert!(longer.get("note").is_none());
    let shorter =
        attempt(tool(&f, "fs.write"), json!({"path": "config.json", "content": r#"{"env":"de"}"#})).await.unwrap();
    assert_eq!(shorter["changed"], true, "a shorter content is a change: {shorter}");
    assert_eq!(std::fs::read_to_string(f.ws.join("config.json")).unwrap(), r#"{"env":"de"}"#);
}

/// `contains` turns a read into a line search the tool counts; found lines
/// are not a value to copy, a search that finds nothing shows the whole
/// file, an empty search is a plain read and a search over two lines is
/// refused.
#[tokio::test]
async fn a_read_can_search_and_count_lines() {
    let f = fixture();
    std::fs::write(f.ws.join("access.log"), "GET / 200\nGET /a 500\nPOST /b 201\nGET /c 500\n").unwrap();
    let r = attempt(tool(&f, "fs.read"), json!({"path": "access.log", "contains": " 500"})).await.unwrap();
    assert_eq!(r["count"], 2);
    assert_eq!(r["lines"], json!(["GET /a 500", "GET /c 500"]));
    assert_eq!(r.get("content"), None, "a search returns lines, not the file");
    assert_eq!(tool(&f, "fs.read").value(&r), None, "found lines stand for no file's text");
    let none = attempt(tool(&f, "fs.read"), json!({"path": "access.log", "contains": "404"})).await.unwrap();
    assert_eq!(none["count"], 0);
    assert!(none["note"].as_str().unwrap().starts_with("none of the 4 lines contains"), "{none}");
    assert_eq!(tool(&f, "fs.read").value(&none), Some(json!("GET / 200\nGET /a 500\nPOST /b 201\nGET /c 500\n")));
    let plain = attempt(tool(&f, "fs.read"), json!({"path": "access.log"})).await.unwrap();
    let empty = attempt(tool(&f, "fs.read"), json!({"path": "access.log", "contains": ""})).await.unwrap();
    assert_eq!(empty, plain, "an empty search is no search");
    let r = tool(&f, "fs.read").validate(&json!({"path": "access.log", "contains": "GET\nPOST"})).await;
    assert_eq!(r.map_err(|e| e.code).err(), Some(ErrorCode::InvalidArguments));
}

/// A write that would replace a file the run has not seen whole is refused
/// at the gate (DRY_RUN_FAILED, decided by "unseen") and the file keeps its
/// content: the eval model wrote `port=9090` over a two-line `app.conf` it
/// had never read. A search that showed some of its lines is no whole read;
/// a whole read is, and so is the run's own earlier write of the file.
/// Creating a file, and writing back exactly what a file holds, need none.
#[tokio::test]
async fn a_file_the_run_has_not_read_whole_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let prepared = support::prepare_local(dir.path(), "unseen", "fs.write, fs.read");
    let ws = dir.path().join("ws");
    let original = "port=8080\nhost=localhost\n";
    std::fs::write(ws.join("app.conf"), original).unwrap();
    std::fs::write(ws.join("same.txt"), "kept").unwrap();
    let write = |path: &str, content: &str| {
        json!({"next_step": {"tool": "fs.write", "arguments": {"path": path, "content": content}, "goal": "w"}})
            .to_string()
    };
    let read = |args: Value| json!({"next_step": {"tool": "fs.read", "arguments": args, "goal": "r"}}).to_string();
    let decider = xct::model::ScriptedDecider::new(vec![
        write("app.conf", "port=9090\n"),
        read(json!({"path": "app.conf", "contains": "port"})),
        write("./app.conf", "port=9090\n"),
        write("same.txt", "kept"),
        write("new.txt", "fresh"),
        write("new.txt", "fresh again"),
        read(json!({"path": "app.conf"})),
        write("app.conf", "port=9090\nhost=localhost\n"),
        r#"{"done":true,"message":"port is 9090"}"#.into(),
    ]);
    let mut out = Vec::new();
    let report = xct::local::run(&prepared, &decider, &dir.path().join("h.yaml"), &mut out).await.unwrap();
    let steps = report.status.steps;
    let labels: Vec<&str> = steps.iter().map(|s| s.outcome_label()).collect();
    assert_eq!(
        labels,
        ["DRY_RUN_FAILED", "Success", "DRY_RUN_FAILED", "Success", "Success", "Success", "Success", "Success", "Done"]
    );
    for refused in [&steps[0], &steps[2]] {
        assert_eq!(refused.verdict.decided_by.as_deref(), Some("unseen"));
        match &refused.signal {
            Some(xct::protocol::Signal::Error { message, .. }) => assert!(
                message.starts_with("fs.write would replace the whole content of app.conf")
                    && message.contains("read all of it first (without a search)"),
                "{message}"
            ),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // The whole read after both refusals shows the file as it was.
    let shown = match &steps[6].signal {
        Some(xct::protocol::Signal::Success { result }) => result["content"].clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(shown, original);
    assert_eq!(std::fs::read_to_string(ws.join("app.conf")).unwrap(), "port=9090\nhost=localhost\n");
    assert_eq!(std::fs::read_to_string(ws.join("new.txt")).unwrap(), "fresh again");
    assert_eq!(std::fs::read_to_string(ws.join("same.txt")).unwrap(), "kept");
}
