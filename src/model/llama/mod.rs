//! `LlamaDecider`: a GGUF model run in-process by llama.cpp.
//!
//! The model is loaded once, on a dedicated inference thread that owns the
//! context; requests arrive over a bounded channel, each with its own reply
//! channel (the mistral.rs pattern), their prompts already tokenized by the
//! caller (the model is shared read-only for that, see [`prompt::Prompter`]),
//! so that the one thread every run shares does only what needs the
//! context. Every call into llama.cpp that can throw a C++ exception goes
//! through llama-cpp-2's `common` wrappers (grammar init and accept catch
//! exceptions and return errors), and a token is only ever accepted by the
//! grammar after the grammar itself has said it is allowed, so a grammar
//! error cannot abort the process.
//!
//! Decoding is constrained by a grammar built from the run's decision schema,
//! checked lazily: the sampler picks a token from the raw logits, the grammar
//! checks that one token, and only when it is rejected are the full logits
//! filtered by the grammar and the token sampled again. Generation stops as
//! soon as the JSON object is complete.
//!
//! Between steps of the same run the evaluated prompt is kept, one KV
//! sequence ("slot") per run, least recently used evicted: a step only
//! evaluates the tokens after the longest common prefix with what its slot
//! holds. Requests are batched continuously: each decode call carries the
//! next token of every generating request plus prompt chunks of newly
//! admitted ones; a request joins at the next step and leaves when done.

use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::OnceLock;

use async_trait::async_trait;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use tokio::sync::{mpsc, oneshot};

pub mod backend;
mod busy;
pub mod ceiling;
mod prompt;
mod sample;
mod worker;

use super::{DecideRequest, Decider, DeciderError, RawDecision};
pub use busy::Busy;
use busy::BusyClock;
use llama_cpp_2::token::LlamaToken;
use prompt::Prompter;
use worker::Worker;

/// How many requests may wait for the inference thread.
const QUEUE_DEPTH: usize = 256;

/// Where and how to load the model.
#[derive(Debug, Clone)]
pub struct LlamaOptions {
    pub model_path: PathBuf,
    /// Context window in tokens, per run (slot).
    pub n_ctx: u32,
    /// CPU threads; `None` uses every core.
    pub n_threads: Option<i32>,
    /// Layers offloaded to a GPU (needs a `cuda` or `vulkan` build).
    pub n_gpu_layers: u32,
    /// Tokens per prompt-evaluation batch.
    pub n_batch: u32,
    /// Runs whose evaluated prompt is kept (one KV sequence each, evicted
    /// least recently used); also the most requests decoded together.
    pub slots: u32,
    /// Reuse the evaluated prefix between steps (off only for benchmarks).
    pub reuse: bool,
    /// How decoding is constrained (anything but Lazy only for benchmarks).
    pub grammar: GrammarMode,
    /// One KV cache every slot shares, instead of one stream per slot.
    /// With streams, llama.cpp splits a decode call into one micro-batch
    /// per stretch of consecutive sequence ids (and per prompt-chunk
    /// length), so runs that sit between steps break a batch of many runs
    /// into several; unified, a call is one micro-batch, but each token
    /// attends over every slot's cells (masked).
    pub kv_unified: bool,
}

/// How the grammar constrains sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrammarMode {
    /// Check the sampled token; filter all candidates only when it is rejected.
    Lazy,
    /// Filter every candidate through the grammar at every token (the usual way).
    Full,
    /// No grammar (outputs may not parse).
    Off,
}

impl LlamaOptions {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        LlamaOptions {
            model_path: model_path.into(),
            n_ctx: 8192,
            n_threads: None,
            n_gpu_layers: 0,
            n_batch: 512,
            slots: 4,
            reuse: true,
            grammar: GrammarMode::Lazy,
            kv_unified: false,
        }
    }

    /// CPU threads to use: the configured number, else every core.
    fn threads(&self) -> i32 {
        self.n_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as i32))
    }
}

struct Job {
    request: DecideRequest,
    /// The request's messages as tokens (the caller tokenized them).
    prompt: Vec<LlamaToken>,
    reply: oneshot::Sender<Result<RawDecision, DeciderError>>,
}

/// Handle to the inference thread. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct LlamaDecider {
    tx: mpsc::Sender<Job>,
    description: String,
    /// The model file's name, as traces name the model.
    name: String,
    /// Where it runs.
    backend: backend::BackendInfo,
    busy: std::sync::Arc<BusyClock>,
    prompter: std::sync::Arc<Prompter>,
}

/// The process's llama.cpp backend, and the folder its backend libraries
/// were loaded from (dynamic builds).
static BACKEND: OnceLock<Result<(LlamaBackend, Option<String>), String>> = OnceLock::new();

fn backend() -> Result<&'static (LlamaBackend, Option<String>), DeciderError> {
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            let loaded_from = backend::load_dynamic_backends();
            LlamaBackend::init().map(|b| (b, loaded_from)).map_err(|e| e.to_string())
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
        let name = opts.model_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let busy = std::sync::Arc::new(BusyClock::default());
        let clock = busy.clone();
        std::thread::Builder::new()
            .name("xct-inference".into())
            .spawn(move || inference_thread(opts, rx, ready_tx, clock))
            .map_err(|e| DeciderError::Unavailable(format!("cannot start the inference thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok((backend, prompter))) => Ok(LlamaDecider { tx, description, name, backend, busy, prompter }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(DeciderError::Unavailable("the inference thread stopped while loading".into())),
        }
    }

    /// The model's path.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The backend, devices and offloaded layers it runs on.
    pub fn backend(&self) -> &backend::BackendInfo {
        &self.backend
    }

    /// The inference thread's busy time so far, by phase.
    pub fn busy(&self) -> Busy {
        self.busy.read()
    }

    /// Requests waiting for the inference thread.
    pub fn queue_depth(&self) -> usize {
        QUEUE_DEPTH - self.tx.capacity()
    }
}

#[async_trait]
impl Decider for LlamaDecider {
    async fn decide(&self, request: DecideRequest) -> Result<RawDecision, DeciderError> {
        let prompter = self.prompter.clone();
        let (request, prompt) = tokio::task::spawn_blocking(move || {
            let prompt = prompter.tokenize(&request.messages);
            (request, prompt)
        })
        .await
        .map_err(|e| DeciderError::Inference(format!("tokenizing the prompt failed: {e}")))?;
        let prompt = prompt?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { request, prompt, reply })
            .await
            .map_err(|_| DeciderError::Unavailable("the inference thread has stopped".into()))?;
        rx.await.map_err(|_| DeciderError::Inference("the inference thread dropped the request".into()))?
    }

    fn queue_depth(&self) -> usize {
        LlamaDecider::queue_depth(self)
    }

    fn model(&self) -> &str {
        &self.name
    }

    fn placement(&self) -> Option<String> {
        Some(self.backend.summary())
    }
}

/// Initialise the backend once and load the model file.
fn load_model(opts: &LlamaOptions) -> Result<(&'static LlamaBackend, LlamaModel, backend::BackendInfo), DeciderError> {
    let (backend, loaded_from) = backend()?;
    let params = LlamaModelParams::default().with_n_gpu_layers(opts.n_gpu_layers);
    let model = LlamaModel::load_from_file(backend, &opts.model_path, &params)
        .map_err(|e| DeciderError::Unavailable(format!("cannot load model {}: {e}", opts.model_path.display())))?;
    let info = backend::BackendInfo::observe(model.n_layer(), opts.n_gpu_layers, loaded_from.clone());
    Ok((backend, model, info))
}

fn inference_thread(
    opts: LlamaOptions,
    mut rx: mpsc::Receiver<Job>,
    ready: std::sync::mpsc::Sender<Result<(backend::BackendInfo, std::sync::Arc<Prompter>), DeciderError>>,
    busy: std::sync::Arc<BusyClock>,
) {
    let (backend, model, info) = match load_model(&opts) {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let threads = opts.threads();
    // One KV sequence per slot, each with a context of n_ctx tokens.
    let slots = opts.slots.max(1);
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(opts.n_ctx.saturating_mul(slots)))
        .with_n_seq_max(slots)
        .with_kv_unified(opts.kv_unified)
        // Sliding-window models keep their full cache, so a cached prefix
        // stays reusable (with a window-sized cache it would not be).
        .with_swa_full(true)
        .with_n_batch(opts.n_batch)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let prompter = match Prompter::new(model) {
        Ok(p) => std::sync::Arc::new(p),
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let ctx = match prompter.model().new_context(backend, ctx_params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(DeciderError::Unavailable(format!("cannot create a llama.cpp context: {e}"))));
            return;
        }
    };
    let mut worker = Worker::new(prompter.model(), ctx, &opts, busy);
    let _ = ready.send(Ok((info, prompter.clone())));
    serve(&mut worker, &mut rx, slots as usize);
}

type Reply = oneshot::Sender<Result<RawDecision, DeciderError>>;

/// Continuous batching: block only when nothing is running; admit waiting
/// requests (arrival order) while slots are free; one decode step for all
/// running requests; answer each request the moment it finishes. Requests
/// beyond the slots wait in the bounded channel (back-pressure, visible as
/// queue depth).
fn serve(worker: &mut Worker<'_>, rx: &mut mpsc::Receiver<Job>, slots: usize) {
    let mut running: Vec<worker::Active<Reply>> = Vec::new();
    loop {
        if running.is_empty() {
            let Some(job) = rx.blocking_recv() else { return };
            admit(worker, job, &mut running);
        }
        while running.len() < slots {
            match rx.try_recv() {
                Ok(job) => admit(worker, job, &mut running),
                Err(_) => break,
            }
        }
        // A caller that gave up (its reconcile was cancelled) frees its slot.
        running.retain(|a| !a.tag.is_closed());
        match std::panic::catch_unwind(AssertUnwindSafe(|| worker.step(&mut running))) {
            Ok(finished) => {
                for (reply, result) in finished {
                    let _ = reply.send(result);
                }
            }
            Err(_) => reset(worker, &mut running),
        }
    }
}

/// After a panic the KV cache no longer matches the slots: start over and
/// fail what was running (each caller gets an error, never a hang).
fn reset(worker: &mut Worker<'_>, running: &mut Vec<worker::Active<Reply>>) {
    worker.reset();
    for a in running.drain(..) {
        let _ = a.tag.send(Err(DeciderError::Inference("inference panicked; the context was reset".into())));
    }
}

fn admit(worker: &mut Worker<'_>, job: Job, running: &mut Vec<worker::Active<Reply>>) {
    let Job { request, prompt, reply } = job;
    match std::panic::catch_unwind(AssertUnwindSafe(|| worker.admit(&request, prompt, reply, running))) {
        Ok(Ok(active)) => running.push(active),
        Ok(Err((reply, e))) => {
            let _ = reply.send(Err(e));
        }
        // This request's reply channel was lost in the panic: its caller sees a dropped request.
        Err(_) => reset(worker, running),
    }
}
