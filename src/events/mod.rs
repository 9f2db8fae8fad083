//! Security events: a bounded ring in memory shared by every worker.
//!
//! Each event is one fixed-size record ([`RECORD_BYTES`] bytes): long paths
//! and user agents are cut. Writers take the next sequence number with one
//! atomic add and publish the record with a sequence lock, so writers never
//! wait for each other and readers never see half an event. When the ring
//! is full the oldest events are overwritten; events older than the
//! retention (or than the latest cleanup) are never returned.
//!
//! Events are written when a rule trips or a block is made, and for
//! refused requests once per client and minute ([`refusals`]), so their
//! cost does not matter; reading walks the ring. The ring is saved with
//! the state file ([`crate::persist::state`]) and written to the event
//! log by sequence number ([`ecs`], [`log`]).

pub mod ecs;
pub mod log;
pub mod refusals;

use std::cell::UnsafeCell;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::error::Error;
use crate::net::addr::Net;
use crate::options::Scalar;

/// Event types (FlatRun's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// An address was blocked or unblocked.
    BlockedIp = 1,
    /// Too many requests, overall or on one path.
    RateLimited,
    /// Too many 401/403 responses.
    AuthFailed,
    /// Probing: 404 bursts, probe paths, signals of any kind.
    Suspicious,
    /// A scanner: its user agent, or many distinct failing paths.
    ScanDetected,
    /// A captured request (real-time capture).
    Capture,
    /// Challenge pages served to a client (one event per client and
    /// minute, with a count: [`refusals`]).
    ChallengeIssued,
    /// A client solved its challenge.
    ChallengeSolved,
    /// An answer was refused (wrong, forged, expired, replayed), or a
    /// client that never solved was blocked.
    ChallengeFailed,
}

impl Kind {
    /// The counter of events of this kind.
    pub fn stat(self) -> crate::metrics::Stat {
        use crate::metrics::Stat;
        match self {
            Kind::BlockedIp => Stat::EventsBlockedIp,
            Kind::RateLimited => Stat::EventsRateLimited,
            Kind::AuthFailed => Stat::EventsAuthFailed,
            Kind::Suspicious => Stat::EventsSuspicious,
            Kind::ScanDetected => Stat::EventsScanDetected,
            Kind::Capture => Stat::EventsCapture,
            Kind::ChallengeIssued => Stat::EventsChallengeIssued,
            Kind::ChallengeSolved => Stat::EventsChallengeSolved,
            Kind::ChallengeFailed => Stat::EventsChallengeFailed,
        }
    }

    /// Every kind with its name.
    pub const ALL: [(Kind, &'static str); 9] = [
        (Kind::BlockedIp, "blocked_ip"),
        (Kind::RateLimited, "rate_limited"),
        (Kind::AuthFailed, "auth_failed"),
        (Kind::Suspicious, "suspicious"),
        (Kind::ScanDetected, "scan_detected"),
        (Kind::Capture, "capture"),
        (Kind::ChallengeIssued, "challenge_issued"),
        (Kind::ChallengeSolved, "challenge_solved"),
        (Kind::ChallengeFailed, "challenge_failed"),
    ];

    /// True for the challenge's kinds, which type-keyed reports list only
    /// when challenges are configured or such events exist.
    pub fn is_challenge(self) -> bool {
        matches!(
            self,
            Kind::ChallengeIssued | Kind::ChallengeSolved | Kind::ChallengeFailed
        )
    }

    /// The kind's name.
    pub fn name(self) -> &'static str {
        Kind::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("unknown", |(_, n)| n)
    }

    /// The kind named `s`.
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.iter().find(|(_, n)| *n == s).map(|(k, _)| *k)
    }

    fn from_u8(v: u8) -> Option<Kind> {
        Kind::ALL
            .iter()
            .find(|(k, _)| *k as u8 == v)
            .map(|(k, _)| *k)
    }
}

/// One event, as written and read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Milliseconds since the epoch.
    pub time_ms: u64,
    /// The client or target (an address or a network).
    pub ip: String,
    /// The event type.
    pub kind: Option<Kind>,
    /// The rule (or `manual`, `api`, ...).
    pub rule: String,
    /// The count that reached the threshold.
    pub count: u32,
    /// The threshold.
    pub threshold: u32,
    /// The window in seconds.
    pub window_s: u32,
    /// The response status (0: none).
    pub status: u16,
    /// The request method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// The user agent.
    pub user_agent: String,
    /// What was done: `blocked`, `monitor`, ...
    pub action: String,
    /// The reason given to the block the event is about (a block, an
    /// unblock, a refused request), or empty.
    pub reason: String,
    /// What the rule saw, when its count does not say it all: the
    /// scanner's name for `scanner_agent` (`sqlmap`), the payload classes
    /// for `payload` (`sqli+xss`); empty otherwise.
    pub detail: String,
}

impl Event {
    /// True when the event records a block made: a manual one
    /// (`ops::Warden::block`) or a rule's (`detect::offences::act`), whose
    /// actions start with `blocked` (`blocked for 1h`, `blocked
    /// permanently (offence 2)`); not `already blocked`, `unblocked` or a
    /// failed block.
    pub fn made_block(&self) -> bool {
        self.action.starts_with("blocked")
    }
}

const IP: usize = 48;
const RULE: usize = 24;
const METHOD: usize = 16;
const ACTION: usize = 48;
const REASON: usize = 104;
const PATH: usize = 192;
const UA: usize = 128;
const DETAIL: usize = 40;

#[repr(C)]
#[derive(Clone, Copy)]
struct Data {
    time_ms: u64,
    count: u32,
    threshold: u32,
    window_s: u32,
    status: u16,
    kind: u8,
    lens: [u8; 4],
    path_len: u8,
    ua_len: u8,
    reason_len: u8,
    detail_len: u8,
    ip: [u8; IP],
    rule: [u8; RULE],
    method: [u8; METHOD],
    action: [u8; ACTION],
    path: [u8; PATH],
    ua: [u8; UA],
    reason: [u8; REASON],
    detail: [u8; DETAIL],
}

#[repr(C, align(64))]
struct Record {
    /// 2 * (n + 1) once event n is complete; odd while it is written.
    seq: AtomicU64,
    data: UnsafeCell<Data>,
}

/// Bytes per event.
pub const RECORD_BYTES: usize = std::mem::size_of::<Record>();

#[repr(C, align(64))]
struct Header {
    /// Events ever written.
    head: AtomicU64,
    /// Events before this time (ms) are gone (cleanup).
    floor_ms: AtomicU64,
    /// Events before this sequence number are written to the event log
    /// (or were there when it started): the drain's cursor, which
    /// outlives the workers (`nginx -s reload`).
    logged: AtomicU64,
}

/// The ring.
pub struct Ring {
    base: usize,
    header: &'static Header,
    records: &'static [Record],
    retention_ms: u64,
}

// SAFETY: record data is written only between an odd and an even sequence
// number, by the one writer that took that number, and readers discard any
// copy during which the sequence changed.
unsafe impl Sync for Ring {}

/// A record of the ring as [`Ring::entry`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// The event, complete.
    Event(Box<Event>),
    /// Not written yet, or being written (or rewritten).
    Pending,
    /// A later event took its place.
    Overwritten,
}

/// What to return.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// At most this many (newest first).
    pub limit: usize,
    /// Only this type.
    pub kind: Option<Kind>,
    /// Only this address or target, as text.
    pub ip: Option<String>,
    /// Only events at or after this time (ms).
    pub since_ms: u64,
}

fn put<const N: usize>(dst: &mut [u8; N], s: &str) -> u8 {
    // cut at a character boundary
    let mut n = s.len().min(N);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
    n as u8
}

fn get(b: &[u8], n: u8) -> String {
    String::from_utf8_lossy(&b[..usize::from(n).min(b.len())]).into_owned()
}

fn decode(d: &Data) -> Event {
    Event {
        time_ms: d.time_ms,
        ip: get(&d.ip, d.lens[0]),
        kind: Kind::from_u8(d.kind),
        rule: get(&d.rule, d.lens[1]),
        count: d.count,
        threshold: d.threshold,
        window_s: d.window_s,
        status: d.status,
        method: get(&d.method, d.lens[2]),
        path: get(&d.path, d.path_len),
        user_agent: get(&d.ua, d.ua_len),
        action: get(&d.action, d.lens[3]),
        reason: get(&d.reason, d.reason_len),
        detail: get(&d.detail, d.detail_len),
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        crate::shm::release_shared(self.base as *mut libc::c_void);
    }
}

impl Ring {
    /// A ring of `capacity` events kept `retention_ms` (0: until
    /// overwritten). `name` identifies it across `nginx -s reload`: the
    /// same name and capacity give the same memory back.
    pub fn new(name: &str, capacity: usize, retention_ms: u64) -> Result<Ring, String> {
        let capacity = capacity.max(1);
        let size = std::mem::size_of::<Header>()
            + capacity
                .checked_mul(RECORD_BYTES)
                .ok_or_else(|| format!("{capacity} events do not fit in memory"))?;
        let p = crate::shm::keep_shared(&format!("events:{name}"), size, 0, "security events")?;
        // SAFETY: a zero-filled (or previously initialised by this code)
        // mapping of `size` bytes, page aligned, never unmapped; all-zero
        // is a valid empty ring.
        let (header, records) = unsafe {
            let h = &*(p as *const Header);
            let r = std::slice::from_raw_parts(
                (p as *const u8).add(std::mem::size_of::<Header>()) as *const Record,
                capacity,
            );
            (h, r)
        };
        Ok(Ring {
            base: p as usize,
            header,
            records,
            retention_ms,
        })
    }

    /// Capacity in events.
    pub fn capacity(&self) -> usize {
        self.records.len()
    }

    /// Bytes mapped.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Header>() + self.records.len() * RECORD_BYTES
    }

    /// Events ever written.
    pub fn written(&self) -> u64 {
        self.header.head.load(Ordering::Relaxed)
    }

    /// Records an event; returns its sequence number.
    pub fn push(&self, e: &Event) -> u64 {
        let n = self.header.head.fetch_add(1, Ordering::AcqRel);
        let r = &self.records[(n % self.records.len() as u64) as usize];
        r.seq.store(2 * n + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        // SAFETY: this writer owns record `n` until it stores the even
        // sequence number below (see `unsafe impl Sync`).
        let d = unsafe { &mut *r.data.get() };
        d.time_ms = e.time_ms;
        d.count = e.count;
        d.threshold = e.threshold;
        d.window_s = e.window_s;
        d.status = e.status;
        d.kind = e.kind.map_or(0, |k| k as u8);
        d.lens = [
            put(&mut d.ip, &e.ip),
            put(&mut d.rule, &e.rule),
            put(&mut d.method, &e.method),
            put(&mut d.action, &e.action),
        ];
        d.path_len = put(&mut d.path, &e.path);
        d.ua_len = put(&mut d.ua, &e.user_agent);
        d.reason_len = put(&mut d.reason, &e.reason);
        d.detail_len = put(&mut d.detail, &e.detail);
        r.seq.store(2 * n + 2, Ordering::Release);
        n
    }

    /// Sets the count of event `n` to `count` in place, when the ring
    /// still holds it (the aggregated refusals of one client and window,
    /// [`refusals`]). Returns false when it was overwritten (or is being
    /// written): the caller records a new event.
    pub fn set_count(&self, n: u64, count: u32) -> bool {
        let r = &self.records[(n % self.records.len() as u64) as usize];
        // taking the record back from "complete" to "being written" makes
        // this the one writer of it, as in `push`
        if r.seq
            .compare_exchange(2 * n + 2, 2 * n + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        fence(Ordering::Release);
        // SAFETY: this writer owns record `n` until it stores the even
        // sequence number below (see `unsafe impl Sync`).
        unsafe { (*r.data.get()).count = count };
        r.seq.store(2 * n + 2, Ordering::Release);
        true
    }

    fn read(&self, n: u64) -> Option<Data> {
        let r = &self.records[(n % self.records.len() as u64) as usize];
        let s1 = r.seq.load(Ordering::Acquire);
        if s1 != 2 * n + 2 {
            return None;
        }
        // SAFETY: a plain copy of POD bytes; if a writer raced with it the
        // sequence check below discards the copy.
        let d = unsafe { std::ptr::read_volatile(r.data.get()) };
        fence(Ordering::Acquire);
        (r.seq.load(Ordering::Relaxed) == s1).then_some(d)
    }

    /// Events matching `f`, newest first.
    pub fn query(&self, f: &Filter, now_ms: u64) -> Vec<Event> {
        let head = self.header.head.load(Ordering::Acquire);
        let oldest = head.saturating_sub(self.records.len() as u64);
        let mut floor = self.header.floor_ms.load(Ordering::Relaxed).max(f.since_ms);
        if self.retention_ms > 0 {
            floor = floor.max(now_ms.saturating_sub(self.retention_ms));
        }
        let limit = if f.limit == 0 { usize::MAX } else { f.limit };
        let mut out = Vec::new();
        for n in (oldest..head).rev() {
            if out.len() >= limit {
                break;
            }
            let Some(d) = self.read(n) else { continue };
            if d.time_ms < floor {
                continue;
            }
            if let Some(k) = f.kind {
                if d.kind != k as u8 {
                    continue;
                }
            }
            if let Some(want) = &f.ip {
                if get(&d.ip, d.lens[0]) != *want {
                    continue;
                }
            }
            out.push(decode(&d));
        }
        out
    }

    /// Record `n` as the event log's drain finds it.
    pub fn entry(&self, n: u64) -> Entry {
        if let Some(d) = self.read(n) {
            return Entry::Event(Box::new(decode(&d)));
        }
        let r = &self.records[(n % self.records.len() as u64) as usize];
        if r.seq.load(Ordering::Acquire) > 2 * n + 2 {
            Entry::Overwritten
        } else {
            Entry::Pending
        }
    }

    /// Event `n`, when the ring still holds it complete and it is within
    /// the retention and after the latest cleanup (None otherwise).
    pub fn get(&self, n: u64, now_ms: u64) -> Option<Event> {
        let d = self.read(n)?;
        (d.time_ms >= self.floor(now_ms)).then(|| decode(&d))
    }

    /// The oldest time (ms) an event may have to be returned.
    fn floor(&self, now_ms: u64) -> u64 {
        let floor = self.header.floor_ms.load(Ordering::Relaxed);
        if self.retention_ms > 0 {
            floor.max(now_ms.saturating_sub(self.retention_ms))
        } else {
            floor
        }
    }

    /// The event log's cursor (see `Header::logged`).
    pub fn logged(&self) -> u64 {
        self.header.logged.load(Ordering::Acquire)
    }

    /// Moves the event log's cursor to `n`.
    pub fn set_logged(&self, n: u64) {
        self.header.logged.store(n, Ordering::Release);
    }

    /// The latest cleanup's time (ms): events before it are gone.
    pub fn cleaned_before(&self) -> u64 {
        self.header.floor_ms.load(Ordering::Relaxed)
    }

    /// Forgets every event older than `before_ms`; returns how many of the
    /// events still in the ring that hides.
    pub fn cleanup(&self, before_ms: u64) -> usize {
        let head = self.header.head.load(Ordering::Acquire);
        let oldest = head.saturating_sub(self.records.len() as u64);
        let prev = self.header.floor_ms.fetch_max(before_ms, Ordering::AcqRel);
        (oldest..head)
            .filter_map(|n| self.read(n))
            .filter(|d| d.time_ms >= prev && d.time_ms < before_ms)
            .count()
    }
}

impl Filter {
    /// The filter of a request for events (`GET /security/events`,
    /// `warden:events{...}`): `limit` (a positive integer, 100 when
    /// absent), `type` (a [`Kind`] name), `ip` (an address or a network)
    /// and `since` (seconds since the epoch). Errors name the argument.
    pub fn read(
        limit: Scalar<'_>,
        kind: Scalar<'_>,
        ip: Scalar<'_>,
        since: Scalar<'_>,
    ) -> Result<Filter, Error> {
        let mut f = Filter {
            limit: 100,
            ..Filter::default()
        };
        match limit {
            Scalar::Nil => {}
            Scalar::Int(n) if n > 0 => f.limit = n as usize,
            v => {
                return Err(Error::invalid(
                    "limit",
                    format!("limit must be a positive integer, got {}", v.show()),
                ))
            }
        }
        match kind {
            Scalar::Nil => {}
            Scalar::Text(s) => match Kind::from_name(s) {
                Some(k) => f.kind = Some(k),
                None => {
                    let names: Vec<&str> = Kind::ALL.iter().map(|(_, n)| *n).collect();
                    return Err(Error::invalid(
                        "type",
                        format!("type must be one of {}, got '{s}'", names.join(", ")),
                    ));
                }
            },
            v => {
                return Err(Error::invalid(
                    "type",
                    format!("type must be a string, got {}", v.show()),
                ))
            }
        }
        match ip {
            Scalar::Nil => {}
            Scalar::Text(s) => match Net::parse(s.trim()) {
                Ok(n) => f.ip = Some(n.to_string()),
                Err(e) => return Err(Error::invalid("ip", format!("ip: {e}"))),
            },
            v => {
                return Err(Error::invalid(
                    "ip",
                    format!("ip: target must be a string, got {}", v.type_name()),
                ))
            }
        }
        match since {
            Scalar::Nil => {}
            Scalar::Int(n) if n >= 0 => f.since_ms = (n as u64).saturating_mul(1000),
            Scalar::Float(n) if n >= 0.0 => f.since_ms = (n * 1000.0) as u64,
            v => {
                return Err(Error::invalid(
                    "since",
                    format!(
                        "since must be a time in seconds since the epoch, got {}",
                        v.show()
                    ),
                ))
            }
        }
        Ok(f)
    }
}

/// Events matching `f` from the events ring and the ring of captured
/// requests (only the latter for [`Kind::Capture`], only the former for
/// another kind, both merged when no kind is asked for), newest first.
pub fn query_both(events: &Ring, captures: &Ring, f: &Filter, now_ms: u64) -> Vec<Event> {
    match f.kind {
        Some(Kind::Capture) => captures.query(f, now_ms),
        Some(_) => events.query(f, now_ms),
        None => {
            let mut l = events.query(f, now_ms);
            l.extend(captures.query(f, now_ms));
            l.sort_by_key(|e| std::cmp::Reverse(e.time_ms));
            if f.limit > 0 {
                l.truncate(f.limit);
            }
            l
        }
    }
}

/// Forgets the events of both rings older than `older_than_ms` before
/// `now_ms`; returns how many that hides.
pub fn cleanup_both(events: &Ring, captures: &Ring, older_than_ms: u64, now_ms: u64) -> usize {
    let before = now_ms.saturating_sub(older_than_ms) + 1;
    events.cleanup(before) + captures.cleanup(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: u64, ip: &str, kind: Kind) -> Event {
        Event {
            time_ms: t,
            ip: ip.to_string(),
            kind: Some(kind),
            rule: "not_found".into(),
            path: "/x".repeat(200),
            user_agent: "é".repeat(100),
            action: "blocked".into(),
            ..Event::default()
        }
    }

    #[test]
    fn newest_first_filters_and_wraps() {
        let r = Ring::new("t-ring", 4, 0).unwrap();
        for i in 0..6u64 {
            let k = if i % 2 == 0 {
                Kind::Suspicious
            } else {
                Kind::AuthFailed
            };
            r.push(&ev(1000 + i, &format!("192.0.2.{i}"), k));
        }
        let all = r.query(&Filter::default(), 2000);
        let ips: Vec<_> = all.iter().map(|e| e.ip.as_str()).collect();
        assert_eq!(ips, ["192.0.2.5", "192.0.2.4", "192.0.2.3", "192.0.2.2"]);
        assert_eq!(all[0].path.len(), PATH);
        assert!(all[0].user_agent.chars().all(|c| c == 'é'));
        let f = Filter {
            kind: Some(Kind::Suspicious),
            limit: 1,
            ..Filter::default()
        };
        assert_eq!(r.query(&f, 2000)[0].ip, "192.0.2.4");
        let f = Filter {
            ip: Some("192.0.2.3".into()),
            ..Filter::default()
        };
        assert_eq!(r.query(&f, 2000).len(), 1);
        let f = Filter {
            since_ms: 1004,
            ..Filter::default()
        };
        assert_eq!(r.query(&f, 2000).len(), 2);
        assert_eq!(r.cleanup(1005), 3);
        assert_eq!(r.query(&Filter::default(), 2000).len(), 1);
    }

    #[test]
    fn retention_hides_old_events() {
        let r = Ring::new("t-ring-ret", 8, 1000).unwrap();
        r.push(&ev(1_000, "a", Kind::BlockedIp));
        r.push(&ev(5_000, "b", Kind::BlockedIp));
        let got = r.query(&Filter::default(), 5_500);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].ip, "b");
    }

    #[test]
    fn shared_across_fork_and_reused_by_name() {
        let r = Ring::new("t-ring-fork", 64, 0).unwrap();
        let mut pids = Vec::new();
        for w in 0..4 {
            // SAFETY: the child only writes events and exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                for i in 0..10 {
                    r.push(&ev(1, &format!("w{w}-{i}"), Kind::Suspicious));
                }
                unsafe { libc::_exit(0) };
            }
            pids.push(pid);
        }
        for pid in pids {
            let mut st = 0;
            // SAFETY: our own children.
            unsafe { libc::waitpid(pid, &mut st, 0) };
        }
        assert_eq!(r.query(&Filter::default(), 2).len(), 40);
        let again = Ring::new("t-ring-fork", 64, 0).unwrap();
        assert_eq!(again.written(), 40);
    }

    #[test]
    fn kinds_round_trip() {
        for (k, n) in Kind::ALL {
            assert_eq!(Kind::from_name(n), Some(k));
            assert_eq!(k.name(), n);
        }
        // the counters of events by type carry the same names
        let counted: Vec<_> = crate::metrics::Stat::events().collect();
        assert_eq!(counted.len(), Kind::ALL.len());
        for ((k, n), (s, m)) in Kind::ALL.iter().zip(counted) {
            assert_eq!((k.stat(), *n), (s, m));
        }
        assert_eq!(RECORD_BYTES, 640);
    }

    #[test]
    fn filters_name_the_argument() {
        use Scalar::*;
        let f = Filter::read(Int(5), Text("capture"), Text(" 192.0.2.1 "), Int(7)).unwrap();
        assert_eq!(
            (f.limit, f.kind, f.ip.as_deref(), f.since_ms),
            (5, Some(Kind::Capture), Some("192.0.2.1"), 7000)
        );
        assert_eq!(Filter::read(Nil, Nil, Nil, Nil).unwrap().limit, 100);
        for (args, field, msg) in [
            (
                (Text("abc"), Nil, Nil, Nil),
                "limit",
                "limit must be a positive integer, got 'abc'",
            ),
            (
                (Float(1.5), Nil, Nil, Nil),
                "limit",
                "limit must be a positive integer, got 1.5",
            ),
            (
                (Int(0), Nil, Nil, Nil),
                "limit",
                "limit must be a positive integer, got 0",
            ),
            (
                (Nil, Text("bogus"), Nil, Nil),
                "type",
                "type must be one of blocked_ip, rate_limited, auth_failed, suspicious, \
                 scan_detected, capture, challenge_issued, challenge_solved, challenge_failed, got 'bogus'",
            ),
            (
                (Nil, Bool(true), Nil, Nil),
                "type",
                "type must be a string, got true",
            ),
            (
                (Nil, Nil, Text("x"), Nil),
                "ip",
                "ip: invalid IP address or CIDR 'x'",
            ),
            (
                (Nil, Nil, Int(5), Nil),
                "ip",
                "ip: target must be a string, got number",
            ),
            (
                (Nil, Nil, Nil, Int(-1)),
                "since",
                "since must be a time in seconds since the epoch, got -1",
            ),
        ] {
            let e = Filter::read(args.0, args.1, args.2, args.3).unwrap_err();
            assert_eq!((e.field(), e.message()), (Some(field), msg));
            assert_eq!(e.kind().status(), 400);
        }
    }

    #[test]
    fn both_rings_merged_newest_first() {
        let ev_ring = Ring::new("t-both-ev", 8, 0).unwrap();
        let cap_ring = Ring::new("t-both-cap", 8, 0).unwrap();
        ev_ring.push(&ev(1_000, "a", Kind::BlockedIp));
        cap_ring.push(&ev(2_000, "b", Kind::Capture));
        ev_ring.push(&ev(3_000, "c", Kind::Suspicious));
        let f = Filter {
            limit: 2,
            ..Filter::default()
        };
        let ips: Vec<_> = query_both(&ev_ring, &cap_ring, &f, 4_000)
            .into_iter()
            .map(|e| e.ip)
            .collect();
        assert_eq!(ips, ["c", "b"]);
        let f = Filter {
            kind: Some(Kind::Capture),
            ..Filter::default()
        };
        assert_eq!(query_both(&ev_ring, &cap_ring, &f, 4_000)[0].ip, "b");
        assert_eq!(cleanup_both(&ev_ring, &cap_ring, 1_500, 4_000), 2);
        assert_eq!(
            query_both(&ev_ring, &cap_ring, &Filter::default(), 4_000).len(),
            1
        );
    }
}
