//! The journal: how every worker's replica of the blocks follows the
//! shared dict, and how blocks are written to it.
//!
//! The shared dict is the source of truth, so blocks survive
//! `nginx -s reload`. Its keys:
//!
//! - `b|<target>`: one per block ([`Block::key`], [`Block::value`]); the
//!   dict's own expiry removes it on time;
//! - `j|<seq>`: journal entry `<seq>` ([`entry_key`]): one block added or
//!   removed ([`Change::encode`]), or [`POLICY`] (the policy document
//!   changed: reload it), or [`REFRESH`] (every worker re-reads
//!   everything); kept [`JOURNAL_TTL_S`] seconds.
//!
//! The sequence numbers live in Rust-owned shared memory, not in the dict
//! ([`crate::shm::DictSlot`]; [`Replica::take`], [`Replica::publish`]). A
//! writer sets (or deletes) `b|<target>`, takes a sequence number, writes
//! `j|<seq>` and publishes `<seq>`. Every request compares the published
//! number with what its worker has applied (one atomic load) and a worker
//! that is behind replays the journal ([`sync`]) before deciding. Because
//! `b|<target>` is written before the number is taken, a worker that finds
//! an entry missing (expired, never written, taken by a writer that was
//! killed) re-reads every `b|` key instead ([`full_sync`]) and still misses
//! nothing.

use crate::blocks::{Block, Change, RecordError};
use crate::error::{Error, Kind};
use crate::metrics::Stat;
use crate::net::addr::Net;
use crate::store::{DictError, Level, Store, Value};

/// Seconds a journal entry is kept.
pub const JOURNAL_TTL_S: f64 = 300.0;
/// Further behind than this many entries: re-read everything.
pub const MAX_REPLAY: u64 = 10_000;
/// Bulk changes journaled one by one, at most (more: one [`REFRESH`]).
pub const SMALL_BULK: usize = 1_000;
/// The journal entry "the admin API's policy document changed".
pub const POLICY: &str = "P";
/// The journal entry "every worker re-reads every block and the policy".
pub const REFRESH: &str = "R";

/// The dict key of journal entry `seq`.
pub fn entry_key(seq: u64) -> String {
    format!("j|{seq}")
}

/// A worker's replica of the blocks (and of the policy), as the journal
/// protocol drives it; the engine implements it.
pub trait Replica {
    /// The newest sequence number published (one atomic load).
    fn version(&self) -> u64;
    /// Takes a new sequence number for a journal entry.
    fn take(&self) -> u64;
    /// Publishes `seq` to every worker.
    fn publish(&self, seq: u64);
    /// The sequence number this worker has applied.
    fn applied(&self) -> u64;
    /// Records that this worker has applied everything up to `seq`.
    fn set_applied(&self, seq: u64);
    /// Empties the replica before a full re-read (counted).
    fn reset(&self);
    /// Loads one dict record (`b|<target>`, its value).
    fn load(&self, key: &str, value: &str) -> Result<(), RecordError>;
    /// Applies one journal entry (counted).
    fn apply(&self, entry: &str) -> Result<(), RecordError>;
    /// Ends a batch of changes (rebuilds the range index).
    fn commit(&self);
    /// Compiles the policy document in the dict into this worker.
    fn reload_policy(&self, st: &Store<'_>) -> Result<(), String>;
}

/// Compiles the policy document again; a failure is logged and the
/// previous policy kept.
pub fn load_policy(st: &Store<'_>, r: &dyn Replica) {
    if let Err(e) = r.reload_policy(st) {
        st.log(Level::Err, &format!("keeping the previous policy: {e}"));
    }
}

fn applied_up_to(r: &dyn Replica, v: u64) {
    r.commit();
    r.set_applied(v);
}

/// Re-reads every block and the policy from the dict.
pub fn full_sync(st: &Store<'_>, r: &dyn Replica) -> Result<(), DictError> {
    // Everything published before this point has its b| key written, so
    // after reading every key this worker is current up to `v`.
    let v = r.version();
    let keys = st.dict.keys()?;
    r.reset();
    for k in keys.iter().filter(|k| k.starts_with("b|")) {
        if let Some(value) = st.dict.get_text(k)? {
            if let Err(e) = r.load(k, &value) {
                st.log(Level::Err, &format!("ignoring shared dict record: {e}"));
            }
        }
    }
    load_policy(st, r);
    applied_up_to(r, v);
    Ok(())
}

/// Brings this worker's replica up to date with the journal: replays the
/// entries it has not applied, or re-reads everything when one is
/// missing, when it asks for it ([`REFRESH`]) or when the worker is more
/// than [`MAX_REPLAY`] behind.
pub fn sync(st: &Store<'_>, r: &dyn Replica) -> Result<(), DictError> {
    let applied = r.applied();
    let v = r.version();
    if v == applied {
        return Ok(());
    }
    if v < applied || v - applied > MAX_REPLAY {
        return full_sync(st, r);
    }
    let mut policy = false;
    for seq in applied + 1..=v {
        let Some(entry) = st.dict.get_text(&entry_key(seq))? else {
            return full_sync(st, r);
        };
        match entry.as_bytes().first() {
            Some(b'P') => policy = true,
            Some(b'R') => return full_sync(st, r),
            _ => {
                if let Err(e) = r.apply(&entry) {
                    st.log(Level::Err, &format!("ignoring journal entry {seq}: {e}"));
                }
            }
        }
    }
    if policy {
        load_policy(st, r);
    }
    applied_up_to(r, v);
    Ok(())
}

/// [`sync`], logging a failure (a dict call that failed) instead of
/// returning it: after a write, the write stands.
pub fn sync_logged(st: &Store<'_>, r: &dyn Replica) {
    if let Err(e) = sync(st, r) {
        st.log(Level::Err, &format!("sync failed: {e}"));
    }
}

/// Takes a sequence number, writes journal entry `entry` under it and
/// publishes it. An entry that cannot be written is logged: workers will
/// find it missing and re-read every block.
pub fn write(st: &Store<'_>, r: &dyn Replica, entry: &str) -> u64 {
    let seq = r.take();
    if let Err(e) = st.safe_set(&entry_key(seq), &Value::from(entry), JOURNAL_TTL_S) {
        st.log(
            Level::Warn,
            &format!("cannot write journal entry {seq} ({e}); workers will re-read all blocks"),
        );
    }
    r.publish(seq);
    seq
}

/// A block refused because the dict is full. A full dict refuses every
/// block until something expires: each refusal is counted (`dict_full`)
/// and returned, the first is logged, then at most one line every 10 s
/// per worker with how many were not.
fn refused(st: &Store<'_>, err: &DictError, target: &Net) -> Error {
    st.count(Stat::DictFull, 1);
    let msg = format!(
        "shared dict '{}' is full ({err}): cannot block {target}",
        st.name()
    );
    st.throttle.full().log(st.log, Level::Err, &msg, st.now_ms);
    Error::new(Kind::Full, "", msg)
}

/// Stores a block (replacing any block of its target), journals it and
/// brings this worker up to date: all or nothing. `Kind::Full` when the
/// dict has no room for it.
pub fn add(st: &Store<'_>, r: &dyn Replica, b: &Block) -> Result<(), Error> {
    let ttl = b.ttl(st.now_ms);
    if let Err(e) = st.safe_set(&Block::key(&b.net), &Value::from(b.value()), ttl) {
        return Err(refused(st, &e, &b.net));
    }
    write(st, r, &Change::Add(b.clone()).encode());
    sync_logged(st, r);
    Ok(())
}

/// Removes the block of exactly `net`, journals it and brings this worker
/// up to date.
pub fn remove(st: &Store<'_>, r: &dyn Replica, net: &Net) -> Result<(), Error> {
    st.dict.delete(&Block::key(net)).map_err(|e| {
        Error::new(
            Kind::Full,
            "",
            format!("shared dict '{}': {e}: cannot unblock {net}", st.name()),
        )
    })?;
    write(st, r, &Change::Remove(*net).encode());
    sync_logged(st, r);
    Ok(())
}

/// Many blocks at once (a restore, a fleet reconciliation). Up to
/// [`SMALL_BULK`] changes get one journal entry each, which workers
/// replay; more get one [`REFRESH`] entry, which makes every worker re-read
/// every block (at 1M blocks that is ~0.3 s, on the first request a worker
/// serves after it) instead of flooding the journal. Blocks that do not
/// fit are counted and logged once, as "<n> <what> were not stored".
#[derive(Debug)]
pub struct Batch {
    what: String,
    written: usize,
    refused: usize,
    entries: Option<Vec<String>>,
}

impl Batch {
    /// A batch of `what` ("blocks of the state file").
    pub fn new(what: &str) -> Batch {
        Batch {
            what: what.to_string(),
            written: 0,
            refused: 0,
            entries: Some(Vec::new()),
        }
    }

    fn note(&mut self, entry: impl FnOnce() -> String) {
        self.written += 1;
        if self.written > SMALL_BULK {
            self.entries = None;
        } else if let Some(list) = &mut self.entries {
            list.push(entry());
        }
    }

    /// Sets a block (with the time it has left at `st.now_ms`).
    pub fn put(&mut self, st: &Store<'_>, b: &Block) {
        let ttl = b.ttl(st.now_ms);
        if st
            .safe_set(&Block::key(&b.net), &Value::from(b.value()), ttl)
            .is_err()
        {
            self.refused += 1;
            return;
        }
        self.note(|| Change::Add(b.clone()).encode());
    }

    /// Removes the block of `net`.
    pub fn delete(&mut self, st: &Store<'_>, net: &Net) {
        let _ = st.dict.delete(&Block::key(net));
        self.note(|| Change::Remove(*net).encode());
    }

    /// Changes written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Ends the batch: journals it and brings this worker up to date.
    /// Returns the number of changes written.
    pub fn finish(self, st: &Store<'_>, r: &dyn Replica) -> usize {
        if self.refused > 0 {
            st.count(Stat::DictFull, self.refused as u64);
            st.log(
                Level::Err,
                &format!(
                    "shared dict '{}' is full: {} {} were not stored",
                    st.name(),
                    self.refused,
                    self.what
                ),
            );
        }
        match &self.entries {
            None => {
                write(st, r, REFRESH);
            }
            Some(list) => {
                for e in list {
                    write(st, r, e);
                }
            }
        }
        if self.written > 0 {
            sync_logged(st, r);
        }
        self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::{Blocks, Source};
    use crate::net::addr::Addr;
    use crate::store::mem::Fixture;
    use crate::store::Dict;
    use std::cell::{Cell, RefCell};

    /// A replica with its own sequence (the engine's is in shared memory).
    #[derive(Default)]
    struct Worker {
        taken: Cell<u64>,
        version: Cell<u64>,
        applied: Cell<u64>,
        blocks: RefCell<Blocks>,
        full_syncs: Cell<u32>,
        policy: RefCell<Option<String>>,
        seq: Option<std::rc::Rc<Worker>>,
    }

    impl Worker {
        /// A second worker sharing this one's sequence.
        fn sharing(first: &std::rc::Rc<Worker>) -> Worker {
            Worker {
                seq: Some(first.clone()),
                ..Worker::default()
            }
        }

        fn shared(&self) -> &Worker {
            self.seq.as_deref().unwrap_or(self)
        }

        fn blocked(&self, ip: &str) -> bool {
            self.blocks
                .borrow()
                .lookup(Addr::parse(ip).unwrap(), || 5_000)
                .is_some()
        }
    }

    impl Replica for Worker {
        fn version(&self) -> u64 {
            self.shared().version.get()
        }
        fn take(&self) -> u64 {
            let s = self.shared();
            let n = s.taken.get().max(s.version.get()) + 1;
            s.taken.set(n);
            n
        }
        fn publish(&self, seq: u64) {
            let s = self.shared();
            s.version.set(s.version.get().max(seq));
        }
        fn applied(&self) -> u64 {
            self.applied.get()
        }
        fn set_applied(&self, seq: u64) {
            self.applied.set(seq);
        }
        fn reset(&self) {
            self.blocks.borrow_mut().clear();
            self.full_syncs.set(self.full_syncs.get() + 1);
        }
        fn load(&self, key: &str, value: &str) -> Result<(), RecordError> {
            self.blocks.borrow_mut().insert(Block::decode(key, value)?);
            Ok(())
        }
        fn apply(&self, entry: &str) -> Result<(), RecordError> {
            self.blocks.borrow_mut().apply(Change::decode(entry)?);
            Ok(())
        }
        fn commit(&self) {
            self.blocks.borrow_mut().commit();
        }
        fn reload_policy(&self, st: &Store<'_>) -> Result<(), String> {
            *self.policy.borrow_mut() = st.dict.get_text("p").map_err(|e| e.to_string())?;
            Ok(())
        }
    }

    fn blk(t: &str, expires_ms: u64) -> Block {
        Block {
            net: Net::parse(t).unwrap(),
            expires_ms,
            source: Source::Manual,
            reason: "why".into(),
            action: crate::blocks::Action::Block,
        }
    }

    #[test]
    fn writers_journal_and_other_workers_replay() {
        let env = Fixture::new(100_000);
        let st = env.store(1_000);
        let a = std::rc::Rc::new(Worker::default());
        let b = Worker::sharing(&a);
        add(&st, &*a, &blk("192.0.2.1", 0)).unwrap();
        add(&st, &*a, &blk("10.0.0.0/8", 0)).unwrap();
        assert!(a.blocked("192.0.2.1") && a.applied() == 2);
        // b is behind by two entries: it replays them, no full re-read
        assert_eq!((b.version(), b.applied()), (2, 0));
        sync(&st, &b).unwrap();
        assert!(b.blocked("192.0.2.1") && b.blocked("10.9.9.9"));
        assert_eq!((b.applied(), b.full_syncs.get()), (2, 0));
        remove(&st, &b, &Net::parse("192.0.2.1").unwrap()).unwrap();
        sync(&st, &*a).unwrap();
        assert!(!a.blocked("192.0.2.1") && a.blocked("10.1.1.1"));
        assert_eq!(env.dict.get("b|192.0.2.1").unwrap(), None);
        assert_eq!(
            env.dict.get_text("j|3").unwrap().as_deref(),
            Some("-|192.0.2.1")
        );
        assert!(env.lines.take().is_empty());
    }

    #[test]
    fn a_missing_entry_or_refresh_means_a_full_re_read() {
        let env = Fixture::new(100_000);
        let st = env.store(1_000);
        let a = std::rc::Rc::new(Worker::default());
        let b = Worker::sharing(&a);
        add(&st, &*a, &blk("192.0.2.60", 0)).unwrap();
        add(&st, &*a, &blk("192.0.2.61", 0)).unwrap();
        env.dict.delete("j|2").unwrap();
        sync(&st, &b).unwrap();
        assert!(b.blocked("192.0.2.60") && b.blocked("192.0.2.61"));
        assert_eq!((b.full_syncs.get(), b.applied()), (1, 2));
        // a block written behind the journal's back, then a refresh
        env.dict
            .safe_set("b|192.0.2.33", &Value::from("0|manual|x"), 0.0)
            .unwrap();
        env.dict.safe_set("p", &Value::from("{}"), 0.0).unwrap();
        write(&st, &*a, REFRESH);
        sync(&st, &b).unwrap();
        assert!(b.blocked("192.0.2.33"));
        assert_eq!(b.full_syncs.get(), 2);
        assert_eq!(b.policy.borrow().as_deref(), Some("{}"));
        // a policy entry reloads the policy only
        env.dict
            .safe_set("p", &Value::from("{\"x\":1}"), 0.0)
            .unwrap();
        write(&st, &*a, POLICY);
        sync(&st, &b).unwrap();
        assert_eq!(b.full_syncs.get(), 2);
        assert_eq!(b.policy.borrow().as_deref(), Some("{\"x\":1}"));
        // far behind: a full re-read rather than a long replay
        let c = Worker::sharing(&a);
        a.publish(MAX_REPLAY + 10);
        sync(&st, &c).unwrap();
        assert_eq!((c.full_syncs.get(), c.applied()), (1, MAX_REPLAY + 10));
        sync(&st, &b).unwrap();
        assert_eq!(b.full_syncs.get(), 3);
        // a malformed record or entry is logged and skipped
        env.dict
            .safe_set("b|nope", &Value::from("0|manual|x"), 0.0)
            .unwrap();
        let seq = write(&st, &*a, "+|junk");
        sync(&st, &b).unwrap();
        assert_eq!(
            env.lines.take(),
            vec![(
                Level::Err,
                format!("warden: ignoring journal entry {seq}: malformed block record '+|junk'")
            )]
        );
        write(&st, &*a, REFRESH);
        sync(&st, &b).unwrap();
        assert_eq!(
            env.lines.take(),
            vec![(
                Level::Err,
                "warden: ignoring shared dict record: malformed block record 'b|nope'".into()
            )]
        );
    }

    #[test]
    fn a_full_dict_refuses_a_block_whole() {
        let env = Fixture::new(700);
        let st = env.store(1_000);
        let a = Worker::default();
        let mut n = 0;
        let err = loop {
            match add(&st, &a, &blk(&format!("192.0.2.{n}"), 0)) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), Kind::Full);
        let target = format!("192.0.2.{n}");
        assert_eq!(
            err.message(),
            format!("shared dict 'warden' is full (no memory): cannot block {target}")
        );
        // nothing half-applied: no record, and no journal entry for it
        assert_eq!(env.dict.get(&format!("b|{target}")).unwrap(), None);
        assert!(!a.blocked(&target));
        assert_eq!(a.version() as usize, n);
        // refusals are logged once (then every 10 s with a count)
        let _ = add(&st, &a, &blk("198.51.100.1", 0));
        let lines = env.lines.take();
        let full: Vec<_> = lines.iter().filter(|l| l.1.contains("is full")).collect();
        assert_eq!(full.len(), 1);
        assert!(full[0].1.ends_with(&format!("cannot block {target}")));
    }

    #[test]
    fn batches_journal_small_changes_and_refresh_big_ones() {
        let env = Fixture::new(1_000_000);
        let st = env.store(1_000);
        let a = std::rc::Rc::new(Worker::default());
        let b = Worker::sharing(&a);
        let mut batch = Batch::new("blocks of a test");
        batch.put(&st, &blk("192.0.2.1", 0));
        batch.put(&st, &blk("192.0.2.2", 61_000));
        batch.delete(&st, &Net::parse("192.0.2.1").unwrap());
        assert_eq!(batch.finish(&st, &*a), 3);
        assert_eq!(a.version(), 3);
        sync(&st, &b).unwrap();
        assert_eq!(b.full_syncs.get(), 0);
        assert!(!b.blocked("192.0.2.1") && b.blocked("192.0.2.2"));
        let mut big = Batch::new("blocks of a test");
        for i in 0..SMALL_BULK + 1 {
            big.put(&st, &blk(&format!("10.0.{}.{}", i / 256, i % 256), 0));
        }
        assert_eq!(big.finish(&st, &*a), SMALL_BULK + 1);
        assert_eq!(a.version(), 4);
        assert_eq!(env.dict.get_text("j|4").unwrap().as_deref(), Some("R"));
        sync(&st, &b).unwrap();
        assert_eq!(b.full_syncs.get(), 1);
        assert!(b.blocked("10.0.3.232"));
    }

    #[test]
    fn a_batch_that_does_not_fit_is_counted_and_logged_once() {
        let env = Fixture::new(1_000);
        let st = env.store(1_000);
        let a = Worker::default();
        let mut batch = Batch::new("blocks of the state file");
        for i in 0..20 {
            batch.put(&st, &blk(&format!("192.0.2.{i}"), 0));
        }
        let written = batch.finish(&st, &a);
        assert!(written > 0 && written < 20);
        let errors: Vec<_> = env
            .lines
            .take()
            .into_iter()
            .filter(|l| l.0 == Level::Err)
            .collect();
        assert_eq!(
            errors,
            vec![(
                Level::Err,
                format!(
                    "warden: shared dict 'warden' is full: {} blocks of the state file \
                     were not stored",
                    20 - written
                )
            )]
        );
    }
}
