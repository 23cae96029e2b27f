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

/// How the next token is picked among the candidates.
pub(super) enum Picker {
    /// Temperature 0: the most likely token, the first of equals (what
    /// llama.cpp's greedy sampler picks), read straight off the logits:
    /// no candidate array of the whole vocabulary is built per token.
    Greedy,
    /// Top-k, top-p, min-p, temperature and a seeded draw (llama.cpp's order).
    Sampled(LlamaSampler),
}

impl Picker {
    pub(super) fn new(temperature: f32, seed: u32) -> Self {
        if temperature <= 0.0 {
            Picker::Greedy
        } else {
            Picker::Sampled(LlamaSampler::chain_simple([
                LlamaSampler::top_k(TOP_K),
                LlamaSampler::top_p(TOP_P, MIN_KEEP),
                LlamaSampler::min_p(MIN_P, MIN_KEEP),
                LlamaSampler::temp(temperature),
                LlamaSampler::dist(seed),
            ]))
        }
    }

    /// Pick among `candidates` (those the grammar refused have logit -inf).
    fn pick(&mut self, candidates: &mut LlamaTokenDataArray) -> Option<LlamaToken> {
        match self {
            Picker::Greedy => argmax(candidates.data.iter().map(|d| (d.id(), d.logit()))),
            Picker::Sampled(chain) => {
                chain.apply(candidates);
                candidates.selected_token()
            }
        }
    }

    /// The picked token was accepted: a sampler with state (the seeded
    /// draw) moves on.
    pub(super) fn accept(&mut self, token: LlamaToken) {
        if let Picker::Sampled(chain) = self {
            chain.accept(token);
        }
    }
}

/// The first token with the highest finite logit. One comparison per
/// token in the common case (it runs over the whole vocabulary for every
/// token of every run).
fn argmax(logits: impl Iterator<Item = (LlamaToken, f32)>) -> Option<LlamaToken> {
    let (mut best, mut best_logit) = (None, f32::NEG_INFINITY);
    for (token, logit) in logits {
        // NaN and -inf never compare greater; +inf is refused.
        if logit > best_logit && logit.is_finite() {
            (best, best_logit) = (Some(token), logit);
        }
    }
    best
}

/// Sample from the logits at batch index `idx` without a grammar.
pub(super) fn sample_free(ctx: &LlamaContext<'_>, idx: i32, picker: &mut Picker) -> Result<LlamaToken, DeciderError> {
    let token = match picker {
        Picker::Greedy => argmax(ctx.get_logits_ith(idx).iter().enumerate().map(|(i, l)| (LlamaToken(i as i32), *l))),
        Picker::Sampled(_) => picker.pick(&mut ctx.token_data_array_ith(idx)),
    };
    token.ok_or_else(|| DeciderError::Inference("the sampler selected no token".into()))
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
    picker: &mut Picker,
    grammar: &mut LlamaSampler,
) -> Result<LlamaToken, DeciderError> {
    let picked = sample_free(ctx, idx, picker)?;
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
        let picked = picker.pick(&mut shortlist);
        let allowed = |t: LlamaToken| shortlist.data.iter().any(|d| d.id() == t && d.logit().is_finite());
        if let Some(tok) = picked.filter(|t| allowed(*t)) {
            return Ok(tok);
        }
    }
    sample_full(ctx, idx, picker, grammar)
}

/// The usual constrained sampling: the grammar filters every candidate at
/// every token (the baseline the lazy check is measured against).
pub(super) fn sample_full(
    ctx: &LlamaContext<'_>,
    idx: i32,
    picker: &mut Picker,
    grammar: &mut LlamaSampler,
) -> Result<LlamaToken, DeciderError> {
    let mut candidates = ctx.token_data_array_ith(idx);
    grammar.apply(&mut candidates);
    if !candidates.data.iter().any(|d| d.logit().is_finite()) {
        return Err(DeciderError::Inference("the grammar allows no next token".into()));
    }
    picker.pick(&mut candidates).ok_or_else(|| DeciderError::Inference("the sampler selected no token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_equal_highest_finite_logits() {
        let t = |l: &[f32]| argmax(l.iter().enumerate().map(|(i, l)| (LlamaToken(i as i32), *l))).map(|t| t.0);
        assert_eq!(t(&[0.5, 2.0, 2.0, 1.0]), Some(1));
        assert_eq!(t(&[f32::INFINITY, 1.0, f32::NAN, 3.0]), Some(3));
        assert_eq!(t(&[f32::NEG_INFINITY, -7.0]), Some(1));
        assert_eq!(t(&[f32::NEG_INFINITY]), None);
        assert_eq!(t(&[]), None);
    }
}
