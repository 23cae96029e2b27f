//! A decider that replays fixed outputs, for tests and overhead benchmarks.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{DecideRequest, Decider, DeciderError, RawDecision};
use crate::engine::record::ModelStats;

/// Replays the given outputs in order, verbatim, and keeps every request it
/// was given so tests can inspect the context the engine built.
#[derive(Debug, Default)]
pub struct ScriptedDecider {
    outputs: Mutex<VecDeque<String>>,
    requests: Mutex<Vec<DecideRequest>>,
}

impl ScriptedDecider {
    pub fn new<I, S>(outputs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ScriptedDecider {
            outputs: Mutex::new(outputs.into_iter().map(Into::into).collect()),
            requests: Mutex::default(),
        }
    }

    /// Outputs from a YAML list of strings (`--scripted-decisions FILE`):
    /// each one a model output, replayed verbatim.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let outputs: Vec<String> = serde_yaml::from_str(&text)
            .map_err(|e| format!("{}: not a YAML list of model outputs: {e}", path.display()))?;
        Ok(ScriptedDecider::new(outputs))
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<DecideRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Decider for ScriptedDecider {
    async fn decide(&self, request: DecideRequest) -> Result<RawDecision, DeciderError> {
        let prompt_tokens = request.messages.iter().map(|m| m.content.len() as u32 / 4).sum();
        if let Ok(mut r) = self.requests.lock() {
            r.push(request);
        }
        let text = self.outputs.lock().ok().and_then(|mut o| o.pop_front()).ok_or(DeciderError::ScriptExhausted)?;
        let completion_tokens = text.len() as u32 / 4;
        Ok(RawDecision { text, stats: ModelStats { prompt_tokens, completion_tokens, ..ModelStats::default() } })
    }

    fn model(&self) -> &str {
        "scripted"
    }
}
