//! Token sampling: the sampler chain and the two ways of applying the
//! grammar (lazy check, full filtering).

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;

use super::super::DeciderError;

/// llama.cpp's default sampling settings (`common_params_sampling`): the
/// 40 most likely tokens, the smallest set of them holding 95% of the
/// probability, and none below 5% of the most likely one's probability.
const TOP_K: i32 = 40;
const TOP_P: f32 = 0.95;
const MIN_P: f32 = 0.05;
/// Fewest candidates top-p and min-p keep.
const MIN_KEEP: usize = 1;

/// Greedy at temperature 0, else top-k, top-p, min-p, temperature and a
/// seeded draw (llama.cpp's order).
pub(super) fn sampler_chain(temperature: f32, seed: u32) -> LlamaSampler {
    if temperature <= 0.0 {
        LlamaSampler::greedy()
    } else {
        LlamaSampler::chain_simple([
            LlamaSampler::top_k(TOP_K),
            LlamaSampler::top_p(TOP_P, MIN_KEEP),
            LlamaSampler::min_p(MIN_P, MIN_KEEP),
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
    selected(&candidates)
}

/// How many of the most likely tokens the lazy check filters before it
/// falls back to the whole vocabulary.
const SHORTLIST: usize = 64;

/// Sample one token that the grammar allows, checking as few tokens as
/// possible: the unconstrained pick alone first; if the grammar rejects it,
/// the `SHORTLIST` most likely tokens; only if none of those is allowed,
/// the whole vocabulary. The grammar filters before the sampler picks, so
/// the pick is always allowed. (Greedy picks are exactly those of full
/// filtering; sampled picks ignore allowed tokens outside the shortlist
/// while some inside it are allowed, a negligible tail.)
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
    let mut all = ctx.token_data_array_ith(idx).data;
    if all.len() > SHORTLIST {
        all.select_nth_unstable_by(SHORTLIST, |a, b| b.logit().total_cmp(&a.logit()));
        all.truncate(SHORTLIST);
    }
    let mut shortlist = LlamaTokenDataArray::new(all, false);
    grammar.apply(&mut shortlist);
    if shortlist.data.iter().any(|d| d.logit().is_finite()) {
        chain.apply(&mut shortlist);
        let allowed = |t: LlamaToken| shortlist.data.iter().any(|d| d.id() == t && d.logit().is_finite());
        if let Some(tok) = shortlist.selected_token().filter(|t| allowed(*t)) {
            return Ok(tok);
        }
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
    selected(&candidates)
}

fn selected(candidates: &LlamaTokenDataArray) -> Result<LlamaToken, DeciderError> {
    candidates.selected_token().ok_or_else(|| DeciderError::Inference("the sampler selected no token".into()))
}
