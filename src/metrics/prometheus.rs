//! The Prometheus text exposition format (0.0.4) of a [`Snapshot`]:
//! `GET /metrics` and `warden:metrics()`.
//!
//! Counters are summed over every worker; they start from zero at a full
//! restart and survive `nginx -s reload`. Families about the state file,
//! the fleet and the detector appear only when those are configured.

use std::fmt::Write as _;

use super::Snapshot;
use super::Stat;

/// The `Content-Type` of the text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// A family's samples: one value, or values by label.
enum Samples {
    One(u64),
    Labelled(Vec<(String, u64)>),
}

struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Samples,
}

fn one(name: &'static str, kind: &'static str, help: &'static str, v: u64) -> Family {
    Family {
        name,
        kind,
        help,
        samples: Samples::One(v),
    }
}

fn by(
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    label: &str,
    values: &[(&str, u64)],
) -> Family {
    Family {
        name,
        kind,
        help,
        samples: Samples::Labelled(
            values
                .iter()
                .map(|(l, v)| (format!("{label}=\"{}\"", escape(l)), *v))
                .collect(),
        ),
    }
}

/// A label value escaped as the format wants (`\`, `"`, newline).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Challenges' families (with `opts.challenge` only).
fn challenge_families(s: &Snapshot) -> Vec<Family> {
    use Stat::*;
    let c = |st: Stat| s.get(st);
    vec![
        by(
            "warden_requests_challenged_total",
            "counter",
            "Requests of challenged clients: answered with the challenge (page or 429), \
             or let through by a solved challenge's cookie.",
            "result",
            &[
                ("challenged", c(Challenged)),
                ("passed", c(ChallengePassed)),
            ],
        ),
        by(
            "warden_challenges_total",
            "counter",
            "Challenges: pages issued, answers solved, answers refused.",
            "result",
            &[
                ("issued", c(ChallengesIssued)),
                ("solved", c(ChallengesSolved)),
                ("failed", c(ChallengesFailed)),
            ],
        ),
        one(
            "warden_challenge_solve_milliseconds_total",
            "counter",
            "Milliseconds from challenge page to solved answer, summed (divided by \
             warden_challenges_total{result=\"solved\"}: the mean solve time).",
            c(ChallengeSolveMs),
        ),
    ]
}

fn families(s: &Snapshot) -> Vec<Family> {
    use Stat::*;
    let c = |st: Stat| s.get(st);
    let events: Vec<(&str, u64)> = Stat::events()
        .filter(|(st, _)| s.challenge || !st.is_challenge())
        .map(|(st, name)| (name, c(st)))
        .collect();
    let mut f = vec![
        by(
            "warden_info",
            "gauge",
            "Version of lua-resty-warden.",
            "version",
            &[(&s.version, 1)],
        ),
        one(
            "warden_requests_checked_total",
            "counter",
            "Requests decided by check() (lists and blocks).",
            c(Passed)
                + c(Allowlisted)
                + c(Denylisted)
                + c(BlockedManual)
                + c(BlockedAuto)
                + if s.challenge { c(Challenged) } else { 0 },
        ),
    ];
    if s.challenge {
        f.extend(challenge_families(s));
    }
    f.extend(vec![
        one(
            "warden_requests_allowlisted_total",
            "counter",
            "Requests let through by the allowlist or whitelist.",
            c(Allowlisted),
        ),
        by(
            "warden_requests_blocked_total",
            "counter",
            "Requests from a denylisted or blocked client, by source.",
            "source",
            &[
                ("denylist", c(Denylisted)),
                ("manual", c(BlockedManual)),
                ("auto", c(BlockedAuto)),
            ],
        ),
        one(
            "warden_requests_skipped_total",
            "counter",
            "Requests to a whitelisted path or a disabled site.",
            c(PolicySkipped),
        ),
        one(
            "warden_site_denied_total",
            "counter",
            "Requests refused by a site's allowed_ips or blocked_paths.",
            c(SiteDenied),
        ),
        one(
            "warden_site_rate_limited_total",
            "counter",
            "Requests refused by a site's rate_limit.",
            c(SiteRateLimited),
        ),
        by(
            "warden_protected_route_auth_total",
            "counter",
            "Requests to protected routes, by outcome.",
            "result",
            &[("passed", c(AuthPassed)), ("failed", c(AuthFailed))],
        ),
        by(
            "warden_events_total",
            "counter",
            "Security events, by type.",
            "type",
            &events,
        ),
        one(
            "warden_blocked_addresses",
            "gauge",
            "Addresses and networks blocked now (blocks and denylist).",
            s.blocks + s.denylist,
        ),
        by(
            "warden_shm_free_bytes",
            "gauge",
            "Free space in the lua_shared_dict.",
            "dict",
            &[(&s.dict, s.dict_free_bytes)],
        ),
        by(
            "warden_shm_capacity_bytes",
            "gauge",
            "Size of the lua_shared_dict.",
            "dict",
            &[(&s.dict, s.dict_capacity_bytes)],
        ),
        one(
            "warden_lookup_errors_total",
            "counter",
            "Reputation lookups that failed (iprepd).",
            c(LookupErrors),
        ),
        by(
            "warden_crawler_verifications_total",
            "counter",
            "Crawler claims checked by reverse DNS, by result (lookups made, \
             not cache hits).",
            "result",
            &[
                ("verified", c(CrawlersVerified)),
                ("failed", c(CrawlersFailed)),
            ],
        ),
        one(
            "warden_crawler_lookup_errors_total",
            "counter",
            "Crawler verifications whose DNS lookups failed (timeout, server failure).",
            c(CrawlerLookupErrors),
        ),
        one(
            "warden_bad_address_total",
            "counter",
            "Checks given an address that could not be parsed.",
            c(BadAddress),
        ),
        one(
            "warden_bad_forwarded_total",
            "counter",
            "Requests with an unparsable X-Forwarded-For element.",
            c(BadForwarded),
        ),
        one(
            "warden_dict_full_total",
            "counter",
            "Blocks refused because the shared dict was full.",
            c(DictFull),
        ),
        one(
            "warden_counters_refused_total",
            "counter",
            "Offence and rate-limit counters not created, to keep the shared \
             dict's last pages for blocks.",
            c(CountersRefused),
        ),
        one(
            "warden_journal_applied_total",
            "counter",
            "Block journal entries applied by workers.",
            c(JournalApplied),
        ),
        one(
            "warden_full_syncs_total",
            "counter",
            "Full re-reads of the blocks by workers.",
            c(FullSyncs),
        ),
        one(
            "warden_policy_loads_total",
            "counter",
            "Policies compiled by workers.",
            c(PolicyLoads),
        ),
        one(
            "warden_events_recorded_total",
            "counter",
            "Events written to the events ring.",
            s.events_recorded,
        ),
        one(
            "warden_events_capacity",
            "gauge",
            "Events the ring holds at most.",
            s.events_capacity,
        ),
    ]);
    if s.state_file.is_some() {
        f.push(by(
            "warden_state_writes_total",
            "counter",
            "Writes of the state file, by result.",
            "result",
            &[("ok", c(StateSaves)), ("error", c(StateSaveErrors))],
        ));
        f.push(one(
            "warden_state_restored_total",
            "counter",
            "Blocks restored from the state file at start.",
            c(StateRestored),
        ));
    }
    if let Some(fl) = &s.fleet {
        f.push(by(
            "warden_fleet_connected",
            "gauge",
            "1 while this node's agent is connected to Redis.",
            "node",
            &[(&fl.node, u64::from(fl.connected))],
        ));
        f.push(one(
            "warden_fleet_queued",
            "gauge",
            "Local changes not yet sent to Redis.",
            fl.queued.max(0) as u64,
        ));
        f.push(by(
            "warden_fleet_changes_total",
            "counter",
            "Block changes sent to and received from the fleet.",
            "direction",
            &[("sent", c(FleetSent)), ("received", c(FleetReceived))],
        ));
        f.push(one(
            "warden_fleet_resyncs_total",
            "counter",
            "Full reconciliations with Redis.",
            c(FleetResyncs),
        ));
        f.push(one(
            "warden_fleet_outages_total",
            "counter",
            "Times Redis became unreachable.",
            c(FleetOutages),
        ));
    }
    if let Some(d) = &s.detector {
        f.push(one(
            "warden_detector_observed_total",
            "counter",
            "Finished requests counted by the detector.",
            c(Observed),
        ));
        f.push(one(
            "warden_detector_trips_total",
            "counter",
            "Detector rules tripped.",
            c(Trips),
        ));
        f.push(one(
            "warden_detector_auto_blocks_total",
            "counter",
            "Clients blocked by the detector.",
            c(AutoBlocks),
        ));
        f.push(one(
            "warden_detector_evictions_total",
            "counter",
            "Live clients evicted from the detector's table.",
            c(Evictions),
        ));
        f.push(one(
            "warden_detector_tracked_clients",
            "gauge",
            "Clients the detector tracks now.",
            d.tracked,
        ));
        f.push(one(
            "warden_detector_capacity_clients",
            "gauge",
            "Clients the detector's table holds at most.",
            d.capacity,
        ));
    }
    f
}

/// The text exposition of `s`.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    for f in families(s) {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        match f.samples {
            Samples::One(v) => {
                let _ = writeln!(out, "{} {v}", f.name);
            }
            Samples::Labelled(list) => {
                for (labels, v) in list {
                    let _ = writeln!(out, "{}{{{labels}}} {v}", f.name);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{DetectorGauges, FleetGauges};

    fn fixed() -> Snapshot {
        let mut s = Snapshot {
            version: "0.1.0".into(),
            dict: "warden".into(),
            blocks: 2,
            denylist: 1,
            events_recorded: 9,
            events_capacity: 10000,
            dict_free_bytes: 4096,
            dict_capacity_bytes: 1048576,
            ..Snapshot::default()
        };
        for (i, c) in s.counters.iter_mut().enumerate() {
            *c = i as u64 + 1;
        }
        s
    }

    #[test]
    fn a_fixed_snapshot() {
        let text = render(&fixed());
        let expected = "\
# HELP warden_info Version of lua-resty-warden.
# TYPE warden_info gauge
warden_info{version=\"0.1.0\"} 1
# HELP warden_requests_checked_total Requests decided by check() (lists and blocks).
# TYPE warden_requests_checked_total counter
warden_requests_checked_total 15
# HELP warden_requests_allowlisted_total Requests let through by the allowlist or whitelist.
# TYPE warden_requests_allowlisted_total counter
warden_requests_allowlisted_total 2
# HELP warden_requests_blocked_total Requests from a denylisted or blocked client, by source.
# TYPE warden_requests_blocked_total counter
warden_requests_blocked_total{source=\"denylist\"} 3
warden_requests_blocked_total{source=\"manual\"} 4
warden_requests_blocked_total{source=\"auto\"} 5
# HELP warden_requests_skipped_total Requests to a whitelisted path or a disabled site.
# TYPE warden_requests_skipped_total counter
warden_requests_skipped_total 17
# HELP warden_site_denied_total Requests refused by a site's allowed_ips or blocked_paths.
# TYPE warden_site_denied_total counter
warden_site_denied_total 18
# HELP warden_site_rate_limited_total Requests refused by a site's rate_limit.
# TYPE warden_site_rate_limited_total counter
warden_site_rate_limited_total 19
# HELP warden_protected_route_auth_total Requests to protected routes, by outcome.
# TYPE warden_protected_route_auth_total counter
warden_protected_route_auth_total{result=\"passed\"} 20
warden_protected_route_auth_total{result=\"failed\"} 21
# HELP warden_events_total Security events, by type.
# TYPE warden_events_total counter
warden_events_total{type=\"blocked_ip\"} 23
warden_events_total{type=\"rate_limited\"} 24
warden_events_total{type=\"auth_failed\"} 25
warden_events_total{type=\"suspicious\"} 26
warden_events_total{type=\"scan_detected\"} 27
warden_events_total{type=\"capture\"} 28
# HELP warden_blocked_addresses Addresses and networks blocked now (blocks and denylist).
# TYPE warden_blocked_addresses gauge
warden_blocked_addresses 3
# HELP warden_shm_free_bytes Free space in the lua_shared_dict.
# TYPE warden_shm_free_bytes gauge
warden_shm_free_bytes{dict=\"warden\"} 4096
# HELP warden_shm_capacity_bytes Size of the lua_shared_dict.
# TYPE warden_shm_capacity_bytes gauge
warden_shm_capacity_bytes{dict=\"warden\"} 1048576
# HELP warden_lookup_errors_total Reputation lookups that failed (iprepd).
# TYPE warden_lookup_errors_total counter
warden_lookup_errors_total 22
# HELP warden_crawler_verifications_total Crawler claims checked by reverse DNS, by result (lookups made, not cache hits).
# TYPE warden_crawler_verifications_total counter
warden_crawler_verifications_total{result=\"verified\"} 41
warden_crawler_verifications_total{result=\"failed\"} 42
# HELP warden_crawler_lookup_errors_total Crawler verifications whose DNS lookups failed (timeout, server failure).
# TYPE warden_crawler_lookup_errors_total counter
warden_crawler_lookup_errors_total 43
# HELP warden_bad_address_total Checks given an address that could not be parsed.
# TYPE warden_bad_address_total counter
warden_bad_address_total 6
# HELP warden_bad_forwarded_total Requests with an unparsable X-Forwarded-For element.
# TYPE warden_bad_forwarded_total counter
warden_bad_forwarded_total 7
# HELP warden_dict_full_total Blocks refused because the shared dict was full.
# TYPE warden_dict_full_total counter
warden_dict_full_total 10
# HELP warden_counters_refused_total Offence and rate-limit counters not created, to keep the shared dict's last pages for blocks.
# TYPE warden_counters_refused_total counter
warden_counters_refused_total 36
# HELP warden_journal_applied_total Block journal entries applied by workers.
# TYPE warden_journal_applied_total counter
warden_journal_applied_total 8
# HELP warden_full_syncs_total Full re-reads of the blocks by workers.
# TYPE warden_full_syncs_total counter
warden_full_syncs_total 9
# HELP warden_policy_loads_total Policies compiled by workers.
# TYPE warden_policy_loads_total counter
warden_policy_loads_total 16
# HELP warden_events_recorded_total Events written to the events ring.
# TYPE warden_events_recorded_total counter
warden_events_recorded_total 9
# HELP warden_events_capacity Events the ring holds at most.
# TYPE warden_events_capacity gauge
warden_events_capacity 10000
";
        assert_eq!(text, expected);
    }

    #[test]
    fn optional_families_and_escaped_labels() {
        let mut s = fixed();
        s.state_file = Some("/var/lib/warden/state".into());
        s.fleet = Some(FleetGauges {
            node: "a\"b".into(),
            redis: "127.0.0.1:6379".into(),
            connected: true,
            queued: 3,
        });
        s.detector = Some(DetectorGauges {
            tracked: 4,
            capacity: 100,
            ..DetectorGauges::default()
        });
        let text = render(&s);
        for line in [
            "warden_state_writes_total{result=\"ok\"} 29",
            "warden_state_writes_total{result=\"error\"} 30",
            "warden_state_restored_total 31",
            "warden_fleet_connected{node=\"a\\\"b\"} 1",
            "warden_fleet_queued 3",
            "warden_fleet_changes_total{direction=\"sent\"} 32",
            "warden_fleet_changes_total{direction=\"received\"} 33",
            "warden_fleet_resyncs_total 34",
            "warden_fleet_outages_total 35",
            "warden_detector_observed_total 11",
            "warden_detector_trips_total 12",
            "warden_detector_auto_blocks_total 13",
            "warden_detector_evictions_total 14",
            "warden_detector_tracked_clients 4",
            "warden_detector_capacity_clients 100",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // every family has one HELP and one TYPE, and a name appears once
        let helps: Vec<&str> = text.lines().filter(|l| l.starts_with("# HELP ")).collect();
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(helps.len(), types);
        let mut names: Vec<&str> = helps.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), helps.len());
        assert!(text.ends_with('\n'));
    }
}
