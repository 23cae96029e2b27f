//! The spans of one step, named and attributed as the OpenTelemetry GenAI
//! semantic conventions name them ("Semantic conventions for generative AI
//! systems": inference and `execute_tool` spans), so any tracing backend
//! shows a step as: `step` > `chat <model>` (tokens in and out) >
//! `execute_tool <tool>`. They are tracing spans: exported only when
//! OpenTelemetry is on (see `crate::telemetry`), otherwise nearly free.
//!
//! What goes in: names the system chose or validated (the model's file
//! name, a tool from the run's catalogue, an error code) and counts; never
//! the prompt, the proposal's arguments or a result.

use tracing::Span;
use tracing::field::Empty;

use crate::engine::record::ModelStats;
use crate::protocol::Signal;

/// `gen_ai.provider.name`: no registered value exists for an in-process
/// llama.cpp; the conventions allow a custom one.
const PROVIDER: &str = "llama.cpp";

/// A step of run `run_id` (the engine's run id: the XctRun uid or a local
/// run's name).
pub fn step(run_id: &str, index: u32) -> Span {
    tracing::info_span!("step", xct.run.id = run_id, xct.step = i64::from(index))
}

/// The model call.
pub fn chat(model: &str) -> Span {
    tracing::info_span!(
        "chat",
        otel.name = format!("chat {model}"),
        otel.kind = "client",
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = PROVIDER,
        gen_ai.request.model = model,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        error.type = Empty,
        otel.status_code = Empty,
    )
}

/// Record what the model call used.
pub fn chat_usage(span: &Span, stats: &ModelStats) {
    // As i64: OpenTelemetry has no unsigned integers.
    span.record("gen_ai.usage.input_tokens", i64::from(stats.prompt_tokens));
    span.record("gen_ai.usage.output_tokens", i64::from(stats.completion_tokens));
}

/// A model call that produced nothing; `category` is the decider error's.
pub fn chat_failed(span: &Span, category: &'static str) {
    span.record("error.type", category);
    span.record("otel.status_code", "ERROR");
}

/// A tool's execution (after the gate admitted it).
pub fn execute_tool(tool: &str) -> Span {
    tracing::info_span!(
        "execute_tool",
        otel.name = format!("execute_tool {tool}"),
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = tool,
        gen_ai.tool.type = "function",
        error.type = Empty,
        otel.status_code = Empty,
    )
}

/// Record a tool's outcome: an error signal's code as `error.type`.
pub fn tool_outcome(span: &Span, signal: &Signal) {
    if let Signal::Error { code, .. } = signal {
        span.record("error.type", code.as_str());
        span.record("otel.status_code", "ERROR");
    }
}
