//! What the model sees: the system prompt, the goal, and the history as real
//! chat turns; and the JSON Schema that constrains its answer.
//!
//! The model is stateless: this rendering is its only memory. Past
//! decisions are assistant turns (verbatim), each followed by the signal the
//! system answered, as a user turn.

use serde_json::{Value, json};

use super::RunConfig;
use super::record::StepRecord;
use crate::model::{ChatMessage, Role};

/// How much of a past decision is shown again (a 64 KiB invalid output is
/// not worth re-reading).
const MAX_ECHO_BYTES: usize = 2048;

/// The system prompt: the XCT contract and the run's tools.
pub fn system_prompt(run: &RunConfig) -> String {
    let mut s = String::from(
        "You are an operator working through XCT (Execution Control Transfer). You never act yourself: \
you propose exactly one tool call per turn, the system validates it and may refuse it, tools execute it, \
and the result comes back to you as the next message.\n\
Answer with exactly one JSON object and nothing else, either\n\
{\"next_step\":{\"tool\":\"<tool name>\",\"arguments\":{...},\"goal\":\"<why this step>\"}}\n\
or, once the goal is reached and verified,\n\
{\"done\":true,\"message\":\"<what was accomplished>\"}\n\
Results arrive as {\"status\":\"success\",\"result\":...} or {\"status\":\"error\",\"code\":\"...\",\"message\":\"...\"}. \
An error means nothing happened: read it and adjust your next proposal.\n\nTools:\n",
    );
    for tool in run.tools.iter() {
        let mutates = if tool.mutates() { "changes state" } else { "read-only" };
        s.push_str(&format!(
            "- {} ({mutates}): {} Arguments schema: {}\n",
            tool.name(),
            tool.description(),
            tool.schema()
        ));
    }
    s
}

/// The full context for the next decision.
pub fn render(run: &RunConfig, history: &[StepRecord]) -> Vec<ChatMessage> {
    let mut msgs = vec![
        ChatMessage::new(Role::System, system_prompt(run)),
        ChatMessage::new(Role::User, format!("Goal: {}", run.goal)),
    ];
    for step in history {
        msgs.push(ChatMessage::new(Role::Assistant, echo(&step.decision)));
        if let Some(signal) = &step.signal {
            msgs.push(ChatMessage::new(Role::User, signal.to_json_string()));
        }
    }
    msgs
}

fn echo(decision: &str) -> String {
    if decision.len() <= MAX_ECHO_BYTES {
        return decision.to_string();
    }
    let mut cut = MAX_ECHO_BYTES;
    while !decision.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... [{} bytes cut]", &decision[..cut], decision.len() - cut)
}

/// The JSON Schema of a valid decision for this run: `done`, or a
/// `next_step` naming one of the run's tools with arguments matching that
/// tool's schema. Property order is the order the model writes.
pub fn decision_schema(run: &RunConfig) -> Value {
    let steps: Vec<Value> = run
        .tools
        .iter()
        .map(|tool| {
            json!({
                "type": "object",
                "properties": {
                    "tool": {"const": tool.name()},
                    "arguments": tool.schema(),
                    "goal": {"type": "string"},
                },
                "required": ["tool", "arguments", "goal"],
                "additionalProperties": false,
            })
        })
        .collect();
    json!({
        "oneOf": [
            {
                "type": "object",
                "properties": {"next_step": {"oneOf": steps}},
                "required": ["next_step"],
                "additionalProperties": false,
            },
            {
                "type": "object",
                "properties": {"done": {"const": true}, "message": {"type": "string"}},
                "required": ["done", "message"],
                "additionalProperties": false,
            },
        ]
    })
}
