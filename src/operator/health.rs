//! `/livez` and `/readyz`: ready only once the model is loaded and the
//! watches have synced.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

/// What readiness waits for.
#[derive(Debug, Default)]
pub struct Readiness {
    pub model_loaded: AtomicBool,
    pub watches_synced: AtomicBool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.model_loaded.load(Ordering::SeqCst) && self.watches_synced.load(Ordering::SeqCst)
    }
}

async fn readyz(State(r): State<Arc<Readiness>>) -> (StatusCode, String) {
    if r.is_ready() {
        (StatusCode::OK, "ok".into())
    } else {
        let model = r.model_loaded.load(Ordering::SeqCst);
        let synced = r.watches_synced.load(Ordering::SeqCst);
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: model loaded {model}, watches synced {synced}"))
    }
}

/// The health router.
pub fn router(r: Arc<Readiness>) -> Router {
    Router::new().route("/livez", get(|| async { "ok" })).route("/readyz", get(readyz)).with_state(r)
}

/// Serve health endpoints on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, r: Arc<Readiness>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(r)).await
}
