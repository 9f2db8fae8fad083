//! An in-memory [`Dict`] and [`Log`] for unit tests of the protocols that
//! use the shared dict (journal, offences, rate limits, policy document,
//! fleet outbox).
//!
//! [`Mem`] behaves as nginx's dict where the protocols depend on it: a
//! fixed capacity that `safe_set` and `safe_add` never evict to make room,
//! keys that expire on a clock the test moves, expired keys that keep
//! their memory until [`Dict::flush_expired`], `incr` without an initial
//! value on a missing key failing with `NotFound`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use super::{Dict, DictError, Level, Log, Store, Throttle, Value};

/// Bytes each key costs besides its key and value (nginx's node, roughly).
const OVERHEAD: usize = 64;

struct Entry {
    value: Value,
    /// Expiry, ms on the dict's clock; 0 = never.
    expires_ms: u64,
}

/// An in-memory dict of `capacity` bytes, with its own clock.
pub struct Mem {
    capacity: usize,
    used: Cell<usize>,
    now_ms: Cell<u64>,
    entries: RefCell<BTreeMap<String, Entry>>,
}

impl Mem {
    /// An empty dict of `capacity` bytes; its clock reads 1000 ms.
    pub fn new(capacity: usize) -> Mem {
        Mem {
            capacity,
            used: Cell::new(0),
            now_ms: Cell::new(1_000),
            entries: RefCell::new(BTreeMap::new()),
        }
    }

    /// Sets the dict's clock (ms).
    pub fn set_now(&self, ms: u64) {
        self.now_ms.set(ms);
    }

    /// Keys held, expired or not.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn cost(key: &str, value: &Value) -> usize {
        OVERHEAD + key.len() + value.len()
    }

    fn live(&self, e: &Entry) -> bool {
        e.expires_ms == 0 || e.expires_ms > self.now_ms.get()
    }

    fn expiry(&self, ttl: f64) -> u64 {
        if ttl <= 0.0 {
            0
        } else {
            self.now_ms.get() + ((ttl * 1000.0).ceil() as u64).max(1)
        }
    }

    fn store(&self, key: &str, value: &Value, ttl: f64) -> Result<(), DictError> {
        let mut entries = self.entries.borrow_mut();
        let old = entries.get(key).map_or(0, |e| Self::cost(key, &e.value));
        let new = Self::cost(key, value);
        if self.used.get() - old + new > self.capacity {
            return Err(DictError::NoMemory);
        }
        self.used.set(self.used.get() - old + new);
        entries.insert(
            key.to_string(),
            Entry {
                value: value.clone(),
                expires_ms: self.expiry(ttl),
            },
        );
        Ok(())
    }
}

impl Dict for Mem {
    fn get(&self, key: &str) -> Result<Option<Value>, DictError> {
        Ok(self
            .entries
            .borrow()
            .get(key)
            .filter(|e| self.live(e))
            .map(|e| e.value.clone()))
    }

    fn safe_set(&self, key: &str, value: &Value, ttl: f64) -> Result<(), DictError> {
        self.store(key, value, ttl)
    }

    fn safe_add(&self, key: &str, value: &Value, ttl: f64) -> Result<(), DictError> {
        if self.get(key)?.is_some() {
            return Err(DictError::Exists);
        }
        self.store(key, value, ttl)
    }

    fn incr(&self, key: &str, by: f64) -> Result<f64, DictError> {
        let mut entries = self.entries.borrow_mut();
        match entries.get_mut(key) {
            Some(e) if e.expires_ms == 0 || e.expires_ms > self.now_ms.get() => match e.value {
                Value::Num(n) => {
                    e.value = Value::Num(n + by);
                    Ok(n + by)
                }
                _ => Err(DictError::NotANumber),
            },
            _ => Err(DictError::NotFound),
        }
    }

    fn delete(&self, key: &str) -> Result<(), DictError> {
        if let Some(e) = self.entries.borrow_mut().remove(key) {
            self.used.set(self.used.get() - Self::cost(key, &e.value));
        }
        Ok(())
    }

    fn keys(&self) -> Result<Vec<String>, DictError> {
        Ok(self
            .entries
            .borrow()
            .iter()
            .filter(|(_, e)| self.live(e))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn flush_expired(&self) -> Result<usize, DictError> {
        let mut entries = self.entries.borrow_mut();
        let before = entries.len();
        let mut freed = 0;
        let now = self.now_ms.get();
        entries.retain(|k, e| {
            let keep = e.expires_ms == 0 || e.expires_ms > now;
            if !keep {
                freed += Self::cost(k, &e.value);
            }
            keep
        });
        self.used.set(self.used.get() - freed);
        Ok(before - entries.len())
    }

    fn free_space(&self) -> Option<usize> {
        Some(self.capacity - self.used.get())
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.capacity)
    }

    fn expire(&self, key: &str, ttl: f64) -> Result<bool, DictError> {
        let expires_ms = self.expiry(ttl);
        let now = self.now_ms.get();
        Ok(match self.entries.borrow_mut().get_mut(key) {
            Some(e) if e.expires_ms == 0 || e.expires_ms > now => {
                e.expires_ms = expires_ms;
                true
            }
            _ => false,
        })
    }
}

/// Log lines kept in a list.
#[derive(Default)]
pub struct Lines(RefCell<Vec<(Level, String)>>);

impl Lines {
    /// The lines logged since the last call.
    pub fn take(&self) -> Vec<(Level, String)> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

impl Log for Lines {
    fn write(&self, level: Level, line: &str) {
        self.0.borrow_mut().push((level, line.to_string()));
    }
}

/// A dict, a log and a worker's [`Throttle`]: what a unit test of a
/// protocol writes through.
pub struct Fixture {
    /// The dict.
    pub dict: Mem,
    /// The lines logged.
    pub lines: Lines,
    /// The worker's memory of its writes.
    pub throttle: Throttle,
}

impl Fixture {
    /// A dict of `capacity` bytes named `warden`.
    pub fn new(capacity: usize) -> Fixture {
        Fixture {
            dict: Mem::new(capacity),
            lines: Lines::default(),
            throttle: Throttle::new("warden"),
        }
    }

    /// The dict as a worker writes it at `now_ms` (counted in the last
    /// worker slot of the shared counters).
    pub fn store(&self, now_ms: u64) -> Store<'_> {
        Store {
            dict: &self.dict,
            log: &self.lines,
            stats: crate::shm::region()
                .expect("the shared region")
                .worker(crate::shm::MAX_WORKERS - 1),
            throttle: &self.throttle,
            now_ms,
        }
    }
}
