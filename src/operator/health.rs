//! `/livez`, `/readyz` (ready only once the model is loaded and the
//! watches have synced) and `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

/// What readiness waits for, and what the scrape-time metrics read.
#[derive(Default)]
pub struct Readiness {
    pub model_loaded: AtomicBool,
    pub watches_synced: AtomicBool,
    /// Why the model is not loaded, when loading failed.
    pub model_error: std::sync::Mutex<Option<String>>,
    /// Set once the controller starts.
    pub observed: std::sync::OnceLock<Observed>,
}

/// The controller's state that metrics are computed from at each scrape
/// rather than counted as it happens: the runs its watch holds (right after
/// a failover, unlike a count of this process's own transitions) and
/// whether it leads.
pub struct Observed {
    pub runs: kube::runtime::reflector::Store<crate::crd::Readable<crate::crd::XctRun>>,
    pub leadership: Arc<super::leader::Leadership>,
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
    h.metrics.model_loaded.set(i64::from(h.readiness.model_loaded.load(Ordering::SeqCst)));
    if let Some(o) = h.readiness.observed.get() {
        let runs = o.runs.state();
        h.metrics.runs_observed(
            runs.iter().map(|r| r.0.as_ref().ok().map(|r| r.status.as_ref().map(|s| s.phase).unwrap_or_default())),
        );
        h.metrics.leader.set(i64::from(o.leadership.is_leader()));
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
        // Which backend, devices and offloaded layers: never mistaken for
        // another machine's.
        let placement = h.decider.read().ok().and_then(|d| d.as_ref()?.placement());
        (StatusCode::OK, placement.map_or_else(|| "ok".into(), |p| format!("ok: {p}")))
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
