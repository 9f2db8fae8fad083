//! The operations end to end: real engines (two "workers" sharing one
//! journal sequence) on an in-memory dict.

use super::*;
use crate::config::Config;
use crate::detect::Request;
use crate::events::Filter;
use crate::persist::fleet::agent::Node as _;
use crate::store::mem::{Lines, Mem};
use crate::store::Value;
use serde_json::json;

fn engine(opts: Json) -> Engine {
    Engine::new(Config::from_value(&opts).unwrap()).unwrap()
}

fn a(s: &str) -> Addr {
    Addr::parse(s).unwrap()
}

fn n(s: &str) -> Net {
    Net::parse(s).unwrap()
}

/// A node of `workers` engines on one in-memory dict (also the rig of
/// the operations' tests in submodules, such as `challenge`).
pub(super) struct Node {
    dict: Mem,
    lines: Lines,
    pub(super) engines: Vec<(Engine, Worker)>,
}

impl Node {
    pub(super) fn new(opts: Json, workers: usize) -> Node {
        let name = opts["dict"].as_str().unwrap().to_string();
        Node {
            dict: Mem::new(1 << 20),
            lines: Lines::default(),
            engines: (0..workers)
                .map(|_| (engine(opts.clone()), Worker::new(&name)))
                .collect(),
        }
    }

    pub(super) fn w(&self, i: usize) -> Warden<'_> {
        let (engine, worker) = &self.engines[i];
        Warden {
            engine,
            dict: &self.dict,
            log: &self.lines,
            worker,
        }
    }

    fn blocked(&self, i: usize, ip: &str) -> bool {
        self.w(i).is_blocked(a(ip)).is_some()
    }

    fn events(&self, ip: &str) -> Vec<Event> {
        self.engines[0].0.events().query(
            &Filter {
                limit: 100,
                ip: Some(ip.to_string()),
                ..Filter::default()
            },
            now_ms() + 1,
        )
    }
}

#[test]
fn blocks_reach_every_worker_and_unblocks_too() {
    let node = Node::new(json!({"dict": "t-ops", "denylist": ["203.0.113.0/24"]}), 2);
    node.w(0)
        .block(&n("192.0.2.10"), 3_600_000, "abuse", Source::Manual)
        .unwrap();
    node.w(0)
        .block(&n("198.51.100.0/24"), 0, &"r".repeat(300), Source::Manual)
        .unwrap();
    assert!(node.blocked(1, "192.0.2.10") && node.blocked(1, "198.51.100.7"));
    let b = node.engines[1].0.block_of(&n("198.51.100.0/24")).unwrap();
    assert_eq!(b.reason.len(), MAX_REASON);
    assert_eq!(
        node.dict.get_text("b|192.0.2.10").unwrap().unwrap()[..1].to_string(),
        "1"
    );
    let ev = node.events("192.0.2.10");
    assert_eq!(ev[0].action, "blocked for 1h");
    // unblocked in worker 1, gone in worker 0
    node.w(1).unblock(&n("192.0.2.10")).unwrap();
    assert!(!node.blocked(0, "192.0.2.10"));
    assert_eq!(node.events("192.0.2.10")[0].action, "unblocked");
    let err = node.w(0).unblock(&n("192.0.2.10")).unwrap_err();
    assert_eq!(
        (err.kind().status(), err.field(), err.message()),
        (404, Some("ip"), "192.0.2.10 is not blocked")
    );
    let err = node.w(0).unblock(&n("203.0.113.0/24")).unwrap_err();
    assert_eq!(
        (err.kind().status(), err.message()),
        (
            409,
            "203.0.113.0/24 is in the denylist (configuration), not a block"
        )
    );
    // a refresh makes every worker re-read the dict: a record written
    // behind the journal's back is enforced
    node.dict
        .safe_set("b|192.0.2.33", &Value::from("0|manual|x"), 0.0)
        .unwrap();
    assert!(node.engines[1].0.is_blocked(a("192.0.2.33")).is_none());
    node.w(0).refresh().unwrap();
    assert!(node.blocked(1, "192.0.2.33"));
}

#[test]
fn a_full_dict_refuses_blocks_with_kind_full() {
    let mut node = Node::new(json!({"dict": "t-ops"}), 1);
    node.dict = Mem::new(2_000);
    let mut i = 0;
    let err = loop {
        match node
            .w(0)
            .block(&n(&format!("10.9.0.{i}")), 0, "filler", Source::Manual)
        {
            Ok(()) => i += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind().status(), 507);
    assert_eq!(err.field(), None);
    assert!(err
        .message()
        .starts_with("shared dict 't-ops' is full (no memory): cannot block 10.9.0."));
}

#[test]
fn a_tripped_rule_blocks_with_escalation() {
    let node = Node::new(
        json!({"dict": "t-ops-det", "detector": {"not_found_threshold": 3,
               "auto_block_duration": "1h", "repeat_offender_factor": 3}}),
        2,
    );
    let (e0, _) = &node.engines[0];
    let client = a("192.0.2.77");
    let req = Request {
        uri: b"/nope",
        status: 404,
        user_agent: b"curl",
        ..Request::default()
    };
    let seen = Seen {
        status: 404,
        method: "GET",
        path: "/nope",
        user_agent: "curl",
    };
    let mut rc = 0;
    for _ in 0..3 {
        rc = e0.observe(client, &req);
    }
    assert_eq!(rc, crate::engine::code::TRIP);
    let t = node.w(0).trip(&seen).unwrap();
    assert_eq!(t.report, Some((client, "not_found")));
    assert_eq!(t.event.action, "blocked for 1h");
    assert!(node.blocked(1, "192.0.2.77"));
    // the block starts when its event says it does (`warden why`: since
    // and until are an exact duration apart)
    let b = node.engines[1].0.is_blocked(client).unwrap();
    assert_eq!(b.expires_ms, t.event.time_ms + 3_600_000);
    assert!(node.w(0).trip(&seen).is_none(), "once");
    let lines = node.lines.take();
    assert!(lines
        .iter()
        .any(|l| l.1 == "warden: auto-blocked 192.0.2.77 for 1h (not_found: 3 in 2m, offence 1)"));
    // unblocked, it offends again: three times longer
    node.w(1).unblock(&n("192.0.2.77")).unwrap();
    node.w(0).sync().unwrap(); // as check() does when it answers SYNC
    for _ in 0..3 {
        rc = e0.observe(client, &req);
    }
    assert_eq!(rc, crate::engine::code::TRIP);
    let t = node.w(0).trip(&seen).unwrap();
    assert_eq!(t.event.action, "blocked for 3h (offence 2)");
    assert_eq!(node.dict.get_num("o|192.0.2.77").unwrap(), Some(2.0));
}

#[test]
fn policy_edits_reach_every_worker() {
    let node = Node::new(json!({"dict": "t-ops"}), 2);
    let edit = Edit::Add(
        doc::List::Whitelist,
        json!({"type": "ip", "value": "192.0.2.200"}),
    );
    let Update::Done(entry) = node.w(0).edit_policy(&edit, true).unwrap() else {
        panic!("busy");
    };
    assert_eq!(entry["value"], "192.0.2.200");
    node.w(1).sync().unwrap();
    assert!(node.engines[1].0.allowlisted(a("192.0.2.200")));
    let doc = node.w(1).policy_document().unwrap();
    assert_eq!(doc["whitelist"][0]["id"], entry["id"]);
    // a document that does not compile is refused, naming the field
    let bad = Edit::PutSite("shop".into(), json!({"allowed_ips": ["10.0.0.0/99"]}));
    let err = node.w(0).edit_policy(&bad, true).unwrap_err();
    assert_eq!(
        (err.kind().status(), err.field()),
        (400, Some("allowed_ips"))
    );
}

#[test]
fn rate_limits_count_across_workers() {
    let node = Node::new(json!({"dict": "t-ops"}), 2);
    let hit = |i: usize| {
        node.w(i)
            .rate_limited("shop", "192.0.2.150", 2, 60, "GET", "/cart")
    };
    assert!(hit(0).is_none() && hit(1).is_none());
    let retry = hit(0).unwrap();
    assert!(retry > 0.0 && retry <= 60.0);
    assert!(hit(1).is_some());
    let ev = node.events("192.0.2.150");
    assert_eq!(ev.len(), 1, "one event per window");
    assert_eq!(
        (
            ev[0].rule.as_str(),
            ev[0].count,
            ev[0].threshold,
            ev[0].path.as_str()
        ),
        ("site:shop", 3, 2, "/cart")
    );
}

#[test]
fn the_state_file_brings_blocks_and_policy_back() {
    let dir = std::env::temp_dir().join(format!("warden-ops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state");
    let node = Node::new(json!({"dict": "t-ops"}), 1);
    let w = node.w(0);
    w.block(&n("192.0.2.1"), 0, "kept", Source::Manual).unwrap();
    w.block(&n("192.0.2.2"), 60_000, "kept too", Source::Auto)
        .unwrap();
    let edit = Edit::Add(
        doc::List::Whitelist,
        json!({"type": "path", "value": "/open"}),
    );
    w.edit_policy(&edit, true).unwrap();
    w.start_saving(&path);
    w.save_tick(false);
    w.save_tick(true); // the exit path writes at once
    assert!(path.exists());
    // a fresh dict (a restart) gets them back; a reload does not
    let fresh = Node::new(json!({"dict": "t-ops"}), 1);
    fresh.w(0).restore_state(&path);
    assert!(fresh.blocked(0, "192.0.2.1") && fresh.blocked(0, "192.0.2.2"));
    assert!(fresh.w(0).policy_document().unwrap()["whitelist"][0]["value"] == "/open");
    let lines = fresh.lines.take();
    assert!(lines.iter().any(|l| l
        .1
        .contains("restored 2 blocks and the admin API's policy from")
        && l.1.ends_with("0 expired while nginx was stopped)")));
    fresh.w(0).restore_state(&path);
    assert!(
        fresh.lines.take().is_empty(),
        "a reload leaves the file alone"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fleet_outbox_and_messages() {
    let node = Node::new(json!({"dict": "t-ops", "redis": {"host": "127.0.0.1"}}), 1);
    let w = node.w(0);
    let name = w.fleet_init();
    assert!(name.len() > 7, "a generated name: {name}");
    assert_eq!(w.fleet_init(), name, "kept");
    w.block(&n("192.0.2.90"), 0, "x", Source::Manual).unwrap();
    let p = w.pending(200).unwrap().unwrap();
    assert_eq!(p.changes[0].0, "+|192.0.2.90|0|manual|x");
    w.sent(p.last, 1);
    assert_eq!(w.fleet_status(), (false, 0.0));
    let f = w.snapshot().fleet.unwrap();
    assert_eq!(
        (f.node, f.redis, f.connected, f.queued),
        (name, "127.0.0.1:6379".to_string(), false, 0)
    );
    // another node's block and unblock; our own change is ignored
    w.message("b +|192.0.2.91|0|manual|from b", "a");
    assert!(node.blocked(0, "192.0.2.91"));
    w.message("a -|192.0.2.91", "a");
    assert!(node.blocked(0, "192.0.2.91"));
    w.message("b -|192.0.2.91", "a");
    assert!(!node.blocked(0, "192.0.2.91"));
    assert_eq!(
        w.pending(200).unwrap(),
        None,
        "remote changes are not sent back"
    );
    w.message("b junk", "a");
    let lines: Vec<String> = node.lines.take().into_iter().map(|l| l.1).collect();
    assert_eq!(
        lines,
        vec![
            "warden: blocked 192.0.2.91 (from b)",
            "warden: unblocked 192.0.2.91 (from b)",
            "warden: ignoring a fleet message from b: malformed block record 'junk'",
        ]
    );
    // reconciliation: Redis has one block this node lacks; this node has
    // one Redis lacks (mirror: dropped)
    w.reconcile_begin();
    let (live, taken, bad) =
        w.reconcile_page(&[("192.0.2.95", "0|manual|r"), ("nope", "0|manual|x")]);
    assert_eq!(
        (live, taken, bad),
        (1, 1, vec!["nope = 0|manual|x".to_string()])
    );
    let (dropped, seed) = w.reconcile_unseen(true);
    assert_eq!((dropped, seed.len()), (1, 0));
    assert_eq!(w.reconcile_finish(), 2);
    assert!(node.blocked(0, "192.0.2.95") && !node.blocked(0, "192.0.2.90"));
    w.reconciled("e1", false);
    assert_eq!((w.epoch(), w.lost()), (Some("e1".into()), 0));
}

#[test]
fn the_fleet_agent_runs_on_the_node() {
    // the agent's first steps through the Warden: what the Lua driver sees
    let node = Node::new(
        json!({"dict": "t-ops2", "redis": {"host": "127.0.0.1", "port": 1979, "node": "a"}}),
        1,
    );
    let w = node.w(0);
    let outages = || w.engine.region().total(Stat::FleetOutages);
    let before = outages();
    assert!(matches!(
        w.fleet_step(false, Outcome::Ok),
        Action::Connect {
            port: Some(1979),
            ..
        }
    ));
    assert!(matches!(
        w.fleet_step(false, Outcome::Ok),
        Action::Connect { .. }
    ));
    assert!(matches!(
        w.fleet_step(false, Outcome::Ok),
        Action::Io { .. }
    ));
    assert_eq!(
        w.fleet_step(false, Outcome::Failed("timeout")),
        Action::Close
    );
    assert!(matches!(
        w.fleet_step(false, Outcome::Ok),
        Action::Sleep { .. }
    ));
    assert_eq!(outages() - before, 1);
    let lines: Vec<String> = node.lines.take().into_iter().map(|l| l.1).collect();
    assert_eq!(
        lines,
        [
            "warden: redis 127.0.0.1:1979 is unreachable (timeout); every worker keeps enforcing \
          the blocks it has; changes are queued and sent when it is back"
        ]
    );
    assert_eq!(w.fleet_step(true, Outcome::Ok), Action::Done);
    // without redis, the agent has nothing to do
    let plain = Node::new(json!({"dict": "t-ops3"}), 1);
    assert_eq!(plain.w(0).fleet_step(false, Outcome::Ok), Action::Done);
}
