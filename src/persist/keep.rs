//! Keeping the state file ([`crate::persist::state`]): restoring it when
//! nginx starts, saving it after changes.
//!
//! Restoring ([`restore`]) happens once, in `new()` in the master, when
//! the shared dict is fresh (a restart; after `nginx -s reload` the dict
//! already holds everything and the file is left alone). Blocks come back
//! with the time they had left; blocks that expired while nginx was
//! stopped are dropped. A missing file starts clean; a corrupt or
//! unreadable one is logged, renamed to `<file>.corrupt-<ms>` and never
//! stops nginx from starting.
//!
//! Saving happens in worker 0, off the request path ([`Saver`]): a timer
//! (Lua) calls [`Saver::tick`], which notices that the journal moved (a
//! block, an unblock, a policy change, a change from the fleet), takes a
//! snapshot of the worker's replica of the blocks and the policy document,
//! and hands it to a thread that writes it atomically. A change reaches
//! the file within `state_interval` plus the time to write it; that is
//! what a crash can lose. A graceful stop writes what is left before the
//! worker exits ([`Saver::exit`]).

use std::cell::Cell;
use std::path::{Path, PathBuf};

use crate::blocks::journal::{self, Batch};
use crate::engine::Engine;
use crate::events::Filter;
use crate::metrics::Stat;
use crate::options::number;
use crate::persist::{fleet, state};
use crate::policy::doc;
use crate::store::{Dict, Level, Store, Value};

/// The dict key that marks a dict the state file was restored into (or
/// found fresh without one): a reload finds it and leaves the file alone.
pub const LOADED: &str = "s|loaded";

/// One writer of state files per process (each worker has its own).
static WRITER: once_cell::sync::Lazy<state::Writer> =
    once_cell::sync::Lazy::new(state::Writer::new);

/// `Thu, 01 Jan 1970 00:00:00 GMT` (as `ngx.http_time`).
///
/// ```
/// use warden_core::persist::keep::http_time;
/// assert_eq!(http_time(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
/// ```
pub fn http_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = crate::options::civil(days);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Restores the state file at `path` into a fresh dict (see the module's
/// documentation). Never fails: what goes wrong is logged.
pub fn restore(st: &Store<'_>, e: &Engine, path: &Path) {
    if st.dict.safe_add(LOADED, &Value::Bool(true), 0.0).is_err() {
        return; // a reload: the shared dict is current
    }
    let shown = path.display();
    let saved = match state::load(path) {
        Ok(s) => s,
        Err(err) if err.kind_name() == "missing" => {
            st.log(
                Level::Notice,
                &format!("no state file at {shown} yet; starting with no blocks"),
            );
            return;
        }
        Err(err) => {
            let aside = match state::set_aside(path, st.now_ms) {
                Ok(p) => format!("moved it to {}", p.display()),
                Err(_) => "could not move it aside".to_string(),
            };
            st.log(Level::Err, &format!("{err}; {aside}; starting without it"));
            return;
        }
    };
    let mut policy = "";
    if let Some(p) = &saved.policy {
        match e.compile_policy(p) {
            Ok(compiled) => {
                e.install_policy(compiled);
                let _ = st.dict.safe_set(doc::KEY, &Value::from(p.to_string()), 0.0);
                policy = " and the admin API's policy";
            }
            Err(err) => st.log(
                Level::Err,
                &format!("the state file's policy was not restored: {err}"),
            ),
        }
    }
    if let Some(epoch) = &saved.fleet_epoch {
        let _ = fleet::reconciled(st.dict, epoch);
    }
    // the workers fork from this process, replica and policy included
    let mut batch = Batch::new("blocks of the state file");
    let mut expired = 0;
    for b in &saved.blocks {
        if b.expired(st.now_ms) {
            expired += 1;
        } else {
            batch.put(st, b);
        }
    }
    let restored = batch.finish(st, e);
    restore_events(st, e, &saved.events, &shown.to_string());
    st.count(Stat::StateRestored, restored as u64);
    st.log(
        Level::Notice,
        &format!(
            "restored {restored} blocks{policy} from {shown} (saved {}; {expired} expired while \
             nginx was stopped)",
            http_time((saved.saved_ms / 1000) as i64)
        ),
    );
}

/// Puts the saved events back in the ring (oldest first): those within
/// `retention_days`, at most the ring's capacity (the newest). The event
/// log starts after them (they were written before the restart).
fn restore_events(st: &Store<'_>, e: &Engine, events: &[crate::events::Event], shown: &str) {
    let ring = e.events();
    let retention = e.config().retention_ms;
    let from = if retention > 0 {
        st.now_ms.saturating_sub(retention)
    } else {
        0
    };
    let kept: Vec<_> = events.iter().filter(|ev| ev.time_ms >= from).collect();
    let skip = kept.len().saturating_sub(ring.capacity());
    for ev in &kept[skip..] {
        ring.push(ev);
    }
    ring.set_logged(ring.written());
    if !events.is_empty() {
        st.log(
            Level::Notice,
            &format!(
                "restored {} security events from {shown} ({} older than retention_days, {} \
                 beyond max_events)",
                kept.len() - skip,
                events.len() - kept.len(),
                skip
            ),
        );
    }
}

/// What a state file would hold now: this worker's replica of the blocks,
/// the policy document and the fleet's epoch from the dict.
pub fn snapshot(e: &Engine, d: &dyn Dict, now_ms: u64) -> Result<state::State, String> {
    let policy = match d.get(doc::KEY).map_err(|err| err.to_string())? {
        Some(Value::Str(text)) if !text.is_empty() => Some(
            serde_json::from_slice::<serde_json::Value>(&text)
                .map_err(|err| format!("the stored policy document is not JSON: {err}"))?,
        ),
        _ => None,
    };
    // newest first from the ring (within the retention, after the latest
    // cleanup, at most its capacity); the file keeps them oldest first
    let mut events = e.events().query(&Filter::default(), now_ms);
    events.reverse();
    Ok(state::State {
        saved_ms: now_ms,
        blocks: e.blocks_snapshot(now_ms),
        policy,
        fleet_epoch: fleet::epoch(d),
        events,
    })
}

/// Worker 0's saving of the state file.
#[derive(Debug)]
pub struct Saver {
    path: PathBuf,
    interval_ms: u64,
    /// The journal version in the file (None: write one at once, which
    /// also tells at once whether it can be written).
    saved: Cell<Option<u64>>,
    /// The version being written.
    pending: Cell<Option<u64>>,
    /// When the latest write started.
    last_ms: Cell<u64>,
    failing: Cell<bool>,
    /// The events in the file: the ring's count of events written and its
    /// latest cleanup (see [`events_mark`]).
    events_saved: Cell<(u64, u64)>,
    /// Those of the write in progress.
    events_pending: Cell<(u64, u64)>,
}

/// Shortest time between two writes of the state file for new events
/// alone (blocks and the policy are written after `state_interval`).
pub const EVENTS_INTERVAL_MS: u64 = 5_000;

/// What tells that the events changed since a write: how many the ring
/// ever recorded, and its latest cleanup.
fn events_mark(e: &Engine) -> (u64, u64) {
    let ring = e.events();
    (ring.written(), ring.cleaned_before())
}

impl Saver {
    /// Saves to `path` at most every `interval_ms`; logs where.
    pub fn start(st: &Store<'_>, path: &Path, interval_ms: u64) -> Saver {
        st.log(
            Level::Info,
            &format!(
                "state file {}, written at most every {} s",
                path.display(),
                number(interval_ms as f64 / 1000.0)
            ),
        );
        Saver {
            path: path.to_path_buf(),
            interval_ms,
            saved: Cell::new(None),
            pending: Cell::new(None),
            last_ms: Cell::new(0),
            failing: Cell::new(false),
            events_saved: Cell::new((0, 0)),
            events_pending: Cell::new((0, 0)),
        }
    }

    fn failed(&self, st: &Store<'_>, err: &str) {
        if !self.failing.get() {
            self.failing.set(true);
            st.log(
                Level::Err,
                &format!(
                    "{err}; changes will not survive a restart until it can be written \
                     (retrying every {} s)",
                    number(self.interval_ms as f64 / 1000.0)
                ),
            );
        }
    }

    /// Logs the outcome of the latest background write, if one finished.
    fn outcome(&self, st: &Store<'_>) {
        match WRITER.poll() {
            None => {}
            Some(Ok(s)) => {
                st.count(Stat::StateSaves, 1);
                self.saved.set(self.pending.get());
                self.events_saved.set(self.events_pending.get());
                let path = self.path.display();
                if self.failing.get() {
                    self.failing.set(false);
                    st.log(
                        Level::Notice,
                        &format!("state file {path} written again ({} blocks)", s.blocks),
                    );
                } else {
                    st.log(
                        Level::Info,
                        &format!(
                            "state file {path} written ({} blocks, {} bytes, {} ms)",
                            s.blocks,
                            s.bytes,
                            number(s.elapsed_ms)
                        ),
                    );
                }
            }
            Some(Err(err)) => {
                st.count(Stat::StateSaveErrors, 1);
                self.failed(st, &err);
            }
        }
    }

    fn sync(st: &Store<'_>, e: &Engine) {
        if let Err(err) = journal::sync(st, e) {
            st.log(
                Level::Err,
                &format!("sync before saving the state failed: {err}"),
            );
        }
    }

    /// The timer's tick (every 0.2 s): logs a finished write, and starts
    /// one when the journal moved and `state_interval` has passed.
    pub fn tick(&self, st: &Store<'_>, e: &Engine) {
        self.outcome(st);
        if st.now_ms.saturating_sub(self.last_ms.get()) < self.interval_ms
            && self.last_ms.get() != 0
        {
            return;
        }
        if self.saved.get() == Some(e.version()) && !self.failing.get() {
            // only new events (or a cleanup): not as often
            if self.events_saved.get() == events_mark(e)
                || st.now_ms.saturating_sub(self.last_ms.get()) < EVENTS_INTERVAL_MS
            {
                return;
            }
        }
        Saver::sync(st, e);
        let v = e.applied();
        let mark = events_mark(e);
        match snapshot(e, st.dict, st.now_ms) {
            Ok(s) => {
                if WRITER.submit(self.path.clone(), s) {
                    self.pending.set(Some(v));
                    self.events_pending.set(mark);
                    self.last_ms.set(st.now_ms.max(1));
                }
            }
            Err(err) => self.failed(st, &err),
        }
    }

    /// The worker exits: writes what is left, now.
    pub fn exit(&self, st: &Store<'_>, e: &Engine) {
        self.outcome(st);
        if self.saved.get() == Some(e.applied())
            && !self.failing.get()
            && self.events_saved.get() == events_mark(e)
        {
            return;
        }
        Saver::sync(st, e);
        WRITER.wait();
        let written = snapshot(e, st.dict, st.now_ms).and_then(|s| {
            state::write_atomic(&self.path, &state::serialize(&s)).map_err(|err| err.to_string())
        });
        match written {
            Ok(()) => st.count(Stat::StateSaves, 1),
            Err(err) => {
                st.count(Stat::StateSaveErrors, 1);
                st.log(Level::Err, &format!("{err} (at exit)"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_times() {
        assert_eq!(http_time(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_time(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_time(1_763_700_001), "Fri, 21 Nov 2025 04:40:01 GMT");
    }
}
