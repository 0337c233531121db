//! One event, one delivery per run — without a set of every id, so memory stays flat in the
//! number of events.
//!
//! A repeat of an id is found in one of two places, depending on how far its first copy got:
//! - not yet recorded (queued in the channel, being delivered, or its outcome not yet committed):
//!   the first copy is in [`InFlight`]. The producer adds a batch's ids before it hands the batch
//!   over; the worker removes an id only after its outcome is committed. So it holds at most the
//!   channel's capacity, two batches and two events per worker, however long the run.
//! - recorded: the ledger has it, and says whether this run wrote it
//!   ([`crate::ledger::Recorded::this_run`]) — a repeat, not something "delivered earlier".
//!
//! The producer checks [`InFlight`] *before* it asks the ledger: an id that is not in flight then
//! was either never queued or already committed (removal follows the commit), and the ledger
//! lookup that comes after sees every commit made before it. Checking the other way round would let
//! an outcome committed between the two checks slip through both.

use bytestring::ByteString;
use std::collections::HashSet;
use std::sync::Mutex;

/// Ids queued in this run whose outcome is not yet in the ledger. foldhash, not SipHash: the ids
/// come from the user's own account, and hashing them was a visible share of a run's CPU.
#[derive(Debug, Default)]
pub struct InFlight(Mutex<Ids>);

type Ids = HashSet<ByteString, foldhash::fast::RandomState>;

impl InFlight {
    fn with<T>(&self, f: impl FnOnce(&mut Ids) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-insert; the set is still usable.
        let mut set = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut set)
    }

    /// Which of `ids` are in flight now.
    pub fn snapshot<'a>(&self, ids: impl Iterator<Item = &'a str>) -> Vec<bool> {
        self.with(|set| ids.map(|id| set.contains(id)).collect())
    }

    /// Mark a batch's ids queued, under one lock, before any of its events is handed to a worker.
    /// The producer queues an id at most once a run: a repeat is caught before, by
    /// [`InFlight::snapshot`], the ledger, or within a batch by the producer's own set of the ids
    /// that batch queued.
    pub fn insert_all<'a>(&self, ids: impl Iterator<Item = &'a ByteString>) {
        self.with(|set| set.extend(ids.cloned()));
    }

    /// The outcome of `id` is committed (or it will never be sent in this run).
    pub fn remove(&self, id: &str) {
        self.with(|set| set.remove(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_in_flight_from_queueing_until_removed() {
        let f = InFlight::default();
        f.insert_all([ByteString::from("a")].iter());
        assert_eq!(f.snapshot(["a", "b"].into_iter()), [true, false]);
        f.remove("a");
        assert_eq!(f.snapshot(["a"].into_iter()), [false]);
    }
}
