//! The lock of every table in shared memory: one word per entry (the
//! detector's client slots, the reputation cache's entries), taken by any
//! worker, held for the few dozen nanoseconds of an update.
//!
//! - **Free** is 0; **held** is the holder's token: its acquisition time
//!   (ms / 16, odd, so never 0).
//! - **Contended**: a worker spins briefly, then yields the CPU for up to
//!   [`YIELD_FOR`]: the holder was most likely preempted (more workers than
//!   cores), and giving it the CPU lets it finish. Past that the caller gets
//!   `None` and fails open (an observation dropped and counted, a
//!   reputation looked up unmarked).
//! - **A dead holder** (a worker killed mid-update) cannot wedge an entry:
//!   a token older than [`STALE_MS`] is taken over.
//!
//! Readers that must never wait (the security events ring) use a sequence
//! number per record instead (`crate::events`): writers there never share
//! a record, so they need no lock.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A lock held longer than this is taken over (its holder died).
pub const STALE_MS: u64 = 100;
/// Busy-wait attempts before yielding the CPU.
const SPINS: u32 = 4000;
/// Attempts before a stale holder may be taken over.
const STALE_AFTER: u32 = 200;
/// How long a worker yields the CPU to the holder before giving up.
pub const YIELD_FOR: Duration = Duration::from_millis(5);

/// A lock word in shared memory (all-zero is free, so a zero-filled
/// mapping is a table of free locks).
#[repr(transparent)]
#[derive(Default)]
pub struct SlotLock(AtomicU32);

/// A held lock; dropping it releases the lock.
pub struct Held<'a>(&'a AtomicU32);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

impl SlotLock {
    /// A free lock.
    pub const fn new() -> SlotLock {
        SlotLock(AtomicU32::new(0))
    }

    /// Takes the lock at `now_ms`, or `None` when it stayed held (see the
    /// module's documentation).
    ///
    /// ```
    /// use warden_core::shm::lock::SlotLock;
    /// let l = SlotLock::new();
    /// let held = l.lock(1_000).unwrap();
    /// assert!(l.try_lock(1_000).is_none());
    /// drop(held);
    /// assert!(l.try_lock(1_000).is_some());
    /// ```
    #[inline]
    pub fn lock(&self, now_ms: u64) -> Option<Held<'_>> {
        let token = ((now_ms >> 4) as u32) | 1;
        // the usual case: a free lock, taken at once
        if self.attempt(token, false) {
            return Some(Held(&self.0));
        }
        self.contended(token)
    }

    /// [`SlotLock::lock`] when the first attempt failed: spin, then yield.
    #[cold]
    #[inline(never)]
    fn contended(&self, token: u32) -> Option<Held<'_>> {
        for i in 0..SPINS {
            if self.attempt(token, i > STALE_AFTER) {
                return Some(Held(&self.0));
            }
            std::hint::spin_loop();
        }
        let start = Instant::now();
        while start.elapsed() < YIELD_FOR {
            std::thread::yield_now();
            if self.attempt(token, true) {
                return Some(Held(&self.0));
            }
        }
        None
    }

    /// Takes the lock if it is free (or held by a dead holder), at once.
    pub fn try_lock(&self, now_ms: u64) -> Option<Held<'_>> {
        let token = ((now_ms >> 4) as u32) | 1;
        self.attempt(token, true).then_some(Held(&self.0))
    }

    /// One attempt: takes a free lock, or (`stale_ok`) one whose token is
    /// older than [`STALE_MS`].
    #[inline]
    fn attempt(&self, token: u32, stale_ok: bool) -> bool {
        match self
            .0
            .compare_exchange_weak(0, token, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => true,
            Err(held) if held != 0 && stale_ok => {
                let age = u64::from(token.wrapping_sub(held)) << 4;
                age > STALE_MS
                    && age < 1 << 35
                    && self
                        .0
                        .compare_exchange(held, token, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_holder_is_taken_over() {
        let l = SlotLock::new();
        std::mem::forget(l.lock(10_000).unwrap()); // a holder that died
        assert!(l.try_lock(10_050).is_none()); // 50 ms: still its
        assert!(l.try_lock(10_000 + STALE_MS + 32).is_some());
    }

    #[test]
    fn contended_gives_up_after_yielding() {
        let l = SlotLock::new();
        let _held = l.lock(5).unwrap();
        let t = Instant::now();
        // same instant: never stale
        assert!(l.lock(5).is_none());
        assert!(t.elapsed() >= YIELD_FOR);
    }

    #[test]
    fn shared_across_threads() {
        use std::sync::Arc;
        let l = Arc::new(SlotLock::new());
        let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (l, n) = (l.clone(), n.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        let _g = l.lock(1).unwrap();
                        // a non-atomic read-modify-write under the lock
                        let v = n.load(Ordering::Relaxed);
                        n.store(v + 1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(n.load(Ordering::Relaxed), 40_000);
    }
}
