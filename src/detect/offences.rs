//! Offences and escalation: what a tripped rule does.
//!
//! A rule trips once per client, rule and window (rare: off the fast
//! path). What follows, in order:
//!
//! - a rule in `monitor` mode: a "would block" event and a log line;
//! - `auto_block_enabled = false`: an event and a log line, no block;
//! - a client already blocked (by another worker a moment ago, two rules
//!   tripping at once): one offence, one block, so only an event;
//! - a rule in `challenge` mode: the client is challenged for
//!   `auto_block_duration` (a block record whose action is `challenge`);
//!   no offence is counted: a client that never solves is blocked later,
//!   through this schedule ([`crate::ops`]'s challenge);
//! - otherwise the offence is counted (key `o|<target>`, remembered
//!   `repeat_offender_memory` after the latest one), the block lasts what
//!   the schedule gives for that offence
//!   ([`DetectorConfig::block_duration_ms`]), the block is made, and the
//!   client is to be reported to iprepd as a violation.
//!
//! The caller records the event and fires the report (a cosocket, in Lua).

use crate::blocks::Action;
use crate::detect::counters::Rule;
use crate::detect::{event_kind, DetectorConfig, Mode, Tripped};
use crate::error::Error;
use crate::events::Event;
use crate::metrics::Stat;
use crate::net::addr::Net;
use crate::options::human;
use crate::store::{DictError, Level, Store};

/// The dict key of a target's offence counter.
pub fn key(target: &Net) -> String {
    format!("o|{target}")
}

/// The request a rule tripped on, for the event.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen<'a> {
    /// Its response status.
    pub status: u16,
    /// Its method.
    pub method: &'a str,
    /// Its path (`$request_uri`).
    pub path: &'a str,
    /// Its user agent.
    pub user_agent: &'a str,
}

/// What a trip did.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The event to record.
    pub event: Event,
    /// The client was blocked: report it to iprepd as a violation.
    pub report: bool,
}

/// What tripped, as log lines and block reasons say it:
/// `scanner_agent: 'sqlmap'`, `not_found: 5 in 2m` or `payload: 3 in 2m
/// (sqli+xss)`.
pub fn what(t: &Tripped, cfg: &DetectorConfig) -> String {
    let counted = || {
        format!(
            "{}: {} in {}",
            t.rule.name(),
            t.count,
            human(cfg.window_ms as f64 / 1000.0)
        )
    };
    match (t.rule, &t.matched) {
        (Rule::ScannerAgent, Some(m)) => format!("scanner_agent: '{m}'"),
        (_, Some(m)) => format!("{} ({m})", counted()),
        (_, None) => counted(),
    }
}

/// Counts an offence of `target`; returns which one this is (1: the
/// first). A counter that cannot be kept (a full dict) counts as the
/// first offence.
pub fn count(st: &Store<'_>, target: &Net, memory_ms: u64) -> u32 {
    let k = key(target);
    let memory = memory_ms as f64 / 1000.0;
    match st.counter(&k, 1.0, memory) {
        Ok(n) => {
            if n > 1.0 {
                // remembered from the latest offence
                let _ = st.dict.expire(&k, memory);
            }
            n.clamp(1.0, 1.0e6) as u32
        }
        // the store has logged it (rate-limited)
        Err(DictError::NoMemory) => 1,
        Err(e) => {
            st.log(
                Level::Warn,
                &format!("cannot count offences of {target} ({e}); treating this one as the first"),
            );
            1
        }
    }
}

/// Acts on tripped rule `t` seen on request `seen`. `blocking_mode`:
/// warden refuses blocked clients (false: it only logs).
/// `already_blocked()` tells whether the client is blocked now (after a
/// sync); `block(target, duration_ms, reason, action)` blocks or
/// challenges it.
pub fn act(
    st: &Store<'_>,
    cfg: &DetectorConfig,
    blocking_mode: bool,
    t: &Tripped,
    seen: &Seen<'_>,
    already_blocked: impl FnOnce() -> bool,
    block: impl FnOnce(&Net, u64, &str, Action) -> Result<(), Error>,
) -> Outcome {
    let target = t.key.net(cfg.ipv6_prefix);
    let what = what(t, cfg);
    let mut report = false;
    let action = if t.mode == Mode::Monitor {
        st.log(
            Level::Warn,
            &format!(
                "{target} would have been auto-blocked ({what}); rule {} is in monitor mode",
                t.rule.name()
            ),
        );
        "monitor: would block".to_string()
    } else if !cfg.auto_block_enabled {
        st.log(
            Level::Warn,
            &format!("{target} tripped {what}; auto_block_enabled is false"),
        );
        "none: auto_block_enabled is false".to_string()
    } else if already_blocked() {
        "already blocked".to_string()
    } else if t.mode == Mode::Challenge {
        let duration_ms = cfg.auto_block_duration_ms;
        let duration = human(duration_ms as f64 / 1000.0);
        match block(&target, duration_ms, &what, Action::Challenge) {
            Ok(()) => {
                st.log(
                    Level::Warn,
                    &format!("challenged {target} for {duration} ({what})"),
                );
                if duration_ms == 0 {
                    "challenged permanently".to_string()
                } else {
                    format!("challenged for {duration}")
                }
            }
            Err(e) => format!("challenge failed: {e}"),
        }
    } else {
        let n = count(st, &target, cfg.repeat_offender_memory_ms);
        let duration_ms = cfg.block_duration_ms(n);
        let duration = human(duration_ms as f64 / 1000.0);
        match block(&target, duration_ms, &what, Action::Block) {
            Ok(()) => {
                st.count(Stat::AutoBlocks, 1);
                report = true;
                st.log(
                    Level::Warn,
                    &format!(
                        "auto-blocked {target} for {duration} ({what}, offence {n}){}",
                        if blocking_mode {
                            ""
                        } else {
                            "; blocking_mode is 0, so it is only logged"
                        }
                    ),
                );
                let base = if duration_ms == 0 {
                    "blocked permanently".to_string()
                } else {
                    format!("blocked for {duration}")
                };
                if n > 1 {
                    format!("{base} (offence {n})")
                } else {
                    base
                }
            }
            // the store has logged why (a full dict: rate-limited)
            Err(e) => format!("block failed: {e}"),
        }
    };
    Outcome {
        event: Event {
            time_ms: st.now_ms,
            ip: target.to_string(),
            kind: Some(event_kind(t.rule)),
            rule: t.rule.name().to_string(),
            count: t.count,
            threshold: t.threshold,
            window_s: (cfg.window_ms / 1000) as u32,
            status: seen.status,
            method: seen.method.to_string(),
            path: seen.path.to_string(),
            user_agent: seen.user_agent.to_string(),
            action,
            // the reason its block is (or would be) given
            reason: what,
            detail: t.matched.clone().unwrap_or_default(),
        },
        report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::counters::{Key, Rule};
    use crate::error::Kind;
    use crate::net::addr::Addr;
    use crate::store::mem::Fixture;
    use crate::store::Dict;
    use std::cell::RefCell;

    fn trip(ip: &str, mode: Mode) -> Tripped {
        let addr = Addr::parse(ip).unwrap();
        Tripped {
            key: Key::of(addr, 64),
            addr,
            rule: Rule::NotFound,
            count: 5,
            threshold: 5,
            mode,
            matched: None,
        }
    }

    fn env() -> Fixture {
        Fixture::new(100_000)
    }

    /// Trips `t` with auto-blocks on; returns the outcome and the blocks
    /// made (target, duration ms, reason).
    fn run(
        e: &Fixture,
        cfg: &DetectorConfig,
        t: &Tripped,
        blocked: bool,
    ) -> (Outcome, Vec<(String, u64, String)>) {
        let made = RefCell::new(Vec::new());
        let seen = Seen {
            status: 404,
            method: "GET",
            path: "/nope",
            user_agent: "curl",
        };
        let out = act(
            &e.store(1_000),
            cfg,
            true,
            t,
            &seen,
            || blocked,
            |n, d, r, _| {
                made.borrow_mut().push((n.to_string(), d, r.to_string()));
                Ok(())
            },
        );
        (out, made.into_inner())
    }

    #[test]
    fn repeat_offenders_are_blocked_longer() {
        let e = env();
        let cfg = DetectorConfig::default(); // 24h, x2, at most 7d
        let h = 3_600_000;
        let t = trip("2001:db8::7", Mode::Block);
        let mut durations = Vec::new();
        for _ in 0..5 {
            let (out, made) = run(&e, &cfg, &t, false);
            assert!(out.report);
            durations.push(made[0].1 / h);
            assert_eq!(made[0].0, "2001:db8::/64");
            assert_eq!(made[0].2, "not_found: 5 in 2m");
        }
        assert_eq!(durations, vec![24, 48, 96, 168, 168]);
        assert_eq!(e.dict.get_num("o|2001:db8::/64").unwrap(), Some(5.0));
        let lines = e.lines.take();
        assert_eq!(
            lines[1].1,
            "warden: auto-blocked 2001:db8::/64 for 2d (not_found: 5 in 2m, offence 2)"
        );
        let (out, _) = run(&e, &cfg, &t, false);
        assert_eq!(out.event.action, "blocked for 7d (offence 6)");
        assert_eq!(out.event.ip, "2001:db8::/64");
        assert_eq!((out.event.status, out.event.path.as_str()), (404, "/nope"));
    }

    #[test]
    fn offences_are_forgotten_after_the_memory() {
        let e = env();
        let cfg = DetectorConfig {
            repeat_offender_memory_ms: 10_000,
            ..DetectorConfig::default()
        };
        let t = trip("192.0.2.9", Mode::Block);
        run(&e, &cfg, &t, false);
        e.dict.set_now(8_000);
        let (out, _) = run(&e, &cfg, &t, false);
        assert_eq!(out.event.action, "blocked for 2d (offence 2)");
        // remembered from the latest offence (8 s), not the first
        e.dict.set_now(16_000);
        assert_eq!(e.dict.get_num("o|192.0.2.9").unwrap(), Some(2.0));
        e.dict.set_now(18_500);
        let (out, made) = run(&e, &cfg, &t, false);
        assert_eq!(out.event.action, "blocked for 1d");
        assert_eq!(made[0].1, 86_400_000);
    }

    #[test]
    fn monitor_disabled_and_already_blocked_do_not_block() {
        let e = env();
        let cfg = DetectorConfig::default();
        let (out, made) = run(&e, &cfg, &trip("192.0.2.1", Mode::Monitor), false);
        assert_eq!(
            (out.event.action.as_str(), out.report),
            ("monitor: would block", false)
        );
        assert!(made.is_empty());
        let off = DetectorConfig {
            auto_block_enabled: false,
            ..DetectorConfig::default()
        };
        let (out, made) = run(&e, &off, &trip("192.0.2.1", Mode::Block), false);
        assert_eq!(out.event.action, "none: auto_block_enabled is false");
        assert!(made.is_empty());
        let (out, made) = run(&e, &cfg, &trip("192.0.2.1", Mode::Block), true);
        assert_eq!(out.event.action, "already blocked");
        assert!(made.is_empty());
        assert_eq!(e.dict.get("o|192.0.2.1").unwrap(), None, "no offence");
        assert_eq!(
            e.lines.take(),
            vec![
                (
                    Level::Warn,
                    "warden: 192.0.2.1 would have been auto-blocked (not_found: 5 in 2m); \
                     rule not_found is in monitor mode"
                        .to_string()
                ),
                (
                    Level::Warn,
                    "warden: 192.0.2.1 tripped not_found: 5 in 2m; auto_block_enabled is false"
                        .to_string()
                ),
            ]
        );
    }

    #[test]
    fn a_failed_block_is_the_event_s_action() {
        let e = env();
        let cfg = DetectorConfig::default();
        let mut t = trip("192.0.2.1", Mode::Block);
        t.rule = Rule::ScannerAgent;
        t.matched = Some("sqlmap".into());
        let out = act(
            &e.store(1_000),
            &cfg,
            false,
            &t,
            &Seen::default(),
            || false,
            |_, _, _, _| Err(Error::new(Kind::Full, "", "no room")),
        );
        assert_eq!(out.event.action, "block failed: no room");
        assert!(!out.report);
        assert_eq!(out.event.rule, "scanner_agent");
        assert!(e.lines.take().is_empty());
        // blocking_mode 0: the block is made, and said to be only logged
        let out = act(
            &e.store(1_000),
            &DetectorConfig {
                auto_block_duration_ms: 0,
                ..cfg
            },
            false,
            &t,
            &Seen::default(),
            || false,
            |_, _, _, _| Ok(()),
        );
        assert_eq!(out.event.action, "blocked permanently (offence 2)");
        assert_eq!(
            e.lines.take()[0].1,
            "warden: auto-blocked 192.0.2.1 for ever (scanner_agent: 'sqlmap', offence 2); \
             blocking_mode is 0, so it is only logged"
        );
    }
}
