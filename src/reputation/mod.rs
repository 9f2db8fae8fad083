//! Reputation from iprepd: iprepd-nginx's options ([`options`]), its client
//! and protocol ([`iprepd`]), its audit line ([`audit`]), and the cache
//! below.
//!
//! iprepd reputations are cached for every worker, with at most one lookup
//! in flight per address.
//!
//! A fixed table in memory shared by every worker (mapped in the master,
//! like [`crate::detect::counters`]), so one worker's lookup serves all of them —
//! iprepd-nginx kept one cache per worker and asked iprepd once per
//! worker. Each entry is 32 bytes: a lock word, the address, the
//! reputation (0-100) and its expiry, or a "lookup in flight" mark with
//! its start time. [`Cache::get`] answers in one of three ways:
//!
//! - `Hit(r)`: a fresh reputation;
//! - `Fetch`: nobody is looking this address up; the caller must, and the
//!   entry now says so (until [`Cache::put`], [`Cache::abandon`], or the
//!   mark goes stale after `stale_ms`);
//! - `Wait`: another request is looking it up: poll briefly or fail open.
//!
//! Memory is bounded: a full set evicts the entry that expires first.

pub mod audit;
pub mod iprepd;
pub mod options;

use std::cell::UnsafeCell;

use crate::net::addr::Addr;
use crate::shm::lock::SlotLock;

/// A threat score (0-100, from the lists, blocks and detector) raised by
/// iprepd's `reputation` (0-100, 100 is best): `100 - reputation` when that
/// is higher. A score of 100 (a block) stays. Returns the score and
/// whether the reputation raised it.
///
/// ```
/// use warden_core::reputation::threat_score;
/// assert_eq!(threat_score(50, Some(20.0)), (80, true));
/// assert_eq!(threat_score(50, Some(90.0)), (50, false));
/// assert_eq!(threat_score(50, None), (50, false));
/// ```
pub fn threat_score(score: u8, reputation: Option<f64>) -> (u8, bool) {
    match reputation {
        Some(r) if score < 100 && 100.0 - r > f64::from(score) => {
            ((100.0 - r).clamp(0.0, 100.0) as u8, true)
        }
        _ => (score, false),
    }
}

/// Ways per set.
pub const WAYS: usize = 4;

const EMPTY: u8 = 0;
const VALUE: u8 = 1;
const PENDING: u8 = 2;

#[repr(C)]
#[derive(Clone, Copy)]
struct Data {
    key: [u32; 4],
    /// Expiry of a value, or start of a pending lookup (ms), in two
    /// halves so that an entry is 32 bytes.
    time: [u32; 2],
    v6: u8,
    state: u8,
    reputation: u8,
    _pad: u8,
}

#[repr(C, align(32))]
struct Entry {
    lock: SlotLock,
    data: UnsafeCell<Data>,
}

impl Data {
    fn time_ms(&self) -> u64 {
        u64::from(self.time[0]) << 32 | u64::from(self.time[1])
    }

    fn set_time(&mut self, ms: u64) {
        self.time = [(ms >> 32) as u32, ms as u32];
    }
}

/// Bytes per cached address.
pub const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();

/// What [`Cache::get`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A fresh reputation.
    Hit(u8),
    /// Look it up (the entry is marked as in flight).
    Fetch,
    /// Another request is looking it up.
    Wait,
}

/// The shared cache.
pub struct Cache {
    entries: &'static [Entry],
    kept: Option<usize>,
    stale_ms: u64,
}

// SAFETY: entry data is only touched by the holder of its lock.
unsafe impl Sync for Cache {}

fn key_of(a: Addr) -> ([u32; 4], u8) {
    match a {
        Addr::V4(v) => ([0, 0, 0, v], 0),
        Addr::V6(v) => (
            [
                (v >> 96) as u32,
                (v >> 64) as u32,
                (v >> 32) as u32,
                v as u32,
            ],
            1,
        ),
    }
}

fn hash(k: &[u32; 4], v6: u8) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(v6);
    for w in k {
        h = (h ^ u64::from(*w)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 29;
    }
    h
}

impl Cache {
    /// A cache of at least `capacity` addresses (rounded up to a power of
    /// two). A lookup mark older than `stale_ms` is taken over. A non-empty
    /// `name` keeps the cache across `nginx -s reload`.
    pub fn new(name: &str, capacity: usize, stale_ms: u64) -> Result<Cache, String> {
        let capacity = capacity.max(WAYS).next_power_of_two();
        let size = capacity
            .checked_mul(ENTRY_BYTES)
            .ok_or_else(|| format!("{capacity} cache entries do not fit in memory"))?;
        let what = format!("{capacity} reputation cache entries");
        let p = if name.is_empty() {
            crate::shm::map_shared(size, &what)?
        } else {
            crate::shm::keep_shared(&format!("reputation:{name}"), size, 0, &what)?
        };
        // SAFETY: a zero-filled shared mapping of `capacity` entries (all
        // zero: unlocked and empty), never unmapped while this cache lives.
        let entries = unsafe { std::slice::from_raw_parts(p as *const Entry, capacity) };
        Ok(Cache {
            entries,
            kept: (!name.is_empty()).then_some(p as usize),
            stale_ms,
        })
    }

    /// Number of entries.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Runs `f` on entry `i` under its lock, or returns `None` when the
    /// lock stayed held (the caller fails open).
    fn locked<R>(&self, i: usize, now_ms: u64, f: impl FnOnce(&mut Data) -> R) -> Option<R> {
        let e = &self.entries[i];
        let _held = e.lock.lock(now_ms)?;
        // SAFETY: the lock is held.
        Some(f(unsafe { &mut *e.data.get() }))
    }

    fn set_of(&self, k: &[u32; 4], v6: u8) -> usize {
        (hash(k, v6) as usize) & (self.entries.len() - 1) & !(WAYS - 1)
    }

    /// The cached reputation of `a` at `now_ms`, or who should look it up.
    pub fn get(&self, a: Addr, now_ms: u64) -> Lookup {
        let (k, v6) = key_of(a);
        let set = self.set_of(&k, v6);
        // the address's entry, if any
        for i in set..set + WAYS {
            let r = self.locked(i, now_ms, |d| {
                if d.state == EMPTY || d.key != k || d.v6 != v6 {
                    return None;
                }
                Some(match d.state {
                    VALUE if d.time_ms() > now_ms => Lookup::Hit(d.reputation),
                    PENDING if now_ms.saturating_sub(d.time_ms()) < self.stale_ms => Lookup::Wait,
                    _ => {
                        // expired, or a stale mark: this caller looks it up
                        d.state = PENDING;
                        d.set_time(now_ms);
                        Lookup::Fetch
                    }
                })
            });
            match r {
                None => return Lookup::Fetch, // the entry stayed locked: fail open
                Some(Some(r)) => return r,
                Some(None) => {}
            }
        }
        // not cached: mark an empty, expired or soonest-expiring entry
        let mut victim = set;
        let mut best = u64::MAX;
        for i in set..set + WAYS {
            let score = self
                .locked(i, now_ms, |d| match d.state {
                    EMPTY => 0,
                    VALUE if d.time_ms() <= now_ms => 0,
                    VALUE => d.time_ms(),
                    _ if now_ms.saturating_sub(d.time_ms()) >= self.stale_ms => 0,
                    _ => u64::MAX, // someone else's lookup in flight
                })
                .unwrap_or(u64::MAX);
            if score < best {
                best = score;
                victim = i;
            }
        }
        if best == u64::MAX {
            return Lookup::Fetch; // no room to mark: look up unmarked
        }
        self.locked(victim, now_ms, |d| {
            d.key = k;
            d.v6 = v6;
            d.state = PENDING;
            d.set_time(now_ms);
            d.reputation = 0;
        });
        Lookup::Fetch
    }

    /// Stores the reputation of `a` (clamped to 100) for `ttl_ms`.
    pub fn put(&self, a: Addr, reputation: u8, ttl_ms: u64, now_ms: u64) {
        let (k, v6) = key_of(a);
        let set = self.set_of(&k, v6);
        let mut slot = None;
        for i in set..set + WAYS {
            let mine = self
                .locked(i, now_ms, |d| d.state != EMPTY && d.key == k && d.v6 == v6)
                .unwrap_or(false);
            if mine {
                slot = Some(i);
                break;
            }
        }
        let i = slot.unwrap_or_else(|| {
            // the mark was evicted meanwhile: take the soonest-expiring way
            (set..set + WAYS)
                .min_by_key(|&i| {
                    self.locked(
                        i,
                        now_ms,
                        |d| if d.state == VALUE { d.time_ms() } else { 0 },
                    )
                    .unwrap_or(u64::MAX)
                })
                .unwrap_or(set)
        });
        self.locked(i, now_ms, |d| {
            d.key = k;
            d.v6 = v6;
            d.state = VALUE;
            d.reputation = reputation.min(100);
            d.set_time(now_ms.saturating_add(ttl_ms.max(1)));
        });
    }

    /// Clears an in-flight mark without a value (the lookup failed and is
    /// not cached): the next request looks the address up again.
    pub fn abandon(&self, a: Addr, now_ms: u64) {
        let (k, v6) = key_of(a);
        let set = self.set_of(&k, v6);
        for i in set..set + WAYS {
            self.locked(i, now_ms, |d| {
                if d.state == PENDING && d.key == k && d.v6 == v6 {
                    d.state = EMPTY;
                }
            });
        }
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        if let Some(p) = self.kept {
            crate::shm::release_shared(p as *mut libc::c_void);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Addr {
        Addr::parse(s).unwrap()
    }

    #[test]
    fn one_lookup_in_flight_then_hits_until_expiry() {
        let c = Cache::new("", 64, 100).unwrap();
        let ip = a("192.0.2.1");
        assert_eq!(c.get(ip, 1_000), Lookup::Fetch);
        assert_eq!(c.get(ip, 1_010), Lookup::Wait);
        c.put(ip, 42, 60_000, 1_020);
        assert_eq!(c.get(ip, 1_030), Lookup::Hit(42));
        assert_eq!(c.get(a("::ffff:192.0.2.1"), 1_030), Lookup::Hit(42));
        assert_eq!(c.get(a("2001:db8::1"), 1_030), Lookup::Fetch);
        assert_eq!(c.get(ip, 61_020), Lookup::Fetch); // expired
        c.put(ip, 250, 1_000, 61_030);
        assert_eq!(c.get(ip, 61_040), Lookup::Hit(100));
    }

    #[test]
    fn stale_marks_and_abandoned_lookups() {
        let c = Cache::new("", 64, 100).unwrap();
        let ip = a("192.0.2.2");
        assert_eq!(c.get(ip, 0), Lookup::Fetch);
        assert_eq!(c.get(ip, 50), Lookup::Wait);
        assert_eq!(c.get(ip, 150), Lookup::Fetch); // the first one died
        c.abandon(ip, 155);
        assert_eq!(c.get(ip, 160), Lookup::Fetch);
    }

    #[test]
    fn bounded_and_shared_across_processes() {
        let c = Cache::new("", 16, 100).unwrap();
        for i in 0..1000u32 {
            let ip = Addr::V4(i);
            if c.get(ip, 0) == Lookup::Fetch {
                c.put(ip, (i % 100) as u8, 60_000, 0);
            }
        }
        assert_eq!(c.capacity(), 16);
        let ip = a("198.51.100.9");
        // SAFETY: the child only writes to the shared cache and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            c.put(ip, 7, 60_000, 0);
            unsafe { libc::_exit(0) };
        }
        let mut st = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert_eq!(c.get(ip, 1), Lookup::Hit(7));
        assert_eq!(ENTRY_BYTES, 32);
    }
}
