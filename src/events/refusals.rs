//! Refused requests as `blocked_ip` events ("request from a blocked IP",
//! FlatRun's meaning), aggregated so that a flood cannot push other events
//! out of the ring.
//!
//! Each worker keeps a small table keyed by client: the first refusal of a
//! client in a minute (windows aligned on the minute, by the request's
//! start time) records one event with `count` 1; every further refusal of
//! that client in the same minute raises the count of that same event in
//! place ([`Ring::set_count`]). So a client refused a million times in a
//! minute is one event per worker and minute. The table holds at most
//! [`MAX_CLIENTS`] clients of the current minute; refusals of further
//! clients in that minute are counted ([`Hit::Full`]) but not recorded.
//!
//! Cost: nothing for requests that are not refused (the caller looks here
//! only for a refusal); a hash lookup and one compare-and-swap for a
//! refused one; an event (and a copy of the block's reason) once per
//! client and minute.

use std::collections::HashMap;

use super::{Event, Ring};
use crate::net::addr::Addr;

/// The aggregation window, in ms.
pub const WINDOW_MS: u64 = 60_000;
/// Clients aggregated at most per worker and window.
pub const MAX_CLIENTS: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Entry {
    window: u64,
    seq: u64,
    count: u32,
}

/// One worker's table of refused clients.
#[derive(Debug, Default)]
pub struct Refusals {
    map: HashMap<Addr, Entry>,
}

/// What [`Refusals::hit`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    /// A new event was recorded (the client's first refusal in the
    /// window, here).
    Recorded,
    /// The client's event of this window counts one more refusal.
    Counted,
    /// The table is full of this window's clients: not recorded.
    Full,
}

impl Refusals {
    /// Counts a refusal of `client` at `now_ms` in `ring`; `event` makes
    /// the event to record when this is the client's first refusal in the
    /// window (its time, count and window are set here).
    pub fn hit(
        &mut self,
        ring: &Ring,
        client: Addr,
        now_ms: u64,
        event: impl FnOnce() -> Event,
    ) -> Hit {
        let window = now_ms / WINDOW_MS;
        if let Some(e) = self.map.get_mut(&client) {
            if e.window == window {
                e.count = e.count.saturating_add(1);
                if ring.set_count(e.seq, e.count) {
                    return Hit::Counted;
                }
                // overwritten meanwhile: a new event from here on
            }
        } else if self.map.len() >= MAX_CLIENTS {
            self.map.retain(|_, e| e.window == window);
            if self.map.len() >= MAX_CLIENTS {
                return Hit::Full;
            }
        }
        let mut ev = event();
        ev.time_ms = now_ms;
        ev.count = 1;
        ev.window_s = (WINDOW_MS / 1000) as u32;
        let seq = ring.push(&ev);
        self.map.insert(
            client,
            Entry {
                window,
                seq,
                count: 1,
            },
        );
        Hit::Recorded
    }

    /// Clients in the table.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when the table is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// True when an event of aggregated refusals (see [`Refusals`]) may still
/// be counted up at `now_ms` (its window has not ended).
pub fn open(e: &Event, now_ms: u64) -> bool {
    e.kind == Some(super::Kind::BlockedIp)
        && e.window_s == (WINDOW_MS / 1000) as u32
        && e.time_ms / WINDOW_MS == now_ms / WINDOW_MS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Filter, Kind};

    fn ev(ip: &str) -> Event {
        Event {
            ip: ip.into(),
            kind: Some(Kind::BlockedIp),
            rule: "manual".into(),
            action: "refused".into(),
            reason: "abuse".into(),
            ..Event::default()
        }
    }

    #[test]
    fn a_flood_is_one_event_per_client_and_minute() {
        let ring = Ring::new("t-refusals", 16, 0).unwrap();
        let mut t = Refusals::default();
        ring.push(&Event {
            kind: Some(Kind::Suspicious),
            ip: "192.0.2.99".into(),
            time_ms: 1,
            ..Event::default()
        });
        let a = Addr::parse("192.0.2.1").unwrap();
        let b = Addr::parse("192.0.2.2").unwrap();
        let t0 = 120_000;
        assert_eq!(t.hit(&ring, a, t0, || ev("192.0.2.1")), Hit::Recorded);
        for i in 0..10_000 {
            assert_eq!(t.hit(&ring, a, t0 + i, || ev("x")), Hit::Counted);
        }
        assert_eq!(t.hit(&ring, b, t0 + 5, || ev("192.0.2.2")), Hit::Recorded);
        // the next minute: a new event
        assert_eq!(
            t.hit(&ring, a, t0 + 60_000, || ev("192.0.2.1")),
            Hit::Recorded
        );
        let all = ring.query(&Filter::default(), t0 + 60_000);
        let got: Vec<_> = all.iter().map(|e| (e.ip.as_str(), e.count)).collect();
        assert_eq!(
            got,
            [
                ("192.0.2.1", 1),
                ("192.0.2.2", 1),
                ("192.0.2.1", 10_001),
                ("192.0.2.99", 0)
            ]
        );
        assert_eq!((all[0].window_s, all[0].reason.as_str()), (60, "abuse"));
        assert!(open(&all[0], t0 + 60_001));
        assert!(!open(&all[2], t0 + 60_001));
        assert!(!open(&all[3], 1));
    }

    #[test]
    fn overwritten_event_starts_again_and_the_table_is_bounded() {
        let ring = Ring::new("t-refusals-wrap", 2, 0).unwrap();
        let mut t = Refusals::default();
        let a = Addr::parse("192.0.2.1").unwrap();
        t.hit(&ring, a, 0, || ev("192.0.2.1"));
        ring.push(&ev("o1"));
        ring.push(&ev("o2"));
        assert_eq!(t.hit(&ring, a, 1, || ev("192.0.2.1")), Hit::Recorded);
        let mut t = Refusals::default();
        for i in 0..MAX_CLIENTS as u32 {
            let c = Addr::V4(i);
            assert_eq!(t.hit(&ring, c, 0, || ev("c")), Hit::Recorded);
        }
        assert_eq!(t.hit(&ring, Addr::V4(u32::MAX), 0, || ev("c")), Hit::Full);
        // the next window makes room
        assert_eq!(
            t.hit(&ring, Addr::V4(u32::MAX), WINDOW_MS, || ev("c")),
            Hit::Recorded
        );
        assert_eq!(t.len(), 1);
    }
}
