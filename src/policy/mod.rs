//! The veto layer: XctPolicy rules judge every proposal before anything
//! executes. Pure: no API calls; the operator (and `xct policy test`) hand
//! in the proposal, the run and the live target.
//!
//! Decision: any matching Deny vetoes; else any RequireApproval asks for
//! approval; else a matching Allow is needed; nothing matching is a veto.
//! A CEL error is a veto (fail closed). Invalid policies veto everything for
//! the runs they select. Audit policies are judged the same way and only
//! recorded.

pub mod compile;
pub mod judge;
pub mod offline;
pub mod report;

pub use compile::{CompileError, CompiledPolicy, InvalidPolicy, Loaded, compile, load, unreadable};
pub use judge::{Judgement, PolicyInput, RunInfo, Verdict, judge};
