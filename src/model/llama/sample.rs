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

/// The `k` highest logits as candidates (in no order), in one pass over
/// the vocabulary with one comparison per token once `k` are held; NaN and
/// -inf never enter.
fn top_candidates(logits: &[f32], k: usize) -> Vec<LlamaTokenData> {
    let k = k.max(1);
    let mut kept: Vec<(f32, usize)> = Vec::with_capacity(2 * k);
    let mut floor = f32::NEG_INFINITY;
    let keep_k = |kept: &mut Vec<(f32, usize)>| {
        kept.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        kept.truncate(k);
    };
    for (i, &logit) in logits.iter().enumerate() {
        if logit > floor {
            kept.push((logit, i));
            if kept.len() == 2 * k {
                keep_k(&mut kept);
                floor = kept.iter().map(|c| c.0).fold(f32::INFINITY, f32::min);
            }
        }
    }
    if kept.len() > k {
        keep_k(&mut kept);
    }
    kept.into_iter().map(|(logit, i)| LlamaTokenData::new(LlamaToken(i as i32), logit, 0.0)).collect()
}

/// Sample from the logits at batch index `idx` without a grammar. A
/// sampled pick starts from the `TOP_K` highest logits, not the whole
/// vocabulary: the chain's first step (top-k) keeps exactly those, so the
/// pick is the same.
pub(super) fn sample_free(ctx: &LlamaContext<'_>, idx: i32, picker: &mut Picker) -> Result<LlamaToken, DeciderError> {
    let logits = ctx.get_logits_ith(idx);
    let token = match picker {
        Picker::Greedy => argmax(logits.iter().enumerate().map(|(i, l)| (LlamaToken(i as i32), *l))),
        Picker::Sampled(_) => {
            let top = top_candidates(logits, TOP_K as usize);
            picker.pick(&mut LlamaTokenDataArray::new(top, false))
        }
    };
    selected(token)
}

/// How many of the most likely tokens the lazy check filters, in turn,
/// when the grammar refuses the unconstrained pick, before it filters the
/// whole vocabulary. Filtering costs about as much per candidate, so each
/// is eight times the last: where the grammar forces a token the model
/// ranks low (a property name, a closing quote), it is usually found among
/// the 512 or 4096 most likely at a tenth of the cost of the whole
/// vocabulary (`xct bench` (b) reports the sampling time per token).
const SHORTLISTS: [usize; 3] = [64, 512, 4096];

/// Sample one token that the grammar allows, checking as few tokens as
/// possible: the unconstrained pick alone first; if the grammar rejects it,
/// the most likely tokens by the `SHORTLISTS`; only if none of those is
/// allowed, the whole vocabulary. The grammar filters before the sampler
/// picks, so the pick is always allowed. (Greedy picks are exactly those
/// of full filtering: a shortlist holds every token more likely than its
/// least likely one. Sampled picks ignore allowed tokens outside the first
/// shortlist that holds some, a negligible tail.) Returns the pick and how
/// many candidates the grammar filtered for it.
pub(super) fn sample_checked(
    ctx: &LlamaContext<'_>,
    idx: i32,
    picker: &mut Picker,
    grammar: &mut LlamaSampler,
) -> Result<(LlamaToken, usize), DeciderError> {
    let picked = sample_free(ctx, idx, picker)?;
    let mut single = LlamaTokenDataArray::new(vec![LlamaTokenData::new(picked, 1.0, 0.0)], false);
    grammar.apply(&mut single);
    let mut filtered = 1;
    if single.data.first().is_some_and(|d| d.logit().is_finite()) {
        return Ok((picked, filtered));
    }
    let logits = ctx.get_logits_ith(idx);
    for k in SHORTLISTS.into_iter().take_while(|k| *k < logits.len()) {
        let mut shortlist = LlamaTokenDataArray::new(top_candidates(logits, k), false);
        filtered += shortlist.data.len();
        grammar.apply(&mut shortlist);
        if shortlist.data.iter().any(|d| d.logit().is_finite()) {
            let picked = picker.pick(&mut shortlist);
            let allowed = |t: LlamaToken| shortlist.data.iter().any(|d| d.id() == t && d.logit().is_finite());
            if let Some(tok) = picked.filter(|t| allowed(*t)) {
                return Ok((tok, filtered));
            }
            break;
        }
    }
    let (tok, whole) = sample_full(ctx, idx, picker, grammar)?;
    Ok((tok, filtered + whole))
}

/// The usual constrained sampling: the grammar filters every candidate at
/// every token (the baseline the lazy check is measured against). Returns
/// the pick and how many candidates were filtered (the vocabulary).
pub(super) fn sample_full(
    ctx: &LlamaContext<'_>,
    idx: i32,
    picker: &mut Picker,
    grammar: &mut LlamaSampler,
) -> Result<(LlamaToken, usize), DeciderError> {
    let mut candidates = ctx.token_data_array_ith(idx);
    let filtered = candidates.data.len();
    grammar.apply(&mut candidates);
    if !candidates.data.iter().any(|d| d.logit().is_finite()) {
        return Err(DeciderError::Inference("the grammar allows no next token".into()));
    }
    Ok((selected(picker.pick(&mut candidates))?, filtered))
}

fn selected(token: Option<LlamaToken>) -> Result<LlamaToken, DeciderError> {
    token.ok_or_else(|| DeciderError::Inference("the sampler selected no token".into()))
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

    #[test]
    fn top_candidates_are_the_k_highest_of_the_whole_vocabulary() {
        // A vocabulary-sized array whose highest logits are spread out and
        // come late, so the floor rises several times.
        let n = 49_152;
        let logits: Vec<f32> = (0..n).map(|i| ((i * 7919) % n) as f32 / n as f32).collect();
        for k in [1, 40, 64] {
            let mut got: Vec<i32> = top_candidates(&logits, k).iter().map(|d| d.id().0).collect();
            got.sort_unstable();
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
            let mut want: Vec<i32> = order[..k].iter().map(|i| *i as i32).collect();
            want.sort_unstable();
            assert_eq!(got, want, "k = {k}");
        }
        let few = [f32::NAN, 1.0, f32::NEG_INFINITY, 3.0];
        let ids: Vec<i32> = top_candidates(&few, 40).iter().map(|d| d.id().0).collect();
        assert_eq!(ids.len(), 2, "NaN and -inf never enter: {ids:?}");
    }

    /// A sampled pick from the top-k candidates alone is the pick from the
    /// whole vocabulary: the chain's top-k keeps the same ones, in the same
    /// order, and the seeded draw moves on alike.
    #[test]
    fn a_sampled_pick_from_the_top_candidates_is_the_pick_from_all() {
        let n = 49_152;
        let mut picked = std::collections::HashSet::new();
        for seed in 0..4u32 {
            let (mut whole, mut top) = (Picker::new(0.7, seed), Picker::new(0.7, seed));
            for step in 0..20usize {
                let logits: Vec<f32> = (0..n).map(|i| (((i + step * 31) * 7919) % n) as f32 / 4096.0 - 6.0).collect();
                let all = logits.iter().enumerate().map(|(i, l)| LlamaTokenData::new(LlamaToken(i as i32), *l, 0.0));
                let a = whole.pick(&mut LlamaTokenDataArray::from_iter(all, false)).unwrap();
                let b =
                    top.pick(&mut LlamaTokenDataArray::new(top_candidates(&logits, TOP_K as usize), false)).unwrap();
                assert_eq!(a, b, "seed {seed}, step {step}");
                picked.insert(a.0);
                whole.accept(a);
                top.accept(b);
            }
        }
        // The top logits are close: the draws differ, not only the argmax.
        assert!(picked.len() > 10, "{picked:?}");
    }
}
