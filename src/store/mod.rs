//! The shared dict as Rust sees it, and what may be written to it.
//!
//! nginx's `lua_shared_dict` is the source of truth that every worker
//! shares and that survives `nginx -s reload`. Rust reads and writes it
//! through [`Dict`], which the Lua door implements over the real
//! `ngx.shared.DICT` object (its methods come from lua-resty-core) and
//! [`mem::Mem`] implements in memory for unit tests. Dict methods never
//! yield, so Rust may call them from any phase.
//!
//! The rule of writing ([`Store`]): only `safe_set` and `safe_add` are
//! used. `set()`, `add()` and `incr()` with an initial value evict the least
//! recently used keys when the dict is full, and blocks, read only when a
//! worker syncs, would be the first to go. A write that finds no room
//! frees the expired keys first (at most once a second per worker, see
//! [`Store::reclaim`]) and tries again; expendable counters (offences,
//! rate-limit windows) leave the last eighth of the dict to blocks
//! ([`Store::count`]). Nothing is ever dropped silently to make room.
//!
//! Log lines go through [`Log`] (nginx's error log in production); a
//! failure repeated on every request is logged through a [`Quiet`]: once,
//! then at most every 10 s with how many were left out.

pub mod mem;

use std::cell::Cell;
use std::fmt;

use crate::metrics::Stat;
use crate::options::number;
use crate::shm::WorkerStats;

/// A value in the dict: nginx keeps strings, numbers and booleans.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Bytes (blocks, journal entries, the policy document...).
    Str(Vec<u8>),
    /// A number (counters, sequence numbers).
    Num(f64),
    /// A flag.
    Bool(bool),
}

impl Value {
    /// The bytes of a string value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(b) => Some(b),
            _ => None,
        }
    }

    /// The text of a string value (None when not UTF-8).
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// A number value.
    pub fn as_num(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            _ => None,
        }
    }

    /// Bytes the value takes in the dict (as nginx counts them, roughly).
    pub fn len(&self) -> usize {
        match self {
            Value::Str(b) => b.len(),
            Value::Num(_) => 8,
            Value::Bool(_) => 1,
        }
    }

    /// True for an empty string.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.as_bytes().to_vec())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s.into_bytes())
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Value {
        Value::Num(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

/// Why a dict operation failed (nginx's error strings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DictError {
    /// No room, and nothing was evicted to make some.
    NoMemory,
    /// `safe_add` of a key that exists.
    Exists,
    /// `incr` of a key that does not exist.
    NotFound,
    /// `incr` of a key that is not a number.
    NotANumber,
    /// Anything else (a Lua error, an unexpected reply).
    Other(String),
}

impl DictError {
    /// The error nginx names with `msg`.
    pub fn from_message(msg: &str) -> DictError {
        match msg {
            "no memory" => DictError::NoMemory,
            "exists" => DictError::Exists,
            "not found" => DictError::NotFound,
            "not a number" => DictError::NotANumber,
            other => DictError::Other(other.to_string()),
        }
    }
}

impl fmt::Display for DictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DictError::NoMemory => "no memory",
            DictError::Exists => "exists",
            DictError::NotFound => "not found",
            DictError::NotANumber => "not a number",
            DictError::Other(s) => s,
        })
    }
}

impl std::error::Error for DictError {}

/// The operations of `ngx.shared.DICT` that warden uses. `ttl` is in
/// seconds, 0 for none.
pub trait Dict {
    /// The value of `key`, None when absent or expired.
    fn get(&self, key: &str) -> Result<Option<Value>, DictError>;
    /// Sets `key` without evicting anything (`NoMemory` when full).
    fn safe_set(&self, key: &str, value: &Value, ttl: f64) -> Result<(), DictError>;
    /// Adds `key` when absent (`Exists` otherwise), without evicting.
    fn safe_add(&self, key: &str, value: &Value, ttl: f64) -> Result<(), DictError>;
    /// Adds `by` to the number at `key` (`NotFound` when absent: never
    /// allocates).
    fn incr(&self, key: &str, by: f64) -> Result<f64, DictError>;
    /// Removes `key`.
    fn delete(&self, key: &str) -> Result<(), DictError>;
    /// Every unexpired key (`get_keys(0)`).
    fn keys(&self) -> Result<Vec<String>, DictError>;
    /// Frees every expired key; returns how many.
    fn flush_expired(&self) -> Result<usize, DictError>;
    /// Bytes in free pages (None when the API lacks `free_space`).
    fn free_space(&self) -> Option<usize>;
    /// The dict's size in bytes (None when the API lacks `capacity`).
    fn capacity(&self) -> Option<usize>;
    /// Sets the time to live of an existing key; false when the API lacks
    /// `expire` or the key is absent.
    fn expire(&self, key: &str, ttl: f64) -> Result<bool, DictError>;

    /// The text at `key` (a string value, lossy UTF-8).
    fn get_text(&self, key: &str) -> Result<Option<String>, DictError> {
        Ok(self.get(key)?.and_then(|v| match v {
            Value::Str(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        }))
    }

    /// The number at `key`.
    fn get_num(&self, key: &str) -> Result<Option<f64>, DictError> {
        Ok(self.get(key)?.and_then(|v| v.as_num()))
    }
}

/// Severity of a log line (nginx's levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `[error]`.
    Err,
    /// `[warn]`.
    Warn,
    /// `[notice]`.
    Notice,
    /// `[info]`.
    Info,
}

/// Where log lines go: nginx's error log (`ngx.log`), or a test's list.
pub trait Log {
    /// Writes one line as it is.
    fn write(&self, level: Level, line: &str);

    /// Writes `warden: <msg>`, the form of every line warden logs.
    fn log(&self, level: Level, msg: &str) {
        self.write(level, &format!("warden: {msg}"));
    }
}

/// Seconds between two lines of one repeated failure.
pub const LOG_EVERY_MS: u64 = 10_000;

/// A failure that may repeat on every request: logged the first time,
/// then at most every 10 s (per worker), with how many were left out:
/// "msg (and 12 more in the last 10s)".
#[derive(Debug, Default)]
pub struct Quiet {
    logged_ms: Cell<u64>,
    more: Cell<u64>,
}

impl Quiet {
    /// Logs `msg` unless a line went out less than 10 s ago.
    pub fn log(&self, log: &dyn Log, level: Level, msg: &str, now_ms: u64) {
        let since = now_ms.saturating_sub(self.logged_ms.get());
        if self.logged_ms.get() != 0 && since < LOG_EVERY_MS {
            self.more.set(self.more.get() + 1);
            return;
        }
        let more = self.more.get();
        if more > 0 {
            log.log(
                level,
                &format!("{msg} (and {more} more in the last {}s)", since / 1000),
            );
        } else {
            log.log(level, msg);
        }
        self.logged_ms.set(now_ms.max(1));
        self.more.set(0);
    }
}

/// Seconds between two flushes of expired keys on demand (per worker).
pub const RECLAIM_EVERY_MS: u64 = 1_000;
/// Seconds between two flushes of expired keys by worker 0 on its own.
pub const FLUSH_EVERY_MS: u64 = 10_000;
/// The least room expendable counters leave to blocks (and a dict's
/// eighth, when that is more).
pub const COUNTER_RESERVE_MIN: f64 = 8_192.0;

/// What one worker remembers about its writes to one dict: when it last
/// reclaimed expired keys, and its quiet logs.
#[derive(Debug, Default)]
pub struct Throttle {
    name: String,
    worker: Cell<Option<usize>>,
    reclaimed_ms: Cell<u64>,
    flushed_ms: Cell<u64>,
    full: Quiet,
    counters: Quiet,
}

impl Throttle {
    /// For the dict named `name` (as `lua_shared_dict` names it).
    pub fn new(name: &str) -> Throttle {
        Throttle {
            name: name.to_string(),
            ..Throttle::default()
        }
    }

    /// Tells which worker this is (`ngx.worker.id()`): worker 0 flushes
    /// expired keys on its own ([`Store::tick`]).
    pub fn set_worker(&self, id: usize) {
        self.worker.set(Some(id));
    }

    /// True in worker 0 (once `set_worker` told).
    pub fn first_worker(&self) -> bool {
        self.worker.get() == Some(0)
    }

    /// The quiet log of blocks refused because the dict is full.
    pub fn full(&self) -> &Quiet {
        &self.full
    }
}

/// One worker's view of the dict for writing: the dict, where lines go,
/// the worker's counters, its [`Throttle`], and the time.
#[derive(Clone, Copy)]
pub struct Store<'a> {
    /// The dict.
    pub dict: &'a dyn Dict,
    /// Where lines go.
    pub log: &'a dyn Log,
    /// This worker's counters.
    pub stats: &'a WorkerStats,
    /// This worker's memory of its writes.
    pub throttle: &'a Throttle,
    /// Now, in ms since the epoch.
    pub now_ms: u64,
}

impl<'a> Store<'a> {
    /// The dict's name.
    pub fn name(&self) -> &str {
        &self.throttle.name
    }

    /// Counts `n` occurrences of `s` in this worker's counters.
    pub fn count(&self, s: Stat, n: u64) {
        self.stats.add(s, n);
    }

    /// Logs `warden: <msg>`.
    pub fn log(&self, level: Level, msg: &str) {
        self.log.log(level, msg);
    }

    /// Frees every expired key, at most once a second per worker; returns
    /// how many were freed (0 when it did not run).
    ///
    /// nginx frees expired keys only from the least recently used end of
    /// the dict, and stops at the first live key there; `safe_set` and
    /// `safe_add` free nothing else. A permanent block or a 30-day offence
    /// counter at that end keeps every expired block and journal entry
    /// behind it in memory, so the dict fills up with them and new blocks
    /// are refused. Worker 0 flushes them every 10 s ([`Store::tick`]); a
    /// write that finds no room flushes them at once and tries again.
    pub fn reclaim(&self) -> usize {
        let t = &self.throttle;
        if t.reclaimed_ms.get() != 0
            && self.now_ms.saturating_sub(t.reclaimed_ms.get()) < RECLAIM_EVERY_MS
        {
            return 0;
        }
        t.reclaimed_ms.set(self.now_ms.max(1));
        self.dict.flush_expired().unwrap_or(0)
    }

    /// Worker 0, every second: flushes the expired keys every 10 s.
    pub fn tick(&self) {
        let t = &self.throttle;
        if t.worker.get() != Some(0) {
            return;
        }
        if t.flushed_ms.get() != 0
            && self.now_ms.saturating_sub(t.flushed_ms.get()) < FLUSH_EVERY_MS
        {
            return;
        }
        t.flushed_ms.set(self.now_ms.max(1));
        let _ = self.dict.flush_expired();
    }

    /// `safe_set`, once more after [`Store::reclaim`] when there is no
    /// room.
    pub fn safe_set(&self, key: &str, value: &Value, ttl: f64) -> Result<(), DictError> {
        match self.dict.safe_set(key, value, ttl) {
            Err(DictError::NoMemory) if self.reclaim() > 0 => self.dict.safe_set(key, value, ttl),
            r => r,
        }
    }

    /// `safe_add`, once more after [`Store::reclaim`] when there is no
    /// room.
    pub fn safe_add(&self, key: &str, value: &Value, ttl: f64) -> Result<(), DictError> {
        match self.dict.safe_add(key, value, ttl) {
            Err(DictError::NoMemory) if self.reclaim() > 0 => self.dict.safe_add(key, value, ttl),
            r => r,
        }
    }

    /// As `incr(key, by, init, ttl)`, but when the dict is full the key is
    /// not created (`NoMemory`) instead of other keys being evicted.
    pub fn incr(&self, key: &str, by: f64, init: f64, ttl: f64) -> Result<f64, DictError> {
        match self.dict.incr(key, by) {
            Err(DictError::NotFound) => {}
            r => return r,
        }
        let v = init + by;
        match self.safe_add(key, &Value::Num(v), ttl) {
            Ok(()) => Ok(v),
            // another worker created it meanwhile
            Err(DictError::Exists) => self.dict.incr(key, by),
            Err(e) => Err(e),
        }
    }

    /// An expendable counter (an offence, a site rate-limit window): as
    /// [`Store::incr`] from 0, but a new one is not created when less than
    /// an eighth of the dict's memory (at least 8 KiB) is left in free
    /// pages: that room stays for blocks and the journal. Without it a long
    /// attack from many addresses fills the dict with offence counters,
    /// kept for `repeat_offender_memory` (30 days), and then no new block
    /// fits. A refused counter is counted (`counters_refused`) and logged
    /// once, then at most every 10 s per worker.
    pub fn counter(&self, key: &str, by: f64, ttl: f64) -> Result<f64, DictError> {
        match self.dict.incr(key, by) {
            Err(DictError::NotFound) => {}
            r => return r,
        }
        if let Some((free, reserve)) = self.short_of_reserve() {
            self.count(Stat::CountersRefused, 1);
            self.throttle.counters.log(
                self.log,
                Level::Warn,
                &format!(
                    "shared dict '{}' has {free} bytes in free pages, less than the {} \
                     kept for blocks: offence and rate-limit counters are not created",
                    self.name(),
                    number(reserve)
                ),
                self.now_ms,
            );
            return Err(DictError::NoMemory);
        }
        let r = self.incr(key, by, 0.0, ttl);
        if r == Err(DictError::NoMemory) {
            self.count(Stat::CountersRefused, 1);
        }
        r
    }

    /// When less than the reserve of [`Store::counter`] is left in free
    /// pages (after a [`Store::reclaim`]): the free bytes and the reserve.
    fn short_of_reserve(&self) -> Option<(usize, f64)> {
        let (cap, mut free) = (self.dict.capacity()?, self.dict.free_space()?);
        let reserve = (cap as f64 / 8.0).max(COUNTER_RESERVE_MIN);
        if (free as f64) < reserve && self.reclaim() > 0 {
            free = self.dict.free_space().unwrap_or(free);
        }
        ((free as f64) < reserve).then_some((free, reserve))
    }

    /// An expendable cache record (a crawler's verdict): set like
    /// [`Store::safe_set`], but only while the reserve that
    /// [`Store::counter`] keeps for blocks is free; false when not stored.
    pub fn cache(&self, key: &str, value: &Value, ttl: f64) -> Result<bool, DictError> {
        if self.short_of_reserve().is_some() {
            return Ok(false);
        }
        match self.safe_set(key, value, ttl) {
            Ok(()) => Ok(true),
            Err(DictError::NoMemory) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mem::{Fixture, Lines};
    use super::*;

    #[test]
    fn quiet_logs_once_then_every_10s_with_a_count() {
        let lines = Lines::default();
        let q = Quiet::default();
        q.log(&lines, Level::Err, "full", 1_000);
        q.log(&lines, Level::Err, "full", 2_000);
        q.log(&lines, Level::Err, "full", 10_999);
        q.log(&lines, Level::Err, "full", 11_500);
        q.log(&lines, Level::Err, "full", 30_000);
        assert_eq!(
            lines.take(),
            vec![
                (Level::Err, "warden: full".to_string()),
                (
                    Level::Err,
                    "warden: full (and 2 more in the last 10s)".to_string()
                ),
                (Level::Err, "warden: full".to_string()),
            ]
        );
    }

    #[test]
    fn a_full_dict_refuses_then_reclaims_expired_keys() {
        let f = Fixture::new(1_000);
        let d = &f.dict;
        let st = |now| f.store(now);
        let big = Value::from("x".repeat(300));
        st(1_000).safe_set("a", &big, 1.0).unwrap();
        st(1_000).safe_set("b", &big, 0.0).unwrap();
        // no room, nothing expired: refused, nothing evicted
        assert_eq!(st(1_000).safe_set("c", &big, 0.0), Err(DictError::NoMemory));
        assert!(d.get("a").unwrap().is_some() && d.get("b").unwrap().is_some());
        // "a" expires: the next write frees it and fits
        d.set_now(2_500);
        assert_eq!(st(2_500).safe_set("c", &big, 0.0), Ok(()));
        assert_eq!(d.get("a").unwrap(), None);
        // at most one reclaim a second per worker
        d.safe_set("e", &Value::from("y"), 0.001).unwrap();
        d.set_now(2_600);
        assert_eq!(st(2_600).reclaim(), 0);
        assert_eq!(st(3_600).reclaim(), 1);
    }

    #[test]
    fn incr_never_evicts_and_takes_a_racing_creation() {
        let f = Fixture::new(300);
        let d = &f.dict;
        let st = f.store(1_000);
        assert_eq!(st.incr("n", 1.0, 5.0, 0.0), Ok(6.0));
        assert_eq!(st.incr("n", 2.0, 5.0, 0.0), Ok(8.0));
        d.safe_set("fill", &Value::from("z".repeat(100)), 0.0)
            .unwrap();
        assert_eq!(st.incr("m", 1.0, 0.0, 0.0), Err(DictError::NoMemory));
        assert_eq!(d.get("fill").unwrap().map(|v| v.len()), Some(100));
    }

    #[test]
    fn counters_leave_the_last_eighth_to_blocks() {
        // 64 KiB: the reserve is 8 KiB (an eighth)
        let f = Fixture::new(65_536);
        let (d, lines) = (&f.dict, &f.lines);
        let st = f.store(5_000);
        let region = crate::shm::region().unwrap();
        let refused = region.total(Stat::CountersRefused);
        let mut n = 0;
        while st
            .counter(&format!("o|10.0.{}.{}", n / 256, n % 256), 1.0, 30.0)
            .is_ok()
        {
            n += 1;
        }
        assert!(n > 300, "{n}");
        // the last counter may take a little of the reserve, never more
        assert!(d.free_space().unwrap() >= 8_192 - 100);
        assert!(region.total(Stat::CountersRefused) > refused);
        // an existing counter still counts; a block still fits
        assert_eq!(st.counter("o|10.0.0.0", 1.0, 30.0), Ok(2.0));
        assert!(st
            .safe_set("b|192.0.2.1", &Value::from("0|manual|"), 0.0)
            .is_ok());
        let logged = lines.take();
        assert_eq!(logged.len(), 1);
        assert!(logged[0].1.starts_with("warden: shared dict 'warden' has "));
        assert!(logged[0].1.ends_with(
            " bytes in free pages, less than the 8192 kept for blocks: offence \
             and rate-limit counters are not created"
        ));
    }

    #[test]
    fn worker_0_flushes_every_10s() {
        let f = Fixture::new(10_000);
        let (d, t) = (&f.dict, &f.throttle);
        let st = |now| f.store(now);
        d.safe_set("x", &Value::from("1"), 0.5).unwrap();
        d.set_now(2_000);
        st(2_000).tick();
        assert_eq!(d.len(), 1, "not worker 0: nothing flushed");
        t.set_worker(0);
        st(2_000).tick();
        assert_eq!(d.len(), 0);
        d.safe_set("y", &Value::from("1"), 0.5).unwrap();
        d.set_now(5_000);
        st(5_000).tick();
        assert_eq!(d.len(), 1, "within 10 s of the last flush");
        st(12_001).tick();
        assert_eq!(d.len(), 0);
    }
}
