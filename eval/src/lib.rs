//! `xct-eval`: how well a model operates, measured. Each scenario is a real
//! XctRun, run end to end (the operator on the in-memory API server, or
//! `xct local`), and judged by deterministic predicates on the final state
//! and the recorded history ([`scenario`]); [`run`] runs one, [`report`]
//! renders the table and the JSON.
//!
//! A separate binary, so the operator never carries the test API server.

pub mod report;
pub mod run;
pub mod scenario;
