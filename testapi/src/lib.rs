//! An in-memory Kubernetes API server for tests: real HTTP, so the real
//! `kube` client, kube-runtime's watcher and `Controller`, and a real
//! `kubectl` can run against it. Test-only code: no TLS, no persistence.
//!
//! # What it implements
//! (section names refer to the Kubernetes documentation, "API Concepts"
//! unless stated)
//! - Discovery ("Discovery API"): `/version`, `/api`, `/api/v1`, `/apis`,
//!   `/apis/<group>[/<version>]` in the legacy format, for the built-in
//!   kinds the project uses (Namespace, ServiceAccount, ConfigMap, Secret,
//!   Event, Pod with `/log`, Deployment and StatefulSet with `/scale`,
//!   Lease, events.k8s.io Events, RBAC kinds, CRDs) and for every kind a
//!   `CustomResourceDefinition` registers (scope, short names, `/status`,
//!   `/scale`, printer columns).
//! - create / get / list / watch / update / patch / delete /
//!   deletecollection with `Status` bodies: 404 NotFound, 409 AlreadyExists,
//!   409 Conflict on a stale resourceVersion, 422 Invalid, 415 for unknown
//!   patch types, 403 Forbidden from the authorization hook, 410 Gone.
//! - "Resource versions": one global counter; lists carry the collection
//!   resourceVersion; watches replay from a resourceVersion, send bookmarks
//!   when allowed, honour `sendInitialEvents` ("Streaming lists"), and answer
//!   410 Gone (an ERROR event) when the version was compacted away.
//! - `metadata.generation` increments on spec changes only; `/status`
//!   changes status only and the main endpoint ignores status when the
//!   subresource exists; writes that change nothing produce no new
//!   resourceVersion and no event.
//! - Patches: JSON patch (with `test`), merge patch, strategic merge (lists
//!   merged on their merge key, built-in kinds only: see [`strategic`]),
//!   apply (create-or-merge with a required field manager); see [`patch`].
//! - "Finalizers": delete sets `deletionTimestamp`; removing the last
//!   finalizer deletes. "Namespaces": deleting one deletes its objects.
//! - Label (equality and set-based) and field selectors; `limit`/`continue`.
//! - "Dry-run": `dryRun=All` runs admission and returns the result; nothing
//!   is stored, no event, no new resourceVersion.
//! - Impersonation headers ("User impersonation"), a request log, an
//!   optional authorization hook ([`TestApiServer::set_authorizer`]).
//!   Authentication: the bearer token is the user name (a ServiceAccount's
//!   `system:serviceaccount:<ns>:<name>` gets its groups too).
//! - RBAC, when turned on ([`TestApiServer::enforce_rbac`], `--rbac`):
//!   Roles, ClusterRoles, bindings, aggregation, `resourceNames`,
//!   subresources and the `impersonate` verb, decided from the stored
//!   objects ([`rbac`]).
//! - `SelfSubjectReview` (authentication.k8s.io/v1, create only, never
//!   stored): the caller's user name and groups, as `kubectl auth whoami`.
//! - CRD schema validation and pruning at admission ([`validate`]);
//!   `fieldValidation=Strict` for built-in kinds: unknown fields and wrong
//!   types are 400 BadRequest ([`strict`]). Of built-in validation, only
//!   names, labels and a pod spec's containers (each a unique name and an
//!   image) are checked (422 Invalid).
//! - `Table` output for `kubectl get` with CRD printer columns.
//!
//! # Known differences from kube-apiserver
//! - No TLS and no real authentication: a bearer token *is* the user name;
//!   no token is the user `admin`, allowed everything. RBAC is enforced only
//!   when turned on; non-resource URLs (discovery) are never authorized.
//! - No field ownership for server-side apply (no managedFields, no
//!   conflicts); strategic merge patch knows the merge keys of the lists
//!   tools patch, not every list of every kind ([`strategic`]).
//! - CEL rules (`x-kubernetes-validations`), defaulting, conversion
//!   webhooks, admission webhooks and ValidatingAdmissionPolicies are not
//!   evaluated. Several served versions of a CRD share one storage without
//!   conversion (only `apiVersion` is rewritten).
//! - No controllers: pods never run, garbage collection by owner references
//!   does not happen; Deployments and StatefulSets report status equal to
//!   their spec immediately.
//! - `continue` tokens read the current state, not a snapshot; no
//!   `resourceVersionMatch` semantics beyond what watch needs; no protobuf,
//!   no aggregated discovery, no OpenAPI documents.
//! - Pod logs are the value of the annotation [`http::POD_LOG_ANNOTATION`].

pub mod audit;
pub mod discovery;
pub mod error;
pub mod http;
pub mod kinds;
pub mod kubectl;
pub mod patch;
pub mod rbac;
pub mod select;
pub mod store;
pub mod strategic;
pub mod strict;
pub mod table;
pub mod validate;
pub mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

pub use audit::{Attributes, Authorizer, RequestRecord};
use tokio::task::JoinHandle;

/// A running server on 127.0.0.1.
pub struct TestApiServer {
    addr: SocketAddr,
    app: Arc<http::App>,
    task: JoinHandle<()>,
}

impl TestApiServer {
    /// Start on a free port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0").await
    }

    /// Start on a given address (e.g. "127.0.0.1:6443").
    pub async fn start_on(bind: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let app = Arc::new(http::App {
            store: Arc::new(store::Store::default()),
            audit: Arc::new(audit::Audit::default()),
            authorizer: RwLock::new(None),
            addr: addr.to_string(),
        });
        let router = axum::Router::new().fallback(http::handle).with_state(app.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(TestApiServer { addr, app, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kube client acting as `admin` (no impersonation).
    pub fn client(&self) -> kube::Client {
        self.client_with(|_| {})
    }

    /// A kube client impersonating `user`.
    pub fn client_as(&self, user: &str) -> kube::Client {
        let user = user.to_string();
        self.client_with(move |c| c.auth_info.impersonate = Some(user))
    }

    /// A kube client whose bearer token (and so user name) is `token`.
    pub fn client_with_token(&self, token: &str) -> kube::Client {
        let token = token.to_string();
        self.client_with(move |c| c.auth_info.token = Some(token.into()))
    }

    fn client_with(&self, f: impl FnOnce(&mut kube::Config)) -> kube::Client {
        let mut config = kube::Config::new(self.url().parse().expect("server URL parses"));
        config.default_namespace = "default".into();
        f(&mut config);
        kube::Client::try_from(config).expect("client builds")
    }

    /// A kubeconfig for kubectl and other clients.
    pub fn kubeconfig(&self, token: Option<&str>) -> String {
        let user = match token {
            Some(t) => format!("    token: {t}\n"),
            None => "    {}\n".to_string(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: testapi\n  cluster:\n    server: {}\ncontexts:\n- name: testapi\n  context:\n    cluster: testapi\n    user: testapi\n    namespace: default\ncurrent-context: testapi\nusers:\n- name: testapi\n  user:\n{user}",
            self.url()
        )
    }

    pub fn write_kubeconfig(&self, path: &Path, token: Option<&str>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig(token))
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.app.audit.records()
    }

    pub fn clear_requests(&self) {
        self.app.audit.clear()
    }

    /// Install an authorization hook (None: allow everything).
    /// Enforce RBAC from the stored Roles, ClusterRoles and bindings
    /// ([`rbac`]); replaces any authorization hook.
    pub fn enforce_rbac(&self) {
        let rbac = rbac::Rbac::new(self.app.store.clone());
        self.set_authorizer(Some(Arc::new(move |a: &Attributes| rbac.allows(a))));
    }

    pub fn set_authorizer(&self, auth: Option<Authorizer>) {
        *self.app.authorizer.write().unwrap_or_else(|e| e.into_inner()) = auth;
    }

    /// Drop the watch event log: older resourceVersions get 410 Gone.
    pub fn compact(&self) {
        self.app.store.compact()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.app.store.resource_version()
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
