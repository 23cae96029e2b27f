//! `/livez`, `/readyz` (ready only once the model is loaded and the
//! watches have synced) and `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

/// What readiness waits for.
#[derive(Debug, Default)]
pub struct Readiness {
    pub model_loaded: AtomicBool,
    pub watches_synced: AtomicBool,
    /// Why the model is not loaded, when loading failed.
    pub model_error: std::sync::Mutex<Option<String>>,
}

/// What the health server serves.
pub struct Health {
    pub readiness: Arc<Readiness>,
    pub metrics: Arc<super::metrics::Metrics>,
    /// Set once the model is loaded (for the queue-depth gauge).
    pub decider: RwLock<Option<Arc<dyn crate::model::Decider>>>,
}

async fn metrics(State(h): State<Arc<Health>>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    if let Some(d) = h.decider.read().ok().and_then(|d| d.clone()) {
        h.metrics.queue_depth.set(d.queue_depth() as i64);
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        h.metrics.encode(),
    )
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.model_loaded.load(Ordering::SeqCst) && self.watches_synced.load(Ordering::SeqCst)
    }
}

async fn readyz(State(h): State<Arc<Health>>) -> (StatusCode, String) {
    let r = &h.readiness;
    if r.is_ready() {
        (StatusCode::OK, "ok".into())
    } else {
        let model = r.model_loaded.load(Ordering::SeqCst);
        let synced = r.watches_synced.load(Ordering::SeqCst);
        let why = r.model_error.lock().ok().and_then(|e| e.clone()).map(|e| format!(": {e}")).unwrap_or_default();
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: model loaded {model}, watches synced {synced}{why}"))
    }
}

/// The health router.
pub fn router(h: Arc<Health>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(h)
}

/// Serve health endpoints on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, h: Arc<Health>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(h)).await
}
