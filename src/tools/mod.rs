//! Tools: the only things that execute.
//!
//! A [`Tool`] declares its name, a description for the model, a JSON Schema
//! for its arguments (fed to both the grammar and validation), and whether it
//! mutates state. The engine always calls [`Tool::validate`] (the tool's own
//! checks and dry run) before [`Tool::execute`]. Tools return errors as
//! [`ToolError`]s, which become error signals for the model.

pub mod fs;
pub mod lines;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::protocol::{ErrorCode, Signal};

/// A tool failure, returned to the model as an error signal.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ToolError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
}

impl ToolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ToolError { code, message: message.into(), details: None }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArguments, message)
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ExecutionFailed, message)
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn to_signal(&self) -> Signal {
        Signal::Error { code: self.code, message: self.message.clone(), details: self.details.clone() }
    }
}

/// The JSON Schema of a tool's arguments type: self-contained (every
/// subschema inlined, no `$ref`), so it can be embedded in the decision
/// schema and turned into a grammar.
pub fn schema_of<T: schemars::JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07().with(|s| s.inline_subschemas = true).into_generator();
    let mut v = serde_json::to_value(generator.into_root_schema_for::<T>())
        .unwrap_or_else(|_| serde_json::json!({"type": "object"}));
    if let Some(obj) = v.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
        obj.remove("definitions");
        obj.remove("$defs");
    }
    v
}

/// A tool's typed arguments; a mismatch is INVALID_ARGUMENTS.
pub fn parse<T: for<'de> serde::Deserialize<'de>>(args: &Value) -> Result<T, ToolError> {
    serde_json::from_value(args.clone()).map_err(|e| ToolError::invalid(format!("invalid arguments: {e}")))
}

/// What a successful validation learned: for a mutation, what would change.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRun {
    /// A short sentence, e.g. "would create config.json (17 bytes)".
    pub summary: String,
    /// Structured detail (the dry-run response of an API server, a diff...).
    pub details: Option<Value>,
    /// The change replaces the target's whole current content with other
    /// content (a file overwritten): the gate lets it run only once a step
    /// of the run has shown that content whole ([`Tool::shows_whole`]).
    pub replaces: bool,
}

impl DryRun {
    pub fn new(summary: impl Into<String>) -> Self {
        DryRun { summary: summary.into(), details: None, replaces: false }
    }
}

/// What a proposal is about, normalized across tools so that one policy
/// rule covers every tool that touches it (`proposal.target` in CEL):
/// for Kubernetes tools the object's kind, namespace and name (no name for
/// a list), for file tools `File`/`Folder` and the confined path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// One deterministic executor.
#[async_trait]
pub trait Tool: Send + Sync {
    /// The name the model uses, e.g. `fs.write`.
    fn name(&self) -> &'static str;
    /// One or two sentences for the model.
    fn description(&self) -> &'static str;
    /// JSON Schema of the `arguments` object.
    fn schema(&self) -> Value;
    /// Whether executing changes state (mutations get a dry run and, in the
    /// cluster, the intent recorded before they run).
    fn mutates(&self) -> bool;
    /// What the arguments are about, computed from them alone, or a coded
    /// refusal (INVALID_ARGUMENTS) before anything is sent.
    fn target(&self, args: &Value) -> Result<Option<Target>, ToolError>;
    /// The target as it is now, read-only (null when absent or when the
    /// tool does not read it: lists, Secrets). The only request the gate may
    /// make before its verdict.
    async fn observe(&self, _args: &Value) -> Result<Value, ToolError> {
        Ok(Value::Null)
    }
    /// The read-only proposal that shows this call's target (judged like
    /// any proposal before a recovered step's target is shown to the model).
    fn observation(&self, _args: &Value) -> Option<crate::protocol::NextStep> {
        None
    }
    /// What a successful result of this tool stands for when another step
    /// needs it as an argument (`fs.read`: the whole file's text), for the
    /// advice on a refused nested call; `None` when no single value does.
    fn value(&self, _result: &Value) -> Option<Value> {
        None
    }
    /// Whether this call's successful `result` showed the whole content of
    /// its target as it was then, or set it (a write): what a change that
    /// [`DryRun::replaces`] that content waits for.
    fn shows_whole(&self, _result: &Value) -> bool {
        false
    }
    /// The tool's own checks and, for mutations, a dry run. Touches nothing.
    async fn validate(&self, args: &Value) -> Result<DryRun, ToolError>;
    /// Execute. Called only after `validate` succeeded.
    async fn execute(&self, args: &Value) -> Result<Value, ToolError>;
}

/// Error building a tool set.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolSetError {
    #[error("unknown tool {name:?}; known tools: {known:?}")]
    Unknown { name: String, known: Vec<String> },
    #[error("tool {0:?} is listed twice")]
    Duplicate(String),
    #[error("no tools given: a run needs at least one tool")]
    Empty,
}

impl ToolSetError {
    /// Static category for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            ToolSetError::Unknown { .. } => "unknown_tool",
            ToolSetError::Duplicate(_) => "duplicate_tool",
            ToolSetError::Empty => "no_tools",
        }
    }
}

/// A catalogue of tools by name, in a fixed order (the order the model sees
/// them in the system prompt: a run's own order).
#[derive(Clone, Default)]
pub struct ToolSet {
    tools: Vec<Arc<dyn Tool>>,
}

impl std::fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tools.iter().map(|t| t.name())).finish()
    }
}

impl ToolSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a tool; one of the same name is replaced in place.
    pub fn with(mut self, tool: Arc<dyn Tool>) -> Self {
        match self.tools.iter_mut().find(|t| t.name() == tool.name()) {
            Some(slot) => *slot = tool,
            None => self.tools.push(tool),
        }
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.iter().find(|t| t.name() == name)
    }

    pub fn names(&self) -> Vec<String> {
        self.tools.iter().map(|t| t.name().to_string()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Tool>> {
        self.tools.iter()
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The subset a run may use, in the run's order. Unknown or repeated
    /// names are an error ([`check_names`]): a run never silently loses a
    /// tool.
    pub fn select(&self, names: &[String]) -> Result<ToolSet, ToolSetError> {
        let known = self.names();
        check_names(names, &known)?;
        let tools = names.iter().filter_map(|name| self.get(name).cloned());
        Ok(tools.fold(ToolSet::new(), ToolSet::with))
    }
}

/// Whether `names` is a run's usable tool list from the `known` ones: at
/// least one, each known, none twice. Needs no tool, so a spec is checked
/// before anything acting for the run exists.
pub fn check_names(names: &[String], known: &[String]) -> Result<(), ToolSetError> {
    if names.is_empty() {
        return Err(ToolSetError::Empty);
    }
    for (i, name) in names.iter().enumerate() {
        if !known.contains(name) {
            return Err(ToolSetError::Unknown { name: name.clone(), known: known.to_vec() });
        }
        if names[..i].contains(name) {
            return Err(ToolSetError::Duplicate(name.clone()));
        }
    }
    Ok(())
}
