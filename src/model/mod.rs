//! Deciders: where decisions come from.
//!
//! [`Decider`] is the seam between the engine and a model. [`LlamaDecider`]
//! runs a GGUF model in-process with llama.cpp; [`ScriptedDecider`] replays
//! fixed outputs for tests and benchmarks of everything around the model.

pub mod grammar;
pub mod llama;
mod scripted;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use llama::{GrammarMode, LlamaDecider, LlamaOptions};
pub use scripted::ScriptedDecider;

use crate::engine::record::ModelStats;

/// Who speaks in a chat turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// A tool's result or the system's signal about a proposal; rendered
    /// as a user turn where the chat template has no tool role.
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage { role, content: content.into() }
    }
}

/// Sampling parameters of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f32,
    pub seed: u32,
    pub max_tokens: u32,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { temperature: 0.0, seed: 42, max_tokens: 256 }
    }
}

/// One request for one decision.
#[derive(Debug, Clone)]
pub struct DecideRequest {
    /// Identifies the run (used for cache reuse between its steps).
    pub run_id: String,
    /// The whole context: system prompt, goal, history as turns.
    pub messages: Vec<ChatMessage>,
    /// JSON Schema every output must match (constrains generation).
    pub schema: Value,
    pub sampling: Sampling,
}

/// The model's output, verbatim, and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct RawDecision {
    pub text: String,
    pub stats: ModelStats,
}

/// A decider failed to produce any output (not the model's choice: the
/// machinery around it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeciderError {
    #[error("model unavailable: {0}")]
    Unavailable(String),
    #[error("prompt does not fit: {0}")]
    PromptTooLong(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("scripted decider has no more outputs")]
    ScriptExhausted,
}

impl DeciderError {
    /// Whether the failure is the run's to bear (retried a bounded number of
    /// times, then recorded as its outcome). A model that is not loaded is
    /// the operator's problem (readiness says so): runs wait for it.
    pub fn counts_against_the_run(&self) -> bool {
        !matches!(self, DeciderError::Unavailable(_))
    }

    /// Static category for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            DeciderError::Unavailable(_) => "unavailable",
            DeciderError::PromptTooLong(_) => "prompt_too_long",
            DeciderError::Inference(_) => "inference",
            DeciderError::ScriptExhausted => "script_exhausted",
        }
    }
}

/// Produces one decision per call. Stateless from the engine's view: the
/// request carries everything the model may know.
#[async_trait]
pub trait Decider: Send + Sync {
    async fn decide(&self, request: DecideRequest) -> Result<RawDecision, DeciderError>;

    /// Requests waiting for the model (for metrics).
    fn queue_depth(&self) -> usize {
        0
    }

    /// The model's name, for traces (`gen_ai.request.model`).
    fn model(&self) -> &str {
        "unknown"
    }

    /// Where the model runs (backend, devices, offloaded layers), for
    /// `/readyz` and the logs; None for deciders without a model.
    fn placement(&self) -> Option<String> {
        None
    }
}
