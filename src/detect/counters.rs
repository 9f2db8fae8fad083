//! Per-client counters shared by every nginx worker: the detector's memory.
//!
//! A fixed table in a `MAP_SHARED | MAP_ANONYMOUS` mapping made in the
//! master (like [`crate::shm`]), so a client is counted once whichever
//! worker and connection its requests land on, with no lag: the request
//! that brings a count to its threshold is the one that trips the rule.
//!
//! The table is a 4-way set-associative cache of [`Slot`]s with two-choice
//! hashing (a client may live in either of two sets), one slot per client
//! (an IPv4 address, or an IPv6 address cut to the configured prefix). The
//! sliding window is cut into [`BUCKETS`] buckets. A slot is five cache
//! lines ([`SLOT_BYTES`] = 320 bytes):
//! - line 0: lock, tag, newest bucket, the last user agent's verdict, and
//!   per-bucket counts of requests (u16), counted 404s, auth failures,
//!   probe-path hits and security signals (u8 each);
//! - lines 1-3: [`MAX_PATHS`] recent paths by hash, with their hit counts;
//! - line 4: the full client key, which rules have fired, and per-bucket
//!   counts of payload requests with their classes, and the last
//!   [`PAYLOADS_SEEN`] payload requests by hash (only distinct ones count).
//!
//! A request whose path is not tracked (a static asset) touches line 0
//! only; a tracked one touches lines 0-3, which the hardware prefetches
//! together. The client's way is found by its tag without taking any
//! lock; the lock is then held for the few dozen nanoseconds of the update.
//! The access phase finds it ahead ([`Table::place`]) and asks the CPU for
//! lines 0 and 1, so that the log phase, a content phase later, finds the
//! slot in cache rather than in memory; the log phase checks the tag again
//! under the lock, as for any way found without it.
//!
//! Counts saturate per bucket (u8 at 255, u16 at 65535), so every
//! threshold up to those values is met exactly: the bucket that saturates
//! already holds more than the threshold. The config layer enforces it.
//!
//! Each slot's lock is the shared tables' one lock ([`SlotLock`]): a dead
//! holder cannot wedge a slot, and a worker that finds a slot held by a
//! preempted worker yields the CPU to it; if the lock still cannot be had
//! within 5 ms the observation is dropped and counted (fail open).
//!
//! Memory is bounded: `capacity` slots. A new client takes a free or
//! expired way of its two sets, or evicts the least recently seen client
//! of the eight; evicting a client seen within the window is counted.
//! Two choices keep evictions under 0.1% of clients at half load and under
//! 1% at 70% (a single 4-way set overflowed for ~20% of clients at 75%
//! load in the wrk benchmark): size `max_clients` at twice the clients
//! seen in one window.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::net::addr::{Addr, Net};
use crate::net::prefix::Prefix;
use crate::shm::lock::{Held, SlotLock};

/// Buckets per window: the window slides in steps of `window / BUCKETS`.
pub const BUCKETS: usize = 8;
/// Distinct paths remembered per client and window.
pub const MAX_PATHS: usize = 24;
/// Payload requests remembered per client (by hash of the whole target):
/// one that repeats one of these is not counted again.
pub const PAYLOADS_SEEN: usize = 4;
/// Ways per set: the slots a client may occupy.
pub const WAYS: usize = 4;
/// Largest threshold for the u8 counters (404s, auth failures, probes,
/// signals).
pub const MAX_SMALL_THRESHOLD: u32 = 255;
/// Largest threshold for requests.
pub const MAX_RATE_THRESHOLD: u32 = 65_535;
/// Largest threshold for hits on one path.
pub const MAX_HITS_THRESHOLD: u32 = 32_767;

/// The rules whose counts live here, in the order they are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Rule {
    /// A known scanner's user agent.
    ScannerAgent = 0,
    /// Requests for well-known probe paths that failed.
    ProbePath,
    /// 401/403 responses.
    AuthFailure,
    /// Counted 404 responses.
    NotFound,
    /// Distinct failed paths.
    UniquePaths,
    /// Hits on one path.
    RepeatedHits,
    /// Requests the client asked for (documents, API calls).
    Rate,
    /// Security signals of any kind (`auto_block_threshold`).
    Events,
    /// Distinct requests carrying attack payloads (last: added after the
    /// others, whose order messages and bits keep).
    Payload,
}

impl Rule {
    /// Number of rules.
    pub const COUNT: usize = 9;
    /// Every rule, in checking order.
    pub const ALL: [Rule; Rule::COUNT] = [
        Rule::ScannerAgent,
        Rule::ProbePath,
        Rule::AuthFailure,
        Rule::NotFound,
        Rule::UniquePaths,
        Rule::RepeatedHits,
        Rule::Rate,
        Rule::Events,
        Rule::Payload,
    ];

    /// The rule's name in options and events.
    pub fn name(self) -> &'static str {
        match self {
            Rule::ScannerAgent => "scanner_agent",
            Rule::ProbePath => "probe_path",
            Rule::Payload => "payload",
            Rule::AuthFailure => "auth_failure",
            Rule::NotFound => "not_found",
            Rule::UniquePaths => "unique_paths",
            Rule::RepeatedHits => "repeated_hits",
            Rule::Rate => "rate",
            Rule::Events => "events",
        }
    }

    /// The rule named `s`.
    pub fn from_name(s: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// What a request adds to its client's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// The response was a 404 that counts (not a harmless one).
    pub not_found: bool,
    /// The response was a 401 or 403 that counts.
    pub auth_failure: bool,
    /// The request was for a probe path and failed.
    pub probe: bool,
    /// Hash of the request's path (0: do not track the path).
    pub path_hash: u32,
    /// The tracked path failed (status >= 400): it counts as a distinct
    /// path for the scanning rule.
    pub path_failed: bool,
    /// Fingerprint of the user agent (0: no user agent).
    pub ua_fp: u32,
    /// Do not count this request for the `rate` rule.
    pub uncounted: bool,
    /// The classes of the attack payloads it carries (bits of
    /// [`crate::detect::payload::Class`]; 0: none).
    pub payload: u8,
    /// Hash of the whole request target, when it carries a payload.
    pub payload_hash: u32,
}

/// A client's counts over the window, after an observation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Per rule, in [`Rule`] order.
    pub by_rule: [u32; Rule::COUNT],
}

impl Counts {
    /// The count of one rule.
    pub fn get(&self, r: Rule) -> u32 {
        self.by_rule[r as usize]
    }
}

/// A rule that tripped on this observation (each rule trips once per
/// client and window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trip {
    /// The rule.
    pub rule: Rule,
    /// Its count, which reached the threshold.
    pub count: u32,
    /// For `payload`: the classes of the payloads counted in the window.
    pub classes: u8,
}

/// The result of one observation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Hits on this request's path in the window (0: not tracked).
    pub path_hits: u32,
    /// The rule that tripped, if any.
    pub trip: Option<Trip>,
    /// A client seen within the window was evicted to make room.
    pub evicted: bool,
}

/// A client, as counted: the address cut to its grouping prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// Address bits (IPv4 in the low 32 bits).
    pub bits: u128,
}

impl Key {
    /// The key of `a`, IPv6 addresses cut to `/v6_prefix`.
    pub fn of(a: Addr, v6_prefix: u8) -> Key {
        match a {
            Addr::V4(v) => Key {
                v6: false,
                bits: u128::from(v),
            },
            Addr::V6(v) => {
                let p = u32::from(v6_prefix.min(128));
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                Key {
                    v6: true,
                    bits: v & mask,
                }
            }
        }
    }

    /// The first address of the key.
    pub fn addr(&self) -> Addr {
        if self.v6 {
            Addr::V6(self.bits)
        } else {
            Addr::V4(self.bits as u32)
        }
    }

    /// The key as a network: a host, or an IPv6 prefix.
    pub fn net(&self, v6_prefix: u8) -> Net {
        if self.v6 {
            Net::V6(Prefix {
                addr: self.bits,
                len: v6_prefix.min(128),
            })
        } else {
            self.addr().host()
        }
    }
}

#[derive(Clone, Copy, Default)]
#[repr(C)]
struct PathEntry {
    /// Path hash, non-zero; 0 marks a free entry.
    hash: u32,
    /// Hits since `first`; the top bit: the latest hit failed.
    hits: u16,
    /// Bucket (mod 256) of the first hit counted in `hits`.
    first: u8,
    /// Bucket (mod 256) of the latest hit.
    last: u8,
}

const FAILED: u16 = 0x8000;

#[repr(C)]
struct Data {
    // line 0, after the lock, tag and bucket words
    ua: u32,
    requests: [u16; BUCKETS],
    not_found: [u8; BUCKETS],
    auth: [u8; BUCKETS],
    probes: [u8; BUCKETS],
    signals: [u8; BUCKETS],
    // lines 1-3
    paths: [PathEntry; MAX_PATHS],
    // line 4 (u32 words keep the struct 4-aligned, so line 0 is full)
    key: [u32; 4],
    fired_at: u32,
    /// Hashes of the latest payload requests (0: none).
    seen: [u32; PAYLOADS_SEEN],
    payloads: [u8; BUCKETS],
    /// Payload classes seen, per bucket.
    classes: [u8; BUCKETS],
    fired: u16,
    v6: bool,
    /// Where the next payload hash goes in `seen`.
    next_seen: u8,
}

/// One client's slot.
#[repr(C, align(64))]
pub struct Slot {
    /// The slot's lock ([`SlotLock`]).
    lock: SlotLock,
    /// The client's tag (from its keyed hash, never 0); 0: free. Written
    /// under the lock, read without it to find a client's way.
    tag: AtomicU32,
    /// The newest bucket written (wrapping). Written under the lock.
    bucket: AtomicU32,
    data: UnsafeCell<Data>,
}

/// Bytes per tracked client.
pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

/// The shared table.
pub struct Table {
    /// The mapping's address when it is kept across reloads.
    kept: Option<usize>,
    /// A copy of every slot's tag, packed: the four ways of a set share
    /// one 16-byte group, so finding a client's way reads one cache line.
    hints: &'static [AtomicU32],
    slots: &'static [Slot],
    bucket_ms: u64,
    hasher: ahash::RandomState,
    evictions: AtomicU64,
    contended: AtomicU64,
}

// SAFETY: slot data is only touched by the holder of that slot's lock.
unsafe impl Sync for Table {}

/// Where a client is counted, found by [`Table::place`]: its keyed hash
/// (never 0) and its way then (1-based; 0: it had none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Place {
    /// [`Table::hash`] of the client's key; 0: not placed.
    pub hash: u64,
    /// The slot holding the client then, plus one; 0: none.
    pub way: u32,
}

impl From<Place> for (u64, u32) {
    fn from(p: Place) -> (u64, u32) {
        (p.hash, p.way)
    }
}

impl From<(u64, u32)> for Place {
    fn from((hash, way): (u64, u32)) -> Place {
        Place { hash, way }
    }
}

/// Thresholds per rule, in [`Rule`] order; 0 turns a rule off.
pub type Thresholds = [u32; Rule::COUNT];

impl Table {
    /// Maps a table of at least `capacity` slots (rounded up to a power of
    /// two, at least [`WAYS`]) for a window of `window_ms`.
    pub fn new(capacity: usize, window_ms: u64) -> Result<Table, String> {
        Table::named("", capacity, window_ms)
    }

    /// Like [`Table::new`]; a non-empty `name` keeps the table (and its
    /// counts) across `nginx -s reload` for the same name, capacity and
    /// window.
    pub fn named(name: &str, capacity: usize, window_ms: u64) -> Result<Table, String> {
        let capacity = capacity.max(WAYS).next_power_of_two();
        let hint_bytes = (capacity * 4).next_multiple_of(64);
        let size = capacity
            .checked_mul(SLOT_BYTES)
            .and_then(|n| n.checked_add(hint_bytes))
            .ok_or_else(|| format!("{capacity} detector slots do not fit in memory"))?;
        let what = format!("{capacity} detector slots");
        let p = if name.is_empty() {
            crate::shm::map_shared(size, &what)?
        } else {
            crate::shm::keep_shared(&format!("counters:{name}"), size, window_ms, &what)?
        };
        let kept = (!name.is_empty()).then_some(p as usize);
        // SAFETY: the zero-filled mapping holds `capacity` tag hints, then
        // (64-byte aligned) `capacity` slots; all-zero is a valid (free,
        // unlocked) state for both; it is never unmapped.
        let (hints, slots) = unsafe {
            (
                std::slice::from_raw_parts(p as *const AtomicU32, capacity),
                std::slice::from_raw_parts(
                    (p as *const u8).add(hint_bytes) as *const Slot,
                    capacity,
                ),
            )
        };
        Ok(Table {
            kept,
            hints,
            slots,
            bucket_ms: (window_ms / BUCKETS as u64).max(1),
            // Keyed at random in the master, inherited by every worker:
            // nobody outside can aim two addresses at one slot.
            hasher: seed().clone(),
            evictions: AtomicU64::new(0),
            contended: AtomicU64::new(0),
        })
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Bytes mapped.
    pub fn bytes(&self) -> usize {
        self.slots.len() * (SLOT_BYTES + 4)
    }

    /// Live clients evicted to make room, by this process.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Observations dropped because a slot stayed locked, by this process.
    pub fn contended(&self) -> u64 {
        self.contended.load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn lock(&self, idx: usize, now_ms: u64) -> Option<Guard<'static>> {
        let slot = &self.slots[idx];
        match slot.lock.lock(now_ms) {
            Some(held) => Some(Guard {
                slot,
                hint: &self.hints[idx],
                _held: held,
            }),
            None => {
                self.contended.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// The two sets a client may live in (two-choice hashing keeps the
    /// table usable at high load: a client goes to the less crowded of
    /// two sets) and its tag.
    #[inline]
    fn locate(&self, h: u64) -> ([usize; 2], u32) {
        // The second set from all of the keyed hash's bits, mixed again
        // (a bijection: clients in one first set spread over the second
        // by their other bits), so one hash serves both choices.
        let h2 = (h ^ (h >> 29))
            .wrapping_mul(0xbf58_476d_1ce4_e5b9)
            .rotate_left(31);
        let mask = (self.slots.len() - 1) & !(WAYS - 1);
        let tag = ((h >> 32) as u32) | 1;
        ([(h as usize) & mask, (h2 as usize) & mask], tag)
    }

    /// The way holding `tag` in either of its sets, found by the packed
    /// hints (one cache line per set), without a lock.
    #[inline]
    fn way_of(&self, sets: [usize; 2], tag: u32) -> Option<usize> {
        let find = |set: usize| {
            let hints = &self.hints[set..set + WAYS];
            (0..WAYS)
                .find(|&w| hints[w].load(Ordering::Relaxed) == tag)
                .map(|w| set + w)
        };
        find(sets[0]).or_else(|| (sets[1] != sets[0]).then(|| find(sets[1])).flatten())
    }

    /// The keyed hash of `key` that places it in the table (its two sets
    /// and its tag); never 0.
    #[inline]
    pub fn hash(&self, key: &Key) -> u64 {
        self.hasher.hash_one(key) | 1 << 63
    }

    /// Where client `key` is counted now: its hash and, when it has one,
    /// its way (found without a lock).
    #[inline]
    fn find(&self, key: &Key) -> Place {
        let hash = self.hash(key);
        let (sets, tag) = self.locate(hash);
        let way = self.way_of(sets, tag).map_or(0, |i| i as u32 + 1);
        Place { hash, way }
    }

    /// Where client `key` is counted, found ahead of its observation, with
    /// its slot (counts and first paths, lines 0 and 1) asked of the CPU:
    /// the access phase does this, so that the log phase finds the slot in
    /// cache rather than in memory (in a table larger than the caches, the
    /// misses were most of the detector's time). A hint: nothing is
    /// written, nothing waits for the slot, and the log phase checks the
    /// way again under its lock ([`Table::observe_at`]).
    #[inline]
    pub fn place(&self, key: &Key) -> Place {
        let at = self.find(key);
        #[cfg(target_arch = "x86_64")]
        if let Some(i) = at.way.checked_sub(1) {
            let p = (&self.slots[i as usize] as *const Slot).cast::<i8>();
            // SAFETY: a prefetch is a hint that never faults; `p` and the
            // line after it are in the slot.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch(p, _MM_HINT_T0);
                _mm_prefetch(p.add(64), _MM_HINT_T0);
            }
        }
        at
    }

    /// Adds one request of client `key` at `now_ms`, checks `limits` and
    /// returns the counts and the rule that tripped, or `None` when the
    /// observation had to be dropped. `is_scanner` is asked only when the
    /// client's user agent changed since its last request.
    pub fn observe(
        &self,
        key: &Key,
        now_ms: u64,
        o: &Observation,
        limits: &Thresholds,
        is_scanner: impl FnOnce() -> bool,
    ) -> Option<Outcome> {
        self.observe_at(key, Place::default(), now_ms, o, limits, is_scanner)
    }

    /// [`Table::observe`] for a client placed by [`Table::place`] (of the
    /// same `key`) before; a default `at` (not placed): found now.
    pub fn observe_at(
        &self,
        key: &Key,
        at: Place,
        now_ms: u64,
        o: &Observation,
        limits: &Thresholds,
        is_scanner: impl FnOnce() -> bool,
    ) -> Option<Outcome> {
        let at = if at.hash == 0 { self.find(key) } else { at };
        let (sets, tag) = self.locate(at.hash);
        let now = (now_ms / self.bucket_ms) as u32;
        // The usual case: the client has a way, found without a lock (a
        // client without one then is inserted below, where its sets are
        // searched again under their locks).
        if let Some(i) = at.way.checked_sub(1).map(|w| w as usize) {
            let g = self.lock(i, now_ms)?;
            if g.slot.tag.load(Ordering::Relaxed) == tag {
                return Some(update(&g, now, o, limits, is_scanner, false));
            }
            // evicted meanwhile: insert below
        }
        // A new client. Inserts are serialised by the first way of each of
        // its sets (locked in index order), so two workers cannot give one
        // client two slots.
        let (lo, hi) = (sets[0].min(sets[1]), sets[0].max(sets[1]));
        let g_lo = self.lock(lo, now_ms)?;
        let g_hi = if hi != lo {
            Some(self.lock(hi, now_ms)?)
        } else {
            None
        };
        // The free (or expired) way of the emptier set; if both are full,
        // the least recently seen client of the eight.
        let mut victim = sets[0];
        let mut free = [0usize; 2];
        let mut first_free = [usize::MAX; 2];
        let mut oldest = 0u32;
        let mut found = false;
        for (k, &set) in sets.iter().enumerate() {
            for i in set..set + WAYS {
                // the tag by its hint (the set's one line); a taken way's
                // age from its slot
                let t = self.hints[i].load(Ordering::Relaxed);
                if t == tag {
                    victim = i;
                    found = true;
                }
                let age = if t == 0 {
                    u32::MAX // free
                } else {
                    now.wrapping_sub(self.slots[i].bucket.load(Ordering::Relaxed))
                };
                if age >= BUCKETS as u32 {
                    free[k] += 1;
                    if first_free[k] == usize::MAX {
                        first_free[k] = i;
                    }
                } else if age >= oldest {
                    oldest = age;
                    if free == [0, 0] && !found {
                        victim = i;
                    }
                }
            }
        }
        if !found && free != [0, 0] {
            victim = if free[1] > free[0] {
                first_free[1]
            } else {
                first_free[0]
            };
        }
        let g = if victim == lo {
            drop(g_hi);
            g_lo
        } else if victim == hi {
            drop(g_lo);
            g_hi?
        } else {
            let g = self.lock(victim, now_ms)?;
            drop(g_hi);
            drop(g_lo);
            g
        };
        let s = g.slot;
        let mut evicted = false;
        let t = s.tag.load(Ordering::Relaxed);
        let fresh = t != tag;
        if fresh {
            let age = now.wrapping_sub(s.bucket.load(Ordering::Relaxed));
            if t != 0 && age < BUCKETS as u32 {
                self.evictions.fetch_add(1, Ordering::Relaxed);
                evicted = true;
            }
            reset(&g, Some((key, tag)), now);
        }
        let mut out = update(&g, now, o, limits, is_scanner, fresh);
        out.evicted = evicted;
        Some(out)
    }

    /// The counts of client `key` now, without adding a request.
    pub fn peek(&self, key: &Key, now_ms: u64) -> Option<Counts> {
        let now = (now_ms / self.bucket_ms) as u32;
        let g = self.slot_of(key, now_ms)?;
        slide(&g, now);
        Some(counts(g.data(), now, 0))
    }

    /// Forgets client `key` (after an unblock, so its next request does
    /// not trip a rule again at once). Returns whether it was tracked.
    pub fn forget(&self, key: &Key, now_ms: u64) -> bool {
        let Some(g) = self.slot_of(key, now_ms) else {
            return false;
        };
        reset(&g, None, 0);
        true
    }

    /// The slot of client `key`, locked; `None` when the client has none,
    /// its slot stayed locked, or it was evicted between the lookup and
    /// the lock.
    fn slot_of(&self, key: &Key, now_ms: u64) -> Option<Guard<'static>> {
        let (sets, tag) = self.locate(self.hash(key));
        let g = self.lock(self.way_of(sets, tag)?, now_ms)?;
        (g.slot.tag.load(Ordering::Relaxed) == tag).then_some(g)
    }

    /// Forgets every client inside `net` (an unblocked range). Walks the
    /// whole table: an admin operation, never on the request path.
    pub fn forget_net(&self, net: &Net, v6_prefix: u8, now_ms: u64) -> usize {
        let mut n = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if s.tag.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let Some(g) = self.lock(i, now_ms) else {
                continue;
            };
            if s.tag.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let d = g.data();
            let k = Key {
                v6: d.v6,
                bits: join(d.key),
            };
            let first = net.first();
            // the client is inside the range, or the range inside the
            // client's IPv6 group
            if net.contains(k.addr()) || k.net(v6_prefix).contains(first) {
                reset(&g, None, 0);
                n += 1;
            }
        }
        n
    }

    /// Clients seen within the window (walks the table).
    pub fn tracked(&self, now_ms: u64) -> usize {
        let now = (now_ms / self.bucket_ms) as u32;
        self.slots
            .iter()
            .filter(|s| {
                s.tag.load(Ordering::Relaxed) != 0
                    && now.wrapping_sub(s.bucket.load(Ordering::Relaxed)) < BUCKETS as u32
            })
            .count()
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if let Some(p) = self.kept {
            crate::shm::release_shared(p as *mut libc::c_void);
        }
    }
}

/// One random hash key per process, made in the master before the fork
/// and kept across reloads, so every worker and every generation of
/// workers finds a client in the same slot.
fn seed() -> &'static ahash::RandomState {
    static SEED: once_cell::sync::OnceCell<ahash::RandomState> = once_cell::sync::OnceCell::new();
    SEED.get_or_init(ahash::RandomState::new)
}

struct Guard<'a> {
    slot: &'a Slot,
    hint: &'a AtomicU32,
    _held: Held<'a>,
}

impl Guard<'_> {
    #[allow(clippy::mut_from_ref)] // exclusive by the slot's lock
    fn data(&self) -> &mut Data {
        // SAFETY: this guard holds the slot's lock, so no other process or
        // thread touches the data until it is dropped.
        unsafe { &mut *self.slot.data.get() }
    }
}

fn split(v: u128) -> [u32; 4] {
    [
        (v >> 96) as u32,
        (v >> 64) as u32,
        (v >> 32) as u32,
        v as u32,
    ]
}

fn join(k: [u32; 4]) -> u128 {
    k.iter().fold(0u128, |a, &w| a << 32 | u128::from(w))
}

/// Clears a slot's counts and gives it to `key` (or frees it: `None`).
/// A free slot (tag 0) is all zero already: every way of freeing one
/// comes here, and the mapping starts zero-filled.
fn reset(g: &Guard<'_>, key: Option<(&Key, u32)>, now: u32) {
    let d = g.data();
    if g.slot.tag.load(Ordering::Relaxed) != 0 {
        clear(d);
    }
    match key {
        Some((k, tag)) => {
            d.key = split(k.bits);
            d.v6 = k.v6;
            g.slot.bucket.store(now, Ordering::Relaxed);
            g.slot.tag.store(tag, Ordering::Relaxed);
            g.hint.store(tag, Ordering::Relaxed);
        }
        None => {
            d.key = [0; 4];
            d.v6 = false;
            g.slot.tag.store(0, Ordering::Relaxed);
            g.hint.store(0, Ordering::Relaxed);
        }
    }
}

/// Zeroes every count of a slot (its key stays until [`reset`] sets it).
fn clear(d: &mut Data) {
    d.ua = 0;
    d.requests = [0; BUCKETS];
    d.not_found = [0; BUCKETS];
    d.auth = [0; BUCKETS];
    d.probes = [0; BUCKETS];
    d.signals = [0; BUCKETS];
    d.paths = [PathEntry::default(); MAX_PATHS];
    d.fired = 0;
    d.fired_at = 0;
    d.seen = [0; PAYLOADS_SEEN];
    d.payloads = [0; BUCKETS];
    d.classes = [0; BUCKETS];
    d.next_seen = 0;
}

/// Clears the buckets between the newest written and `now`.
fn slide(g: &Guard<'_>, now: u32) {
    let last = g.slot.bucket.load(Ordering::Relaxed);
    let steps = now.wrapping_sub(last);
    if steps == 0 || steps > u32::MAX / 2 {
        return; // same bucket, or a clock that stepped back a little
    }
    let d = g.data();
    if steps >= BUCKETS as u32 {
        d.requests = [0; BUCKETS];
        d.not_found = [0; BUCKETS];
        d.auth = [0; BUCKETS];
        d.probes = [0; BUCKETS];
        d.signals = [0; BUCKETS];
        if d.payloads != [0; BUCKETS] {
            d.payloads = [0; BUCKETS];
            d.classes = [0; BUCKETS];
        }
    } else {
        for s in 1..=steps {
            let b = (last.wrapping_add(s) as usize) % BUCKETS;
            d.requests[b] = 0;
            d.not_found[b] = 0;
            d.auth[b] = 0;
            d.probes[b] = 0;
            d.signals[b] = 0;
            d.payloads[b] = 0;
            d.classes[b] = 0;
        }
    }
    // payload requests out of the window may count again
    if d.seen[0] != 0 && d.payloads == [0; BUCKETS] {
        d.seen = [0; PAYLOADS_SEEN];
    }
    g.slot.bucket.store(now, Ordering::Relaxed);
}

fn age8(now: u32, b: u8) -> u32 {
    u32::from((now as u8).wrapping_sub(b))
}

fn live(p: &PathEntry, now: u32) -> bool {
    p.hash != 0 && age8(now, p.last) < BUCKETS as u32
}

/// The count of one rule (`path_hits` for `repeated_hits`, `scanner`
/// for `scanner_agent`).
#[inline]
fn count(d: &Data, now: u32, r: Rule, path_hits: u32, scanner: bool) -> u32 {
    let s8 = |c: &[u8; BUCKETS]| c.iter().map(|&x| u32::from(x)).sum::<u32>();
    match r {
        Rule::Rate => d.requests.iter().map(|&x| u32::from(x)).sum(),
        Rule::NotFound => s8(&d.not_found),
        Rule::AuthFailure => s8(&d.auth),
        Rule::ProbePath => s8(&d.probes),
        Rule::Payload => s8(&d.payloads),
        Rule::Events => s8(&d.signals),
        Rule::UniquePaths => d
            .paths
            .iter()
            .filter(|p| live(p, now) && p.hits & FAILED != 0)
            .count() as u32,
        Rule::RepeatedHits => path_hits,
        Rule::ScannerAgent => u32::from(scanner),
    }
}

fn counts(d: &Data, now: u32, path_hits: u32) -> Counts {
    let mut c = Counts::default();
    for r in Rule::ALL {
        c.by_rule[r as usize] = count(d, now, r, path_hits, false);
    }
    c
}

/// The entry a path new to client `d` takes: a free or expired one, else
/// the least recently hit. Out of line, so that the code for a path seen
/// before stays contiguous (bench/README.md).
#[inline(never)]
fn new_path(d: &mut Data, h: u32, now: u32) -> usize {
    let i = d
        .paths
        .iter()
        .position(|p| !live(p, now))
        .unwrap_or_else(|| {
            // oldest first; among equals, one that did not fail
            // (failed paths are what the scanning rule counts)
            (0..MAX_PATHS)
                .max_by_key(|&i| {
                    let p = &d.paths[i];
                    (age8(now, p.last), p.hits & FAILED == 0)
                })
                .unwrap_or(0)
        });
    let now8 = now as u8;
    d.paths[i] = PathEntry {
        hash: h,
        hits: 0,
        first: now8,
        last: now8,
    };
    i
}

fn update(
    g: &Guard<'_>,
    now: u32,
    o: &Observation,
    limits: &Thresholds,
    is_scanner: impl FnOnce() -> bool,
    fresh: bool,
) -> Outcome {
    slide(g, now);
    let d = g.data();
    let b = now as usize % BUCKETS;
    // The user agent's verdict is cached per client: (fingerprint, bit 0).
    let mut scanner = false;
    if o.ua_fp != 0 && limits[Rule::ScannerAgent as usize] != 0 {
        let fp = o.ua_fp & !1;
        if d.ua != 0 && d.ua & !1 == fp {
            scanner = d.ua & 1 == 1;
        } else {
            scanner = is_scanner();
            d.ua = fp | u32::from(scanner) | if fp == 0 { 2 } else { 0 };
        }
    }
    d.requests[b] = d.requests[b].saturating_add(u16::from(!o.uncounted));
    let add = |c: &mut [u8; BUCKETS], yes: bool| c[b] = c[b].saturating_add(u8::from(yes));
    add(&mut d.not_found, o.not_found);
    add(&mut d.auth, o.auth_failure);
    add(&mut d.probes, o.probe);
    // a payload request counts once, however often it is repeated (one odd
    // link followed again and again is not probing)
    let payload = o.payload != 0 && !d.seen.contains(&(o.payload_hash | 1));
    if payload {
        d.seen[usize::from(d.next_seen) % PAYLOADS_SEEN] = o.payload_hash | 1;
        d.next_seen = (d.next_seen + 1) % PAYLOADS_SEEN as u8;
        add(&mut d.payloads, true);
        d.classes[b] |= o.payload;
    }
    let signals = u8::from(o.not_found)
        + u8::from(o.auth_failure)
        + u8::from(o.probe)
        + u8::from(scanner)
        + u8::from(payload);
    d.signals[b] = d.signals[b].saturating_add(signals);

    let mut path_hits = 0;
    if o.path_hash != 0 {
        let h = o.path_hash;
        let now8 = now as u8;
        // a slot given to this client just now has no paths yet (its
        // first entry is free)
        let known = if fresh {
            None
        } else {
            d.paths.iter().position(|p| p.hash == h)
        };
        let i = match known {
            Some(i) => i,
            None => new_path(d, h, now),
        };
        let p = &mut d.paths[i];
        if !live(p, now) || age8(now, p.first) >= BUCKETS as u32 {
            // the hits counted so far fell out of the window
            p.first = now8;
            p.hits = 0;
        }
        let hits = (p.hits & !FAILED).saturating_add(1).min(!FAILED);
        p.hits = hits | if o.path_failed { FAILED } else { 0 };
        p.last = now8;
        path_hits = u32::from(hits);
    }
    // Only the rules whose counters this request changed can trip.
    let on = |r: Rule, yes: bool| u16::from(yes) << (r as u8);
    let touched = on(Rule::ScannerAgent, scanner)
        | on(Rule::ProbePath, o.probe)
        | on(Rule::Payload, payload)
        | on(Rule::AuthFailure, o.auth_failure)
        | on(Rule::NotFound, o.not_found)
        | on(Rule::UniquePaths, o.path_hash != 0 && o.path_failed)
        | on(Rule::RepeatedHits, o.path_hash != 0)
        | on(Rule::Rate, !o.uncounted)
        | on(Rule::Events, signals != 0);

    // Each rule trips once per client and window: the first request that
    // brings it to its threshold.
    if d.fired != 0 && now.wrapping_sub(d.fired_at) >= BUCKETS as u32 {
        d.fired = 0;
    }
    let mut trip = None;
    // the touched rules that have not fired, in checking order (a rule's
    // bit is its place in `Rule::ALL`); a rule that is off cannot trip
    let mut pending = touched & !d.fired;
    while pending != 0 {
        let r = Rule::ALL[pending.trailing_zeros() as usize];
        pending &= pending - 1;
        if limits[r as usize] == 0 {
            continue;
        }
        let (limit, n) = (limits[r as usize], count(d, now, r, path_hits, scanner));
        let bit = 1u16 << (r as u8);
        if n >= limit {
            if d.fired == 0 {
                d.fired_at = now;
            }
            d.fired |= bit;
            let classes = if r == Rule::Payload {
                d.classes.iter().fold(0, |a, c| a | c)
            } else {
                0
            };
            trip = Some(Trip {
                rule: r,
                count: n,
                classes,
            });
            break;
        }
    }
    Outcome {
        path_hits,
        trip,
        evicted: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 8_000; // 1 s buckets
    const NONE: Thresholds = [0; Rule::COUNT];

    fn obs(path: u32) -> Observation {
        Observation {
            path_hash: path,
            ..Observation::default()
        }
    }

    #[test]
    fn a_rules_bit_is_its_place_in_the_checking_order() {
        for (i, r) in Rule::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
    }

    fn k(s: &str) -> Key {
        Key::of(Addr::parse(s).unwrap(), 64)
    }

    fn see(t: &Table, c: &Key, at: u64, o: &Observation) -> Counts {
        let out = t.observe(c, at, o, &NONE, || false).unwrap();
        let mut all = t.peek(c, at).unwrap();
        all.by_rule[Rule::RepeatedHits as usize] = out.path_hits;
        all
    }

    #[test]
    fn counts_and_window() {
        let t = Table::new(64, W).unwrap();
        let c = k("192.0.2.1");
        let nf = Observation {
            not_found: true,
            path_hash: 7,
            path_failed: true,
            ..Observation::default()
        };
        for i in 0..9 {
            see(&t, &c, 1_000 + i, &nf);
        }
        let r = see(&t, &c, 1_500, &nf);
        use Rule::*;
        let g = |r: &Counts| {
            (
                r.get(Rate),
                r.get(NotFound),
                r.get(Events),
                r.get(RepeatedHits),
                r.get(UniquePaths),
            )
        };
        assert_eq!(g(&r), (10, 10, 10, 10, 1));
        // 6 s later: all still inside the 8 s window
        let r = see(&t, &c, 7_500, &obs(8));
        assert_eq!(g(&r), (11, 10, 10, 1, 1));
        // 9 s after the burst: it has slid out
        let r = see(&t, &c, 9_600, &obs(8));
        assert_eq!(g(&r), (2, 0, 0, 2, 0));
        // long silence: everything expired
        let r = see(&t, &c, 60_000, &obs(0));
        assert_eq!(g(&r), (1, 0, 0, 0, 0));
    }

    #[test]
    fn a_client_placed_ahead_is_counted_as_observe_counts_it() {
        let t = Table::new(64, W).unwrap();
        let (a, b) = (k("192.0.2.1"), k("192.0.2.2"));
        // a new client has no way yet: it is inserted by its observation
        let p = t.place(&a);
        assert_ne!(p.hash, 0);
        assert_eq!(p.way, 0);
        t.observe_at(&a, p, 1_000, &obs(7), &NONE, || false)
            .unwrap();
        assert_eq!(t.peek(&a, 1_000).unwrap().get(Rule::Rate), 1);
        // now it has one, the way observe itself finds
        let p = t.place(&a);
        assert_ne!(p.way, 0);
        t.observe_at(&a, p, 1_001, &obs(7), &NONE, || false)
            .unwrap();
        t.observe(&a, 1_002, &obs(7), &NONE, || false).unwrap();
        assert_eq!(t.peek(&a, 1_002).unwrap().get(Rule::Rate), 3);
        // a place carries its parts through the access phase's memory
        let parts: (u64, u32) = p.into();
        assert_eq!(Place::from(parts), p);

        // a place gone stale (the client forgotten, its way taken by
        // another meanwhile) is checked under the lock: the client gets a
        // way of its own again, the other keeps its counts (one set of
        // four ways, so that the other takes the way that was freed)
        let t = Table::new(WAYS, W).unwrap();
        t.observe(&a, 1_000, &obs(7), &NONE, || false).unwrap();
        let p = t.place(&a);
        assert!(t.forget(&a, 1_001));
        t.observe(&b, 1_001, &obs(7), &NONE, || false).unwrap();
        assert_eq!(t.place(&b).way, p.way);
        t.observe_at(&a, p, 1_002, &obs(7), &NONE, || false)
            .unwrap();
        assert_eq!(t.peek(&a, 1_002).unwrap().get(Rule::Rate), 1);
        assert_eq!(t.peek(&b, 1_002).unwrap().get(Rule::Rate), 1);
        let (pa, pb) = (t.place(&a), t.place(&b));
        assert!(pa.way != 0 && pa.way != pb.way, "{pa:?} {pb:?}");
    }

    #[test]
    fn keys_group_ipv6_and_keep_families_apart() {
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.2"), k("192.0.2.2"));
        assert_ne!(Key::of(Addr::V6(1), 128), Key::of(Addr::V4(1), 64));
        assert_ne!(
            Key::of(Addr::parse("2001:db8::1").unwrap(), 128),
            Key::of(Addr::parse("2001:db8::2").unwrap(), 128)
        );
        assert_eq!(
            k("2001:db8:1:2::1").net(64).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn clients_are_apart_and_forget_works() {
        let t = Table::new(64, W).unwrap();
        let (a, b) = (k("192.0.2.1"), k("::ffff:192.0.2.2"));
        for _ in 0..3 {
            see(&t, &a, 0, &obs(1));
        }
        assert_eq!(see(&t, &b, 0, &obs(1)).get(Rule::Rate), 1);
        assert_eq!(see(&t, &a, 0, &obs(1)).get(Rule::Rate), 4);
        assert!(t.forget(&a, 0));
        assert!(!t.forget(&a, 0));
        assert_eq!(see(&t, &a, 0, &obs(1)).get(Rule::Rate), 1);
        assert_eq!(t.peek(&b, 0).unwrap().get(Rule::Rate), 1);
        let net = Net::parse("192.0.2.0/24").unwrap();
        assert_eq!(t.forget_net(&net, 64, 0), 2);
        assert!(t.peek(&a, 0).is_none());
    }

    #[test]
    fn unique_paths_count_failures_only_and_are_capped() {
        let t = Table::new(64, W).unwrap();
        let c = k("192.0.2.9");
        let mut last = Counts::default();
        for p in 1..=100u32 {
            let o = Observation {
                path_hash: p,
                path_failed: p % 2 == 0,
                ..Observation::default()
            };
            last = see(&t, &c, 0, &o);
        }
        // when full, paths that did not fail make room first
        assert_eq!(last.get(Rule::UniquePaths), MAX_PATHS as u32);
        assert_eq!(last.get(Rule::Rate), 100);
    }

    #[test]
    fn each_rule_trips_once_at_its_threshold() {
        let t = Table::new(64, W).unwrap();
        let c = k("192.0.2.10");
        let mut lim = NONE;
        lim[Rule::NotFound as usize] = 3;
        lim[Rule::Rate as usize] = 5;
        let nf = Observation {
            not_found: true,
            ..Observation::default()
        };
        let mut trips = Vec::new();
        for i in 0..8 {
            let o = t.observe(&c, 100 + i, &nf, &lim, || false).unwrap();
            trips.push(o.trip.map(|t| (t.rule, t.count)));
        }
        assert_eq!(
            trips,
            vec![
                None,
                None,
                Some((Rule::NotFound, 3)),
                None,
                Some((Rule::Rate, 5)),
                None,
                None,
                None
            ]
        );
        // a window later, a persisting offender trips again
        let again: Vec<_> = (0..5)
            .map(|i| {
                let o = t.observe(&c, 100 + W + i, &nf, &lim, || false).unwrap();
                o.trip.map(|t| t.rule)
            })
            .collect();
        assert_eq!(
            again,
            vec![None, None, Some(Rule::NotFound), None, Some(Rule::Rate)]
        );
    }

    #[test]
    fn user_agent_verdicts_are_cached_per_client() {
        let t = Table::new(64, W).unwrap();
        let c = k("192.0.2.11");
        let mut lim = NONE;
        lim[Rule::ScannerAgent as usize] = 1;
        let o = Observation {
            ua_fp: 0xabcd,
            ..Observation::default()
        };
        let mut asked = 0;
        for _ in 0..3 {
            t.observe(&c, 0, &o, &lim, || {
                asked += 1;
                false
            })
            .unwrap();
        }
        assert_eq!(asked, 1);
        let o2 = Observation {
            ua_fp: 0x1234,
            ..Observation::default()
        };
        let r = t.observe(&c, 0, &o2, &lim, || true).unwrap();
        assert_eq!(r.trip.map(|t| t.rule), Some(Rule::ScannerAgent));
        assert_eq!(t.peek(&c, 0).unwrap().get(Rule::Events), 1);
    }

    #[test]
    fn saturation_keeps_thresholds_exact() {
        let t = Table::new(64, W).unwrap();
        let c = k("192.0.2.12");
        let mut lim = NONE;
        lim[Rule::AuthFailure as usize] = MAX_SMALL_THRESHOLD;
        let o = Observation {
            auth_failure: true,
            ..Observation::default()
        };
        let mut tripped_at = None;
        for i in 1..=400u32 {
            let r = t.observe(&c, 0, &o, &lim, || false).unwrap();
            if r.trip.is_some() {
                tripped_at = Some(i);
            }
        }
        assert_eq!(tripped_at, Some(MAX_SMALL_THRESHOLD));
    }

    #[test]
    fn pressure_evicts_the_least_recent_and_counts_it() {
        let t = Table::new(4, W).unwrap();
        for i in 0..4u32 {
            see(&t, &Key::of(Addr::V4(i), 64), u64::from(i) * 1000, &obs(0));
        }
        // every way is live; a fifth client evicts the oldest (client 0)
        see(&t, &Key::of(Addr::V4(100), 64), 4_000, &obs(0));
        assert_eq!(t.evictions(), 1);
        assert!(t.peek(&Key::of(Addr::V4(0), 64), 4_000).is_none());
        assert!(t.peek(&Key::of(Addr::V4(1), 64), 4_000).is_some());
        assert_eq!(t.capacity(), 4);
        // an expired client is replaced without counting an eviction
        see(&t, &Key::of(Addr::V4(200), 64), 40_000, &obs(0));
        assert_eq!(t.evictions(), 1);
    }

    /// Evictions of live clients at a given load (clients / slots), over
    /// three rounds of one request per client.
    fn evictions_at(load: f64) -> (u64, u32) {
        let t = Table::new(1 << 14, W).unwrap();
        let n = (t.capacity() as f64 * load) as u32;
        for round in 0..3 {
            for i in 0..n {
                see(&t, &Key::of(Addr::V4(i), 64), 1_000 + round, &obs(0));
            }
        }
        (t.evictions(), n)
    }

    #[test]
    fn two_choices_hold_the_documented_load_without_evictions() {
        for load in [0.5, 0.6, 0.7, 0.8] {
            let (e, n) = evictions_at(load);
            eprintln!("load {load}: {e} evictions for {n} clients");
        }
        // the sizing rule in the README: max_clients >= 2 x clients
        let (e, n) = evictions_at(0.5);
        assert!(e * 1000 <= u64::from(n), "{e} evictions for {n} clients");
    }

    #[test]
    fn a_dead_holder_does_not_wedge_a_slot() {
        let t = Table::new(4, W).unwrap();
        let c = k("192.0.2.1");
        see(&t, &c, 1_000, &obs(0));
        let s = t
            .slots
            .iter()
            .find(|s| s.tag.load(Ordering::Relaxed) != 0)
            .unwrap();
        std::mem::forget(s.lock.lock(1_000).unwrap()); // a holder that died
                                                       // still held, not stale yet: dropped and counted
        assert!(t.observe(&c, 1_050, &obs(0), &NONE, || false).is_none());
        assert_eq!(t.contended(), 1);
        // stale: taken over
        assert_eq!(see(&t, &c, 1_200, &obs(0)).get(Rule::Rate), 2);
    }

    /// The table against a naive per-client log of timestamps, on random
    /// traffic from a few clients (no evictions: the table is large).
    #[test]
    fn agrees_with_a_naive_log() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
        let strat = proptest::collection::vec((0u32..6, 0u64..3_000, any::<bool>()), 1..400);
        runner
            .run(&strat, |events| {
                let t = Table::new(256, W).unwrap();
                let bucket = W / BUCKETS as u64;
                let mut now = 50_000u64;
                let mut log: Vec<(u32, u64, bool)> = Vec::new();
                for (client, step, nf) in events {
                    now += step;
                    let key = Key::of(Addr::V4(client), 64);
                    let o = Observation {
                        not_found: nf,
                        ..Observation::default()
                    };
                    let got = see(&t, &key, now, &o);
                    log.push((client, now, nf));
                    let b = now / bucket;
                    let inside = |&&(c, at, _): &&(u32, u64, bool)| {
                        c == client && b - at / bucket < BUCKETS as u64
                    };
                    let reqs = log.iter().filter(inside).count() as u32;
                    let nfs = log.iter().filter(inside).filter(|e| e.2).count() as u32;
                    prop_assert_eq!(got.get(Rule::Rate), reqs);
                    prop_assert_eq!(got.get(Rule::NotFound), nfs);
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn exact_across_processes() {
        let t = Table::new(1024, 60_000).unwrap();
        let c = k("198.51.100.7");
        let mut pids = Vec::new();
        for w in 0..4u32 {
            // SAFETY: the child only updates the shared table and exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                for i in 0..2_500u32 {
                    let o = Observation {
                        not_found: i % 2 == 0,
                        path_hash: 1 + (w * 7 + i) % 5,
                        path_failed: true,
                        ..Observation::default()
                    };
                    while t.observe(&c, 1_000, &o, &NONE, || false).is_none() {}
                }
                // SAFETY: leaving the child without running the test harness.
                unsafe { libc::_exit(0) };
            }
            pids.push(pid);
        }
        for pid in pids {
            let mut st = 0;
            // SAFETY: waiting for our own children.
            unsafe { libc::waitpid(pid, &mut st, 0) };
        }
        let r = t.peek(&c, 1_000).unwrap();
        assert_eq!(r.get(Rule::Rate), 10_000);
        // 5,000 404s, counted exactly (u8 buckets saturate at 255 each,
        // but all of these landed in one bucket: the sum saturates)
        assert_eq!(r.get(Rule::NotFound), 255);
        assert_eq!(r.get(Rule::UniquePaths), 5);
    }

    #[test]
    fn layout() {
        assert_eq!(SLOT_BYTES, 320);
        assert_eq!(std::mem::offset_of!(Data, paths) + 12, 64);
        assert_eq!(std::mem::offset_of!(Data, key) + 12, 256);
    }
}
