//! One warden instance: the compiled lists, the worker's replica of the
//! blocks, and the per-request decision.
//!
//! An `Engine` is created by `new()` in nginx's master and inherited by
//! every worker. Each worker then owns its copy: nginx runs one thread per
//! worker and never re-enters Lua from Rust, so interior mutability with
//! `Cell`/`RefCell` is enough.

use std::cell::{Cell, RefCell};

use crate::blocks::journal::Replica;
use crate::blocks::{Action, Block, Blocks, Change, Diff, Page, RecordError, Source};
use crate::challenge::Challenge;
use crate::config::Config;
use crate::detect::counters::Place;
use crate::detect::{Detector, Request, Tripped};
use crate::events::refusals::{Hit, Refusals};
use crate::events::{Event, Kind as EventKind, Ring};
use crate::metrics::Stat;
use crate::net::addr::{Addr, Net};
use crate::net::client::{Client, Recent, Resolver, Seen};
use crate::net::lists::{ListMatch, Lists, NetSet};
use crate::policy::decision::{Asked, Decision};
use crate::policy::{Policy, PolicyError};
use crate::shm::{self, DictSlot, Region, WorkerStats};

/// Outcome codes of a check, shared with `lua/resty/warden.lua`.
pub mod code {
    /// No list or block matched: let the request through.
    pub const PASS: i32 = 0;
    /// The client is allowlisted: let it through.
    pub const ALLOW: i32 = 1;
    /// The client is denylisted.
    pub const DENY: i32 = 2;
    /// The client is blocked by `block()` or the admin API.
    pub const BLOCK_MANUAL: i32 = 3;
    /// The client is blocked by the detector.
    pub const BLOCK_AUTO: i32 = 4;
    /// The client is challenged and has no valid cookie: serve the
    /// challenge (`engine:challenge()`).
    pub const CHALLENGE: i32 = 5;
    /// The peer is a trusted proxy: call again with X-Forwarded-For.
    pub const NEED_FORWARDED: i32 = 8;
    /// The worker's replica is behind the journal: sync, then call again.
    pub const SYNC: i32 = 9;
    /// `warden_log`: a detector rule tripped; details via `engine:trip()`.
    pub const TRIP: i32 = 10;
    /// The address could not be parsed.
    pub const BAD_ADDRESS: i32 = -1;
    /// A bug was caught at the FFI boundary.
    pub const INTERNAL: i32 = -2;

    /// The source of a block verdict (`DENY`, `BLOCK_MANUAL`,
    /// `BLOCK_AUTO`); None for any other outcome.
    pub fn source(rc: i32) -> Option<crate::blocks::Source> {
        use crate::blocks::Source;
        match rc {
            DENY => Some(Source::Denylist),
            BLOCK_MANUAL => Some(Source::Manual),
            BLOCK_AUTO => Some(Source::Auto),
            // a challenge's source is in its record, not in the code
            CHALLENGE => Some(Source::Manual),
            _ => None,
        }
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    // The system clock, as `SystemTime::now()` reads it, without its
    // checked subtraction and u128 arithmetic (~45 instructions a request)
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } != 0 || ts.tv_sec < 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// What `is_blocked` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// The blocked target covering the address.
    pub target: Net,
    /// Who blocked it.
    pub source: Source,
    /// Why.
    pub reason: String,
    /// Expiry (ms since the epoch), 0 = permanent.
    pub expires_ms: u64,
    /// What it does.
    pub action: Action,
}

/// A block ready to be written to the shared dict.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// The block itself.
    pub block: Block,
    /// Its dict key.
    pub key: String,
    /// Its dict value.
    pub value: String,
    /// Its journal entry.
    pub entry: String,
    /// Seconds the dict should keep the key (0 = forever).
    pub ttl: f64,
}

/// One warden instance in one worker.
pub struct Engine {
    cfg: Config,
    lists: Lists,
    clients: Resolver,
    /// This worker's requests between their access and log phases.
    recent: RefCell<Recent>,
    blocks: RefCell<Blocks>,
    /// A comparison with the fleet's Redis in progress (the fleet agent).
    diff: RefCell<Option<Diff>>,
    region: &'static Region,
    slot: &'static DictSlot,
    applied: Cell<u64>,
    stats: Cell<&'static WorkerStats>,
    detector: Option<Detector>,
    events: Ring,
    captures: Ring,
    pending: RefCell<Option<Tripped>>,
    /// This worker's refused clients of the minute (their events).
    refusals: RefCell<Refusals>,
    /// This worker's challenged clients of the minute (their
    /// `challenge_issued` events).
    challenged: RefCell<Refusals>,
    /// Challenges (`opts.challenge`), compiled.
    challenge: Option<Challenge>,
    policy: RefCell<Policy>,
    /// Something applies by path or site (see [`Policy::is_empty`]),
    /// cached for the FFI check that every request makes.
    policy_active: Cell<bool>,
    /// When this worker learnt that real-time capture is on (ms since the
    /// epoch; 0 while it is off): requests that began earlier are not
    /// captured unless `check()` saw it on.
    capture_on_ms: Cell<u64>,
    /// When this worker learnt that capture went off, for a grace period
    /// ([`CAPTURE_GRACE_MS`]; 0 otherwise): requests that `check()` saw
    /// while it was on are still captured when they end.
    capture_off_ms: Cell<u64>,
}

/// How long after capture goes off the log phase still records requests
/// that arrived while it was on.
pub const CAPTURE_GRACE_MS: u64 = 60_000;

impl Engine {
    /// Compiles a validated configuration.
    pub fn new(cfg: Config) -> Result<Engine, String> {
        let region = shm::region()?;
        let slot = region.dict_slot(&cfg.dict)?;
        let detector = if cfg.detector.enabled {
            Some(Detector::new(cfg.detector.clone(), &cfg.dict)?)
        } else {
            None
        };
        let events = Ring::new(&cfg.dict, cfg.max_events, cfg.retention_ms)?;
        let captures = Ring::new(
            &format!("{}#capture", cfg.dict),
            cfg.max_captures,
            cfg.retention_ms,
        )?;
        let policy =
            Policy::compile(&cfg.policy, &serde_json::Value::Null).map_err(|e| e.to_string())?;
        Ok(Engine {
            detector,
            events,
            captures,
            policy_active: Cell::new(!policy.is_empty()),
            capture_on_ms: Cell::new(if policy.capture { now_ms() } else { 0 }),
            capture_off_ms: Cell::new(0),
            policy: RefCell::new(policy),
            pending: RefCell::new(None),
            refusals: RefCell::new(Refusals::default()),
            challenged: RefCell::new(Refusals::default()),
            challenge: cfg
                .challenge
                .clone()
                .map(|o| Challenge::new(o, cfg.detector.ipv6_prefix)),
            lists: Lists::new(&cfg.allowlist, &cfg.denylist),
            clients: Resolver::new(NetSet::new(&cfg.trusted_proxies)),
            recent: RefCell::new(Recent::default()),
            blocks: RefCell::new(Blocks::default()),
            diff: RefCell::new(None),
            region,
            slot,
            applied: Cell::new(0),
            stats: Cell::new(region.worker(0)),
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Selects the counters of worker `id`.
    pub fn set_worker(&self, id: usize) {
        self.stats.set(self.region.worker(id));
    }

    /// The shared region (for statistics).
    pub fn region(&self) -> &'static Region {
        self.region
    }

    /// Counts one event.
    #[inline]
    pub fn count(&self, s: Stat) {
        self.stats.get().incr(s);
    }

    /// Counts `n` events at once (a batch: a restore, a fleet flush).
    pub fn count_n(&self, s: Stat, n: u64) {
        self.stats.get().add(s, n);
    }

    /// True when another worker published journal entries this worker has
    /// not applied yet.
    #[inline]
    pub fn stale(&self) -> bool {
        self.slot.version() > self.applied.get()
    }

    /// The journal sequence number this worker has applied.
    pub fn applied(&self) -> u64 {
        self.applied.get()
    }

    /// Records that this worker has applied the journal up to `seq`.
    pub fn set_applied(&self, seq: u64) {
        self.applied.set(seq);
    }

    /// The newest published journal sequence number.
    pub fn version(&self) -> u64 {
        self.slot.version()
    }

    /// Publishes journal entry `seq` to every worker.
    pub fn publish(&self, seq: u64) {
        self.slot.publish(seq);
    }

    /// This worker's counters.
    pub fn worker_stats(&self) -> &'static WorkerStats {
        self.stats.get()
    }

    /// The client of a request from `peer` (see [`Resolver::resolve`]).
    #[inline]
    pub fn resolve<'a>(
        &self,
        peer: Addr,
        xff: impl FnOnce() -> Option<&'a [u8]>,
        real_ip: impl FnOnce() -> Option<&'a [u8]>,
    ) -> Client {
        self.clients.resolve(peer, xff, real_ip)
    }

    /// Remembers what the access phase of request `id` saw.
    #[inline]
    pub fn remember(&self, id: usize, start: u64, seen: Seen) {
        self.recent.borrow_mut().put(id, start, seen);
    }

    /// What the access phase of request `id` saw, if it ran (it runs
    /// again after an internal redirect).
    #[inline]
    pub fn seen(&self, id: usize, start: u64) -> Option<Seen> {
        self.recent.borrow().get(id, start)
    }

    /// Marks request `id` for its log phase with `flag`:
    /// [`Seen::UNOBSERVED`] (not fed to the detector: a `/security/check`
    /// answer is a verdict on another request) or [`Seen::REFUSED`] (a
    /// site's own policy refused it: the detector counts what it carries,
    /// a payload, a probe path, a scanner's name, not its status). A request
    /// the access phase never saw is not observed at all.
    pub fn mark(&self, id: usize, start: u64, flag: u8) {
        let mut recent = self.recent.borrow_mut();
        match recent.get(id, start) {
            Some(_) => recent.set_flags(id, start, flag),
            None => recent.put(
                id,
                start,
                Seen {
                    client: Client {
                        addr: Addr::V4(0),
                        bad_forwarded: false,
                    },
                    verdict: code::ALLOW as i8,
                    flags: Seen::UNOBSERVED,
                    place: (0, 0),
                },
            ),
        }
    }

    /// What the access phase of request `id` saw, forgotten once read.
    #[inline]
    pub fn recall(&self, id: usize, start: u64) -> Option<Seen> {
        self.recent.borrow_mut().take(id, start)
    }

    /// Decides on a client and counts the outcome. A challenged client
    /// (`CHALLENGE`) with a valid cookie (`cookie()` is read only then)
    /// passes.
    #[inline]
    pub fn decide<'a>(&self, a: Addr, cookie: impl FnOnce() -> Option<&'a [u8]>) -> i32 {
        let mut rc = self.verdict(a);
        if rc == code::CHALLENGE && self.challenge_passed(a, cookie()) {
            self.count(Stat::ChallengePassed);
            rc = code::PASS;
        }
        self.count(Self::stat_of(rc));
        rc
    }

    /// True when `cookie` is a valid challenge cookie of `a` now.
    #[cold]
    pub fn challenge_passed(&self, a: Addr, cookie: Option<&[u8]>) -> bool {
        match (&self.challenge, cookie) {
            (Some(c), Some(v)) => c.cookie_ok(a, v, now_ms() / 1000),
            _ => false,
        }
    }

    /// Challenges, when configured.
    pub fn challenge(&self) -> Option<&Challenge> {
        self.challenge.as_ref()
    }

    #[inline]
    fn stat_of(rc: i32) -> Stat {
        match rc {
            code::ALLOW => Stat::Allowlisted,
            code::DENY => Stat::Denylisted,
            code::BLOCK_AUTO => Stat::BlockedAuto,
            code::BLOCK_MANUAL => Stat::BlockedManual,
            code::CHALLENGE => Stat::Challenged,
            _ => Stat::Passed,
        }
    }

    /// Takes back the count of a decision (its request turned out to be
    /// exempt: a whitelisted path).
    pub fn uncount(&self, rc: i32) {
        if (code::PASS..=code::CHALLENGE).contains(&rc) {
            self.stats.get().decr(Self::stat_of(rc));
        }
    }

    /// What applies to a client, uncounted: allowlist first, then
    /// denylist, then blocks (`PASS` when none).
    #[inline]
    pub fn verdict(&self, a: Addr) -> i32 {
        match self.lists.lookup(a) {
            ListMatch::Allow => code::ALLOW,
            _ if self.policy.borrow().whitelisted(a) => code::ALLOW,
            ListMatch::Deny(_) => code::DENY,
            ListMatch::None => {
                let blocks = self.blocks.borrow();
                if blocks.is_empty() {
                    code::PASS
                } else {
                    match blocks.lookup(a, now_ms) {
                        None => code::PASS,
                        Some(b) if b.action == Action::Challenge => code::CHALLENGE,
                        Some(b) if b.source == Source::Auto => code::BLOCK_AUTO,
                        Some(_) => code::BLOCK_MANUAL,
                    }
                }
            }
        }
    }

    /// What the path and site policies decide about a request of `client`
    /// (the rule order is [`crate::policy::decision`]'s), whose lists and
    /// blocks gave `verdict` (`check()`'s outcome code, counted already).
    /// Counts as `check()` does: a skipped request is counted as skipped
    /// instead of as its verdict, a site's refusal as `site_denied`,
    /// credentials as `auth_passed` or `auth_failed`. A site's rate limit
    /// is counted by `rate(limit, window_s)`, which gives the seconds until
    /// the window ends when the client is over it; `None` from it (it
    /// cannot count here: the dict is Lua's) stops the decision, which is
    /// then `None`, with nothing counted.
    pub fn policy_decision(
        &self,
        client: Addr,
        verdict: i32,
        r: &Asked<'_>,
        rate: impl FnOnce(u32, u32) -> Option<Option<f64>>,
    ) -> Option<Decision> {
        let p = self.policy();
        if p.skips(r.path, r.site) {
            self.uncount(verdict);
            self.count(Stat::PolicySkipped);
            return Some(Decision::Skip);
        }
        if let Some(source) = code::source(verdict) {
            return Some(Decision::Blocked(source));
        }
        let allowed = verdict == code::ALLOW;
        let req = p.require(client, allowed, r.path, r.method, r.site);
        if req.forbidden_ip || req.blocked_path {
            self.count(Stat::SiteDenied);
            return Some(if req.forbidden_ip {
                Decision::ForbiddenIp
            } else {
                Decision::BlockedPath
            });
        }
        // a site that challenges: before its rate limit counts the request
        if req.challenge && !allowed && self.challenge().is_some() {
            let Some(cookie) = r.cookie else {
                return Some(Decision::NeedCookie);
            };
            if !self.challenge_passed(client, Some(cookie)) {
                return Some(Decision::Challenge);
            }
        }
        let (limit, window_s) = req.rate_limit;
        if limit > 0 && !allowed {
            if let Some(retry_after_s) = rate(limit, window_s)? {
                return Some(Decision::RateLimited {
                    limit,
                    retry_after_s,
                });
            }
        }
        if let Some(route) = req.route.and_then(|i| p.route(i)) {
            let outcome = route.verify(r.authorization);
            match Decision::why(&outcome) {
                None => self.count(Stat::AuthPassed),
                Some(why) => {
                    self.count(Stat::AuthFailed);
                    return Some(Decision::Unauthorized {
                        why,
                        scheme: route.scheme(),
                        realm: route.realm.clone(),
                    });
                }
            }
        }
        Some(if allowed {
            Decision::Allow
        } else {
            Decision::Pass
        })
    }

    /// Feeds a finished request of `client` to the detector. Returns
    /// `code::TRIP` when a rule tripped (the details wait in
    /// [`Engine::take_trip`]), else `code::PASS`. Allowlisted, denylisted
    /// and blocked clients are not counted.
    #[inline]
    pub fn observe(&self, client: Addr, req: &Request<'_>) -> i32 {
        if self.detector.is_none() || self.verdict(client) != code::PASS {
            return code::PASS;
        }
        self.observe_at(client, Place::default(), req, now_ms())
    }

    /// Whether the detector is on.
    #[inline]
    pub fn detects(&self) -> bool {
        self.detector.is_some()
    }

    /// Where the detector counts client `a`, its slot fetched into the
    /// cache for the log phase ([`Detector::place`]); not placed without a
    /// detector.
    #[inline]
    pub fn place(&self, a: Addr) -> Place {
        self.detector
            .as_ref()
            .map(|d| d.place(a))
            .unwrap_or_default()
    }

    /// [`Engine::observe`] for a client whose verdict is known to be
    /// `PASS` (the access phase decided it), at `now_ms`, placed by
    /// [`Engine::place`] at `at` (a default [`Place`]: not placed).
    #[inline]
    pub fn observe_at(&self, client: Addr, at: Place, req: &Request<'_>, now_ms: u64) -> i32 {
        let Some(d) = &self.detector else {
            return code::PASS;
        };
        let seen = d.see_at(client, at, req, now_ms);
        if seen.counted {
            self.count(Stat::Observed);
        }
        if seen.dropped {
            self.count(Stat::Contended);
        }
        if seen.evicted {
            self.count(Stat::Evictions);
        }
        match seen.trip {
            None => code::PASS,
            Some(t) => {
                self.count(Stat::Trips);
                *self.pending.borrow_mut() = Some(t);
                code::TRIP
            }
        }
    }

    /// The trip reported by the latest [`Engine::observe`], once.
    pub fn take_trip(&self) -> Option<Tripped> {
        self.pending.borrow_mut().take()
    }

    /// The detector, when enabled.
    pub fn detector(&self) -> Option<&Detector> {
        self.detector.as_ref()
    }

    /// The events ring.
    pub fn events(&self) -> &Ring {
        &self.events
    }

    /// Records an event.
    pub fn record(&self, e: &Event) {
        if let Some(k) = e.kind {
            self.count(k.stat());
            if k == crate::events::Kind::Capture {
                self.captures.push(e);
                return;
            }
        }
        self.events.push(e);
    }

    /// Records a challenge page served to `client` at `now_ms`: one
    /// `challenge_issued` event per client and minute, with a count, as
    /// refusals are ([`crate::events::refusals`]); `event` makes the first.
    #[cold]
    pub fn record_issued(&self, client: Addr, now_ms: u64, event: impl FnOnce() -> Event) {
        let hit = self
            .challenged
            .borrow_mut()
            .hit(&self.events, client, now_ms, event);
        match hit {
            Hit::Recorded => self.count(Stat::EventsChallengeIssued),
            Hit::Counted => {}
            Hit::Full => self.count(Stat::RefusalsUnrecorded),
        }
    }

    /// Records a request of `client` refused with outcome `rc` at `now_ms`
    /// (see [`crate::events::refusals`]): the first of the client's
    /// minute makes a `blocked_ip` event (with the block's reason, and
    /// what `request` adds: its method, path, user agent), the next ones
    /// count in it.
    #[cold]
    pub fn record_refusal(
        &self,
        client: Addr,
        rc: i32,
        now_ms: u64,
        request: impl FnOnce(&mut Event),
    ) {
        let source = match rc {
            code::DENY => Source::Denylist,
            code::BLOCK_AUTO => Source::Auto,
            _ => Source::Manual,
        };
        let hit = self
            .refusals
            .borrow_mut()
            .hit(&self.events, client, now_ms, || {
                let mut e = Event {
                    ip: client.to_string(),
                    kind: Some(EventKind::BlockedIp),
                    rule: source.as_str().to_string(),
                    status: self.cfg.block_status,
                    action: if self.cfg.blocking_mode {
                        "refused".to_string()
                    } else {
                        "let through: blocking_mode is 0".to_string()
                    },
                    reason: self
                        .is_blocked(client)
                        .map(|b| b.reason)
                        .unwrap_or_default(),
                    ..Event::default()
                };
                if !self.cfg.blocking_mode {
                    e.status = 0;
                }
                request(&mut e);
                e
            });
        match hit {
            Hit::Recorded => self.count(Stat::EventsBlockedIp),
            Hit::Counted => {}
            Hit::Full => self.count(Stat::RefusalsUnrecorded),
        }
    }

    /// Forgets the detector's counters for `net` (after an unblock).
    pub fn forget(&self, net: &Net) -> usize {
        let Some(d) = &self.detector else { return 0 };
        let now = now_ms();
        let p = d.config().ipv6_prefix;
        match net {
            n if n.is_host() => usize::from(d.table().forget(&d.key(n.first()), now)),
            n => d.table().forget_net(n, p, now),
        }
    }

    /// What blocks `a`, if anything (the allowlist wins).
    pub fn is_blocked(&self, a: Addr) -> Option<BlockInfo> {
        match self.lists.lookup(a) {
            ListMatch::Allow => None,
            _ if self.policy.borrow().whitelisted(a) => None,
            ListMatch::Deny(n) => Some(BlockInfo {
                target: *n,
                source: Source::Denylist,
                reason: "denylist".to_string(),
                expires_ms: 0,
                action: Action::Block,
            }),
            ListMatch::None => self.blocks.borrow().lookup(a, now_ms).map(|b| BlockInfo {
                target: b.net,
                source: b.source,
                reason: b.reason.clone(),
                expires_ms: b.expires_ms,
                action: b.action,
            }),
        }
    }

    /// True when `a` is a trusted proxy.
    pub fn trusted(&self, a: Addr) -> bool {
        self.clients.trusts(a)
    }

    /// True when an allowlist entry covers `a`.
    pub fn allowlisted(&self, a: Addr) -> bool {
        self.lists.lookup(a) == ListMatch::Allow || self.policy.borrow().whitelisted(a)
    }

    /// Compiles the options' policies with the admin API's document
    /// (validation only; see [`Engine::install_policy`]).
    pub fn compile_policy(&self, api: &serde_json::Value) -> Result<Policy, PolicyError> {
        Policy::compile(&self.cfg.policy, api)
    }

    /// Compiles the admin API's document (JSON text; None: there is none)
    /// with the options and makes it this worker's policy.
    pub fn load_policy(&self, doc: Option<&[u8]>) -> Result<(), String> {
        let v = match doc {
            None => serde_json::Value::Null,
            Some(text) => {
                serde_json::from_slice(text).map_err(|e| format!("policy document: {e}"))?
            }
        };
        let p = self.compile_policy(&v).map_err(|e| e.to_string())?;
        self.install_policy(p);
        Ok(())
    }

    /// Makes `p` this worker's policy.
    pub fn install_policy(&self, p: Policy) {
        self.policy_active.set(!p.is_empty());
        let was = self.policy.borrow().capture;
        if p.capture && !was {
            self.capture_on_ms.set(now_ms());
            self.capture_off_ms.set(0);
        } else if was && !p.capture {
            self.capture_on_ms.set(0);
            self.capture_off_ms.set(now_ms());
        }
        *self.policy.borrow_mut() = p;
        self.count(Stat::PolicyLoads);
    }

    /// When this worker learnt that real-time capture is on, in ms since
    /// the epoch (0 when it is off).
    pub fn capture_on_ms(&self) -> u64 {
        self.capture_on_ms.get()
    }

    /// True within [`CAPTURE_GRACE_MS`] of this worker learning that
    /// capture went off (a clock read only in that case).
    pub fn capture_recently_off(&self) -> bool {
        let off = self.capture_off_ms.get();
        if off == 0 {
            return false;
        }
        if now_ms().saturating_sub(off) < CAPTURE_GRACE_MS {
            return true;
        }
        self.capture_off_ms.set(0);
        false
    }

    /// True when something applies by path or site.
    #[inline]
    pub fn policy_active(&self) -> bool {
        self.policy_active.get()
    }

    /// This worker's policy.
    pub fn policy(&self) -> std::cell::Ref<'_, Policy> {
        self.policy.borrow()
    }

    /// The ring of captured requests.
    pub fn captures(&self) -> &Ring {
        &self.captures
    }

    /// A threat score from 0 to 100 for `a` from the lists, blocks and the
    /// detector's counts: 0 when allowlisted, 100 when blocked, otherwise
    /// the highest share of a rule's threshold the client has reached
    /// (99 at most: only a block makes 100). Reputation is added by the
    /// Lua side.
    pub fn threat_score(&self, a: Addr) -> (u8, Option<&'static str>) {
        match self.verdict(a) {
            code::ALLOW => return (0, None),
            code::PASS => {}
            _ => return (100, None),
        }
        let Some(d) = &self.detector else {
            return (0, None);
        };
        let Some(counts) = d.table().peek(&d.key(a), now_ms()) else {
            return (0, None);
        };
        let limits = d.config().limits();
        let mut best = (0u8, None);
        for r in crate::detect::counters::Rule::ALL {
            let limit = limits[r as usize];
            if limit == 0 {
                continue;
            }
            let share = (u64::from(counts.get(r)) * 100 / u64::from(limit)).min(99) as u8;
            if share > best.0 {
                best = (share, Some(r.name()));
            }
        }
        best
    }

    /// True when `net` (a host or a range) is in the denylist as given.
    pub fn denylisted(&self, net: &Net) -> bool {
        self.lists.denylist().contains(net)
    }

    /// Validates a block request and encodes its records. `duration_ms`
    /// 0 means permanent.
    pub fn prepare(
        &self,
        target: &Net,
        duration_ms: u64,
        source: Source,
        reason: &str,
        action: Action,
        now_ms: u64,
    ) -> Prepared {
        let expires_ms = if duration_ms == 0 {
            0
        } else {
            now_ms.saturating_add(duration_ms)
        };
        let block = Block {
            net: *target,
            expires_ms,
            source,
            reason: reason.to_string(),
            action,
        };
        Prepared {
            key: Block::key(target),
            value: block.value(),
            entry: Change::Add(block.clone()).encode(),
            ttl: duration_ms as f64 / 1000.0,
            block,
        }
    }

    /// Applies a journal entry to the replica.
    pub fn apply_entry(&self, entry: &str) -> Result<(), RecordError> {
        let c = Change::decode(entry)?;
        self.blocks.borrow_mut().apply(c);
        self.count(Stat::JournalApplied);
        Ok(())
    }

    /// Loads one dict record into the replica (full sync).
    pub fn load_record(&self, key: &str, value: &str) -> Result<(), RecordError> {
        let b = Block::decode(key, value)?;
        self.blocks.borrow_mut().insert(b);
        Ok(())
    }

    /// Empties the replica before a full sync.
    pub fn reset_blocks(&self) {
        self.blocks.borrow_mut().clear();
        self.count(Stat::FullSyncs);
    }

    /// Finishes a batch of changes (rebuilds the range index if needed).
    pub fn commit(&self) {
        self.blocks.borrow_mut().commit();
    }

    /// Drops expired blocks from the replica.
    pub fn sweep(&self, now_ms: u64) -> usize {
        self.blocks.borrow_mut().sweep(now_ms)
    }

    /// The replica's block of exactly `net`.
    pub fn block_of(&self, net: &Net) -> Option<Block> {
        self.blocks.borrow().get(net).cloned()
    }

    /// Every block in force at `now_ms`, denylist entries first.
    pub fn list(&self, now_ms: u64) -> Vec<Block> {
        let mut out: Vec<Block> = self
            .lists
            .denylist()
            .iter()
            .map(|n| Block {
                net: *n,
                expires_ms: 0,
                source: Source::Denylist,
                reason: "denylist".to_string(),
                action: Action::Block,
            })
            .collect();
        let blocks = self.blocks.borrow();
        let mut dynamic: Vec<Block> = blocks
            .iter()
            .filter(|b| !b.expired(now_ms))
            .cloned()
            .collect();
        dynamic.sort_by_key(|b| b.net);
        out.extend(dynamic);
        out
    }

    /// Starts comparing the replica with another copy of the blocks, page
    /// by page (see [`Diff`]); drops any comparison in progress.
    pub fn diff_begin(&self) {
        *self.diff.borrow_mut() = Some(Diff::default());
    }

    /// Compares one page of `(target, value)` records with the replica.
    pub fn diff_page<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a str, &'a str)>,
        now_ms: u64,
    ) -> Page {
        let blocks = self.blocks.borrow();
        self.diff
            .borrow_mut()
            .get_or_insert_with(Diff::default)
            .page(&blocks, records, now_ms)
    }

    /// Ends the comparison: the replica's blocks that no page had.
    pub fn diff_end(&self, now_ms: u64) -> Vec<Block> {
        let diff = self.diff.borrow_mut().take().unwrap_or_default();
        let blocks = self.blocks.borrow();
        diff.unseen(&blocks, now_ms).into_iter().cloned().collect()
    }

    /// The replica's blocks in force at `now_ms`, in no order: a copy for
    /// the state file's writer thread, which sorts it (sorting 1M blocks
    /// here took ~0.2 s of the worker's time at every save).
    pub fn blocks_snapshot(&self, now_ms: u64) -> Vec<Block> {
        self.blocks
            .borrow()
            .iter()
            .filter(|b| !b.expired(now_ms))
            .cloned()
            .collect()
    }

    /// Number of blocks in the replica.
    pub fn block_count(&self) -> usize {
        self.blocks.borrow().len()
    }

    /// Heap bytes used by the compiled lists.
    pub fn lists_memory(&self) -> usize {
        self.lists.memory_bytes()
    }
}

/// The journal protocol drives the replica ([`crate::blocks::journal`]).
impl Replica for Engine {
    fn version(&self) -> u64 {
        self.slot.version()
    }

    fn take(&self) -> u64 {
        self.slot.take()
    }

    fn publish(&self, seq: u64) {
        self.slot.publish(seq);
    }

    fn applied(&self) -> u64 {
        self.applied.get()
    }

    fn set_applied(&self, seq: u64) {
        self.applied.set(seq);
    }

    fn reset(&self) {
        self.reset_blocks();
    }

    fn load(&self, key: &str, value: &str) -> Result<(), RecordError> {
        self.load_record(key, value)
    }

    fn apply(&self, entry: &str) -> Result<(), RecordError> {
        self.apply_entry(entry)
    }

    fn commit(&self) {
        self.blocks.borrow_mut().commit();
    }

    fn reload_policy(&self, st: &crate::store::Store<'_>) -> Result<(), String> {
        let doc = st
            .dict
            .get(crate::policy::doc::KEY)
            .map_err(|e| e.to_string())?;
        match doc {
            Some(crate::store::Value::Str(text)) => self.load_policy(Some(&text)),
            _ => self.load_policy(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn engine(opts: serde_json::Value) -> Engine {
        Engine::new(Config::from_value(&opts).unwrap()).unwrap()
    }

    fn a(s: &str) -> Addr {
        Addr::parse(s).unwrap()
    }

    #[test]
    fn capture_window() {
        let e = engine(json!({"dict": "t-capwin"}));
        let capture = |on: bool| {
            let p = e.compile_policy(&json!({"capture": {"enabled": on}}));
            e.install_policy(p.unwrap());
        };
        assert_eq!(e.capture_on_ms(), 0);
        assert!(!e.capture_recently_off());
        let before = now_ms();
        capture(true);
        assert!(e.capture_on_ms() >= before);
        assert!(!e.capture_recently_off());
        // Re-installing the same state keeps the time it was learnt.
        let on = e.capture_on_ms();
        capture(true);
        assert_eq!(e.capture_on_ms(), on);
        capture(false);
        assert_eq!(e.capture_on_ms(), 0);
        assert!(e.capture_recently_off());
        e.capture_off_ms.set(now_ms() - CAPTURE_GRACE_MS - 1);
        assert!(!e.capture_recently_off());
        assert_eq!(e.capture_off_ms.get(), 0);
    }

    #[test]
    fn precedence_and_blocks() {
        let e = engine(json!({
            "dict": "t-prec",
            "allowlist": ["10.0.0.0/8"],
            "denylist": "203.0.113.0/24",
        }));
        assert_eq!(e.decide(a("10.0.0.1"), || None), code::ALLOW);
        assert_eq!(e.decide(a("203.0.113.9"), || None), code::DENY);
        assert_eq!(e.decide(a("192.0.2.1"), || None), code::PASS);
        let now = now_ms();
        for (t, src) in [
            ("192.0.2.1", Source::Manual),
            ("10.0.0.1", Source::Manual),
            ("198.51.100.0/24", Source::Auto),
        ] {
            let p = e.prepare(&Net::parse(t).unwrap(), 0, src, "x", Action::Block, now);
            e.apply_entry(&p.entry).unwrap();
        }
        e.commit();
        assert_eq!(e.decide(a("192.0.2.1"), || None), code::BLOCK_MANUAL);
        assert_eq!(e.decide(a("::ffff:192.0.2.1"), || None), code::BLOCK_MANUAL);
        assert_eq!(e.decide(a("198.51.100.7"), || None), code::BLOCK_AUTO);
        assert_eq!(e.decide(a("10.0.0.1"), || None), code::ALLOW);
        assert!(e.is_blocked(a("10.0.0.1")).is_none());
        assert_eq!(
            e.is_blocked(a("203.0.113.1")).unwrap().source,
            Source::Denylist
        );
        assert_eq!(e.list(now).len(), 4);
        e.apply_entry("-|192.0.2.1").unwrap();
        assert_eq!(e.decide(a("192.0.2.1"), || None), code::PASS);
    }

    #[test]
    fn expiry() {
        let e = engine(json!({"dict": "t-exp"}));
        let now = now_ms();
        let p = e.prepare(
            &Net::parse("192.0.2.1").unwrap(),
            1,
            Source::Manual,
            "",
            Action::Block,
            now - 10,
        );
        assert_eq!(p.ttl, 0.001);
        e.apply_entry(&p.entry).unwrap();
        assert_eq!(e.decide(a("192.0.2.1"), || None), code::PASS);
        assert_eq!(e.sweep(now), 1);
        let p = e.prepare(
            &Net::parse("192.0.2.1").unwrap(),
            0,
            Source::Manual,
            "",
            Action::Block,
            now,
        );
        assert_eq!((p.block.expires_ms, p.ttl), (0, 0.0));
    }

    #[test]
    fn staleness() {
        let e = engine(json!({"dict": "t-stale"}));
        assert!(!e.stale());
        e.publish(e.version() + 1);
        assert!(e.stale());
        e.set_applied(e.version());
        assert!(!e.stale());
    }
}
