//! Resume bookkeeping for pipelined work: which jobs (Evaluate batches, prefix ranges) are
//! waiting, in flight, or done.
//!
//! Invariants: every job is in exactly one of the three states; a job completes at most once
//! (a late duplicate completion is refused, so a result is never applied twice); when a
//! connection is lost every in-flight job returns to the front of the queue in job order, so
//! after a reconnect the run continues exactly with the unfinished jobs. Jobs are idempotent
//! on the wire (an Evaluate batch is re-blinded with fresh blinds, a range is fetched again).

use std::collections::{BTreeSet, VecDeque};
use std::ops::Range;

/// The state of `len` jobs.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pending: VecDeque<usize>,
    in_flight: BTreeSet<usize>,
    done: Vec<bool>,
    done_count: usize,
}

impl Plan {
    /// `len` jobs, all pending, in order.
    pub(crate) fn new(len: usize) -> Self {
        Plan {
            pending: (0..len).collect(),
            in_flight: BTreeSet::new(),
            done: vec![false; len],
            done_count: 0,
        }
    }

    /// The next pending job, now in flight.
    pub(crate) fn take(&mut self) -> Option<usize> {
        let job = self.pending.pop_front()?;
        self.in_flight.insert(job);
        Some(job)
    }

    /// Marks an in-flight job done. False (and no change) if it was not in flight.
    pub(crate) fn complete(&mut self, job: usize) -> bool {
        if !self.in_flight.remove(&job) {
            return false;
        }
        self.done[job] = true;
        self.done_count += 1;
        true
    }

    /// Returns every in-flight job to the front of the queue (connection lost).
    pub(crate) fn requeue_in_flight(&mut self) {
        for job in std::mem::take(&mut self.in_flight).into_iter().rev() {
            self.pending.push_front(job);
        }
    }

    /// Jobs in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether every job is done.
    pub(crate) fn is_finished(&self) -> bool {
        self.done_count == self.done.len()
    }

    /// Jobs done.
    #[cfg(test)]
    pub(crate) fn done(&self) -> usize {
        self.done_count
    }
}

/// The index ranges of `n` items cut into batches of at most `size` (the last may be shorter).
pub(crate) fn batches(n: usize, size: usize) -> Vec<Range<usize>> {
    let size = size.max(1);
    (0..n.div_ceil(size))
        .map(|b| b * size..((b + 1) * size).min(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_everything_once() {
        assert_eq!(batches(0, 4), Vec::<Range<usize>>::new());
        assert_eq!(batches(10, 4), vec![0..4, 4..8, 8..10]);
        assert_eq!(batches(8, 4), vec![0..4, 4..8]);
        assert_eq!(batches(3, 0), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn lost_jobs_are_resumed_in_order_and_never_completed_twice() {
        let mut p = Plan::new(5);
        let a = p.take();
        let b = p.take();
        let c = p.take();
        assert_eq!((a, b, c), (Some(0), Some(1), Some(2)));
        assert!(p.complete(1));
        assert!(!p.complete(1), "a job completes once");
        assert!(!p.complete(4), "a job not in flight cannot complete");
        p.requeue_in_flight();
        assert_eq!(p.in_flight(), 0);
        let order: Vec<usize> = std::iter::from_fn(|| p.take()).collect();
        assert_eq!(order, vec![0, 2, 3, 4]);
        for j in order {
            assert!(p.complete(j));
        }
        assert!(p.is_finished());
        assert_eq!(p.done(), 5);
    }
}
