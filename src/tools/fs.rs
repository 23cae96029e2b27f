//! `fs.read`, `fs.write`, `fs.list`: file tools confined to one workspace.
//!
//! Confinement has two layers. [`confine`] refuses, with a message for the
//! model, any path that is empty, absolute or uses `..`. All I/O then goes
//! through a `cap_std::fs::Dir` opened on the workspace, which resolves every
//! component itself and refuses symlinks that lead out of it, so nothing
//! outside the workspace can be read or written even by a path that passed
//! the first check.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use cap_std::fs::Dir;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::lines::{self, CONTAINS_DOC, Needle};
use super::{DryRun, Target, Tool, ToolError, parse, schema_of};
use crate::protocol::sha256_hex;

/// Largest file `fs.write` writes, by default.
pub const DEFAULT_MAX_WRITE_BYTES: usize = 1024 * 1024;
/// Largest content `fs.read` returns whole; longer files are truncated.
pub const MAX_READ_BYTES: usize = 16 * 1024;
/// Most entries `fs.list` returns.
pub const MAX_LIST_ENTRIES: usize = 500;
const MAX_PATH_BYTES: usize = 1024;
/// Most names a "no such file" error shows of the nearest folder.
const NOT_FOUND_NAMES: usize = 20;

/// A workspace directory shared by the fs tools.
#[derive(Debug, Clone)]
pub struct Workspace {
    dir: Arc<Dir>,
    max_write_bytes: usize,
}

impl Workspace {
    /// Open `root` (which must exist) as the workspace.
    pub fn open(root: &Path) -> io::Result<Self> {
        let dir = Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
        Ok(Workspace { dir: Arc::new(dir), max_write_bytes: DEFAULT_MAX_WRITE_BYTES })
    }

    /// `path` does not exist: say so with what the nearest existing folder
    /// above it holds (through the same confined handle), so the model's
    /// next proposal can name a file that exists instead of giving up.
    fn not_found(&self, op: &str, path: &Path) -> ToolError {
        let mut folder = path.parent();
        while let Some(f) = folder.filter(|f| !f.as_os_str().is_empty() && !self.dir.is_dir(f)) {
            folder = f.parent();
        }
        let folder = folder.filter(|f| !f.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut names: Vec<String> = self
            .dir
            .read_dir(folder)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        let shown = names.len().min(NOT_FOUND_NAMES);
        let more = if names.len() > shown { format!(" and {} more", names.len() - shown) } else { String::new() };
        ToolError::failed(format!(
            "{op} {}: no such file; the folder {:?} holds: {}{more}",
            path.display(),
            folder.display().to_string(),
            if names.is_empty() { "nothing".to_string() } else { names[..shown].join(", ") }
        ))
    }

    /// Open `path` for reading without ever blocking (a FIFO would wait for
    /// a writer; O_NONBLOCK returns at once) and refuse, from the opened
    /// handle itself, anything that is not a regular file.
    fn open_regular(&self, path: &Path, shown: &str) -> Result<cap_std::fs::File, ToolError> {
        use cap_std::fs::OpenOptionsExt;
        let mut options = cap_std::fs::OpenOptions::new();
        options.read(true).custom_flags(libc::O_NONBLOCK);
        let file = self.dir.open_with(path, &options).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => self.not_found("read", path),
            _ => io_error("read", path, e),
        })?;
        let kind = file.metadata().map_err(|e| io_error("read", path, e))?.file_type();
        if !kind.is_file() {
            let what = if kind.is_dir() { "a folder" } else { "a FIFO, socket or device" };
            return Err(ToolError::invalid(format!(
                "{shown} is {what}, not a regular file; fs.read reads regular files only"
            )));
        }
        Ok(file)
    }

    pub fn with_max_write_bytes(mut self, max: usize) -> Self {
        self.max_write_bytes = max;
        self
    }

    /// The three fs tools over this workspace.
    pub fn tools(&self) -> Vec<Arc<dyn Tool>> {
        vec![
            Arc::new(FsRead { ws: self.clone() }),
            Arc::new(FsWrite { ws: self.clone() }),
            Arc::new(FsList { ws: self.clone() }),
        ]
    }
}

/// Check a model-supplied path before any I/O.
pub fn confine(path: &str) -> Result<PathBuf, ToolError> {
    if path.is_empty() {
        return Err(ToolError::invalid("path is empty; give a path relative to the workspace, e.g. \"config.json\""));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(ToolError::invalid(format!("path is {} bytes; at most {MAX_PATH_BYTES}", path.len())));
    }
    if path.contains('\0') {
        return Err(ToolError::invalid("path contains a NUL byte"));
    }
    let p = Path::new(path);
    let mut out = PathBuf::new();
    for comp in p.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(ToolError::invalid(format!(
                    "path {path:?} uses '..'; paths must stay inside the workspace"
                )));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ToolError::invalid(format!(
                    "path {path:?} is absolute; give a path relative to the workspace, e.g. \"./config.json\""
                )));
            }
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Ok(out)
}

fn io_error(op: &str, path: &Path, e: io::Error) -> ToolError {
    let shown = path.display();
    match e.kind() {
        io::ErrorKind::NotFound => ToolError::failed(format!("{op} {shown}: no such file or directory")),
        io::ErrorKind::PermissionDenied => {
            ToolError::invalid(format!("{op} {shown}: refused (outside the workspace or not permitted): {e}"))
        }
        _ => ToolError::failed(format!("{op} {shown}: {e}")),
    }
}

/// The normalized target of a file tool call, from its arguments alone
/// (the offline policy replay uses it); `None` for other tools.
pub fn target_of(tool: &str, args: &Value) -> Option<Result<Option<Target>, ToolError>> {
    Some(match tool {
        "fs.read" => parse::<ReadArgs>(args).and_then(|a| file_target("File", &a.path)),
        "fs.write" => parse::<WriteArgs>(args).and_then(|a| file_target("File", &a.path)),
        "fs.list" => parse::<ListArgs>(args).and_then(|a| file_target("Folder", &a.path)),
        _ => return None,
    })
}

/// The normalized target of a file tool: the confined path.
fn file_target(kind: &str, path: &str) -> Result<Option<Target>, ToolError> {
    let confined = confine(path)?;
    Ok(Some(Target { kind: kind.to_string(), namespace: None, name: Some(confined.to_string_lossy().into_owned()) }))
}

/// Arguments of `fs.read`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// File path relative to the workspace.
    pub path: String,
    #[serde(default)]
    #[schemars(description = CONTAINS_DOC)]
    pub contains: Option<String>,
}

/// A `.json` file must receive JSON: the eval model writes
/// `{"env":"dev"}"` (a stray quote) often enough that the demo ended with a
/// file no program can read. Refused at the dry run, with where it breaks.
fn check_format(path: &Path, content: &str) -> Result<(), ToolError> {
    if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
        return Ok(());
    }
    let mut values = serde_json::Deserializer::from_str(content).into_iter::<serde::de::IgnoredAny>();
    match values.next() {
        Some(Ok(_)) if values.byte_offset() == content.trim_end().len() => Ok(()),
        // A whole value, then more: say exactly what to drop.
        Some(Ok(_)) => {
            let (value, extra) = content.split_at(values.byte_offset());
            Err(ToolError::invalid(format!(
                "content is not valid JSON for a .json file: the JSON value {value} is followed by {:?}; write \
                 the content again without those trailing characters",
                extra.trim_end()
            )))
        }
        Some(Err(e)) => Err(ToolError::invalid(format!(
            "content is not valid JSON for a .json file ({e}); write exactly the JSON text, with nothing before or \
             after it"
        ))),
        None => Err(ToolError::invalid("content is empty, which is not JSON; a .json file needs a JSON value")),
    }
}

/// Arguments of `fs.write`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// File path relative to the workspace; parent folders are created.
    pub path: String,
    /// The complete new content of the file: its text, or for a JSON file
    /// the JSON object itself.
    #[schemars(schema_with = "text_or_object")]
    pub content: Content,
}

/// What `fs.write` writes: text as it is, or a JSON object as its
/// JSON text. (The eval model, escaping JSON inside a string, wrote
/// `{"env":"dev","debug":true}"`; as a value there is nothing to escape.)
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Object(serde_json::Map<String, Value>),
}

impl Content {
    /// The file's bytes.
    fn into_text(self) -> String {
        match self {
            Content::Text(t) => t,
            Content::Object(o) => json_text(&Value::Object(o)),
        }
    }
}

/// `{"type": ["string", "object"]}`: one node, so a string's `maxLength`
/// bound and its schema error ("longer than N characters") stay what they
/// are for text (an `anyOf` would only say "not valid under any").
fn text_or_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": ["string", "object"]})
}

/// Pretty JSON with a final newline, as editors write it.
fn json_text(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}

/// Arguments of `fs.list`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Folder relative to the workspace; "." for the workspace itself.
    pub path: String,
}

struct FsRead {
    ws: Workspace,
}

struct FsWrite {
    ws: Workspace,
}

impl FsWrite {
    /// Whether the regular file at `path` already holds exactly `content`
    /// (read through the same confinement as `fs.read`, at most one byte
    /// more than `content`): then writing it would change nothing.
    fn holds(&self, path: &Path, shown: &str, content: &str) -> bool {
        let Ok(file) = self.ws.open_regular(path, shown) else { return false };
        read_bounded(file, content.len()).is_ok_and(|r| !r.truncated && r.head == content.as_bytes())
    }
}

struct FsList {
    ws: Workspace,
}

#[async_trait]
impl Tool for FsRead {
    fn name(&self) -> &'static str {
        "fs.read"
    }
    fn description(&self) -> &'static str {
        "Read a UTF-8 text file from the workspace; with `contains`, only its lines that contain that text, and how many."
    }
    fn schema(&self) -> Value {
        schema_of::<ReadArgs>()
    }
    fn mutates(&self) -> bool {
        false
    }
    fn target(&self, args: &Value) -> Result<Option<Target>, ToolError> {
        target_of(self.name(), args).unwrap_or(Ok(None))
    }
    async fn validate(&self, args: &Value) -> Result<DryRun, ToolError> {
        let a: ReadArgs = parse(args)?;
        confine(&a.path)?;
        Needle::optional("contains", a.contains.as_deref())?;
        Ok(DryRun::new(format!("would read {}", a.path)))
    }
    async fn execute(&self, args: &Value) -> Result<Value, ToolError> {
        let a: ReadArgs = parse(args)?;
        let path = confine(&a.path)?;
        let file = self.ws.open_regular(&path, &a.path)?;
        let read = read_bounded(file, MAX_READ_BYTES).map_err(|e| io_error("read", &path, e))?;
        let text = match std::str::from_utf8(&read.head) {
            Ok(t) => t,
            // Cut inside a character: keep the whole characters before it.
            Err(e) if read.truncated && e.error_len().is_none() => {
                std::str::from_utf8(&read.head[..e.valid_up_to()]).unwrap_or_default()
            }
            Err(_) => return Err(ToolError::failed(format!("{} is not UTF-8 text", a.path))),
        };
        let mut answer = serde_json::Map::new();
        answer.insert("path".into(), json!(a.path));
        answer.insert("bytes".into(), json!(read.total));
        if read.truncated {
            answer.insert("truncated".into(), json!(true));
            answer.insert("sha256".into(), json!(read.sha256));
        }
        let needle = Needle::optional("contains", a.contains.as_deref())?;
        answer.extend(lines::show(needle.as_ref(), text, "content", || json!(text)));
        Ok(Value::Object(answer))
    }
    /// The file's text; a truncated read or found lines stand for no value
    /// (a copy of it would be short).
    fn value(&self, result: &Value) -> Option<Value> {
        (result.get("truncated").is_none()).then(|| result.get("content").cloned()).flatten()
    }
    /// The whole text was shown: no search found lines, nothing was cut.
    fn shows_whole(&self, result: &Value) -> bool {
        result.get("content").is_some() && result.get("truncated").is_none()
    }
}

/// What [`read_bounded`] read.
struct Bounded {
    /// At most the limit's bytes from the start.
    head: Vec<u8>,
    total: u64,
    truncated: bool,
    /// Of the whole file, computed while streaming.
    sha256: String,
}

/// Size of each read while streaming a file.
const READ_CHUNK: usize = 64 * 1024;

/// Read a file keeping at most `limit` bytes in memory: the head is kept,
/// the rest only hashed, a chunk at a time.
fn read_bounded(mut file: cap_std::fs::File, limit: usize) -> io::Result<Bounded> {
    use sha2::Digest;
    use std::io::Read;
    let mut hasher = sha2::Sha256::new();
    let mut head = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut total: u64 = 0;
    loop {
        let n = match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&chunk[..n]);
        let room = limit.saturating_sub(head.len());
        head.extend_from_slice(&chunk[..n.min(room)]);
        total += n as u64;
    }
    Ok(Bounded { truncated: total > limit as u64, head, total, sha256: hex::encode(hasher.finalize()) })
}

#[async_trait]
impl Tool for FsWrite {
    fn name(&self) -> &'static str {
        "fs.write"
    }
    fn description(&self) -> &'static str {
        "Create or replace a text file in the workspace: `content` becomes the whole file, so to change a file, read it first and write all of its new content."
    }
    fn schema(&self) -> Value {
        schema_of::<WriteArgs>()
    }
    fn mutates(&self) -> bool {
        true
    }
    fn target(&self, args: &Value) -> Result<Option<Target>, ToolError> {
        target_of(self.name(), args).unwrap_or(Ok(None))
    }
    async fn validate(&self, args: &Value) -> Result<DryRun, ToolError> {
        let a: WriteArgs = parse(args)?;
        let path = confine(&a.path)?;
        let content = a.content.into_text();
        if content.len() > self.ws.max_write_bytes {
            return Err(ToolError::invalid(format!(
                "content is {} bytes; fs.write accepts at most {} bytes",
                content.len(),
                self.ws.max_write_bytes
            )));
        }
        if path == Path::new(".") {
            return Err(ToolError::invalid("path names the workspace itself; give a file name"));
        }
        check_format(&path, &content)?;
        match self.ws.dir.symlink_metadata(&path) {
            Ok(m) if m.is_symlink() => {
                Err(ToolError::invalid(format!("{} is a symbolic link; fs.write does not write through links", a.path)))
            }
            Ok(m) if m.is_dir() => Err(ToolError::invalid(format!("{} is a folder, not a file", a.path))),
            Ok(m) => Ok(DryRun {
                summary: format!("would overwrite {} ({} -> {} bytes)", a.path, m.len(), content.len()),
                details: Some(json!({"path": a.path, "exists": true, "oldBytes": m.len(), "newBytes": content.len()})),
                replaces: !self.holds(&path, &a.path, &content),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DryRun {
                summary: format!("would create {} ({} bytes)", a.path, content.len()),
                details: Some(json!({"path": a.path, "exists": false, "newBytes": content.len()})),
                replaces: false,
            }),
            Err(e) => Err(io_error("check", &path, e)),
        }
    }
    async fn execute(&self, args: &Value) -> Result<Value, ToolError> {
        let a: WriteArgs = parse(args)?;
        let path = confine(&a.path)?;
        let content = a.content.into_text();
        let existed = self.ws.dir.symlink_metadata(&path).is_ok();
        if existed && self.holds(&path, &a.path, &content) {
            return Ok(json!({
                "path": a.path, "bytes": content.len(), "created": false, "changed": false,
                "sha256": sha256_hex(content.as_bytes()),
                "note": format!("{} already held exactly this content: nothing changed", a.path),
            }));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.ws.dir.create_dir_all(parent).map_err(|e| io_error("create folder", parent, e))?;
        }
        self.ws.dir.write(&path, content.as_bytes()).map_err(|e| io_error("write", &path, e))?;
        Ok(
            json!({"path": a.path, "bytes": content.len(), "created": !existed, "changed": true, "sha256": sha256_hex(content.as_bytes())}),
        )
    }
    /// The run wrote the whole content, so it knows it.
    fn shows_whole(&self, _result: &Value) -> bool {
        true
    }
}

#[async_trait]
impl Tool for FsList {
    fn name(&self) -> &'static str {
        "fs.list"
    }
    fn description(&self) -> &'static str {
        "List the files and folders in a workspace folder."
    }
    fn schema(&self) -> Value {
        schema_of::<ListArgs>()
    }
    fn mutates(&self) -> bool {
        false
    }
    fn target(&self, args: &Value) -> Result<Option<Target>, ToolError> {
        target_of(self.name(), args).unwrap_or(Ok(None))
    }
    async fn validate(&self, args: &Value) -> Result<DryRun, ToolError> {
        let a: ListArgs = parse(args)?;
        confine(&a.path)?;
        Ok(DryRun::new(format!("would list {}", a.path)))
    }
    async fn execute(&self, args: &Value) -> Result<Value, ToolError> {
        let a: ListArgs = parse(args)?;
        let path = confine(&a.path)?;
        let rd = self.ws.dir.read_dir(&path).map_err(|e| io_error("list", &path, e))?;
        let mut entries = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| io_error("list", &path, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let ft = entry.file_type().map_err(|e| io_error("list", &path, e))?;
            let kind = if ft.is_symlink() {
                "symlink"
            } else if ft.is_dir() {
                "dir"
            } else {
                "file"
            };
            let bytes = if kind == "file" { entry.metadata().map(|m| m.len()).unwrap_or(0) } else { 0 };
            entries.push(json!({"name": name, "type": kind, "bytes": bytes}));
        }
        entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let total = entries.len();
        entries.truncate(MAX_LIST_ENTRIES);
        Ok(json!({"path": a.path, "entries": entries, "total": total, "truncated": total > MAX_LIST_ENTRIES}))
    }
}
