//! What warden does with its shared dict: each domain's protocol run
//! against one engine ([`Engine`]: this worker's replica, lists, detector,
//! policy) and the dict every worker shares.
//!
//! [`Warden`] is the one entry point for both doors' callers: the Lua
//! module's bindings (`engine:block()`, `engine:sync()`...) and the admin
//! API. It borrows the engine, the dict, where log lines go and this
//! worker's [`Worker`] state, so a caller builds one per call:
//!
//! ```
//! use warden_core::{blocks::Source, config::Config, engine::Engine, net::addr::{Addr, Net}};
//! use warden_core::ops::{Warden, Worker};
//! use warden_core::store::mem::{Lines, Mem};
//!
//! let cfg = Config::from_value(&serde_json::json!({"dict": "doc-ops"})).unwrap();
//! let (engine, dict, log, worker) = (Engine::new(cfg).unwrap(), Mem::new(1 << 20),
//!                                    Lines::default(), Worker::new("doc-ops"));
//! let w = Warden { engine: &engine, dict: &dict, log: &log, worker: &worker };
//! w.block(&Net::parse("192.0.2.7").unwrap(), 3_600_000, "abuse", Source::Manual).unwrap();
//! assert!(w.is_blocked(Addr::parse("192.0.2.7").unwrap()).is_some());
//! let err = w.unblock(&Net::parse("192.0.2.8").unwrap()).unwrap_err();
//! assert_eq!((err.kind().status(), err.field()), (404, Some("ip")));
//! ```
//!
//! Errors are [`Error`]s with a kind: the admin API answers with
//! `err.kind().status()`, never by reading the message.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use serde_json::Value as Json;

use crate::blocks::journal::{self, Batch};
use crate::blocks::{Action as BlockAction, Block, Change, Source};
use crate::detect::offences::{self, Seen};
use crate::detect::Mode;
use crate::engine::{now_ms, Engine};
use crate::error::{Error, Kind};
use crate::events::log::{Drain, Target};
use crate::events::{Event, Kind as EventKind};
use crate::metrics::{DetectorGauges, FleetGauges, Snapshot, Stat};
use crate::net::addr::{Addr, Net};
use crate::options::human;
use crate::persist::fleet::agent::{Action, Agent, Node, Outcome};
use crate::persist::fleet::{self, Pending};
use crate::persist::keep::{self, Saver};
use crate::policy::decision::{Asked, Decision};
use crate::policy::doc::{self, Edit, Update};
use crate::policy::rate;
use crate::store::{Dict, Level, Log, Quiet, Store, Throttle};

/// Longest block reason kept, in characters.
pub const MAX_REASON: usize = 256;

/// What one worker keeps between operations on one dict: its
/// [`Throttle`], the state file's [`Saver`] (worker 0), the fleet agent
/// (worker 0) and its reconciliation in progress, and what the snapshot
/// reports of the state file and the fleet (set in `new()`, before the
/// workers fork).
#[derive(Debug, Default)]
pub struct Worker {
    throttle: Throttle,
    fleet_quiet: Quiet,
    saver: RefCell<Option<Saver>>,
    fleet: RefCell<Option<Agent>>,
    reconcile: RefCell<Option<Batch>>,
    /// The event log's drain (worker 0, with `event_log`).
    event_log: RefCell<Option<Drain>>,
    /// When this worker last logged events lost to the event log.
    event_log_lost_ms: Cell<u64>,
    state_file: RefCell<Option<String>>,
    fleet_node: RefCell<Option<String>>,
}

impl Worker {
    /// For the dict named `dict`.
    pub fn new(dict: &str) -> Worker {
        Worker {
            throttle: Throttle::new(dict),
            ..Worker::default()
        }
    }

    /// Tells which worker this is (`ngx.worker.id()`).
    pub fn set_worker(&self, id: usize) {
        self.throttle.set_worker(id);
    }
}

/// A tripped rule, acted on (see [`Warden::trip`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Trip {
    /// The event recorded.
    pub event: Event,
    /// The client to report to iprepd as a violation, with the rule (the
    /// report is a cosocket: the caller fires it).
    pub report: Option<(Addr, &'static str)>,
}

/// One engine with its shared dict.
#[derive(Clone, Copy)]
pub struct Warden<'a> {
    /// This worker's engine.
    pub engine: &'a Engine,
    /// The shared dict (`opts.dict`).
    pub dict: &'a dyn Dict,
    /// Where log lines go.
    pub log: &'a dyn Log,
    /// This worker's state.
    pub worker: &'a Worker,
}

impl<'a> Warden<'a> {
    /// The dict as this worker writes it, now.
    pub fn store(&self) -> Store<'a> {
        Store {
            dict: self.dict,
            log: self.log,
            stats: self.engine.worker_stats(),
            throttle: &self.worker.throttle,
            now_ms: now_ms(),
        }
    }

    // blocks and the journal -------------------------------------------

    /// Brings this worker's replica (blocks and policy) up to date with the
    /// journal. `Kind::Internal` when a dict call failed.
    pub fn sync(&self) -> Result<(), Error> {
        journal::sync(&self.store(), self.engine).map_err(|e| Error::internal(e.to_string()))
    }

    /// [`Warden::sync`], and the policy document compiled again whatever
    /// the journal says (in `new()`).
    pub fn load(&self) -> Result<(), Error> {
        self.sync()?;
        journal::load_policy(&self.store(), self.engine);
        Ok(())
    }

    /// Every worker re-reads every block and the policy from the dict
    /// before its next request (this one at once).
    pub fn refresh(&self) -> Result<(), Error> {
        let st = self.store();
        journal::write(&st, self.engine, journal::REFRESH);
        journal::sync(&st, self.engine).map_err(|e| Error::internal(e.to_string()))
    }

    /// Every second: drops expired blocks from the replica; worker 0
    /// frees the dict's expired keys every 10 s.
    pub fn sweep(&self) -> usize {
        let st = self.store();
        st.tick();
        if self.worker.throttle.first_worker() {
            self.capture_expiry(&st);
        }
        self.engine.sweep(st.now_ms)
    }

    /// Worker 0, every second: switches real-time capture off once it has
    /// been on for `capture_max_duration` (since the admin API turned it
    /// on, or since start for `realtime_capture = true`), with a log line
    /// and a `capture` event.
    fn capture_expiry(&self, st: &Store<'_>) {
        let max = self.engine.config().capture_max_ms;
        if max == 0 || !self.engine.policy().capture {
            return;
        }
        let since_ms = match doc::read(self.dict) {
            Ok(d) => match d["capture"]["since"].as_f64() {
                Some(s) if d["capture"]["enabled"] == Json::Bool(true) => (s * 1000.0) as u64,
                _ => self.engine.capture_on_ms(),
            },
            Err(_) => self.engine.capture_on_ms(),
        };
        if since_ms == 0 || st.now_ms.saturating_sub(since_ms) < max {
            return;
        }
        match self.edit_policy(&Edit::Capture(false), false) {
            Ok(Update::Done(_)) => {
                let after = human(max as f64 / 1000.0);
                st.log(
                    Level::Warn,
                    &format!(
                        "real-time capture switched itself off after {after} \
                         (capture_max_duration); PUT /security/realtime-capture \
                         {{\"enabled\":true}} turns it on again"
                    ),
                );
                self.engine.record(&Event {
                    time_ms: st.now_ms,
                    kind: Some(EventKind::Capture),
                    rule: "capture_max_duration".to_string(),
                    action: format!("capture switched off after {after}"),
                    ..Event::default()
                });
            }
            // another worker holds the policy lock: the next second
            Ok(Update::Busy) => {}
            Err(e) => st.log(
                Level::Err,
                &format!("cannot switch real-time capture off: {e}"),
            ),
        }
    }

    /// Blocks `target` for `duration_ms` (0: permanently), for `reason`
    /// (cut to [`MAX_REASON`] characters), made by `source`: the dict, the
    /// journal, every worker from its next request, the fleet. A manual
    /// block is recorded as an event. Errors: `Kind::Full` (the dict has no
    /// room; logged, rate-limited).
    pub fn block(
        &self,
        target: &Net,
        duration_ms: u64,
        reason: &str,
        source: Source,
    ) -> Result<(), Error> {
        self.block_as(target, duration_ms, reason, source, BlockAction::Block)
    }

    /// [`Warden::block`] with an action: [`BlockAction::Challenge`] challenges
    /// the target instead (`Kind::Invalid`, field `action`, without
    /// `opts.challenge`).
    pub fn block_as(
        &self,
        target: &Net,
        duration_ms: u64,
        reason: &str,
        source: Source,
        action: BlockAction,
    ) -> Result<(), Error> {
        self.block_in(&self.store(), target, duration_ms, reason, source, action)
    }

    /// [`Warden::block_as`] at `st`'s time: a detector's block starts when
    /// its trip's event says it does.
    pub(super) fn block_in(
        &self,
        st: &Store<'_>,
        target: &Net,
        duration_ms: u64,
        reason: &str,
        source: Source,
        action: BlockAction,
    ) -> Result<(), Error> {
        if action == BlockAction::Challenge && self.engine.challenge().is_none() {
            return Err(Error::invalid(
                "action",
                "action 'challenge' needs opts.challenge = { secret = \"...\" } in new()",
            ));
        }
        let reason: String = reason.chars().take(MAX_REASON).collect();
        let p = self
            .engine
            .prepare(target, duration_ms, source, &reason, action, st.now_ms);
        if self.engine.allowlisted(target.first()) {
            st.log(
                Level::Warn,
                &format!("{target} is allowlisted; its block has no effect while it is"),
            );
        }
        journal::add(st, self.engine, &p.block)?;
        self.queue(st, &p.entry);
        if source != Source::Auto {
            self.engine.record(&Event {
                time_ms: st.now_ms,
                ip: target.to_string(),
                kind: Some(EventKind::BlockedIp),
                rule: source.as_str().to_string(),
                action: match (action, duration_ms) {
                    (BlockAction::Block, 0) => "blocked permanently".to_string(),
                    (BlockAction::Challenge, 0) => "challenged permanently".to_string(),
                    (BlockAction::Block, d) => format!("blocked for {}", human(d as f64 / 1000.0)),
                    (BlockAction::Challenge, d) => {
                        format!("challenged for {}", human(d as f64 / 1000.0))
                    }
                },
                reason: reason.clone(),
                ..Event::default()
            });
        }
        Ok(())
    }

    /// Removes the block of exactly `target` (after a sync, so that a block
    /// made by another worker is found); the detector forgets the client's
    /// counts. Errors (field `ip`): `NotFound` (not blocked), `Conflict`
    /// (a denylist entry: only the configuration removes it).
    pub fn unblock(&self, target: &Net) -> Result<(), Error> {
        let st = self.store();
        journal::sync_logged(&st, self.engine);
        let blocked = self
            .engine
            .block_of(target)
            .is_some_and(|b| !b.expired(st.now_ms))
            || matches!(self.dict.get(&Block::key(target)), Ok(Some(_)));
        if !blocked {
            if self.engine.denylisted(target) {
                return Err(Error::new(
                    Kind::Conflict,
                    "ip",
                    format!("{target} is in the denylist (configuration), not a block"),
                ));
            }
            return Err(Error::new(
                Kind::NotFound,
                "ip",
                format!("{target} is not blocked"),
            ));
        }
        // its reason, for the event (the replica is synced above)
        let reason = self
            .engine
            .block_of(target)
            .map(|b| b.reason)
            .unwrap_or_default();
        journal::remove(&st, self.engine, target)?;
        self.queue(&st, &Change::Remove(*target).encode());
        // so that the client's next request does not trip a rule again
        self.engine.forget(target);
        self.engine.record(&Event {
            time_ms: st.now_ms,
            ip: target.to_string(),
            kind: Some(EventKind::BlockedIp),
            rule: "manual".to_string(),
            action: "unblocked".to_string(),
            reason,
            ..Event::default()
        });
        Ok(())
    }

    /// Whether a block or the denylist applies to `a` now (after a sync).
    pub fn is_blocked(&self, a: Addr) -> Option<crate::engine::BlockInfo> {
        journal::sync_logged(&self.store(), self.engine);
        self.engine.is_blocked(a)
    }

    fn queue(&self, st: &Store<'_>, entry: &str) {
        if self.engine.config().redis.is_some() {
            fleet::queue(st, &self.worker.fleet_quiet, entry);
        }
    }

    // the detector --------------------------------------------------------

    /// Acts on the rule that tripped in this worker's latest observation
    /// (see [`crate::detect::offences`]): the block with its escalation,
    /// the log line; records the event. None when nothing tripped.
    pub fn trip(&self, seen: &Seen<'_>) -> Option<Trip> {
        let t = self.engine.take_trip()?;
        let cfg = self.engine.detector()?.config();
        let st = self.store();
        let out = offences::act(
            &st,
            cfg,
            self.engine.config().blocking_mode,
            &t,
            seen,
            // a challenge does not stop a rule that blocks
            || {
                self.is_blocked(t.addr)
                    .is_some_and(|b| t.mode == Mode::Challenge || b.action == BlockAction::Block)
            },
            |net, duration_ms, reason, action| {
                self.block_in(&st, net, duration_ms, reason, Source::Auto, action)
            },
        );
        self.engine.record(&out.event);
        Some(Trip {
            report: out.report.then_some((t.addr, t.rule.name())),
            event: out.event,
        })
    }

    // policies ----------------------------------------------------------

    /// The admin API's policy document, normalized (see
    /// [`crate::policy::doc`]). `Kind::Internal` when what is stored is not
    /// JSON.
    pub fn policy_document(&self) -> Result<Json, Error> {
        doc::read(self.dict)
    }

    /// Makes a change to the policy document (see [`doc::update`]): every
    /// worker applies it before its next request. [`Update::Busy`]: another
    /// worker holds the lock; wait a little (`ngx.sleep`) and try again,
    /// with `last_try` on the last attempt.
    pub fn edit_policy(&self, edit: &Edit, last_try: bool) -> Result<Update, Error> {
        let check = |d: &Json| self.engine.compile_policy(d).map(drop);
        doc::update(&self.store(), self.engine, edit, &check, last_try)
    }

    /// Counts a request of `client` to `site`, whose limit is `limit`
    /// requests per `window_s` seconds. Over the limit: the seconds until
    /// the window ends (counted; the first request over the limit records
    /// an event with `method` and `path`).
    pub fn rate_limited(
        &self,
        site: &str,
        client: &str,
        limit: u32,
        window_s: u32,
        method: &str,
        path: &str,
    ) -> Option<f64> {
        let st = self.store();
        let over = rate::hit(&st, site, client, limit, window_s)?;
        self.engine.count(Stat::SiteRateLimited);
        if over.first {
            self.engine.record(&Event {
                time_ms: st.now_ms,
                ip: client.to_string(),
                kind: Some(EventKind::RateLimited),
                rule: format!("site:{site}"),
                count: over.count.min(u64::from(u32::MAX)) as u32,
                threshold: limit,
                window_s,
                status: 429,
                method: method.to_string(),
                path: path.to_string(),
                action: "rate limited until the window ends".to_string(),
                ..Event::default()
            });
        }
        Some(over.retry_after)
    }

    /// What the path and site policies decide about a request of `client`
    /// (see [`crate::policy::decision`] and [`Engine::policy_decision`]),
    /// whose lists and blocks gave `verdict` (`check()`'s outcome code,
    /// counted already), with a site's rate limit counted in the dict (see
    /// [`Warden::rate_limited`]).
    pub fn policy_decision(&self, client: Addr, verdict: i32, r: &Asked<'_>) -> Decision {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let decided = self
            .engine
            .policy_decision(client, verdict, r, |limit, window_s| {
                Some(self.rate_limited(
                    &text(r.site),
                    &client.to_string(),
                    limit,
                    window_s,
                    &text(r.method),
                    &text(r.path),
                ))
            });
        // the closure always counts
        decided.unwrap_or(Decision::Pass)
    }

    /// An expendable counter in the dict (see [`Store::counter`]): offence
    /// and rate-limit counters are made this way.
    pub fn counter(&self, key: &str, by: f64, ttl: f64) -> Result<f64, Error> {
        self.store()
            .counter(key, by, ttl)
            .map_err(|e| Error::new(Kind::Full, "", e.to_string()))
    }

    /// Bytes in the dict's free pages and its size (when the API has them).
    pub fn dict_space(&self) -> (Option<usize>, Option<usize>) {
        (self.dict.free_space(), self.dict.capacity())
    }

    /// Every counter, summed over every worker, and the gauges (after a
    /// sync, so that the blocks are this worker's latest): what
    /// `warden:stats()`, `/security/stats`, the Prometheus text and statsd
    /// report.
    pub fn snapshot(&self) -> Snapshot {
        let e = self.engine;
        journal::sync_logged(&self.store(), e);
        let r = e.region();
        let mut s = Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            dict: e.config().dict.clone(),
            blocks: e.block_count() as u64,
            lists_memory: e.lists_memory() as u64,
            shm_bytes: r.size() as u64,
            denylist: e.config().denylist.len() as u64,
            state_file: self.worker.state_file.borrow().clone(),
            challenge: e.challenge().is_some(),
            ..Snapshot::default()
        };
        for (stat, _) in Stat::ALL {
            s.counters[stat as usize] = r.total(stat);
        }
        if let Some(d) = e.detector() {
            let t = d.table();
            s.detector = Some(DetectorGauges {
                tracked: t.tracked(now_ms()) as u64,
                capacity: t.capacity() as u64,
                memory_bytes: t.bytes() as u64,
                bytes_per_client: crate::detect::counters::SLOT_BYTES as u64,
            });
        }
        let (free, capacity) = self.dict_space();
        s.dict_free_bytes = free.unwrap_or(0) as u64;
        s.dict_capacity_bytes = capacity.unwrap_or(0) as u64;
        if let Some(redis) = &e.config().redis {
            let (connected, queued) = self.fleet_status();
            s.fleet = Some(FleetGauges {
                node: self.worker.fleet_node.borrow().clone().unwrap_or_default(),
                redis: redis.location(),
                connected,
                queued: queued as i64,
            });
        }
        let ev = e.events();
        s.events_recorded = ev.written();
        s.events_capacity = ev.capacity() as u64;
        s.events_memory_bytes = ev.bytes() as u64;
        s
    }

    // the state file -----------------------------------------------------

    /// Restores the state file at `path` into a fresh dict (in `new()`, in
    /// the master; see [`crate::persist::keep`]). Never fails.
    pub fn restore_state(&self, path: &Path) {
        *self.worker.state_file.borrow_mut() = Some(path.display().to_string());
        keep::restore(&self.store(), self.engine, path);
    }

    /// Worker 0 saves the state file at `path` from now on.
    pub fn start_saving(&self, path: &Path) {
        let interval = self.engine.config().state_interval_ms;
        *self.worker.saver.borrow_mut() = Some(Saver::start(&self.store(), path, interval));
    }

    /// The state file timer's tick; `exiting`: the worker exits, write
    /// what is left now.
    pub fn save_tick(&self, exiting: bool) {
        if let Some(s) = &*self.worker.saver.borrow() {
            if exiting {
                s.exit(&self.store(), self.engine);
            } else {
                s.tick(&self.store(), self.engine);
            }
        }
    }

    // the event log ----------------------------------------------------------

    /// Worker 0 writes the event log to `target` from now on.
    pub fn start_event_log(&self, target: Target) {
        let shown = match &target {
            Target::File(p) => p.display().to_string(),
            Target::Stderr => "stderr".to_string(),
            Target::ErrorLog => "nginx's error log".to_string(),
        };
        self.store().log(
            Level::Info,
            &format!("security events are written to {shown} as JSON lines (event_log)"),
        );
        *self.worker.event_log.borrow_mut() = Some(Drain::new(target));
    }

    /// The event log timer's run (see [`Drain::run`]); `exiting`: the
    /// worker exits. Returns the lines for nginx's error log (none for
    /// the other targets, which are written here).
    pub fn event_log_run(&self, exiting: bool) -> Vec<String> {
        let mut slot = self.worker.event_log.borrow_mut();
        let Some(d) = slot.as_mut() else {
            return Vec::new();
        };
        let st = self.store();
        let ran = d.run(self.engine.events(), st.now_ms, exiting);
        st.count(Stat::EventLogLines, ran.written);
        if ran.lost > 0 {
            st.count(Stat::EventLogLost, ran.lost);
            let last = self.worker.event_log_lost_ms.get();
            if last == 0 || st.now_ms.saturating_sub(last) >= 60_000 {
                self.worker.event_log_lost_ms.set(st.now_ms);
                st.log(
                    Level::Warn,
                    &format!(
                        "event log: {} events were overwritten before they were written \
                         (event_log_lost counts them; raise max_events)",
                        ran.lost
                    ),
                );
            }
        }
        match &ran.error {
            Some(err) => {
                st.count(Stat::EventLogErrors, 1);
                if ran.changed {
                    st.log(
                        Level::Err,
                        &format!(
                            "{err}; the events wait in the ring (max_events) until it can be \
                             written"
                        ),
                    );
                }
            }
            None if ran.changed => st.log(Level::Notice, "event log written again"),
            None => {}
        }
        ran.lines
    }

    // the fleet ------------------------------------------------------------

    /// Names this node and sets up the fleet's keys (see [`fleet::init`]):
    /// in `new()`. Returns the node's name.
    pub fn fleet_init(&self) -> String {
        let configured = self
            .engine
            .config()
            .redis
            .as_ref()
            .and_then(|r| r.node.as_deref());
        let node = fleet::init(self.dict, configured, fleet::generated_name);
        *self.worker.fleet_node.borrow_mut() = Some(node.clone());
        node
    }

    /// Whether the agent is connected, and the changes queued.
    pub fn fleet_status(&self) -> (bool, f64) {
        (fleet::up(self.dict), fleet::queued(self.dict))
    }

    /// Worker 0's fleet agent: takes what came of its last action and
    /// says what to do next (see [`fleet::agent`]). A panic in the agent
    /// is logged and handled as a failed session; without `redis`, Done.
    pub fn fleet_step(&self, exiting: bool, outcome: Outcome<'_>) -> Action {
        let Some(cfg) = &self.engine.config().redis else {
            return Action::Done;
        };
        let mut slot = self.worker.fleet.borrow_mut();
        let agent =
            slot.get_or_insert_with(|| Agent::new(cfg, &self.fleet_init(), fleet::random_u64()));
        let now = now_ms();
        match catch_unwind(AssertUnwindSafe(|| agent.step(self, now, exiting, outcome))) {
            Ok(a) => a,
            Err(panic) => {
                let why = crate::error::panic_message(&*panic);
                agent.step(self, now, exiting, Outcome::Crashed(why))
            }
        }
    }
}

/// The fleet agent's view of this node: the outbox, the epoch, messages
/// from other nodes, reconciliations.
impl Node for Warden<'_> {
    fn pending(&self, max: u64) -> Result<Option<Pending>, String> {
        fleet::pending(&self.store(), max).map_err(|e| e.to_string())
    }

    fn sent(&self, last: u64, n: u64) {
        fleet::sent(self.dict, last);
        self.engine.count_n(Stat::FleetSent, n);
    }

    fn epoch(&self) -> Option<String> {
        fleet::epoch(self.dict)
    }

    fn lost(&self) -> u64 {
        fleet::lost(self.dict)
    }

    fn set_up(&self, up: bool) {
        fleet::set_up(self.dict, up);
    }

    fn outage(&self) {
        self.engine.count(Stat::FleetOutages);
    }

    /// Applies another node's change as a local change that is not queued
    /// again. Never fails: what is ignored or fails is logged.
    fn message(&self, payload: &str, me: &str) {
        let st = self.store();
        let (node, change) = match fleet::message(payload) {
            Ok(m) => m,
            Err(why) => return st.log(Level::Warn, &why),
        };
        if node == me {
            return; // our own change, back from Redis
        }
        let change = match change {
            Ok(c) => c,
            Err(why) => return st.log(Level::Warn, &why),
        };
        let current = self.dict.get_text(&Block::key(change.net())).ok().flatten();
        let (done, what) = match &change {
            Change::Add(b) => {
                if b.expired(st.now_ms) || current.as_deref() == Some(b.value().as_str()) {
                    return; // nothing to do (e.g. the node's own change, seen again)
                }
                (journal::add(&st, self.engine, b), "block")
            }
            Change::Remove(net) => {
                if current.is_none() {
                    return;
                }
                let r = journal::remove(&st, self.engine, net);
                if r.is_ok() {
                    self.engine.forget(net);
                }
                (r, "unblock")
            }
        };
        let target = change.net();
        match done {
            Ok(()) => {
                st.log(Level::Info, &format!("{what}ed {target} (from {node})"));
                self.engine.count(Stat::FleetReceived);
            }
            Err(e) => st.log(
                Level::Err,
                &format!("cannot apply {node}'s {what} of {target}: {e}"),
            ),
        }
    }

    /// Changes go into one batch, journaled by `reconcile_finish`.
    fn reconcile_begin(&self) {
        journal::sync_logged(&self.store(), self.engine);
        self.engine.diff_begin();
        *self.worker.reconcile.borrow_mut() = Some(Batch::new("of the fleet's blocks"));
    }

    /// The unexpired entries that differ are taken at once; malformed
    /// ones come back as `"<target> = <value>"`, for the log.
    fn reconcile_page(&self, records: &[(&str, &str)]) -> (usize, usize, Vec<String>) {
        let st = self.store();
        let page = self.engine.diff_page(records.iter().copied(), st.now_ms);
        let mut batch = self.worker.reconcile.borrow_mut();
        let batch = batch.get_or_insert_with(|| Batch::new("of the fleet's blocks"));
        for b in &page.differ {
            batch.put(&st, b);
        }
        (page.live, page.differ.len(), page.malformed)
    }

    /// Mirror: a block goes unless a change of its target waits in the
    /// outbox.
    fn reconcile_unseen(&self, mirror: bool) -> (usize, Vec<Block>) {
        let st = self.store();
        let unseen = self.engine.diff_end(st.now_ms);
        if !mirror {
            return (0, unseen);
        }
        let queued = fleet::queued_targets(self.dict);
        let mut batch = self.worker.reconcile.borrow_mut();
        let batch = batch.get_or_insert_with(|| Batch::new("of the fleet's blocks"));
        let mut dropped = 0;
        for b in unseen.iter().filter(|b| !queued.contains(&b.net)) {
            batch.delete(&st, &b.net);
            dropped += 1;
        }
        (dropped, Vec::new())
    }

    /// Journals the batch (every worker applies it).
    fn reconcile_finish(&self) -> usize {
        match self.worker.reconcile.borrow_mut().take() {
            Some(b) => b.finish(&self.store(), self.engine),
            None => 0,
        }
    }

    fn reconciled(&self, epoch: &str, lost: bool) {
        let _ = fleet::reconciled(self.dict, epoch);
        if lost {
            fleet::clear_lost(self.dict);
        }
        self.engine.count(Stat::FleetResyncs);
    }

    fn log(&self, level: Level, msg: &str) {
        self.log.log(level, msg);
    }
}

pub mod challenge;
#[cfg(test)]
mod tests;
