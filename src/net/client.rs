//! The client of a request: the one resolution used by `check()`, `log()`,
//! `/security/check`, iprepd and the admin API.
//!
//! - A peer that is not a trusted proxy is the client (nginx's realip
//!   module, when configured, has already replaced it).
//! - When the peer is a trusted proxy, the client is the rightmost
//!   `X-Forwarded-For` element that is not itself a trusted proxy; if every
//!   element is trusted, the leftmost one. Elements may carry ports
//!   (`192.0.2.1:5000`, `[2001:db8::1]:443`). An element that cannot be
//!   parsed stops the walk: the nearest trusted hop is the client and the
//!   result says the header was bad.
//! - A trusted proxy that sends no `X-Forwarded-For` may name the client in
//!   `X-Real-IP` (one address, as nginx's `proxy_set_header X-Real-IP
//!   $remote_addr` sends it); otherwise the proxy itself is the client.
//!
//! A client can never choose its own address: headers are read only from
//! trusted proxies.
//!
//! The access phase resolves a request's client once and keeps it, with
//! its verdict, in a small per-worker table ([`Recent`]) that the log phase
//! of the same request reads back instead of reading and parsing the
//! headers again.

use crate::net::addr::Addr;
use crate::net::lists::NetSet;

/// The client a request comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    /// The client's address.
    pub addr: Addr,
    /// True when a forwarding header from a trusted proxy could not be
    /// parsed; the nearest trusted hop is then taken as the client.
    pub bad_forwarded: bool,
}

/// Resolves clients through the configured trusted proxies.
#[derive(Default)]
pub struct Resolver {
    trusted: NetSet,
}

impl Resolver {
    /// A resolver trusting `trusted` (addresses and networks).
    pub fn new(trusted: NetSet) -> Resolver {
        Resolver { trusted }
    }

    /// True when `a` is a trusted proxy.
    #[inline]
    pub fn trusts(&self, a: Addr) -> bool {
        !self.trusted.is_empty() && self.trusted.contains(a)
    }

    /// The client of a request from `peer`. `xff` and `real_ip` fetch the
    /// request's `X-Forwarded-For` and `X-Real-IP` (None when absent); they
    /// are called only when the peer is a trusted proxy, and `real_ip` only
    /// when there is no `X-Forwarded-For`.
    ///
    /// ```
    /// use warden_core::net::{addr::{Addr, Net}, client::Resolver, lists::NetSet};
    /// let r = Resolver::new(NetSet::new(&[Net::parse("127.0.0.1").unwrap()]));
    /// let a = |s| Addr::parse(s).unwrap();
    /// let none = || None;
    /// assert_eq!(r.resolve(a("192.0.2.9"), || Some(&b"10.0.0.1"[..]), none).addr, a("192.0.2.9"));
    /// assert_eq!(r.resolve(a("127.0.0.1"), || Some(&b"1.1.1.1, 2.2.2.2"[..]), none).addr, a("2.2.2.2"));
    /// assert_eq!(r.resolve(a("127.0.0.1"), none, || Some(&b"3.3.3.3"[..])).addr, a("3.3.3.3"));
    /// ```
    #[inline]
    pub fn resolve<'a>(
        &self,
        peer: Addr,
        xff: impl FnOnce() -> Option<&'a [u8]>,
        real_ip: impl FnOnce() -> Option<&'a [u8]>,
    ) -> Client {
        let mut client = Client {
            addr: peer,
            bad_forwarded: false,
        };
        if !self.trusts(peer) {
            return client;
        }
        match xff() {
            Some(h) if !h.is_empty() => {
                // one address, as one proxy sends it: what the loop below
                // would find, without splitting and trimming
                if let Some(a) = Addr::read_v4(h) {
                    client.addr = a;
                    return client;
                }
                for element in h.rsplit(|&b| b == b',') {
                    if element.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match Addr::parse_forwarded(element) {
                        Some(a) => {
                            client.addr = a;
                            if !self.trusts(a) {
                                break;
                            }
                        }
                        None => {
                            client.bad_forwarded = true;
                            break;
                        }
                    }
                }
            }
            _ => match real_ip() {
                Some(h) if !h.is_empty() => match Addr::parse_forwarded(h) {
                    Some(a) => client.addr = a,
                    None => client.bad_forwarded = true,
                },
                _ => {}
            },
        }
        client
    }
}

/// What the access phase learnt of a request, for its log phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The client.
    pub client: Client,
    /// The access phase's verdict (an outcome code of `check()`).
    pub verdict: i8,
    /// Flags for the log phase ([`Seen::UNOBSERVED`]).
    pub flags: u8,
    /// Where the detector counts the client, found by the access phase
    /// for the log phase: a `detect::Place` as its parts (the detector is
    /// a domain above this one); `(0, 0)`: not placed.
    pub place: (u64, u32),
}

impl Seen {
    /// The log phase must not feed this request to the detector (its
    /// status is not about its client: a `/security/check` answer is a
    /// verdict on another request).
    pub const UNOBSERVED: u8 = 1;
    /// A site's own policy refused the request (`allowed_ips`,
    /// `blocked_paths`, `rate_limit`): its status is the site's choice,
    /// not a failure of the client.
    pub const REFUSED: u8 = 2;
}

#[derive(Clone, Copy)]
struct Entry {
    id: usize,
    start: u64,
    seen: Seen,
}

/// Entries of [`Recent`]: more than the requests a worker has between
/// their access and log phases in all but extreme cases. A request whose
/// entry was overwritten is resolved again by its log phase: correct,
/// only slower.
pub const RECENT: usize = 1024;

/// The requests of one worker between their access and log phases, keyed
/// by the request's identity (nginx's request pointer, which is unique
/// among live requests) and its start time (so that a later request that
/// reuses the memory of one whose log phase never ran is not mistaken for
/// it). Direct-mapped: a lookup or a store is one probe.
pub struct Recent {
    entries: Box<[Option<Entry>]>,
}

impl Default for Recent {
    fn default() -> Recent {
        Recent {
            entries: vec![None; RECENT].into_boxed_slice(),
        }
    }
}

impl Recent {
    #[inline]
    fn slot(id: usize) -> usize {
        // request structures are 8-byte aligned at least: mix all the bits
        ((id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as usize % RECENT
    }

    /// Remembers what the access phase of request `id` (started at `start`)
    /// saw.
    #[inline]
    pub fn put(&mut self, id: usize, start: u64, seen: Seen) {
        self.entries[Self::slot(id)] = Some(Entry { id, start, seen });
    }

    /// What the access phase of request `id` saw, if it is still known.
    #[inline]
    pub fn get(&self, id: usize, start: u64) -> Option<Seen> {
        match self.entries[Self::slot(id)] {
            Some(e) if e.id == id && e.start == start => Some(e.seen),
            _ => None,
        }
    }

    /// Like [`Recent::get`], and forgets the entry (the request ended).
    #[inline]
    pub fn take(&mut self, id: usize, start: u64) -> Option<Seen> {
        let slot = &mut self.entries[Self::slot(id)];
        match *slot {
            Some(e) if e.id == id && e.start == start => {
                *slot = None;
                Some(e.seen)
            }
            _ => None,
        }
    }

    /// Changes the flags of request `id`'s entry (if it is still known).
    #[inline]
    pub fn set_flags(&mut self, id: usize, start: u64, flags: u8) {
        if let Some(e) = &mut self.entries[Self::slot(id)] {
            if e.id == id && e.start == start {
                e.seen.flags |= flags;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::addr::Net;

    fn a(s: &str) -> Addr {
        Addr::parse(s).unwrap()
    }

    fn resolver() -> Resolver {
        Resolver::new(NetSet::new(&[
            Net::parse("127.0.0.1").unwrap(),
            Net::parse("10.0.0.0/8").unwrap(),
        ]))
    }

    fn r(peer: &str, xff: Option<&str>, real: Option<&str>) -> (String, bool) {
        let c = resolver().resolve(
            a(peer),
            || xff.map(str::as_bytes),
            || real.map(str::as_bytes),
        );
        (c.addr.to_string(), c.bad_forwarded)
    }

    #[test]
    fn forwarded_resolution() {
        // untrusted peers never get their headers read
        assert_eq!(
            r("192.0.2.9", Some("1.1.1.1"), None),
            ("192.0.2.9".into(), false)
        );
        assert_eq!(r("127.0.0.1", None, None), ("127.0.0.1".into(), false));
        assert_eq!(r("127.0.0.1", Some(""), None), ("127.0.0.1".into(), false));
        assert_eq!(
            r("127.0.0.1", Some("1.1.1.1, 2.2.2.2, 10.0.0.5"), None),
            ("2.2.2.2".into(), false)
        );
        assert_eq!(
            r("127.0.0.1", Some("10.1.1.1, 10.0.0.5"), None),
            ("10.1.1.1".into(), false)
        );
        assert_eq!(
            r("127.0.0.1", Some("1.1.1.1, junk, 10.0.0.5"), None),
            ("10.0.0.5".into(), true)
        );
        assert_eq!(
            r("127.0.0.1", Some("junk"), None),
            ("127.0.0.1".into(), true)
        );
        assert_eq!(
            r("127.0.0.1", Some("[2001:db8::1]:443"), None),
            ("2001:db8::1".into(), false)
        );
        assert_eq!(
            r("127.0.0.1", Some(" , 3.3.3.3 ,"), None),
            ("3.3.3.3".into(), false)
        );
        assert_eq!(
            r("::ffff:127.0.0.1", Some("4.4.4.4"), None),
            ("4.4.4.4".into(), false)
        );
    }

    #[test]
    fn real_ip_only_without_forwarded_for() {
        assert_eq!(
            r("127.0.0.1", None, Some("5.5.5.5")),
            ("5.5.5.5".into(), false)
        );
        assert_eq!(
            r("127.0.0.1", Some("6.6.6.6"), Some("5.5.5.5")),
            ("6.6.6.6".into(), false)
        );
        assert_eq!(
            r("127.0.0.1", None, Some("bad")),
            ("127.0.0.1".into(), true)
        );
        assert_eq!(
            r("192.0.2.1", None, Some("5.5.5.5")),
            ("192.0.2.1".into(), false)
        );
    }

    #[test]
    fn recent_requests() {
        let mut t = Recent::default();
        let seen = |v| Seen {
            client: Client {
                addr: a("192.0.2.1"),
                bad_forwarded: false,
            },
            verdict: v,
            flags: 0,
            place: (0, 0),
        };
        t.put(0x7f00_1000, 5, seen(1));
        assert_eq!(t.get(0x7f00_1000, 5), Some(seen(1)));
        assert_eq!(t.get(0x7f00_1000, 6), None); // the memory of another request
        assert_eq!(t.get(0x7f00_2000, 5), None);
        t.set_flags(0x7f00_1000, 5, 2);
        assert_eq!(t.take(0x7f00_1000, 5).map(|s| s.flags), Some(2));
        assert_eq!(t.take(0x7f00_1000, 5), None);
    }
}
