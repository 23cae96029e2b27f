//! Leader election on a `coordination.k8s.io` Lease. Every replica watches;
//! only the leader decides and executes. Every write of the Lease carries
//! the resourceVersion it was read at, so two replicas can never both win
//! the same term. Expiry is judged by when this replica last saw the Lease
//! change (as client-go does), not by comparing clocks across machines.
//!
//! The holder renews every third of the lease; a standby looks every
//! [`STANDBY_POLL`], and a replica that shuts down releases the Lease
//! ([`release`]), so a rollout hands over in about that time instead of a
//! whole lease duration.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::json;

/// Whether this replica leads, and until when.
#[derive(Debug, Default)]
pub struct Leadership {
    until: Mutex<Option<Instant>>,
}

impl Leadership {
    /// A replica that always leads (no election configured).
    pub fn always() -> Self {
        Leadership { until: Mutex::new(Some(Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600))) }
    }

    pub fn is_leader(&self) -> bool {
        self.until.lock().map(|u| u.is_some_and(|t| Instant::now() < t)).unwrap_or(false)
    }

    fn set(&self, until: Option<Instant>) {
        if let Ok(mut u) = self.until.lock() {
            *u = until;
        }
    }
}

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

fn now_micro() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// How often a replica that does not hold the Lease looks at it.
pub const STANDBY_POLL: Duration = Duration::from_millis(500);

/// Run the election loop forever, updating `leadership`.
pub async fn run(client: kube::Client, cfg: LeaseConfig, leadership: std::sync::Arc<Leadership>) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut observed: Option<(String, Instant)> = None;
    let renew = cfg.duration / 3;
    loop {
        let held = try_acquire_or_renew(&api, &cfg, &mut observed).await;
        // Lead until a little before the lease could be taken by another.
        leadership.set(held.then(|| Instant::now() + cfg.duration.mul_f64(0.8)));
        tokio::time::sleep(if held { renew } else { STANDBY_POLL.min(renew) }).await;
    }
}

/// Stop leading and give the Lease up if this replica holds it: the holder
/// is cleared (guarded by the resourceVersion read), so a standby takes
/// over at its next look instead of waiting for the lease to expire.
/// Returns whether a held Lease was released.
pub async fn release(client: kube::Client, cfg: &LeaseConfig, leadership: &Leadership) -> bool {
    leadership.set(None);
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else { return false };
    let mut spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return false;
    }
    spec.holder_identity = None;
    spec.renew_time = serde_json::from_value(json!(now_micro())).ok();
    lease.spec = Some(spec);
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => {
            tracing::info!(identity = %cfg.identity, "released the leader lease");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not release the leader lease; it expires on its own");
            false
        }
    }
}

async fn try_acquire_or_renew(api: &Api<Lease>, cfg: &LeaseConfig, observed: &mut Option<(String, Instant)>) -> bool {
    let secs = cfg.duration.as_secs().max(1) as i32;
    let current = match api.get_opt(&cfg.name).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the leader lease");
            return false;
        }
    };
    let Some(lease) = current else {
        let lease: Lease = match serde_json::from_value(json!({
            "metadata": {"name": cfg.name, "namespace": cfg.namespace},
            "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": secs, "acquireTime": now_micro(), "renewTime": now_micro(), "leaseTransitions": 0},
        })) {
            Ok(l) => l,
            Err(_) => return false,
        };
        return api.create(&PostParams::default(), &lease).await.is_ok();
    };
    let rv = lease.metadata.resource_version.clone().unwrap_or_default();
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    // When did this replica last see the lease change?
    let changed_at = match observed {
        Some((seen_rv, at)) if *seen_rv == rv => *at,
        _ => {
            *observed = Some((rv.clone(), Instant::now()));
            Instant::now()
        }
    };
    let lease_secs = spec.lease_duration_seconds.unwrap_or(secs).max(1) as u64;
    let expired = holder.is_empty() || changed_at.elapsed() >= Duration::from_secs(lease_secs);
    if holder != cfg.identity && !expired {
        return false;
    }
    let mut next = lease.clone();
    let mut s = spec.clone();
    if holder != cfg.identity {
        s.holder_identity = Some(cfg.identity.clone());
        s.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        s.acquire_time = serde_json::from_value(json!(now_micro())).ok();
        tracing::info!(from = %holder, to = %cfg.identity, "taking over the leader lease");
    }
    s.renew_time = serde_json::from_value(json!(now_micro())).ok();
    s.lease_duration_seconds = Some(secs);
    next.spec = Some(s);
    // `replace` sends metadata.resourceVersion: a concurrent writer wins, we lose.
    match api.replace(&cfg.name, &PostParams::default(), &next).await {
        Ok(updated) => {
            *observed = Some((updated.metadata.resource_version.unwrap_or_default(), Instant::now()));
            true
        }
        Err(e) => {
            tracing::debug!(error = %e, "lost the leader lease race");
            false
        }
    }
}
