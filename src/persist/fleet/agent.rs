//! The fleet agent: worker 0's session with Redis, as a state machine
//! that does no I/O itself. Lua's driver (`lua/resty/warden/fleet.lua`,
//! a timer that lives as long as the worker) asks what to do next
//! ([`Agent::step`]), does it on a cosocket or with `ngx.sleep`, and
//! hands back what came of it ([`Outcome`]). It is the only code that
//! talks to Redis, so Redis is never on the request path and a slow or
//! dead Redis costs requests nothing.
//!
//! A session:
//! 1. connect the command connection and the subscriber (two cosockets);
//!    AUTH and SELECT (when configured) on each, SCRIPT LOAD of
//!    [`redis::SCRIPTS`] on the first, SUBSCRIBE on the second: what is
//!    published from then on waits in the socket;
//! 2. send the outbox ([`super::pending`]): one `EVALSHA` a change,
//!    [`BATCH`] a round trip, each batch dropped from the outbox only once
//!    Redis has it;
//! 3. reconcile (below), then log `joined the fleet as ...` (or `redis ...
//!    is back; ...` after an outage);
//! 4. every [`POLL_MS`]: send the outbox; when changes could not be queued
//!    (a full dict), reconcile by union (at most every
//!    [`RESEND_EVERY_MS`]); PING the subscriber and apply every message
//!    read before its `pong` ([`Node::message`]); prune expired entries
//!    from Redis every [`PRUNE_EVERY_MS`];
//! 5. when the worker exits: send what is left of the outbox, close.
//!
//! Any failure (a cosocket error, a timeout, an error reply) closes both
//! connections; the first of an outage is logged and counted, the node
//! is marked disconnected, and the agent reconnects after a backoff
//! ([`FIRST_BACKOFF_MS`] doubling to [`MAX_BACKOFF_MS`], times a random
//! 0.5–1.5, so that a fleet does not reconnect all at once).
//!
//! Reconciling. The node remembers the epoch of the set it last
//! reconciled with ([`super::epoch`]; the state file keeps it too). If
//! Redis has that epoch, Redis is the truth (*mirror*): blocks Redis does
//! not have were unblocked (or expired) elsewhere while this node was
//! away, and go. Otherwise (Redis lost its data and was re-seeded, or
//! this node is new, or changes were lost) the node adds the blocks Redis
//! lacks and takes those it lacks (*merge*): nothing is lost, at the price
//! of reviving an unblock made while the two were apart. Redis is read one
//! `HSCAN` page at a time and each page compared with the worker's replica
//! ([`Node::reconcile_page`]), so neither copy is ever held whole.

use super::redis::{self, Keys, Pipeline, Shas};
use super::{message_for, Pending};
use crate::blocks::{Block, Change};
use crate::config::RedisConfig;
use crate::net::resp::{Reply, Wire};
use crate::store::Level;

/// Time between two looks for messages and changes, in ms.
pub const POLL_MS: u64 = 100;
/// Changes sent per round trip (and blocks per `SEED` call).
pub const BATCH: usize = 200;
/// Time between prunes of expired entries in Redis, in ms.
pub const PRUNE_EVERY_MS: u64 = 10_000;
/// Time between reconciliations after lost changes, in ms.
pub const RESEND_EVERY_MS: u64 = 10_000;
/// The first wait before reconnecting, in ms.
pub const FIRST_BACKOFF_MS: u64 = 500;
/// The longest wait before reconnecting, in ms.
pub const MAX_BACKOFF_MS: u64 = 5_000;

/// One of the agent's two connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conn {
    /// Commands and their replies.
    Commands = 1,
    /// Subscribed to the channel.
    Subscriber = 2,
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Opens `conn` (closing what it was) to `host` (`port` None: a
    /// `unix:` path), with `timeout_ms` for every operation on it from
    /// then on. [`Outcome::Ok`] or [`Outcome::Failed`].
    Connect {
        /// Which connection.
        conn: Conn,
        /// Host name, address or `unix:/path`.
        host: String,
        /// TCP port.
        port: Option<u16>,
        /// Connect, send and read timeout.
        timeout_ms: u64,
    },
    /// Sends `send` on `conn` (when not empty), then reads what arrives:
    /// [`Outcome::Data`] or [`Outcome::Failed`].
    Io {
        /// Which connection.
        conn: Conn,
        /// Bytes to send first.
        send: Vec<u8>,
    },
    /// Closes both connections; then [`Outcome::Ok`].
    Close,
    /// Sleeps `ms`; then [`Outcome::Ok`].
    Sleep {
        /// How long.
        ms: u64,
    },
    /// The worker exits: the agent is done.
    Done,
}

/// What came of the last [`Action`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Done (the first call, a connection, a close, a sleep).
    Ok,
    /// Bytes read.
    Data(&'a [u8]),
    /// The cosocket's error (`timeout`, `closed`, `connection refused`...).
    Failed(&'a str),
    /// The driver itself failed (a Lua error): logged, then as `Failed`.
    Crashed(&'a str),
}

/// What the agent does to this node: [`crate::ops::Warden`] (the shared
/// dict, the journal, this worker's replica), or a fake in tests.
pub trait Node {
    /// Up to `max` local changes waiting to be sent (None: none).
    fn pending(&self, max: u64) -> Result<Option<Pending>, String>;
    /// The changes up to `last` are in Redis (`n` of them sent).
    fn sent(&self, last: u64, n: u64);
    /// The epoch this node last reconciled with.
    fn epoch(&self) -> Option<String>;
    /// Changes that could not be queued since the last reconciliation.
    fn lost(&self) -> u64;
    /// Records whether the agent is connected.
    fn set_up(&self, up: bool);
    /// Counts an outage (`fleet_outages`).
    fn outage(&self);
    /// Applies a message from the channel (another node's change; `me`'s
    /// own are ignored).
    fn message(&self, payload: &str, me: &str);
    /// Starts comparing this node's blocks with Redis's.
    fn reconcile_begin(&self);
    /// Compares one page of Redis's records (target, value): returns the
    /// unexpired ones, those taken, and the malformed ones.
    fn reconcile_page(&self, records: &[(&str, &str)]) -> (usize, usize, Vec<String>);
    /// The node's blocks Redis lacks: `mirror`, dropped (returns how many);
    /// otherwise returned, for Redis to take.
    fn reconcile_unseen(&self, mirror: bool) -> (usize, Vec<Block>);
    /// Ends the comparison (journals what changed).
    fn reconcile_finish(&self) -> usize;
    /// The node agrees with the set of `epoch`; `lost`: the lost changes
    /// are in Redis now.
    fn reconciled(&self, epoch: &str, lost: bool);
    /// Writes a log line (`warden: ` and `msg`).
    fn log(&self, level: Level, msg: &str);
}

/// What the agent waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Nothing yet (the first step).
    Start,
    /// The backoff after a failure.
    Backoff,
    /// A connection.
    Connect(Conn),
    /// The replies to a connection's opening.
    Opened(Conn),
    /// The replies to a batch of changes (`last`: the batch's last outbox
    /// entry; `sent`: changes in it).
    Flush { last: u64, sent: u64 },
    /// PRUNE and GET epoch.
    Epoch,
    /// SET epoch NX and GET epoch.
    EpochSet,
    /// A page of HSCAN.
    Scan,
    /// A SEED call.
    Seed,
    /// The subscriber's pong.
    Pong,
    /// A PRUNE.
    Prune,
    /// The poll's sleep.
    Poll,
    /// Both connections closed after a failure.
    Closed,
    /// Nothing any more: the worker exits.
    Done,
}

/// Where the session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Connecting: the outbox, then the first reconciliation.
    Join,
    /// Connected.
    Run,
    /// The worker exits: the outbox, then close.
    Exit,
}

/// A reconciliation in progress.
#[derive(Debug)]
struct Reconciling {
    epoch: String,
    mirror: bool,
    lost: u64,
    live: usize,
    taken: usize,
    dropped: usize,
    added: u64,
    unseen: Vec<Block>,
    seeded: usize,
}

/// Worker 0's fleet agent (see the module's documentation).
#[derive(Debug)]
pub struct Agent {
    cfg: RedisConfig,
    keys: Keys,
    address: String,
    node: String,
    rng: u64,
    wait: Wait,
    phase: Phase,
    down: bool,
    backoff_ms: u64,
    failure: String,
    cmd: Wire,
    sub: Wire,
    /// The exchange in progress: its commands, the replies so far.
    sent: Pipeline,
    got: Vec<Reply>,
    shas: Option<Shas>,
    pruned_ms: u64,
    resent_ms: u64,
    rec: Option<Reconciling>,
}

impl Agent {
    /// The agent of node `node` for the Redis `cfg` describes; `seed`
    /// seeds its random numbers (the backoff's jitter, a new epoch).
    pub fn new(cfg: &RedisConfig, node: &str, seed: u64) -> Agent {
        Agent {
            keys: Keys::new(cfg),
            address: cfg.location(),
            cfg: cfg.clone(),
            node: node.to_string(),
            rng: seed,
            wait: Wait::Start,
            phase: Phase::Join,
            down: false,
            backoff_ms: FIRST_BACKOFF_MS,
            failure: String::new(),
            cmd: Wire::default(),
            sub: Wire::default(),
            sent: Pipeline::default(),
            got: Vec::new(),
            shas: None,
            pruned_ms: 0,
            resent_ms: 0,
            rec: None,
        }
    }

    /// This node's name in messages.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Takes what came of the last action (at `now_ms`; `exiting`: the
    /// worker exits) and says what to do next.
    pub fn step(
        &mut self,
        node: &dyn Node,
        now_ms: u64,
        exiting: bool,
        outcome: Outcome<'_>,
    ) -> Action {
        let r = match outcome {
            Outcome::Ok => self.resume(node, now_ms, exiting, b""),
            Outcome::Data(d) => self.resume(node, now_ms, exiting, d),
            Outcome::Failed(e) => Err(e.to_string()),
            Outcome::Crashed(e) => {
                node.log(Level::Err, &format!("the fleet agent failed: {e}"));
                Err(e.to_string())
            }
        };
        r.unwrap_or_else(|e| self.fail(node, exiting, e))
    }

    /// The session failed with `why`: both connections are closed, then
    /// the outage is recorded and the agent waits before reconnecting.
    pub fn fail(&mut self, node: &dyn Node, exiting: bool, why: String) -> Action {
        if matches!(self.wait, Wait::Closed | Wait::Backoff | Wait::Start) {
            // nothing was open: a failure here cannot be the connection's
            self.failure = why;
            return self.after_close(node, exiting);
        }
        if self.wait == Wait::Done {
            return Action::Done;
        }
        if self.rec.take().is_some() {
            node.reconcile_finish();
        }
        self.failure = why;
        self.wait = Wait::Closed;
        Action::Close
    }

    fn resume(
        &mut self,
        node: &dyn Node,
        now_ms: u64,
        exiting: bool,
        data: &[u8],
    ) -> Result<Action, String> {
        let wait = self.wait;
        match wait {
            Wait::Pong => return self.drain(node, now_ms, data),
            Wait::Opened(_)
            | Wait::Flush { .. }
            | Wait::Epoch
            | Wait::EpochSet
            | Wait::Scan
            | Wait::Seed
            | Wait::Prune => {
                let conn = match wait {
                    Wait::Opened(c) => c,
                    _ => Conn::Commands,
                };
                let wire = match conn {
                    Conn::Commands => &mut self.cmd,
                    Conn::Subscriber => &mut self.sub,
                };
                wire.feed(data);
                while self.got.len() < self.sent.len() {
                    match wire.take().map_err(|e| e.to_string())? {
                        Some(r) => self.got.push(r),
                        None => {
                            return Ok(Action::Io {
                                conn,
                                send: Vec::new(),
                            })
                        }
                    }
                }
            }
            _ => {}
        }
        let replies = std::mem::take(&mut self.got);
        match wait {
            Wait::Done => Ok(Action::Done),
            Wait::Start | Wait::Backoff => {
                if exiting {
                    self.wait = Wait::Done;
                    return Ok(Action::Done);
                }
                self.cmd.clear();
                self.sub.clear();
                self.shas = None;
                Ok(self.connect(Conn::Commands))
            }
            Wait::Connect(Conn::Commands) => Ok(self.connect(Conn::Subscriber)),
            Wait::Connect(Conn::Subscriber) => {
                let p = redis::commands_opening(&self.cfg);
                Ok(self.send(Conn::Commands, p, Wait::Opened(Conn::Commands)))
            }
            Wait::Opened(Conn::Commands) => {
                self.sent.check(&replies)?;
                self.shas = Some(Shas::from_replies(&replies)?);
                let p = redis::subscriber_opening(&self.cfg, &self.keys);
                Ok(self.send(Conn::Subscriber, p, Wait::Opened(Conn::Subscriber)))
            }
            Wait::Opened(Conn::Subscriber) => {
                self.sent.check(&replies)?;
                self.phase = Phase::Join;
                self.flush(node, now_ms)
            }
            Wait::Flush { last, sent } => {
                self.sent.check(&replies)?;
                node.sent(last, sent);
                self.flush(node, now_ms)
            }
            Wait::Epoch => {
                plain(&replies[0])?;
                match plain(&replies[1])?.text() {
                    Some(epoch) => {
                        let lost = node.lost();
                        let mirror = lost == 0 && node.epoch().as_deref() == Some(epoch.as_str());
                        Ok(self.scan_first(node, epoch, mirror, lost))
                    }
                    None => {
                        // a new set: this node writes its epoch, unless
                        // another one just did
                        let mut p = Pipeline::default();
                        let epoch = format!("{:016x}", self.random());
                        redis::set_epoch(&mut p, &self.keys, &epoch);
                        redis::get_epoch(&mut p, &self.keys);
                        Ok(self.send(Conn::Commands, p, Wait::EpochSet))
                    }
                }
            }
            Wait::EpochSet => {
                plain(&replies[0])?;
                let epoch = plain(&replies[1])?
                    .text()
                    .ok_or_else(|| "the epoch vanished".to_string())?;
                let lost = node.lost();
                Ok(self.scan_first(node, epoch, false, lost))
            }
            Wait::Scan => self.scanned(node, now_ms, replies),
            Wait::Seed => {
                let Reply::Int(n) = plain(&replies[0])? else {
                    return Err("SEED: not a number".into());
                };
                if let Some(rec) = &mut self.rec {
                    rec.added += (*n).max(0) as u64;
                }
                self.seed(node, now_ms)
            }
            Wait::Prune => {
                plain(&replies[0])?;
                Ok(self.sleep(POLL_MS, Wait::Poll))
            }
            Wait::Poll => {
                self.phase = if exiting { Phase::Exit } else { Phase::Run };
                self.flush(node, now_ms)
            }
            Wait::Closed => Ok(self.after_close(node, exiting)),
            Wait::Pong => unreachable!("handled above"),
        }
    }

    /// After a failure, both connections closed: the outage is recorded
    /// (logged and counted once), then a backoff.
    fn after_close(&mut self, node: &dyn Node, exiting: bool) -> Action {
        if exiting {
            self.wait = Wait::Done;
            return Action::Done;
        }
        node.set_up(false);
        if !self.down {
            self.down = true;
            node.outage();
            node.log(
                Level::Err,
                &format!(
                    "redis {} is unreachable ({}); every worker keeps enforcing the blocks it \
                     has; changes are queued and sent when it is back",
                    self.address, self.failure
                ),
            );
            self.backoff_ms = FIRST_BACKOFF_MS;
        }
        // 0.5 to 1.5 times the backoff
        let ms = self.backoff_ms / 2 + self.random() % (self.backoff_ms + 1);
        self.backoff_ms = (self.backoff_ms * 2).min(MAX_BACKOFF_MS);
        self.sleep(ms, Wait::Backoff)
    }

    fn connect(&mut self, conn: Conn) -> Action {
        self.wait = Wait::Connect(conn);
        Action::Connect {
            conn,
            host: self.cfg.host.clone(),
            port: (!self.cfg.is_unix()).then_some(self.cfg.port),
            timeout_ms: self.cfg.timeout_ms,
        }
    }

    /// Sends `p` on `conn`; its replies are awaited as `wait`.
    fn send(&mut self, conn: Conn, mut p: Pipeline, wait: Wait) -> Action {
        let send = std::mem::take(&mut p.bytes);
        self.sent = p;
        self.got.clear();
        self.wait = wait;
        Action::Io { conn, send }
    }

    fn sleep(&mut self, ms: u64, wait: Wait) -> Action {
        self.wait = wait;
        Action::Sleep { ms }
    }

    fn shas(&self) -> Result<&Shas, String> {
        self.shas
            .as_ref()
            .ok_or_else(|| "the scripts are not loaded".to_string())
    }

    /// Sends the next batch of the outbox; when it is empty, goes on.
    fn flush(&mut self, node: &dyn Node, now_ms: u64) -> Result<Action, String> {
        loop {
            let Some(Pending { last, changes }) = node.pending(BATCH as u64)? else {
                return self.flushed(node, now_ms);
            };
            if changes.is_empty() {
                node.sent(last, 0);
                continue;
            }
            let mut p = Pipeline::default();
            for (entry, change) in &changes {
                redis::change(
                    &mut p,
                    &self.keys,
                    self.shas()?,
                    &message_for(&self.node, entry),
                    change,
                );
            }
            let sent = changes.len() as u64;
            return Ok(self.send(Conn::Commands, p, Wait::Flush { last, sent }));
        }
    }

    /// The outbox is empty: what comes next in this phase.
    fn flushed(&mut self, node: &dyn Node, now_ms: u64) -> Result<Action, String> {
        match self.phase {
            Phase::Join => self.reconcile(now_ms),
            Phase::Run => {
                if node.lost() > 0 && now_ms.saturating_sub(self.resent_ms) >= RESEND_EVERY_MS {
                    self.resent_ms = now_ms;
                    return self.reconcile(now_ms);
                }
                Ok(self.ping())
            }
            Phase::Exit => Err("exiting".into()),
        }
    }

    /// Starts a reconciliation: expired entries pruned, the epoch read.
    fn reconcile(&mut self, now_ms: u64) -> Result<Action, String> {
        let mut p = redis::prune(&self.keys, self.shas()?, now_ms);
        redis::get_epoch(&mut p, &self.keys);
        Ok(self.send(Conn::Commands, p, Wait::Epoch))
    }

    fn scan_first(&mut self, node: &dyn Node, epoch: String, mirror: bool, lost: u64) -> Action {
        node.reconcile_begin();
        self.rec = Some(Reconciling {
            epoch,
            mirror,
            lost,
            live: 0,
            taken: 0,
            dropped: 0,
            added: 0,
            unseen: Vec::new(),
            seeded: 0,
        });
        let p = redis::scan(&self.keys, "0");
        self.send(Conn::Commands, p, Wait::Scan)
    }

    /// One page of HSCAN compared; the next one asked for, or the blocks
    /// Redis lacks handled.
    fn scanned(
        &mut self,
        node: &dyn Node,
        now_ms: u64,
        replies: Vec<Reply>,
    ) -> Result<Action, String> {
        let malformed = || "HSCAN: malformed reply".to_string();
        let Some(first) = replies.into_iter().next() else {
            return Err(malformed());
        };
        plain(&first)?;
        let Reply::Array(Some(mut page)) = first else {
            return Err(malformed());
        };
        if page.len() != 2 {
            return Err(malformed());
        }
        let Reply::Array(Some(items)) = page.pop().unwrap_or(Reply::Int(0)) else {
            return Err(malformed());
        };
        let cursor = page[0].text().ok_or_else(malformed)?;
        let texts: Vec<String> = items.into_iter().map(text).collect();
        let pairs: Vec<(&str, &str)> = texts
            .chunks_exact(2)
            .map(|p| (p[0].as_str(), p[1].as_str()))
            .collect();
        let (live, taken, bad) = node.reconcile_page(&pairs);
        for b in &bad {
            node.log(
                Level::Warn,
                &format!(
                    "ignoring a malformed entry in redis {}: {b}",
                    self.keys.blocks
                ),
            );
        }
        let rec = self.rec.as_mut().ok_or_else(malformed)?;
        rec.live += live;
        rec.taken += taken;
        if cursor != "0" {
            let p = redis::scan(&self.keys, &cursor);
            return Ok(self.send(Conn::Commands, p, Wait::Scan));
        }
        // this node's blocks that Redis lacks: unblocked or expired
        // elsewhere (mirror: dropped, unless queued), or for Redis to take
        let (dropped, unseen) = node.reconcile_unseen(rec.mirror);
        rec.dropped = dropped;
        rec.unseen = unseen;
        self.seed(node, now_ms)
    }

    /// Sends Redis the next batch of the blocks it lacks; when none is
    /// left, ends the reconciliation.
    fn seed(&mut self, node: &dyn Node, now_ms: u64) -> Result<Action, String> {
        let rec = self.rec.as_mut().ok_or("no reconciliation")?;
        if rec.seeded < rec.unseen.len() {
            let end = (rec.seeded + BATCH).min(rec.unseen.len());
            let batch: Vec<(&Block, String)> = rec.unseen[rec.seeded..end]
                .iter()
                .map(|b| {
                    let entry = Change::Add(b.clone()).encode();
                    (b, message_for(&self.node, &entry))
                })
                .collect();
            let shas = self.shas.as_ref().ok_or("the scripts are not loaded")?;
            let p = redis::seed(&self.keys, shas, &batch);
            rec.seeded = end;
            return Ok(self.send(Conn::Commands, p, Wait::Seed));
        }
        let rec = self.rec.take().ok_or("no reconciliation")?;
        node.reconcile_finish();
        node.reconciled(&rec.epoch, rec.lost > 0);
        let summary = format!(
            "{} with {} blocks in Redis: {} taken, {} dropped, {} sent",
            if rec.mirror { "mirrored" } else { "merged" },
            rec.live,
            rec.taken,
            rec.dropped,
            rec.added
        );
        match self.phase {
            Phase::Join => {
                node.set_up(true);
                if self.down {
                    self.down = false;
                    node.log(
                        Level::Notice,
                        &format!("redis {} is back; {summary}", self.address),
                    );
                } else {
                    node.log(
                        Level::Notice,
                        &format!(
                            "joined the fleet as {} (redis {}); {summary}",
                            self.node, self.address
                        ),
                    );
                }
                self.pruned_ms = now_ms;
                self.resent_ms = now_ms;
                self.phase = Phase::Run;
                self.flush(node, now_ms)
            }
            _ => {
                node.log(
                    Level::Notice,
                    &format!(
                        "{} changes could not be queued for redis {}; {summary}",
                        rec.lost, self.address
                    ),
                );
                Ok(self.ping())
            }
        }
    }

    fn ping(&mut self) -> Action {
        self.sent = Pipeline::default();
        self.got.clear();
        self.wait = Wait::Pong;
        Action::Io {
            conn: Conn::Subscriber,
            send: redis::ping().bytes,
        }
    }

    /// Applies what the subscriber delivered before its pong; then a
    /// prune when it is time, else the poll's sleep.
    fn drain(&mut self, node: &dyn Node, now_ms: u64, data: &[u8]) -> Result<Action, String> {
        self.sub.feed(data);
        loop {
            let Some(r) = self.sub.take().map_err(|e| e.to_string())? else {
                return Ok(Action::Io {
                    conn: Conn::Subscriber,
                    send: Vec::new(),
                });
            };
            let items = match r {
                Reply::Error(e) => return Err(e),
                Reply::Array(Some(items)) => items,
                _ => continue,
            };
            match items.first().and_then(Reply::text).as_deref() {
                Some("message") if items.len() == 3 => {
                    node.message(&items[2].text().unwrap_or_default(), &self.node);
                }
                Some("pong") => break,
                _ => {}
            }
        }
        if now_ms.saturating_sub(self.pruned_ms) >= PRUNE_EVERY_MS {
            self.pruned_ms = now_ms;
            let p = redis::prune(&self.keys, self.shas()?, now_ms);
            return Ok(self.send(Conn::Commands, p, Wait::Prune));
        }
        Ok(self.sleep(POLL_MS, Wait::Poll))
    }

    /// The next of the agent's random numbers (splitmix64).
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A reply that is not an error.
fn plain(r: &Reply) -> Result<&Reply, String> {
    match r {
        Reply::Error(e) => Err(e.clone()),
        r => Ok(r),
    }
}

/// A bulk string as text (lossy UTF-8, no copy when valid).
fn text(r: Reply) -> String {
    match r {
        Reply::Bulk(Some(b)) => {
            String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
        }
        other => other.text().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
