//! The inference thread's state: the context, one KV sequence (slot) per
//! recent run, and continuous batching across slots.
//!
//! Every call to [`Worker::step`] makes one decode call that carries the
//! next token of every request that is generating plus as much of the
//! waiting prompts (prefill) as the batch has room for. A request admitted
//! between two steps joins the very next one; a finished request leaves at
//! once, without waiting for the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::super::grammar::{ObjectEnd, schema_to_gbnf};
use super::super::{DecideRequest, DeciderError, RawDecision};
use super::busy::{BusyClock, Phase};
use super::sample::{Picker, sample_checked, sample_free, sample_full};
use super::{GrammarMode, LlamaOptions};
use crate::engine::record::ModelStats;

/// One KV sequence and the tokens it holds (mirrors the KV cache).
#[derive(Default)]
struct Slot {
    run: Option<String>,
    tokens: Vec<LlamaToken>,
    used: u64,
}

/// One request being served: its prompt is evaluated (prefill), then one
/// token is generated per step. `tag` travels with it (the reply channel).
pub(super) struct Active<T> {
    pub(super) tag: T,
    slot: usize,
    prompt: Vec<LlamaToken>,
    /// Prompt tokens already in the slot's KV cache.
    fed: usize,
    /// Prompt tokens placed in the current batch.
    feeding: usize,
    /// Batch index of the logits this request samples from after the decode.
    logits_at: Option<i32>,
    grammar: LlamaSampler,
    picker: Picker,
    end: ObjectEnd,
    out: Vec<u8>,
    n: u32,
    max: u32,
    /// The last sampled token, to be decoded in the next step.
    pending: Option<LlamaToken>,
    truncated: bool,
    stats: ModelStats,
    admitted: Instant,
    decode_started: Option<Instant>,
}

pub(super) struct Worker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    slots: Vec<Slot>,
    clock: u64,
    /// A grammar sampler per decision schema, parsed once and cloned for
    /// each request (a clone copies the parsed rules).
    grammars: HashMap<String, LlamaSampler>,
    reuse: bool,
    mode: GrammarMode,
    busy: Arc<BusyClock>,
}

impl<'m> Worker<'m> {
    pub(super) fn new(model: &'m LlamaModel, ctx: LlamaContext<'m>, opts: &LlamaOptions, busy: Arc<BusyClock>) -> Self {
        let n_batch = (opts.n_batch as usize).max(1);
        let slots = (0..opts.slots.max(1)).map(|_| Slot::default()).collect();
        let batch = LlamaBatch::new(n_batch, 1);
        let (reuse, mode) = (opts.reuse, opts.grammar);
        Worker { model, ctx, batch, n_batch, slots, clock: 0, grammars: HashMap::new(), reuse, mode, busy }
    }

    /// Forget every cached sequence.
    pub(super) fn reset(&mut self) {
        self.ctx.clear_kv_cache();
        for s in &mut self.slots {
            *s = Slot::default();
        }
    }

    fn n_ctx_seq(&self) -> usize {
        self.ctx.n_ctx() as usize / self.slots.len().max(1)
    }

    /// Start serving `req`, whose `prompt` its caller tokenized: build its
    /// grammar, take a slot no running request holds and drop what the slot
    /// holds beyond the longest common prefix. The prompt is evaluated by
    /// later steps.
    pub(super) fn admit<T>(
        &mut self,
        req: &DecideRequest,
        prompt: Vec<LlamaToken>,
        tag: T,
        running: &[Active<T>],
    ) -> Result<Active<T>, (T, DeciderError)> {
        let busy = Arc::clone(&self.busy);
        match busy.time(Phase::Admit, || self.prepare(req, prompt, running)) {
            Ok((slot, prompt, common, grammar)) => Ok(Active {
                tag,
                slot,
                fed: common,
                feeding: 0,
                logits_at: None,
                grammar,
                picker: Picker::new(req.sampling.temperature, req.sampling.seed),
                end: ObjectEnd::new(),
                out: Vec::new(),
                n: 0,
                max: req.sampling.max_tokens,
                pending: None,
                truncated: false,
                stats: ModelStats {
                    prompt_tokens: prompt.len() as u32,
                    cached_tokens: common as u32,
                    ..ModelStats::default()
                },
                prompt,
                admitted: Instant::now(),
                decode_started: None,
            }),
            Err(e) => Err((tag, e)),
        }
    }

    fn prepare<T>(
        &mut self,
        req: &DecideRequest,
        prompt: Vec<LlamaToken>,
        running: &[Active<T>],
    ) -> Result<(usize, Vec<LlamaToken>, usize, LlamaSampler), DeciderError> {
        let cap = self.n_ctx_seq();
        if prompt.is_empty() || prompt.len() + req.sampling.max_tokens as usize > cap {
            return Err(DeciderError::PromptTooLong(format!(
                "{} prompt tokens + {} max tokens exceed the context window of {cap}",
                prompt.len(),
                req.sampling.max_tokens
            )));
        }
        let grammar = self.grammar(&req.schema)?;
        let mut busy = vec![false; self.slots.len()];
        for a in running {
            busy[a.slot] = true;
        }
        let slot = self.slot_for(&req.run_id, &busy).ok_or_else(|| {
            DeciderError::Inference("no free slot: more requests admitted than there are slots".into())
        })?;
        let common = self.keep_prefix(slot, &prompt);
        Ok((slot, prompt, common, grammar))
    }

    /// The slot holding `run`, else a free one, else the least recently used.
    fn slot_for(&mut self, run: &str, busy: &[bool]) -> Option<usize> {
        self.clock += 1;
        let pick = (0..self.slots.len()).filter(|i| !busy[*i]).max_by_key(|i| {
            let s = &self.slots[*i];
            (s.run.as_deref() == Some(run), s.run.is_none(), std::cmp::Reverse(s.used))
        })?;
        let s = &mut self.slots[pick];
        if s.run.as_deref() != Some(run) {
            s.run = Some(run.to_string());
        }
        s.used = self.clock;
        Some(pick)
    }

    /// Keep the longest common prefix of what `slot` holds and `prompt`
    /// (at least the last prompt token is evaluated again: its logits start
    /// generation). Returns the number of tokens kept.
    fn keep_prefix(&mut self, slot: usize, prompt: &[LlamaToken]) -> usize {
        let held = &self.slots[slot].tokens;
        let mut common = if self.reuse { held.iter().zip(prompt).take_while(|(a, b)| a == b).count() } else { 0 };
        common = common.min(prompt.len() - 1);
        if !matches!(self.ctx.clear_kv_cache_seq(Some(slot as u32), Some(common as u32), None), Ok(true)) {
            // Some caches (sliding-window, recurrent) cannot drop a suffix: start over.
            let _ = self.ctx.clear_kv_cache_seq(Some(slot as u32), None, None);
            common = 0;
        }
        self.slots[slot].tokens.truncate(common);
        common
    }

    fn drop_slot(&mut self, slot: usize) {
        let _ = self.ctx.clear_kv_cache_seq(Some(slot as u32), None, None);
        self.slots[slot] = Slot::default();
    }

    /// One decode call for everything running: the pending token of each
    /// generating request first (in admission order), then prompt chunks
    /// while the batch has room. Returns the requests that finished.
    pub(super) fn step<T>(&mut self, running: &mut Vec<Active<T>>) -> Vec<(T, Result<RawDecision, DeciderError>)> {
        let busy = Arc::clone(&self.busy);
        if let Err(e) = self.fill_batch(running) {
            return self.fail(running, e);
        }
        if self.batch.n_tokens() == 0 {
            return Vec::new();
        }
        // On a GPU the decode call returns once its work is queued: each
        // grammar advances past the token being decoded while the device
        // computes, and the wait for the logits counts as decoding.
        let decoded = busy.time(Phase::Decode, || self.ctx.decode(&mut self.batch));
        if let Err(e) = decoded {
            return self.fail(running, DeciderError::Inference(format!("decode failed: {e}")));
        }
        let mode = self.mode;
        let refused: Vec<Option<DeciderError>> =
            busy.time(Phase::Advance, || running.iter_mut().map(|a| a.advance_grammar(mode)).collect());
        busy.time(Phase::Wait, || self.ctx.synchronize());
        let mut finished = Vec::new();
        let mut still = Vec::with_capacity(running.len());
        for (mut a, refused) in running.drain(..).zip(refused) {
            let slot = &mut self.slots[a.slot];
            // A pending token was in the batch if and only if logits were asked for it.
            if a.logits_at.is_some()
                && let Some(tok) = a.pending.take()
            {
                slot.tokens.push(tok);
            }
            slot.tokens.extend_from_slice(&a.prompt[a.fed..a.fed + a.feeding]);
            a.fed += a.feeding;
            a.feeding = 0;
            if let Some(e) = refused {
                finished.push((a.tag, Err(e)));
                continue;
            }
            let Some(idx) = a.logits_at.take() else {
                still.push(a);
                continue;
            };
            if a.decode_started.is_none() {
                a.stats.prompt_ms = a.admitted.elapsed().as_millis() as u64;
                a.decode_started = Some(Instant::now());
            }
            match busy.time(Phase::Sample, || self.next_token(&mut a, idx)) {
                Ok(()) if a.pending.is_some() => still.push(a),
                Ok(()) => {
                    let done = finish(&a);
                    finished.push((a.tag, Ok(done)));
                }
                Err(e) => finished.push((a.tag, Err(e))),
            }
        }
        *running = still;
        finished
    }

    /// Room goes to generating requests first, then to prompts in admission
    /// order. Tokens enter the batch in slot (sequence id) order: with one
    /// KV stream per slot, llama.cpp puts only consecutive sequence ids in
    /// one micro-batch, so a batch out of order splits into many (up to
    /// twice the time on a CPU). Gaps split it too (slots whose runs are
    /// between steps), which `LlamaOptions::kv_unified` avoids.
    fn fill_batch<T>(&mut self, running: &mut [Active<T>]) -> Result<(), DeciderError> {
        self.batch.clear();
        let mut room = self.n_batch;
        let mut picked = Vec::new();
        for (i, a) in running.iter_mut().enumerate() {
            a.logits_at = None;
            a.feeding = 0;
            if a.pending.is_some() && room > 0 {
                picked.push(i);
                room -= 1;
            }
        }
        for (i, a) in running.iter_mut().enumerate() {
            if room == 0 {
                break;
            }
            if a.pending.is_none() && a.fed < a.prompt.len() {
                a.feeding = room.min(a.prompt.len() - a.fed);
                room -= a.feeding;
                picked.push(i);
            }
        }
        picked.sort_by_key(|i| running[*i].slot);
        self.busy.stretches(stretches(picked.iter().map(|i| running[*i].slot)));
        let add_err = |e| DeciderError::Inference(format!("batch: {e}"));
        for i in picked {
            let a = &mut running[i];
            if let Some(tok) = a.pending {
                let pos = self.slots[a.slot].tokens.len() as i32;
                a.logits_at = Some(self.batch.n_tokens());
                self.batch.add(tok, pos, &[a.slot as i32], true).map_err(add_err)?;
                continue;
            }
            for pos in a.fed..a.fed + a.feeding {
                let last = pos == a.prompt.len() - 1;
                if last {
                    a.logits_at = Some(self.batch.n_tokens());
                }
                self.batch.add(a.prompt[pos], pos as i32, &[a.slot as i32], last).map_err(add_err)?;
            }
        }
        Ok(())
    }

    /// A failed decode leaves the KV cache of every batched sequence unknown:
    /// forget those slots and fail every running request.
    fn fail<T>(
        &mut self,
        running: &mut Vec<Active<T>>,
        e: DeciderError,
    ) -> Vec<(T, Result<RawDecision, DeciderError>)> {
        let mut out = Vec::new();
        for a in running.drain(..) {
            self.drop_slot(a.slot);
            out.push((a.tag, Err(e.clone())));
        }
        out
    }

    /// Sample the next token of `a` from the logits at batch index `idx`,
    /// and decide whether it continues (`a.pending`) or is finished.
    fn next_token<T>(&mut self, a: &mut Active<T>, idx: i32) -> Result<(), DeciderError> {
        let (tok, filtered) = match self.mode {
            GrammarMode::Lazy => sample_checked(&self.ctx, idx, &mut a.picker, &mut a.grammar)?,
            GrammarMode::Full => sample_full(&self.ctx, idx, &mut a.picker, &mut a.grammar)?,
            GrammarMode::Off => (sample_free(&self.ctx, idx, &mut a.picker)?, 0),
        };
        self.busy.filtered(filtered as u64);
        let vocab = self.model.vocab();
        if vocab.is_eog(tok) {
            return Ok(());
        }
        // The grammar advances past `tok` when it is decoded (`step`), and
        // never for the token that ends the object.
        a.picker.accept(tok);
        a.n += 1;
        let piece = vocab.token_to_piece(tok, false, None);
        a.out.extend_from_slice(&piece);
        if a.end.feed(&piece) {
            return Ok(());
        }
        if a.n >= a.max {
            a.truncated = true;
            return Ok(());
        }
        a.pending = Some(tok);
        Ok(())
    }

    /// A fresh grammar sampler for `schema`: a clone of the one parsed the
    /// first time this schema came.
    fn grammar(&mut self, schema: &serde_json::Value) -> Result<LlamaSampler, DeciderError> {
        let key = schema.to_string();
        if let Some(g) = self.grammars.get(&key) {
            return Ok(g.clone());
        }
        let gbnf = schema_to_gbnf(schema).map_err(DeciderError::Inference)?;
        let g = LlamaSampler::grammar(self.model, &gbnf, "root")
            .map_err(|e| DeciderError::Inference(format!("grammar rejected by llama.cpp: {e}")))?;
        self.grammars.insert(key, g.clone());
        Ok(g)
    }
}

impl<T> Active<T> {
    /// Advance the grammar past the token this request has in the batch
    /// being decoded, if any. The token was sampled from what the grammar
    /// allowed, so a refusal is a bug in the grammar or the check.
    fn advance_grammar(&mut self, mode: GrammarMode) -> Option<DeciderError> {
        let tok = self.pending.filter(|_| self.logits_at.is_some() && mode != GrammarMode::Off)?;
        let refused = |e| DeciderError::Inference(format!("grammar refused token {}: {e}", tok.0));
        self.grammar.try_accept(tok).map_err(refused).err()
    }
}

/// Maximal runs of consecutive numbers in ascending `slots`.
fn stretches(slots: impl Iterator<Item = usize>) -> u64 {
    let mut prev: Option<usize> = None;
    let mut n = 0;
    for s in slots {
        if prev.is_none_or(|p| p + 1 != s) {
            n += 1;
        }
        prev = Some(s);
    }
    n
}

fn finish<T>(a: &Active<T>) -> RawDecision {
    let mut stats = a.stats.clone();
    stats.completion_tokens = a.n;
    stats.decode_ms = a.decode_started.map_or(0, |t| t.elapsed().as_millis() as u64);
    stats.truncated = a.truncated;
    RawDecision { text: String::from_utf8_lossy(&a.out).into_owned(), stats }
}

#[cfg(test)]
mod tests {
    use super::stretches;

    #[test]
    fn stretches_count_the_runs_of_consecutive_slots() {
        assert_eq!(stretches([].into_iter()), 0);
        assert_eq!(stretches([4].into_iter()), 1);
        assert_eq!(stretches([0, 1, 2, 3].into_iter()), 1);
        // Slots 2 and 5 sit out (their runs are between steps): three stretches.
        assert_eq!(stretches([0, 1, 3, 4, 6].into_iter()), 3);
    }
}
