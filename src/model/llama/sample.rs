//! Token sampling: the sampler chain and the two ways of applying the
//! grammar (lazy check, full filtering).

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;

use super::super::DeciderError;

/// Greedy at temperature 0, else top-k, top-p, temperature and a seeded draw.
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

/// Sample from the logits at batch index `idx` without a grammar.
pub(super) fn sample_free(
    ctx: &LlamaContext<'_>,
    idx: i32,
    chain: &mut LlamaSampler,
) -> Result<LlamaToken, DeciderError> {
    let mut candidates = ctx.token_data_array_ith(idx);
    chain.apply(&mut candidates);
    candidates.selected_token().ok_or_else(|| DeciderError::Inference("the sampler selected no token".into()))
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
    let picked = sample_free(ctx, idx, chain)?;
    let mut single = LlamaTokenDataArray::new(vec![LlamaTokenData::new(picked, 1.0, 0.0)], false);
    grammar.apply(&mut single);
    if single.data.first().is_some_and(|d| d.logit().is_finite()) {
        return Ok(picked);
    }
    sample_full(ctx, idx, chain, grammar)
}

/// The usual constrained sampling: the grammar filters every candidate at
/// every token (the baseline the lazy check is measured against).
pub(super) fn sample_full(
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
