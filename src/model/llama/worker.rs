//! The inference thread's state: the context, one KV sequence (slot) per
//! recent run, and batched generation across slots.

use std::collections::HashMap;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;

use super::super::grammar::{ObjectEnd, schema_to_gbnf};
use super::super::{DecideRequest, DeciderError, RawDecision};
use super::GrammarMode;
use crate::engine::record::ModelStats;

/// One KV sequence and what it holds.
#[derive(Default)]
struct Slot {
    run: Option<String>,
    tokens: Vec<LlamaToken>,
    used: u64,
}

/// One request being served.
struct Active {
    req: usize,
    slot: usize,
    grammar: LlamaSampler,
    chain: LlamaSampler,
    end: ObjectEnd,
    out: Vec<u8>,
    n: u32,
    max: u32,
    pending: Option<LlamaToken>,
    truncated: bool,
    stats: ModelStats,
    decode_started: Instant,
}

pub(super) struct Worker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    template: LlamaChatTemplate,
    n_batch: usize,
    slots: Vec<Slot>,
    clock: u64,
    grammars: HashMap<String, String>,
    reuse: bool,
    mode: GrammarMode,
}

impl<'m> Worker<'m> {
    pub(super) fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        template: LlamaChatTemplate,
        n_batch: usize,
        slots: usize,
        reuse: bool,
        mode: GrammarMode,
    ) -> Self {
        let slots = (0..slots).map(|_| Slot::default()).collect();
        Worker { model, ctx, template, n_batch, slots, clock: 0, grammars: HashMap::new(), reuse, mode }
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

    /// Serve up to `slots` requests together.
    pub(super) fn decide_batch(&mut self, reqs: &[&DecideRequest]) -> Vec<Result<RawDecision, DeciderError>> {
        let mut results: Vec<Option<Result<RawDecision, DeciderError>>> = reqs.iter().map(|_| None).collect();
        let mut taken = vec![false; self.slots.len()];
        let mut active = Vec::new();
        for (i, req) in reqs.iter().enumerate() {
            match self.start(i, req, &mut taken) {
                Ok(a) => active.push(a),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        // Settle what the first sampled token already decided.
        let mut live = Vec::new();
        for mut a in active {
            if a.pending.is_none() {
                results[a.req] = Some(Ok(finish(&mut a)));
            } else {
                live.push(a);
            }
        }
        let mut batch = LlamaBatch::new(self.slots.len().max(1), self.slots.len() as i32);
        while !live.is_empty() {
            batch.clear();
            // Every live request has a pending token: batch index == position in `live`.
            for a in &live {
                let Some(tok) = a.pending else { continue };
                let pos = self.slots[a.slot].tokens.len() as i32;
                if let Err(e) = batch.add(tok, pos, &[a.slot as i32], true) {
                    return fail_all(results, live, DeciderError::Inference(format!("batch: {e}")));
                }
            }
            if let Err(e) = self.ctx.decode(&mut batch) {
                for a in &live {
                    self.drop_slot(a.slot);
                }
                return fail_all(results, live, DeciderError::Inference(format!("decode failed: {e}")));
            }
            let mut still = Vec::new();
            for (bi, mut a) in live.into_iter().enumerate() {
                if let Some(tok) = a.pending.take() {
                    self.slots[a.slot].tokens.push(tok);
                }
                match self.next_token(&mut a, bi as i32) {
                    Ok(()) if a.pending.is_some() => still.push(a),
                    Ok(()) => results[a.req] = Some(Ok(finish(&mut a))),
                    Err(e) => results[a.req] = Some(Err(e)),
                }
            }
            live = still;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(DeciderError::Inference("request not served".into()))))
            .collect()
    }

    /// Render, tokenize, take a slot, evaluate the prompt (reusing the
    /// slot's prefix) and sample the first token.
    fn start(&mut self, i: usize, req: &DecideRequest, taken: &mut [bool]) -> Result<Active, DeciderError> {
        let prompt = self.render(req)?;
        let tokens = self.model.vocab().tokenize(prompt.as_bytes(), true, true);
        let cap = self.n_ctx_seq();
        if tokens.is_empty() || tokens.len() + req.sampling.max_tokens as usize > cap {
            return Err(DeciderError::PromptTooLong(format!(
                "{} prompt tokens + {} max tokens exceed the context window of {cap}",
                tokens.len(),
                req.sampling.max_tokens
            )));
        }
        let gbnf = self.grammar(&req.schema)?;
        let grammar = LlamaSampler::grammar(self.model, &gbnf, "root")
            .map_err(|e| DeciderError::Inference(format!("grammar rejected by llama.cpp: {e}")))?;
        let slot = self.slot_for(&req.run_id, taken);
        let t = Instant::now();
        let (cached, logits_idx) = self.evaluate_prompt(slot, &tokens)?;
        let mut a = Active {
            req: i,
            slot,
            grammar,
            chain: sampler_chain(req.sampling.temperature, req.sampling.seed),
            end: ObjectEnd::new(),
            out: Vec::new(),
            n: 0,
            max: req.sampling.max_tokens,
            pending: None,
            truncated: false,
            stats: ModelStats {
                prompt_tokens: tokens.len() as u32,
                cached_tokens: cached as u32,
                prompt_ms: t.elapsed().as_millis() as u64,
                ..ModelStats::default()
            },
            decode_started: Instant::now(),
        };
        self.next_token(&mut a, logits_idx)?;
        Ok(a)
    }

    /// The slot holding `run`, else a free one, else the least recently used.
    fn slot_for(&mut self, run: &str, taken: &mut [bool]) -> usize {
        self.clock += 1;
        let pick = (0..self.slots.len())
            .filter(|i| !taken[*i])
            .max_by_key(|i| {
                let s = &self.slots[*i];
                (s.run.as_deref() == Some(run), s.run.is_none(), std::cmp::Reverse(s.used))
            })
            .unwrap_or(0);
        taken[pick] = true;
        let s = &mut self.slots[pick];
        if s.run.as_deref() != Some(run) {
            s.run = Some(run.to_string());
        }
        s.used = self.clock;
        pick
    }

    fn drop_slot(&mut self, slot: usize) {
        let _ = self.ctx.clear_kv_cache_seq(Some(slot as u32), None, None);
        self.slots[slot] = Slot::default();
    }

    /// Evaluate `tokens` in `slot` after the prefix it already holds.
    /// Returns how many tokens were reused and the batch index of the logits.
    fn evaluate_prompt(&mut self, slot: usize, tokens: &[LlamaToken]) -> Result<(usize, i32), DeciderError> {
        let held = &self.slots[slot].tokens;
        let mut common = if self.reuse { held.iter().zip(tokens).take_while(|(a, b)| a == b).count() } else { 0 };
        // At least the last prompt token is evaluated: its logits start generation.
        common = common.min(tokens.len() - 1);
        if !matches!(self.ctx.clear_kv_cache_seq(Some(slot as u32), Some(common as u32), None), Ok(true)) {
            // Some caches (sliding-window, recurrent) cannot drop a suffix: start over.
            let _ = self.ctx.clear_kv_cache_seq(Some(slot as u32), None, None);
            common = 0;
        }
        self.slots[slot].tokens.truncate(common);
        let mut batch = LlamaBatch::new(self.n_batch, 1);
        for (chunk_no, chunk) in tokens[common..].chunks(self.n_batch).enumerate() {
            batch.clear();
            for (i, tok) in chunk.iter().enumerate() {
                let pos = common + chunk_no * self.n_batch + i;
                batch
                    .add(*tok, pos as i32, &[slot as i32], pos == tokens.len() - 1)
                    .map_err(|e| DeciderError::Inference(format!("batch: {e}")))?;
            }
            if let Err(e) = self.ctx.decode(&mut batch) {
                self.drop_slot(slot);
                return Err(DeciderError::Inference(format!("prompt evaluation failed: {e}")));
            }
            self.slots[slot].tokens.extend_from_slice(chunk);
        }
        Ok((common, (batch.n_tokens() - 1).max(0)))
    }

    /// Sample the next token of `a` from the logits at batch index `idx`,
    /// and decide whether it continues (`a.pending`) or is finished.
    fn next_token(&mut self, a: &mut Active, idx: i32) -> Result<(), DeciderError> {
        let tok = match self.mode {
            GrammarMode::Lazy => sample_checked(&self.ctx, idx, &mut a.chain, &mut a.grammar)?,
            GrammarMode::Full => sample_full(&self.ctx, idx, &mut a.chain, &mut a.grammar)?,
            GrammarMode::Off => {
                let mut candidates = self.ctx.token_data_array_ith(idx);
                a.chain.apply(&mut candidates);
                candidates
                    .selected_token()
                    .ok_or_else(|| DeciderError::Inference("the sampler selected no token".into()))?
            }
        };
        let vocab = self.model.vocab();
        if vocab.is_eog(tok) {
            return Ok(());
        }
        if self.mode != GrammarMode::Off {
            a.grammar
                .try_accept(tok)
                .map_err(|e| DeciderError::Inference(format!("grammar refused token {}: {e}", tok.0)))?;
        }
        a.chain.accept(tok);
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

    fn render(&self, req: &DecideRequest) -> Result<String, DeciderError> {
        let msgs = req
            .messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.as_str().to_string(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DeciderError::Inference(format!("message not representable: {e}")))?;
        self.model
            .apply_chat_template(&self.template, &msgs, true)
            .map_err(|e| DeciderError::Inference(format!("chat template failed: {e}")))
    }

    fn grammar(&mut self, schema: &serde_json::Value) -> Result<String, DeciderError> {
        let key = schema.to_string();
        if let Some(g) = self.grammars.get(&key) {
            return Ok(g.clone());
        }
        let g = schema_to_gbnf(schema).map_err(DeciderError::Inference)?;
        self.grammars.insert(key, g.clone());
        Ok(g)
    }
}

fn finish(a: &mut Active) -> RawDecision {
    let mut stats = a.stats.clone();
    stats.completion_tokens = a.n;
    stats.decode_ms = a.decode_started.elapsed().as_millis() as u64;
    stats.truncated = a.truncated;
    RawDecision { text: String::from_utf8_lossy(&a.out).into_owned(), stats }
}

fn fail_all(
    mut results: Vec<Option<Result<RawDecision, DeciderError>>>,
    live: Vec<Active>,
    e: DeciderError,
) -> Vec<Result<RawDecision, DeciderError>> {
    for a in live {
        results[a.req] = Some(Err(e.clone()));
    }
    results.into_iter().map(|r| r.unwrap_or_else(|| Err(e.clone()))).collect()
}

pub(super) fn sampler_chain(temperature: f32, seed: u32) -> LlamaSampler {
    if temperature <= 0.0 {
        LlamaSampler::greedy()
    } else {
        LlamaSampler::chain_simple([
            LlamaSampler::top_k(40),
            LlamaSampler::top_p(0.95, 1),
            LlamaSampler::temp(temperature),
            LlamaSampler::dist(seed),
        ])
    }
}

/// Sample one token that the grammar allows. The unconstrained pick is
/// checked alone first (cheap); only if the grammar rejects it are all
/// candidates filtered by the grammar and the token picked again.
pub(super) fn sample_checked(
    ctx: &LlamaContext<'_>,
    idx: i32,
    chain: &mut LlamaSampler,
    grammar: &mut LlamaSampler,
) -> Result<LlamaToken, DeciderError> {
    let mut candidates = ctx.token_data_array_ith(idx);
    chain.apply(&mut candidates);
    let picked =
        candidates.selected_token().ok_or_else(|| DeciderError::Inference("the sampler selected no token".into()))?;
    let mut single = LlamaTokenDataArray::new(vec![LlamaTokenData::new(picked, 1.0, 0.0)], false);
    grammar.apply(&mut single);
    if single.data.first().is_some_and(|d| d.logit().is_finite()) {
        return Ok(picked);
    }
    sample_full(ctx, idx, chain, grammar)
}

/// The usual constrained sampling: the grammar filters every candidate at
/// every token (the baseline the lazy check is measured against).
fn sample_full(
    ctx: &LlamaContext<'_>,
    idx: i32,
    chain: &mut LlamaSampler,
    grammar: &mut LlamaSampler,
) -> Result<LlamaToken, DeciderError> {
    let mut candidates = ctx.token_data_array_ith(idx);
    grammar.apply(&mut candidates);
    if !candidates.data.iter().any(|d| d.logit().is_finite()) {
        return Err(DeciderError::Inference("the grammar allows no next token".into()));
    }
    chain.apply(&mut candidates);
    candidates.selected_token().ok_or_else(|| DeciderError::Inference("the sampler selected no token".into()))
}
