//! The agent's sessions against scripted Redis replies: what it sends,
//! in which order, what it makes of each reply, what it logs.

use std::cell::{Cell, RefCell};

use super::*;
use crate::net::resp::parse;

/// A node that records what the agent does to it.
#[derive(Default)]
struct Fake {
    /// Batches the outbox hands out, in order.
    outbox: RefCell<Vec<Pending>>,
    epoch: RefCell<Option<String>>,
    lost: Cell<u64>,
    up: Cell<bool>,
    outages: Cell<u32>,
    /// The node's blocks Redis lacks (at the end of a comparison).
    unseen: RefCell<Vec<Block>>,
    /// Every call, in order.
    calls: RefCell<Vec<String>>,
    lines: RefCell<Vec<(Level, String)>>,
}

impl Fake {
    fn call(&self, c: String) {
        self.calls.borrow_mut().push(c);
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.borrow_mut())
    }

    fn lines(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.borrow_mut())
            .into_iter()
            .map(|(l, m)| format!("{l:?} {m}"))
            .collect()
    }

    fn queue(&self, last: u64, entries: &[&str]) {
        self.outbox.borrow_mut().push(Pending {
            last,
            changes: entries
                .iter()
                .map(|e| (e.to_string(), Change::decode(e).unwrap()))
                .collect(),
        });
    }
}

impl Node for Fake {
    fn pending(&self, _max: u64) -> Result<Option<Pending>, String> {
        let mut o = self.outbox.borrow_mut();
        Ok((!o.is_empty()).then(|| o.remove(0)))
    }
    fn sent(&self, last: u64, n: u64) {
        self.call(format!("sent {last} {n}"));
    }
    fn epoch(&self) -> Option<String> {
        self.epoch.borrow().clone()
    }
    fn lost(&self) -> u64 {
        self.lost.get()
    }
    fn set_up(&self, up: bool) {
        self.up.set(up);
    }
    fn outage(&self) {
        self.outages.set(self.outages.get() + 1);
    }
    fn message(&self, payload: &str, me: &str) {
        self.call(format!("message {payload} (me: {me})"));
    }
    fn reconcile_begin(&self) {
        self.call("begin".into());
    }
    fn reconcile_page(&self, records: &[(&str, &str)]) -> (usize, usize, Vec<String>) {
        let (good, bad): (Vec<_>, Vec<_>) = records.iter().partition(|(k, _)| *k != "nope");
        self.call(format!("page {}", records.len()));
        (
            good.len(),
            good.len(),
            bad.iter().map(|(k, v)| format!("{k} = {v}")).collect(),
        )
    }
    fn reconcile_unseen(&self, mirror: bool) -> (usize, Vec<Block>) {
        let unseen = std::mem::take(&mut *self.unseen.borrow_mut());
        self.call(format!("unseen {mirror}"));
        if mirror {
            (unseen.len(), Vec::new())
        } else {
            (0, unseen)
        }
    }
    fn reconcile_finish(&self) -> usize {
        self.call("finish".into());
        0
    }
    fn reconciled(&self, epoch: &str, lost: bool) {
        *self.epoch.borrow_mut() = Some(epoch.to_string());
        if lost {
            self.lost.set(0);
        }
        self.call(format!("reconciled {epoch} {lost}"));
    }
    fn log(&self, level: Level, msg: &str) {
        self.lines.borrow_mut().push((level, msg.to_string()));
    }
}

// Redis's replies, as it sends them.
fn ok() -> Vec<u8> {
    b"+OK\r\n".to_vec()
}
fn int(n: i64) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}
fn bulk(s: &str) -> Vec<u8> {
    format!("${}\r\n{s}\r\n", s.len()).into_bytes()
}
fn nil() -> Vec<u8> {
    b"$-1\r\n".to_vec()
}
fn error(s: &str) -> Vec<u8> {
    format!("-{s}\r\n").into_bytes()
}
fn array(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", items.len()).into_bytes();
    for i in items {
        out.extend_from_slice(i);
    }
    out
}
fn bulks(items: &[&str]) -> Vec<u8> {
    array(&items.iter().map(|s| bulk(s)).collect::<Vec<_>>())
}
fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// The commands of an `Io` action, as Redis reads them.
fn commands(a: &Action) -> (Conn, Vec<String>) {
    let Action::Io { conn, send } = a else {
        panic!("not an Io: {a:?}");
    };
    let (mut out, mut at) = (Vec::new(), 0);
    while let Some((r, used)) = parse(&send[at..]).unwrap() {
        at += used;
        let words: Vec<String> = r
            .items()
            .unwrap()
            .iter()
            .map(|w| w.text().unwrap())
            .collect();
        // the scripts' text is long: its first line stands for it
        out.push(
            words
                .iter()
                .map(|w| w.lines().next().unwrap_or("").to_string())
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    assert_eq!(at, send.len());
    (*conn, out)
}

struct Run {
    agent: Agent,
    node: Fake,
    now: u64,
    exiting: bool,
}

impl Run {
    fn new(opts: serde_json::Value) -> Run {
        let cfg = RedisConfig::from_value(&opts).unwrap();
        Run {
            agent: Agent::new(&cfg, "a", 7),
            node: Fake::default(),
            now: 1_000_000,
            exiting: false,
        }
    }

    fn step(&mut self, o: Outcome<'_>) -> Action {
        self.agent.step(&self.node, self.now, self.exiting, o)
    }

    /// Feeds `reply` and expects the commands of the next exchange.
    fn reply(&mut self, reply: &[u8]) -> (Conn, Vec<String>) {
        commands(&self.step(Outcome::Data(reply)))
    }

    /// From the first step to the first SUBSCRIBE reply: what follows.
    fn open(&mut self) -> Action {
        assert!(matches!(
            self.step(Outcome::Ok),
            Action::Connect {
                conn: Conn::Commands,
                ..
            }
        ));
        assert!(matches!(
            self.step(Outcome::Ok),
            Action::Connect {
                conn: Conn::Subscriber,
                ..
            }
        ));
        let (conn, cmds) = commands(&self.step(Outcome::Ok));
        assert_eq!(conn, Conn::Commands);
        assert_eq!(cmds.len(), 3);
        let (conn, _) = self.reply(&cat(&[bulk("sc"), bulk("ss"), bulk("sp")]));
        assert_eq!(conn, Conn::Subscriber);
        self.step(Outcome::Data(&bulks_subscribed()))
    }

    /// A whole join: an empty outbox, Redis's epoch `e1`, `n` blocks in
    /// one page. Returns the first PING.
    fn join(&mut self, n: usize) -> Action {
        let a = self.open();
        assert_eq!(
            commands(&a).1,
            ["EVALSHA sp 2 t:blocks t:expiry 1000000", "GET t:epoch"]
        );
        assert_eq!(
            self.reply(&cat(&[int(0), bulk("e1")])).1[0],
            "HSCAN t:blocks 0 COUNT 1000"
        );
        let page: Vec<String> = (0..n)
            .flat_map(|i| [format!("192.0.2.{i}"), "0|manual|x".into()])
            .collect();
        let page: Vec<&str> = page.iter().map(String::as_str).collect();
        self.step(Outcome::Data(&array(&[bulk("0"), bulks(&page)])))
    }
}

fn bulks_subscribed() -> Vec<u8> {
    array(&[bulk("subscribe"), bulk("t:events"), int(1)])
}

fn opts() -> serde_json::Value {
    serde_json::json!({"host": "127.0.0.1", "port": 1979, "prefix": "t:", "timeout": "2s"})
}

fn block(target: &str) -> Block {
    let Change::Add(b) = Change::decode(&format!("+|{target}|0|manual|r")).unwrap() else {
        unreachable!()
    };
    b
}

#[test]
fn a_new_node_joins_sends_its_outbox_merges_and_polls() {
    let mut r = Run::new(opts());
    assert_eq!(
        r.step(Outcome::Ok),
        Action::Connect {
            conn: Conn::Commands,
            host: "127.0.0.1".into(),
            port: Some(1979),
            timeout_ms: 2000
        }
    );
    assert!(matches!(
        r.step(Outcome::Ok),
        Action::Connect {
            conn: Conn::Subscriber,
            ..
        }
    ));
    assert_eq!(
        commands(&r.step(Outcome::Ok)),
        (
            Conn::Commands,
            vec![
                "SCRIPT LOAD if ARGV[3] == '+' then".to_string(),
                "SCRIPT LOAD local n = 0".to_string(),
                "SCRIPT LOAD local t = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1],"
                    .to_string(),
            ]
        )
    );
    // a reply may come in pieces: the agent reads on
    let shas = cat(&[bulk("sc"), bulk("ss"), bulk("sp")]);
    assert_eq!(
        r.step(Outcome::Data(&shas[..5])),
        Action::Io {
            conn: Conn::Commands,
            send: Vec::new()
        }
    );
    assert_eq!(
        r.reply(&shas[5..]),
        (Conn::Subscriber, vec!["SUBSCRIBE t:events".to_string()])
    );
    // the outbox first: one EVALSHA a change, in one round trip
    r.node.queue(2, &["+|192.0.2.1|0|manual|x", "-|192.0.2.2"]);
    assert_eq!(
        r.reply(&bulks_subscribed()),
        (
            Conn::Commands,
            vec![
                "EVALSHA sc 2 t:blocks t:expiry t:events a +|192.0.2.1|0|manual|x + 192.0.2.1 \
                 0|manual|x 0"
                    .to_string(),
                "EVALSHA sc 2 t:blocks t:expiry t:events a -|192.0.2.2 - 192.0.2.2  0".to_string(),
            ]
        )
    );
    // then the reconciliation: a new set (no epoch), so a merge
    let (_, cmds) = r.reply(&cat(&[int(1), int(1)]));
    assert_eq!(r.node.calls(), ["sent 2 2"]);
    assert_eq!(
        cmds,
        ["EVALSHA sp 2 t:blocks t:expiry 1000000", "GET t:epoch"]
    );
    let (_, cmds) = r.reply(&cat(&[int(0), nil()]));
    assert_eq!(cmds.len(), 2);
    let epoch = cmds[0].split(' ').nth(2).unwrap().to_string();
    assert!(
        epoch.len() == 16 && u64::from_str_radix(&epoch, 16).is_ok(),
        "{epoch}"
    );
    assert_eq!(
        cmds,
        [format!("SET t:epoch {epoch} NX"), "GET t:epoch".into()]
    );
    // another node wrote its epoch first: that one is taken
    let (_, cmds) = r.reply(&cat(&[nil(), bulk("theirs")]));
    assert_eq!(cmds, ["HSCAN t:blocks 0 COUNT 1000"]);
    let (_, cmds) = r.reply(&array(&[
        bulk("17"),
        bulks(&["192.0.2.7", "0|manual|y", "nope", "0|manual|x"]),
    ]));
    assert_eq!(cmds, ["HSCAN t:blocks 17 COUNT 1000"]);
    // this node has two blocks Redis lacks: sent, with their messages
    *r.node.unseen.borrow_mut() = vec![block("192.0.2.8"), block("192.0.2.9")];
    let (_, cmds) = r.reply(&array(&[bulk("0"), array(&[])]));
    assert_eq!(
        cmds,
        ["EVALSHA ss 2 t:blocks t:expiry t:events 192.0.2.8 0|manual|r 0 a +|192.0.2.8|0|manual|r \
          192.0.2.9 0|manual|r 0 a +|192.0.2.9|0|manual|r"]
    );
    let (conn, cmds) = r.reply(&int(1));
    assert_eq!((conn, cmds), (Conn::Subscriber, vec!["PING".to_string()]));
    assert_eq!(
        r.node.calls(),
        [
            "begin",
            "page 2",
            "page 0",
            "unseen false",
            "finish",
            "reconciled theirs false"
        ]
    );
    assert!(r.node.up.get());
    assert_eq!(
        r.node.lines(),
        [
            "Warn ignoring a malformed entry in redis t:blocks: nope = 0|manual|x",
            "Notice joined the fleet as a (redis 127.0.0.1:1979); merged with 1 blocks in \
             Redis: 1 taken, 0 dropped, 1 sent"
        ]
    );
    // the subscriber: messages before the pong are applied, in pieces
    let msgs = cat(&[
        bulks(&["message", "t:events", "b +|192.0.2.3|0|manual|z"]),
        bulks(&["message", "t:events", "a -|192.0.2.2"]),
        bulks(&["pong", ""]),
    ]);
    assert_eq!(
        r.step(Outcome::Data(&msgs[..40])),
        Action::Io {
            conn: Conn::Subscriber,
            send: Vec::new()
        }
    );
    assert_eq!(
        r.step(Outcome::Data(&msgs[40..])),
        Action::Sleep { ms: POLL_MS }
    );
    assert_eq!(
        r.node.calls(),
        [
            "message b +|192.0.2.3|0|manual|z (me: a)",
            "message a -|192.0.2.2 (me: a)"
        ]
    );
    // every poll: the outbox, then the subscriber
    r.node.queue(3, &["-|192.0.2.1"]);
    let (conn, cmds) = commands(&r.step(Outcome::Ok));
    assert_eq!((conn, cmds.len()), (Conn::Commands, 1));
    assert_eq!(
        r.reply(&int(1)),
        (Conn::Subscriber, vec!["PING".to_string()])
    );
    assert_eq!(r.node.calls(), ["sent 3 1"]);
    // 10 s after the join: expired entries pruned after the pong
    r.now += PRUNE_EVERY_MS;
    assert_eq!(
        r.reply(&bulks(&["pong", ""])),
        (
            Conn::Commands,
            vec![format!("EVALSHA sp 2 t:blocks t:expiry {}", r.now)]
        )
    );
    assert_eq!(
        r.step(Outcome::Data(&int(3))),
        Action::Sleep { ms: POLL_MS }
    );
    assert_eq!(r.reply_after_sleep(), ["PING"]);
}

impl Run {
    /// The poll's sleep is over: the commands of the next exchange.
    fn reply_after_sleep(&mut self) -> Vec<String> {
        commands(&self.step(Outcome::Ok)).1
    }
}

#[test]
fn a_known_epoch_mirrors_redis() {
    let mut r = Run::new(opts());
    *r.node.epoch.borrow_mut() = Some("e1".into());
    *r.node.unseen.borrow_mut() = vec![block("192.0.2.8")];
    assert_eq!(commands(&r.join(2)).1, ["PING"]);
    assert_eq!(
        r.node.calls(),
        [
            "begin",
            "page 2",
            "unseen true",
            "finish",
            "reconciled e1 false"
        ]
    );
    assert_eq!(
        r.node.lines(),
        [
            "Notice joined the fleet as a (redis 127.0.0.1:1979); mirrored with 2 blocks in \
          Redis: 2 taken, 1 dropped, 0 sent"
        ]
    );
}

#[test]
fn an_outage_is_logged_once_then_backs_off_and_comes_back() {
    let mut r = Run::new(opts());
    r.join(0);
    r.node.lines();
    // Redis stops answering: both connections closed, the outage logged
    assert_eq!(r.step(Outcome::Failed("timeout")), Action::Close);
    let Action::Sleep { ms } = r.step(Outcome::Ok) else {
        panic!()
    };
    assert!((250..=750).contains(&ms), "{ms}");
    assert!(!r.node.up.get());
    assert_eq!(r.node.outages.get(), 1);
    assert_eq!(
        r.node.lines(),
        [
            "Err redis 127.0.0.1:1979 is unreachable (timeout); every worker keeps enforcing the \
          blocks it has; changes are queued and sent when it is back"
        ]
    );
    // failed attempts: the backoff doubles up to 5 s, nothing more logged
    let mut waits = Vec::new();
    for _ in 0..6 {
        assert!(matches!(
            r.step(Outcome::Ok),
            Action::Connect {
                conn: Conn::Commands,
                ..
            }
        ));
        assert_eq!(r.step(Outcome::Failed("connection refused")), Action::Close);
        let Action::Sleep { ms } = r.step(Outcome::Ok) else {
            panic!()
        };
        waits.push(ms);
    }
    for (w, base) in waits.iter().zip([1000, 2000, 4000, 5000, 5000, 5000]) {
        assert!(*w >= base / 2 && *w <= base * 3 / 2, "{waits:?}");
    }
    assert_eq!((r.node.outages.get(), r.node.lines().len()), (1, 0));
    // back, with the set it knew: mirrored
    assert_eq!(commands(&r.join(3)).1, ["PING"]);
    assert!(r.node.up.get());
    assert_eq!(
        r.node.lines(),
        [
            "Notice redis 127.0.0.1:1979 is back; mirrored with 3 blocks in Redis: 3 taken, 0 \
          dropped, 0 sent"
        ]
    );
    // a later outage is logged again, with the first backoff
    assert_eq!(r.step(Outcome::Failed("closed")), Action::Close);
    let Action::Sleep { ms } = r.step(Outcome::Ok) else {
        panic!()
    };
    assert!(ms <= 750);
    assert_eq!(r.node.outages.get(), 2);
}

#[test]
fn password_db_and_a_unix_socket() {
    let mut r = Run::new(serde_json::json!({
        "host": "unix:/run/redis.sock", "prefix": "t:", "password": "s3cret", "db": 3
    }));
    assert_eq!(
        r.step(Outcome::Ok),
        Action::Connect {
            conn: Conn::Commands,
            host: "unix:/run/redis.sock".into(),
            port: None,
            timeout_ms: 1000
        }
    );
    r.step(Outcome::Ok);
    let (_, cmds) = commands(&r.step(Outcome::Ok));
    assert_eq!(cmds[..2], ["AUTH s3cret", "SELECT 3"]);
    let (conn, cmds) = r.reply(&cat(&[ok(), ok(), bulk("sc"), bulk("ss"), bulk("sp")]));
    assert_eq!(conn, Conn::Subscriber);
    assert_eq!(cmds, ["AUTH s3cret", "SELECT 3", "SUBSCRIBE t:events:3"]);
    // a wrong password: the outage names it
    assert_eq!(
        r.step(Outcome::Data(&cat(&[
            error("WRONGPASS invalid username-password pair or user is disabled."),
            error("NOAUTH Authentication required."),
            error("NOAUTH Authentication required."),
        ]))),
        Action::Close
    );
    r.step(Outcome::Ok);
    assert_eq!(
        r.node.lines(),
        [
            "Err redis unix:/run/redis.sock is unreachable (AUTH failed: WRONGPASS invalid \
          username-password pair or user is disabled.); every worker keeps enforcing the blocks \
          it has; changes are queued and sent when it is back"
        ]
    );
}

#[test]
fn lost_changes_are_sent_by_union_while_connected() {
    let mut r = Run::new(opts());
    *r.node.epoch.borrow_mut() = Some("e1".into());
    r.join(0);
    r.node.calls();
    r.node.lines();
    r.node.lost.set(1);
    // not before 10 s after the join
    assert_eq!(
        r.step(Outcome::Data(&bulks(&["pong", ""]))),
        Action::Sleep { ms: POLL_MS }
    );
    assert_eq!(r.reply_after_sleep(), ["PING"]);
    r.now += RESEND_EVERY_MS;
    r.step(Outcome::Data(&bulks(&["pong", ""])));
    r.step(Outcome::Data(&int(0))); // the prune
                                    // lost changes: a merge, whatever the epoch
    assert_eq!(
        r.reply_after_sleep(),
        [
            format!("EVALSHA sp 2 t:blocks t:expiry {}", r.now),
            "GET t:epoch".into()
        ]
    );
    r.reply(&cat(&[int(0), bulk("e1")]));
    *r.node.unseen.borrow_mut() = vec![block("192.0.2.50")];
    let (_, cmds) = r.reply(&array(&[bulk("0"), array(&[])]));
    assert!(cmds[0].starts_with("EVALSHA ss"), "{cmds:?}");
    assert_eq!(
        r.reply(&int(1)),
        (Conn::Subscriber, vec!["PING".to_string()])
    );
    assert_eq!(
        r.node.calls(),
        [
            "begin",
            "page 0",
            "unseen false",
            "finish",
            "reconciled e1 true"
        ]
    );
    assert_eq!(
        r.node.lines(),
        [
            "Notice 1 changes could not be queued for redis 127.0.0.1:1979; merged with 0 blocks \
          in Redis: 0 taken, 0 dropped, 1 sent"
        ]
    );
}

#[test]
fn failures_in_the_middle_end_what_was_begun() {
    let mut r = Run::new(opts());
    r.open();
    r.reply(&cat(&[int(0), bulk("e1")]));
    // an error reply in the middle of the comparison: its batch is
    // journaled, then the session ends
    assert_eq!(
        r.step(Outcome::Data(&error("LOADING Redis is loading"))),
        Action::Close
    );
    assert_eq!(r.node.calls(), ["begin", "finish"]);
    r.step(Outcome::Ok);
    assert!(r.node.lines()[0].contains("is unreachable (LOADING Redis is loading)"));
    // an error reply to a change: the batch stays in the outbox
    let mut r = Run::new(opts());
    r.node.queue(1, &["-|192.0.2.1"]);
    r.open();
    assert_eq!(
        r.step(Outcome::Data(&error("NOSCRIPT No matching script"))),
        Action::Close
    );
    assert!(r.node.calls().is_empty());
    r.step(Outcome::Ok);
    assert!(r.node.lines()[0].contains("is unreachable (EVAL: NOSCRIPT No matching script)"));
    // garbage from the server
    let mut r = Run::new(opts());
    r.open();
    assert_eq!(
        r.step(Outcome::Data(b"HTTP/1.1 400 Bad Request\r\n")),
        Action::Close
    );
    r.step(Outcome::Ok);
    assert!(r.node.lines()[0].contains("is unreachable (malformed reply from redis"));
    // the driver itself failed: logged as such, then as an outage
    let mut r = Run::new(opts());
    r.join(0);
    r.node.lines();
    assert_eq!(r.step(Outcome::Crashed("boom")), Action::Close);
    r.step(Outcome::Ok);
    let lines = r.node.lines();
    assert_eq!(lines[0], "Err the fleet agent failed: boom");
    assert!(lines[1].contains("is unreachable (boom)"));
}

#[test]
fn an_exiting_worker_sends_its_outbox_then_stops() {
    let mut r = Run::new(opts());
    r.join(0);
    r.step(Outcome::Data(&bulks(&["pong", ""])));
    r.exiting = true;
    r.node.queue(5, &["-|192.0.2.1"]);
    let (_, cmds) = commands(&r.step(Outcome::Ok));
    assert_eq!(cmds.len(), 1);
    assert_eq!(r.step(Outcome::Data(&int(1))), Action::Close);
    assert_eq!(r.node.calls().last().unwrap(), "sent 5 1");
    assert_eq!(r.step(Outcome::Ok), Action::Done);
    assert_eq!(r.step(Outcome::Ok), Action::Done);
    assert!(r.node.lines().iter().all(|l| !l.contains("unreachable")));
    // while waiting to reconnect
    let mut r = Run::new(opts());
    r.step(Outcome::Ok);
    assert_eq!(r.step(Outcome::Failed("connection refused")), Action::Close);
    assert!(matches!(r.step(Outcome::Ok), Action::Sleep { .. }));
    r.exiting = true;
    assert_eq!(r.step(Outcome::Ok), Action::Done);
}

#[test]
fn a_big_outbox_goes_in_batches() {
    let mut r = Run::new(opts());
    let entries: Vec<String> = (0..BATCH + 1)
        .map(|i| format!("-|10.0.{}.{}", i / 256, i % 256))
        .collect();
    let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
    r.node.queue(BATCH as u64, &entries[..BATCH]);
    r.node.queue(BATCH as u64 + 1, &entries[BATCH..]);
    let (_, cmds) = commands(&r.open());
    assert_eq!(cmds.len(), BATCH);
    let (_, cmds) = r.reply(&int(1).repeat(BATCH));
    assert_eq!(cmds.len(), 1);
    r.reply(&int(1));
    assert_eq!(r.node.calls(), ["sent 200 200", "sent 201 1"]);
}
