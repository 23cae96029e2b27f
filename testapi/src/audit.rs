//! The request log and the authorization hook.
//!
//! Every request is logged with who made it (the authenticated user, or the
//! impersonated one when `Impersonate-User` is set, "User impersonation" in
//! "Authenticating"), what it touched and whether it was a dry run, so tests
//! can assert who acted and what reached the API.

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One request as the server saw it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: String,
    /// get, list, watch, create, update, patch, delete, deletecollection,
    /// or "discovery" / "other".
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The user the request acted as.
    pub user: String,
    /// The authenticated user (differs from `user` when impersonating).
    pub authenticated_user: String,
    pub impersonated: bool,
    pub groups: Vec<String>,
    pub dry_run: bool,
    pub status: u16,
    /// The request's Content-Type, if any.
    pub content_type: String,
}

impl RequestRecord {
    /// A write that reached storage (not a dry run, succeeded).
    pub fn is_persisted_mutation(&self) -> bool {
        self.is_mutation() && !self.dry_run && self.status < 300
    }

    pub fn is_mutation(&self) -> bool {
        matches!(self.verb.as_str(), "create" | "update" | "patch" | "delete" | "deletecollection")
    }
}

/// What an authorization decision is asked about (as a SubjectAccessReview).
#[derive(Debug, Clone, PartialEq)]
pub struct Attributes {
    pub user: String,
    pub groups: Vec<String>,
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

/// Allow or deny a request.
pub type Authorizer = Arc<dyn Fn(&Attributes) -> bool + Send + Sync>;

/// The log, shared between the server and tests.
#[derive(Default)]
pub struct Audit {
    records: Mutex<Vec<RequestRecord>>,
}

impl Audit {
    pub fn push(&self, mut r: RequestRecord) {
        let mut rs = self.records.lock().unwrap_or_else(|e| e.into_inner());
        r.seq = rs.len() as u64 + 1;
        rs.push(r);
    }

    pub fn records(&self) -> Vec<RequestRecord> {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn clear(&self) {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
