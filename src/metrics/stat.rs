//! What warden counts: one counter per [`Stat`], kept per worker in the
//! shared region ([`crate::shm`]) and summed for reports (statistics,
//! Prometheus, statsd).

/// What the counters count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Stat {
    /// Requests checked and let through (no list or block matched).
    Passed = 0,
    /// Requests let through because the client is allowlisted.
    Allowlisted,
    /// Requests from a denylisted client.
    Denylisted,
    /// Requests from a manually blocked client.
    BlockedManual,
    /// Requests from an automatically blocked client.
    BlockedAuto,
    /// Checks given an address that could not be parsed.
    BadAddress,
    /// Requests whose X-Forwarded-For had an element that could not be parsed.
    BadForwarded,
    /// Journal entries applied by workers.
    JournalApplied,
    /// Full re-reads of the block table by workers.
    FullSyncs,
    /// Blocks refused because the shared dict was full.
    DictFull,
    /// Finished requests the detector counted.
    Observed,
    /// Rules tripped.
    Trips,
    /// Clients blocked by the detector.
    AutoBlocks,
    /// Live clients evicted from the detector's table to make room.
    Evictions,
    /// Observations dropped because a client's slot stayed locked.
    Contended,
    /// Policies (whitelist, routes, sites) compiled by workers.
    PolicyLoads,
    /// Requests let through without checks: whitelisted path or disabled site.
    PolicySkipped,
    /// Requests refused by a site's `allowed_ips` or `blocked_paths`.
    SiteDenied,
    /// Requests refused by a site's `rate_limit`.
    SiteRateLimited,
    /// Requests to a protected route with valid credentials.
    AuthPassed,
    /// Requests to a protected route refused for missing or wrong credentials.
    AuthFailed,
    /// Reputation lookups that failed (iprepd unreachable, bad answer).
    LookupErrors,
    /// Events recorded, by type (in [`crate::events::Kind`] order).
    EventsBlockedIp,
    /// See `EventsBlockedIp`.
    EventsRateLimited,
    /// See `EventsBlockedIp`.
    EventsAuthFailed,
    /// See `EventsBlockedIp`.
    EventsSuspicious,
    /// See `EventsBlockedIp`.
    EventsScanDetected,
    /// See `EventsBlockedIp`.
    EventsCapture,
    /// State file writes that succeeded.
    StateSaves,
    /// State file writes that failed.
    StateSaveErrors,
    /// Blocks restored from the state file at start-up.
    StateRestored,
    /// Block changes this node sent to the fleet's Redis.
    FleetSent,
    /// Block changes from other nodes applied here.
    FleetReceived,
    /// Full reconciliations with Redis (start-up, reconnection).
    FleetResyncs,
    /// Times Redis became unreachable.
    FleetOutages,
    /// Offence and site rate-limit counters not created, to keep the
    /// shared dict's last pages for blocks.
    CountersRefused,
    /// Refused requests not recorded as events: a worker's table of
    /// refused clients was full for the minute ([`crate::events::refusals`]).
    RefusalsUnrecorded,
    /// Lines written to the event log (`event_log`).
    EventLogLines,
    /// Events the ring overwrote before the event log wrote them.
    EventLogLost,
    /// Event log writes that failed (the file could not be opened or
    /// written).
    EventLogErrors,
    /// Crawlers verified by forward-confirmed reverse DNS (lookups made,
    /// not cache hits).
    CrawlersVerified,
    /// Claims of a crawler that DNS refused or could not confirm (a
    /// timeout, a server failure: see `CrawlerLookupErrors`).
    CrawlersFailed,
    /// Crawler verifications whose lookups failed (timeout, server
    /// failure); also counted in `CrawlersFailed`.
    CrawlerLookupErrors,
    /// Events of the challenge's kinds (added after the others, whose
    /// order the shared counters keep).
    EventsChallengeIssued,
    /// See `EventsChallengeIssued`.
    EventsChallengeSolved,
    /// See `EventsChallengeIssued`.
    EventsChallengeFailed,
    /// Requests of challenged clients answered with the page or a 429.
    Challenged,
    /// Requests of challenged clients let through by a valid cookie.
    ChallengePassed,
    /// Challenge pages served.
    ChallengesIssued,
    /// Challenges solved (a cookie given).
    ChallengesSolved,
    /// Answers refused (wrong, forged, expired, replayed).
    ChallengesFailed,
    /// Milliseconds from page to answer, summed over the solved ones
    /// (divide by `challenges_solved` for the mean).
    ChallengeSolveMs,
}

impl Stat {
    /// Number of counters (the last variant's index + 1).
    pub const COUNT: usize = Stat::ChallengeSolveMs as usize + 1;
    /// Every counter with its name, for reports.
    pub const ALL: [(Stat, &'static str); Stat::COUNT] = [
        (Stat::Passed, "passed"),
        (Stat::Allowlisted, "allowlisted"),
        (Stat::Denylisted, "denylisted"),
        (Stat::BlockedManual, "blocked_manual"),
        (Stat::BlockedAuto, "blocked_auto"),
        (Stat::BadAddress, "bad_address"),
        (Stat::BadForwarded, "bad_forwarded"),
        (Stat::JournalApplied, "journal_applied"),
        (Stat::FullSyncs, "full_syncs"),
        (Stat::DictFull, "dict_full"),
        (Stat::Observed, "detector_observed"),
        (Stat::Trips, "detector_trips"),
        (Stat::AutoBlocks, "auto_blocks"),
        (Stat::Evictions, "detector_evictions"),
        (Stat::Contended, "detector_contended"),
        (Stat::PolicyLoads, "policy_loads"),
        (Stat::PolicySkipped, "policy_skipped"),
        (Stat::SiteDenied, "site_denied"),
        (Stat::SiteRateLimited, "site_rate_limited"),
        (Stat::AuthPassed, "auth_passed"),
        (Stat::AuthFailed, "auth_failed"),
        (Stat::LookupErrors, "lookup_errors"),
        (Stat::EventsBlockedIp, "events_blocked_ip"),
        (Stat::EventsRateLimited, "events_rate_limited"),
        (Stat::EventsAuthFailed, "events_auth_failed"),
        (Stat::EventsSuspicious, "events_suspicious"),
        (Stat::EventsScanDetected, "events_scan_detected"),
        (Stat::EventsCapture, "events_capture"),
        (Stat::StateSaves, "state_saves"),
        (Stat::StateSaveErrors, "state_save_errors"),
        (Stat::StateRestored, "state_restored"),
        (Stat::FleetSent, "fleet_sent"),
        (Stat::FleetReceived, "fleet_received"),
        (Stat::FleetResyncs, "fleet_resyncs"),
        (Stat::FleetOutages, "fleet_outages"),
        (Stat::CountersRefused, "counters_refused"),
        (Stat::RefusalsUnrecorded, "refusals_unrecorded"),
        (Stat::EventLogLines, "event_log_lines"),
        (Stat::EventLogLost, "event_log_lost"),
        (Stat::EventLogErrors, "event_log_errors"),
        (Stat::CrawlersVerified, "crawlers_verified"),
        (Stat::CrawlersFailed, "crawlers_failed"),
        (Stat::CrawlerLookupErrors, "crawler_lookup_errors"),
        (Stat::EventsChallengeIssued, "events_challenge_issued"),
        (Stat::EventsChallengeSolved, "events_challenge_solved"),
        (Stat::EventsChallengeFailed, "events_challenge_failed"),
        (Stat::Challenged, "challenged"),
        (Stat::ChallengePassed, "challenge_passed"),
        (Stat::ChallengesIssued, "challenges_issued"),
        (Stat::ChallengesSolved, "challenges_solved"),
        (Stat::ChallengesFailed, "challenges_failed"),
        (Stat::ChallengeSolveMs, "challenge_solve_ms"),
    ];

    /// True for the counters of challenges and of their events, which
    /// reports show only when challenges are configured.
    pub fn is_challenge(self) -> bool {
        matches!(
            self,
            Stat::EventsChallengeIssued
                | Stat::EventsChallengeSolved
                | Stat::EventsChallengeFailed
                | Stat::Challenged
                | Stat::ChallengePassed
                | Stat::ChallengesIssued
                | Stat::ChallengesSolved
                | Stat::ChallengesFailed
                | Stat::ChallengeSolveMs
        )
    }

    /// The counters of events by type, with the type's name: the counter
    /// `events_<type>` for each of [`crate::events::Kind`]'s names.
    pub fn events() -> impl Iterator<Item = (Stat, &'static str)> {
        Stat::ALL[Stat::EventsBlockedIp as usize..=Stat::EventsCapture as usize]
            .iter()
            .chain(
                &Stat::ALL
                    [Stat::EventsChallengeIssued as usize..=Stat::EventsChallengeFailed as usize],
            )
            .map(|(s, n)| (*s, &n["events_".len()..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_named_once_in_order() {
        for (i, (s, name)) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{name} is out of order");
        }
        let mut names: Vec<_> = Stat::ALL.iter().map(|(_, n)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Stat::COUNT);
    }
}
