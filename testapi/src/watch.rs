//! Watch streams ("Efficient detection of changes" and "Watch bookmarks"
//! in "API Concepts", and "Streaming lists"): newline-delimited JSON events,
//! replay from a resourceVersion, 410 Gone as an ERROR event when it is too
//! old, bookmarks, `sendInitialEvents` with the `initial-events-end`
//! bookmark, and `timeoutSeconds`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::kinds::Kind;
use crate::select::{FieldSelector, LabelSelector};
use crate::store::{Event, Store};

/// How often a bookmark is sent when the client allows them.
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// What to watch.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// `resourceVersion` parameter, if any and not "0".
    pub from: Option<u64>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
}

impl WatchRequest {
    fn matches(&self, e: &Event) -> bool {
        e.group == self.kind.group
            && e.plural == self.kind.plural
            && self.namespace.as_ref().is_none_or(|n| &e.namespace == n)
            && self.labels.matches(&e.object)
            && self.fields.matches(&e.object)
    }

    fn present(&self, obj: &Value) -> Value {
        let mut o = obj.clone();
        o["apiVersion"] = json!(self.kind.api_version());
        o["kind"] = json!(self.kind.kind);
        o
    }
}

fn line(type_: &str, object: Value) -> Bytes {
    let mut s = json!({"type": type_, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(kind: &Kind, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line("BOOKMARK", json!({"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": meta}))
}

/// Start a watch; the returned receiver yields the body's chunks.
pub fn start(store: Arc<Store>, req: WatchRequest) -> mpsc::Receiver<Result<Bytes, Infallible>> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let _ = run(store, req, tx).await;
    });
    rx
}

async fn run(store: Arc<Store>, req: WatchRequest, tx: mpsc::Sender<Result<Bytes, Infallible>>) -> Result<(), ()> {
    let send = |b: Bytes| {
        let tx = tx.clone();
        async move { tx.send(Ok(b)).await.map_err(|_| ()) }
    };
    let initial = req.send_initial_events || req.from.is_none();
    let (replay, mut rx, mut last): (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>, u64) = if initial {
        // Synthetic ADDED events for the current state, then changes after it.
        let page =
            store.list(&req.kind, req.namespace.as_deref(), &req.labels, &req.fields, None, None).map_err(|_| ())?;
        let start = store.watch_from(&req.kind, Some(page.resource_version)).map_err(|_| ())?;
        for item in page.items {
            send(line("ADDED", item)).await?;
        }
        if req.send_initial_events {
            send(bookmark(&req.kind, page.resource_version, true)).await?;
        }
        (start.replay, start.rx, start.rv)
    } else {
        match store.watch_from(&req.kind, req.from) {
            Ok(start) => (start.replay, start.rx, start.rv),
            Err(e) => {
                send(line("ERROR", e.status())).await?;
                return Ok(());
            }
        }
    };
    for e in replay {
        if e.rv > last && req.matches(&e) {
            send(line(e.type_.as_str(), req.present(&e.object))).await?;
        }
        last = last.max(e.rv);
    }
    let deadline = tokio::time::sleep(req.timeout);
    tokio::pin!(deadline);
    let mut ticks = tokio::time::interval(BOOKMARK_EVERY);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = &mut deadline => return Ok(()),
            _ = tx.closed() => return Ok(()),
            _ = ticks.tick(), if req.bookmarks => {
                send(bookmark(&req.kind, last, false)).await?;
            }
            got = rx.recv() => match got {
                Ok(e) => {
                    if e.rv > last && req.matches(&e) {
                        send(line(e.type_.as_str(), req.present(&e.object))).await?;
                    }
                    last = last.max(e.rv);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let gone = crate::error::ApiError::gone("the watch fell behind; list again");
                    send(line("ERROR", gone.status())).await?;
                    return Ok(());
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }
}
