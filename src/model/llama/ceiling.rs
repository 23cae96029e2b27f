//! What batching can gain on this machine, measured with raw decode calls
//! (no sampling, no grammar, no scheduling): the cost of one generated
//! token when one sequence decodes alone and when `seqs` sequences share
//! each decode call, and the cost of a prompt token. `xct bench` (c) puts
//! its measured speed-up next to the ceiling these numbers allow.

use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;

use super::{LlamaOptions, load_model};
use crate::model::DeciderError;

/// Milliseconds per token for each way of feeding the model.
#[derive(Debug, Clone, Copy)]
pub struct BatchCosts {
    /// One generated token, one sequence per decode call.
    pub single_ms: f64,
    /// One generated token, `seqs` sequences per decode call.
    pub batched_ms: f64,
    /// One prompt token, evaluated in chunks of `chunk` tokens.
    pub prompt_ms: f64,
    /// One prompt token in a chunk of `BULK` tokens: about the least a
    /// token can cost on this machine.
    pub bulk_ms: f64,
    pub seqs: u32,
}

impl BatchCosts {
    /// The most that `seqs` concurrent runs can gain over one run when each
    /// decision evaluates `prompt` new tokens and generates `generated`:
    /// generation batches, prompt evaluation does not get cheaper per token.
    pub fn ceiling(&self, prompt: f64, generated: f64) -> f64 {
        let one = prompt * self.prompt_ms + generated * self.single_ms;
        let many = prompt * self.prompt_ms + generated * self.batched_ms;
        one / many.max(f64::EPSILON)
    }

    /// A bound no scheduling can beat: even if every token of the many runs
    /// cost as little as a token in a bulk prompt chunk.
    pub fn bound(&self, prompt: f64, generated: f64) -> f64 {
        let one = prompt * self.prompt_ms + generated * self.single_ms;
        one / ((prompt + generated) * self.bulk_ms).max(f64::EPSILON)
    }
}

/// Tokens in the bulk prompt chunk.
const BULK: usize = 512;

/// Measure with `history` tokens already in each sequence, `steps` decode
/// calls per measurement and prompt chunks of `chunk` tokens.
pub fn measure(
    opts: &LlamaOptions,
    seqs: u32,
    history: usize,
    steps: usize,
    chunk: usize,
) -> Result<BatchCosts, DeciderError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| DeciderError::Inference(format!("{what}: {e}"));
    let (backend, model, _) = load_model(opts)?;
    let threads = opts.threads();
    // llama.cpp sizes the cache in multiples of 256 cells per sequence.
    let per_seq = (history + chunk.max(BULK) + steps + 64).next_multiple_of(256) as u32;
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(per_seq * seqs))
        .with_n_seq_max(seqs)
        .with_kv_unified(opts.kv_unified)
        .with_n_batch(opts.n_batch.max(chunk.max(BULK) as u32))
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model.new_context(backend, ctx_params).map_err(|e| fail("context", &e))?;
    // Any text will do: the cost of a token does not depend on which it is.
    let text =
        "Step: {\"status\":\"success\",\"result\":{\"path\":\"notes/part.txt\",\"bytes\":20}} ".repeat(history / 8 + 8);
    let tokens = model.vocab().tokenize(text.as_bytes(), true, true);
    if tokens.len() < history + chunk.max(BULK) + steps {
        return Err(DeciderError::Inference("the probe text is too short".into()));
    }
    let mut batch = LlamaBatch::new((history.max(chunk).max(BULK) + seqs as usize).max(512), 1);
    let mut eval = |ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
                    items: &mut dyn Iterator<Item = (usize, usize, bool)>|
     -> Result<f64, DeciderError> {
        batch.clear();
        for (seq, pos, logits) in items {
            batch.add(tokens[pos], pos as i32, &[seq as i32], logits).map_err(|e| fail("batch", &e))?;
        }
        let t = Instant::now();
        ctx.decode(&mut batch).map_err(|e| fail("decode", &e))?;
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    for seq in 0..seqs as usize {
        for start in (0..history).step_by(512) {
            let end = (start + 512).min(history);
            eval(&mut ctx, &mut (start..end).map(|p| (seq, p, p + 1 == end)))?;
        }
    }
    // A prompt chunk in sequence 0, then generation from there.
    let prompt_ms = eval(&mut ctx, &mut (history..history + chunk).map(|p| (0, p, p + 1 == history + chunk)))?;
    let _ = ctx.clear_kv_cache_seq(Some(0), Some(history as u32), None);
    let bulk_ms = eval(&mut ctx, &mut (history..history + BULK).map(|p| (0, p, p + 1 == history + BULK)))?;
    let _ = ctx.clear_kv_cache_seq(Some(0), Some(history as u32), None);
    let mut single = 0.0;
    for k in 0..steps {
        single += eval(&mut ctx, &mut std::iter::once((0, history + k, true)))?;
    }
    let _ = ctx.clear_kv_cache_seq(Some(0), Some(history as u32), None);
    let mut batched = 0.0;
    for k in 0..steps {
        batched += eval(&mut ctx, &mut (0..seqs as usize).map(|s| (s, history + k, true)))?;
    }
    Ok(BatchCosts {
        single_ms: single / steps as f64,
        batched_ms: batched / (steps * seqs as usize) as f64,
        prompt_ms: prompt_ms / chunk as f64,
        bulk_ms: bulk_ms / BULK as f64,
        seqs,
    })
}

#[cfg(test)]
mod tests {
    use super::BatchCosts;

    #[test]
    fn the_bounds_follow_from_the_token_costs() {
        let c = BatchCosts { single_ms: 12.0, batched_ms: 6.0, prompt_ms: 4.0, bulk_ms: 3.0, seqs: 16 };
        // One run: 50 * 4 + 40 * 12 = 680 ms; batched generation: 50 * 4 + 40 * 6 = 440 ms.
        assert!((c.ceiling(50.0, 40.0) - 680.0 / 440.0).abs() < 1e-9);
        // Every token at the bulk cost: 90 * 3 = 270 ms.
        assert!((c.bound(50.0, 40.0) - 680.0 / 270.0).abs() < 1e-9);
        // Nothing to generate: batching generation gains nothing.
        assert!((c.ceiling(50.0, 0.0) - 1.0).abs() < 1e-9);
    }
}
