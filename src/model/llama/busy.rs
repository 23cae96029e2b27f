//! Where the inference thread's time goes: admitting requests (grammar,
//! slot, cached prefix), decode calls, sampling, and advancing grammars.
//! One thread does all of it for every run sharing the model, so on a GPU,
//! where a decode call for many sequences costs little, the work around
//! the calls decides how many runs it can serve; `xct bench` (c) reports
//! each phase per decision.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Cumulative nanoseconds per phase, written by the inference thread and
/// read by anyone holding the decider.
#[derive(Debug, Default)]
pub(super) struct BusyClock {
    admit: AtomicU64,
    decode: AtomicU64,
    sample: AtomicU64,
    advance: AtomicU64,
    steps: AtomicU64,
    stretches: AtomicU64,
    picks: AtomicU64,
    filtered: AtomicU64,
}

/// A phase of the inference thread's work.
#[derive(Debug, Clone, Copy)]
pub(super) enum Phase {
    Admit,
    /// Making a decode call (one per call: it counts the calls).
    Decode,
    /// Waiting for the device to finish the call: decode time too.
    Wait,
    Sample,
    /// Advancing each grammar past the token being decoded, while a
    /// device computes the call (on a CPU, after it).
    Advance,
}

impl BusyClock {
    /// Run `f`, adding its duration to `phase`.
    pub(super) fn time<R>(&self, phase: Phase, f: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let r = f();
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let counter = match phase {
            Phase::Admit => &self.admit,
            Phase::Decode => {
                self.steps.fetch_add(1, Ordering::Relaxed);
                &self.decode
            }
            Phase::Wait => &self.decode,
            Phase::Sample => &self.sample,
            Phase::Advance => &self.advance,
        };
        counter.fetch_add(ns, Ordering::Relaxed);
        r
    }

    /// Count the stretches of consecutive slots in one decode call.
    pub(super) fn stretches(&self, n: u64) {
        self.stretches.fetch_add(n, Ordering::Relaxed);
    }

    /// Count one pick, for which the grammar filtered `candidates`.
    pub(super) fn filtered(&self, candidates: u64) {
        self.picks.fetch_add(1, Ordering::Relaxed);
        self.filtered.fetch_add(candidates, Ordering::Relaxed);
    }

    pub(super) fn read(&self) -> Busy {
        let ms = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 / 1e6;
        Busy {
            admit_ms: ms(&self.admit),
            decode_ms: ms(&self.decode),
            sample_ms: ms(&self.sample),
            advance_ms: ms(&self.advance),
            steps: self.steps.load(Ordering::Relaxed),
            stretches: self.stretches.load(Ordering::Relaxed),
            picks: self.picks.load(Ordering::Relaxed),
            filtered: self.filtered.load(Ordering::Relaxed),
        }
    }
}

/// The inference thread's busy time since the model was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Busy {
    /// Admitting requests: the grammar, the slot, the cached prefix.
    pub admit_ms: f64,
    /// The decode calls (on a GPU: until their logits are back).
    pub decode_ms: f64,
    /// Sampling and the grammar check, token by token.
    pub sample_ms: f64,
    /// Advancing each grammar past the token being decoded. It runs after
    /// the decode call returns and before its logits are awaited: on a GPU
    /// (an asynchronous call) it overlaps the device's work and costs
    /// nothing while shorter; on a CPU the call has already done its work.
    pub advance_ms: f64,
    /// Decode calls made.
    pub steps: u64,
    /// Stretches of consecutive slots (sequence ids) in those calls,
    /// summed: with one KV stream per slot, llama.cpp computes a call as at
    /// least one micro-batch per stretch (and more for the tokens of a
    /// prompt chunk beyond the first).
    pub stretches: u64,
    /// Tokens picked.
    pub picks: u64,
    /// Candidates the grammar filtered for those picks: the whole
    /// vocabulary per pick with full filtering; with the lazy check one
    /// while the pick is allowed, else also the shortlists it went through.
    pub filtered: u64,
}

impl Busy {
    /// The time spent between `earlier` and this reading.
    pub fn since(&self, earlier: &Busy) -> Busy {
        Busy {
            admit_ms: self.admit_ms - earlier.admit_ms,
            decode_ms: self.decode_ms - earlier.decode_ms,
            sample_ms: self.sample_ms - earlier.sample_ms,
            advance_ms: self.advance_ms - earlier.advance_ms,
            steps: self.steps - earlier.steps,
            stretches: self.stretches - earlier.stretches,
            picks: self.picks - earlier.picks,
            filtered: self.filtered - earlier.filtered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_separately_and_steps_count_decode_calls() {
        let clock = BusyClock::default();
        let start = clock.read();
        let sleep = || std::thread::sleep(std::time::Duration::from_millis(2));
        clock.time(Phase::Decode, sleep);
        clock.time(Phase::Wait, sleep);
        clock.time(Phase::Decode, sleep);
        clock.time(Phase::Sample, sleep);
        clock.time(Phase::Advance, sleep);
        clock.time(Phase::Advance, sleep);
        clock.stretches(3);
        clock.filtered(1);
        clock.filtered(64);
        let d = clock.read().since(&start);
        assert_eq!(d.steps, 2);
        assert_eq!(d.stretches, 3);
        assert_eq!((d.picks, d.filtered), (2, 65));
        assert!(d.decode_ms >= 6.0, "waiting is decode time: {d:?}");
        assert!(d.sample_ms >= 2.0, "{d:?}");
        assert!(d.advance_ms >= 4.0 && d.advance_ms > d.sample_ms, "a counter of its own: {d:?}");
        assert_eq!(d.admit_ms, 0.0);
    }
}
