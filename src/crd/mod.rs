//! Kubernetes resource types (group `xct.dev`, version `v1alpha1`). The
//! Rust types are the source of truth for `crds/*.yaml`.

pub mod run;

pub use run::{ModelParams, RunLimits, RunPhase, XctRun, XctRunSpec, XctRunStatus};
