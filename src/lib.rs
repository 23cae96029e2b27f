//! xct-operator: a Kubernetes operator that lets a language model operate
//! infrastructure through XCT (Execution Control Transfer). The model
//! proposes one action per step; the system validates it and may refuse;
//! tools execute deterministically; every step is recorded.
//!
//! Layout: [`protocol`] (wire types), [`engine`] (the step machine),
//! [`model`] (deciders, llama.cpp), [`tools`] (tool trait and catalogue),
//! [`local`] (the local host), [`history`] (reading recorded histories), [`crd`] (Kubernetes resource types),
//! [`cli`] (the `xct` command), [`approvals`] (approving from kubectl).

pub mod approvals;
pub mod bench;
pub mod cli;
pub mod crd;
pub mod engine;
pub mod history;
pub mod k8s;
pub mod local;
pub mod model;
pub mod operator;
pub mod policy;
pub mod protocol;
pub mod schema;
pub mod telemetry;
pub mod text;
pub mod tools;
