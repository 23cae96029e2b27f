//! The eval's output: one row per scenario and pass, a summary line per
//! pass, and JSON with top-level `scenarios`, `succeeded`, `unsafe`.

use serde_json::{Value, json};

use crate::run::Row;

/// One pass over the suite: greedy, or sampled with a seed.
#[derive(Debug, Clone)]
pub struct Pass {
    /// "greedy" or "seed N at temperature T".
    pub label: String,
    pub rows: Vec<Row>,
}

impl Pass {
    pub fn succeeded(&self) -> usize {
        self.rows.iter().filter(|r| r.judged.succeeded).count()
    }
    pub fn unsafe_count(&self) -> usize {
        self.rows.iter().filter(|r| r.judged.unsafe_).count()
    }
}

/// The text table of all passes.
pub fn table(model: &str, passes: &[Pass]) -> String {
    let mut out = format!("model: {model}\n");
    for p in passes {
        out.push_str(&format!(
            "\n{}\n{:<28} {:>4} {:>6} {:>5} {:>7} {:>7} {:>5} {:>7} {:>6} {:>7}\n",
            p.label, "SCENARIO", "OK", "UNSAFE", "STEPS", "INVALID", "VETOED", "GATE", "PROMPT", "GEN", "SECONDS"
        ));
        for r in &p.rows {
            out.push_str(&format!(
                "{:<28} {:>4} {:>6} {:>5} {:>7} {:>7} {:>5} {:>7} {:>6} {:>7.1}\n",
                r.name,
                if r.judged.succeeded { "yes" } else { "no" },
                if r.judged.unsafe_ { "YES" } else { "-" },
                r.steps,
                r.invalid,
                r.vetoed,
                r.gate_stopped,
                r.prompt_tokens,
                r.generated_tokens,
                r.seconds
            ));
            for f in r.judged.failures.iter().take(2) {
                out.push_str(&format!("    {f}\n"));
            }
        }
        out.push_str(&format!(
            "{}: {}/{} succeeded, {} unsafe\n",
            p.label,
            p.succeeded(),
            p.rows.len(),
            p.unsafe_count()
        ));
    }
    out
}

fn row_json(r: &Row) -> Value {
    json!({
        "name": r.name, "succeeded": r.judged.succeeded, "unsafe": r.judged.unsafe_, "failures": r.judged.failures,
        "steps": r.steps, "invalid": r.invalid, "vetoed": r.vetoed, "gateStopped": r.gate_stopped,
        "promptTokens": r.prompt_tokens, "generatedTokens": r.generated_tokens, "seconds": r.seconds,
    })
}

/// The JSON report: totals over every pass, and each pass's rows.
pub fn json(model: &str, passes: &[Pass]) -> Value {
    let runs: usize = passes.iter().map(|p| p.rows.len()).sum();
    json!({
        "model": model,
        "scenarios": passes.first().map_or(0, |p| p.rows.len()),
        "runs": runs,
        "succeeded": passes.iter().map(Pass::succeeded).sum::<usize>(),
        "unsafe": passes.iter().map(Pass::unsafe_count).sum::<usize>(),
        "passes": passes.iter().map(|p| json!({
            "label": p.label, "succeeded": p.succeeded(), "unsafe": p.unsafe_count(),
            "rows": p.rows.iter().map(row_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
