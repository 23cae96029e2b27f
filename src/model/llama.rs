//! `LlamaDecider`: a GGUF model run in-process by llama.cpp.
//!
//! The model is loaded once, on a dedicated inference thread that owns the
//! model and its context; requests arrive over a bounded channel, each with
//! its own reply channel (the mistral.rs pattern). Every call into llama.cpp
//! that can throw a C++ exception goes through llama-cpp-2's `common`
//! wrappers (grammar init and accept catch exceptions and return errors),
//! and a token is only ever accepted by the grammar after the grammar itself
//! has said it is allowed, so a grammar error cannot abort the process.
//!
//! Decoding is constrained by a grammar built from the run's decision schema,
//! checked lazily: the sampler picks a token from the raw logits, the grammar
//! checks that one token, and only when it is rejected are the full logits
//! filtered by the grammar and the token sampled again. Generation stops as
//! soon as the JSON object is complete.
//!
//! Between steps of the same run the evaluated prompt is kept: a step only
//! evaluates the tokens after the longest common prefix with what is cached.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use async_trait::async_trait;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use tokio::sync::{mpsc, oneshot};

use super::grammar::{ObjectEnd, schema_to_gbnf};
use super::{DecideRequest, Decider, DeciderError, RawDecision};
use crate::engine::record::ModelStats;

/// How many requests may wait for the inference thread.
const QUEUE_DEPTH: usize = 256;

/// Where and how to load the model.
#[derive(Debug, Clone)]
pub struct LlamaOptions {
    pub model_path: PathBuf,
    /// Context window in tokens.
    pub n_ctx: u32,
    /// CPU threads; `None` uses every core.
    pub n_threads: Option<i32>,
    /// Layers offloaded to a GPU (needs a `cuda` or `vulkan` build).
    pub n_gpu_layers: u32,
    /// Tokens per prompt-evaluation batch.
    pub n_batch: u32,
}

impl LlamaOptions {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        LlamaOptions { model_path: model_path.into(), n_ctx: 8192, n_threads: None, n_gpu_layers: 0, n_batch: 512 }
    }
}

struct Job {
    request: DecideRequest,
    reply: oneshot::Sender<Result<RawDecision, DeciderError>>,
}

/// Handle to the inference thread. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct LlamaDecider {
    tx: mpsc::Sender<Job>,
    description: String,
}

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

fn backend() -> Result<&'static LlamaBackend, DeciderError> {
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| DeciderError::Unavailable(format!("llama.cpp backend: {e}")))
}

impl LlamaDecider {
    /// Load the model on a new inference thread; returns once it is loaded.
    pub fn load(opts: LlamaOptions) -> Result<Self, DeciderError> {
        if !opts.model_path.is_file() {
            return Err(DeciderError::Unavailable(format!(
                "model file {} not found: run scripts/fetch-model.sh, or pass --model PATH (env XCT_MODEL)",
                opts.model_path.display()
            )));
        }
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let description = format!("{}", opts.model_path.display());
        std::thread::Builder::new()
            .name("xct-inference".into())
            .spawn(move || inference_thread(opts, rx, ready_tx))
            .map_err(|e| DeciderError::Unavailable(format!("cannot start the inference thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(LlamaDecider { tx, description }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(DeciderError::Unavailable("the inference thread stopped while loading".into())),
        }
    }

    /// The model's path.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Requests waiting for the inference thread.
    pub fn queue_depth(&self) -> usize {
        QUEUE_DEPTH - self.tx.capacity()
    }
}

#[async_trait]
impl Decider for LlamaDecider {
    async fn decide(&self, request: DecideRequest) -> Result<RawDecision, DeciderError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { request, reply })
            .await
            .map_err(|_| DeciderError::Unavailable("the inference thread has stopped".into()))?;
        rx.await.map_err(|_| DeciderError::Inference("the inference thread dropped the request".into()))?
    }

    fn queue_depth(&self) -> usize {
        LlamaDecider::queue_depth(self)
    }
}

/// What the context holds for the run it last served.
#[derive(Default)]
struct Cache {
    tokens: Vec<LlamaToken>,
}

struct Worker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    template: LlamaChatTemplate,
    n_batch: usize,
    cache: Cache,
    grammars: HashMap<String, String>,
}

fn inference_thread(
    opts: LlamaOptions,
    mut rx: mpsc::Receiver<Job>,
    ready: std::sync::mpsc::Sender<Result<(), DeciderError>>,
) {
    let setup = || -> Result<(&'static LlamaBackend, LlamaModel), DeciderError> {
        let backend = backend()?;
        let params = LlamaModelParams::default().with_n_gpu_layers(opts.n_gpu_layers);
        let model = LlamaModel::load_from_file(backend, &opts.model_path, &params)
            .map_err(|e| DeciderError::Unavailable(format!("cannot load model {}: {e}", opts.model_path.display())))?;
        Ok((backend, model))
    };
    let (backend, model) = match setup() {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let threads = opts.n_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as i32));
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(opts.n_ctx))
        .with_n_batch(opts.n_batch)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let ctx = match model.new_context(backend, ctx_params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(DeciderError::Unavailable(format!("cannot create a llama.cpp context: {e}"))));
            return;
        }
    };
    let template = model
        .chat_template(None)
        .or_else(|_| LlamaChatTemplate::new("chatml").map_err(|e| e.to_string()))
        .map_err(|e| DeciderError::Unavailable(format!("no usable chat template: {e}")));
    let template = match template {
        Ok(t) => t,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut worker = Worker {
        model: &model,
        ctx,
        template,
        n_batch: opts.n_batch as usize,
        cache: Cache::default(),
        grammars: HashMap::new(),
    };
    let _ = ready.send(Ok(()));
    while let Some(job) = rx.blocking_recv() {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| worker.decide(&job.request))).unwrap_or_else(|_| {
            worker.reset();
            Err(DeciderError::Inference("inference panicked; the context was reset".into()))
        });
        let _ = job.reply.send(result);
    }
}

impl Worker<'_> {
    fn reset(&mut self) {
        self.ctx.clear_kv_cache();
        self.cache.tokens.clear();
    }

    fn decide(&mut self, req: &DecideRequest) -> Result<RawDecision, DeciderError> {
        let prompt = self.render(req)?;
        let tokens = self.model.vocab().tokenize(prompt.as_bytes(), true, true);
        let n_ctx = self.ctx.n_ctx() as usize;
        if tokens.is_empty() || tokens.len() + req.sampling.max_tokens as usize > n_ctx {
            return Err(DeciderError::PromptTooLong(format!(
                "{} prompt tokens + {} max tokens exceed the context window of {n_ctx}",
                tokens.len(),
                req.sampling.max_tokens
            )));
        }
        let gbnf = self.grammar(&req.schema)?;
        let mut grammar = LlamaSampler::grammar(self.model, &gbnf, "root")
            .map_err(|e| DeciderError::Inference(format!("grammar rejected by llama.cpp: {e}")))?;

        let t_prompt = Instant::now();
        let (cached, logits_idx) = self.evaluate_prompt(&tokens)?;
        let prompt_ms = t_prompt.elapsed().as_millis() as u64;

        let t_decode = Instant::now();
        let mut chain = sampler_chain(req.sampling.temperature, req.sampling.seed);
        let (text, completion_tokens, truncated) =
            self.generate(&mut chain, &mut grammar, logits_idx, req.sampling.max_tokens)?;
        let stats = ModelStats {
            prompt_tokens: tokens.len() as u32,
            cached_tokens: cached as u32,
            completion_tokens,
            prompt_ms,
            decode_ms: t_decode.elapsed().as_millis() as u64,
            truncated,
        };
        Ok(RawDecision { text, stats })
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

    /// Evaluate the prompt, reusing the cached common prefix. Returns how
    /// many tokens came from the cache and the batch index of the logits.
    fn evaluate_prompt(&mut self, tokens: &[LlamaToken]) -> Result<(usize, i32), DeciderError> {
        let mut common = self.cache.tokens.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        // At least the last prompt token is evaluated: its logits start generation.
        common = common.min(tokens.len() - 1);
        if self.ctx.kv_cache_seq_rm(0, Some(common as u32), None).is_err() {
            // Some caches (sliding-window, recurrent) cannot drop a suffix: start over.
            self.ctx.clear_kv_cache();
            common = 0;
        }
        self.cache.tokens.truncate(common);
        let mut batch = LlamaBatch::new(self.n_batch, 1);
        let rest = &tokens[common..];
        for (chunk_no, chunk) in rest.chunks(self.n_batch).enumerate() {
            batch.clear();
            for (i, tok) in chunk.iter().enumerate() {
                let pos = common + chunk_no * self.n_batch + i;
                let last = pos == tokens.len() - 1;
                batch.add(*tok, pos as i32, &[0], last).map_err(|e| DeciderError::Inference(format!("batch: {e}")))?;
            }
            if let Err(e) = self.ctx.decode(&mut batch) {
                self.reset();
                return Err(DeciderError::Inference(format!("prompt evaluation failed: {e}")));
            }
            self.cache.tokens.extend_from_slice(chunk);
        }
        Ok((common, (batch.n_tokens() - 1).max(0)))
    }

    /// Sample until the JSON object is complete, an end-of-generation token,
    /// or `max_tokens`. Returns the text, the token count and whether it was
    /// cut off at the limit.
    fn generate(
        &mut self,
        chain: &mut LlamaSampler,
        grammar: &mut LlamaSampler,
        mut logits_idx: i32,
        max_tokens: u32,
    ) -> Result<(String, u32, bool), DeciderError> {
        let vocab = self.model.vocab();
        let mut out: Vec<u8> = Vec::new();
        let mut end = ObjectEnd::new();
        let mut batch = LlamaBatch::new(1, 1);
        let mut n = 0u32;
        while n < max_tokens {
            let tok = sample_checked(&self.ctx, logits_idx, chain, grammar)?;
            if vocab.is_eog(tok) {
                return Ok((String::from_utf8_lossy(&out).into_owned(), n, false));
            }
            grammar
                .try_accept(tok)
                .map_err(|e| DeciderError::Inference(format!("grammar refused token {}: {e}", tok.0)))?;
            chain.accept(tok);
            n += 1;
            let piece = vocab.token_to_piece(tok, false, None);
            out.extend_from_slice(&piece);
            if end.feed(&piece) {
                break;
            }
            let pos = self.cache.tokens.len() as i32;
            batch.clear();
            batch.add(tok, pos, &[0], true).map_err(|e| DeciderError::Inference(format!("batch: {e}")))?;
            if let Err(e) = self.ctx.decode(&mut batch) {
                self.reset();
                return Err(DeciderError::Inference(format!("decode failed: {e}")));
            }
            self.cache.tokens.push(tok);
            logits_idx = 0;
        }
        Ok((String::from_utf8_lossy(&out).into_owned(), n, !end.is_done()))
    }
}

fn sampler_chain(temperature: f32, seed: u32) -> LlamaSampler {
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
fn sample_checked(
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
    let mut candidates = ctx.token_data_array_ith(idx);
    grammar.apply(&mut candidates);
    if !candidates.data.iter().any(|d| d.logit().is_finite()) {
        return Err(DeciderError::Inference("the grammar allows no next token".into()));
    }
    chain.apply(&mut candidates);
    candidates
        .selected_token()
        .ok_or_else(|| DeciderError::Inference("the sampler selected no token under the grammar".into()))
}
