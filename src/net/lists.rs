//! The configured lists: allowlist, denylist and trusted proxies.
//!
//! They are compiled once, in nginx's master, into one longest-prefix
//! structure per address family. A single lookup answers both questions a
//! request asks (is the client allowlisted anywhere? which denylist entry
//! covers it?), so a clean request costs one search whatever the number of
//! entries or of distinct mask lengths.

use crate::net::addr::{Addr, Net};
use crate::net::prefix::{Prefix, PrefixMap};

/// What the lists say about one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListMatch<'a> {
    /// No list entry covers the address.
    None,
    /// An allowlist entry covers it (the allowlist always wins).
    Allow,
    /// The most specific denylist entry covering it.
    Deny(&'a Net),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Verdict {
    allow: bool,
    /// Index into `Lists::deny` of the most specific covering entry.
    deny: Option<u32>,
}

fn fold(outer: &Verdict, inner: &Verdict) -> Verdict {
    Verdict {
        allow: outer.allow || inner.allow,
        deny: inner.deny.or(outer.deny),
    }
}

/// Allowlist and denylist, compiled.
#[derive(Default)]
pub struct Lists {
    v4: PrefixMap<u32, Verdict>,
    v6: PrefixMap<u128, Verdict>,
    deny: Vec<Net>,
}

impl Lists {
    /// Compiles the lists. Duplicates are harmless.
    pub fn new(allow: &[Net], deny: &[Net]) -> Lists {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut push = |net: &Net, v: Verdict| match *net {
            Net::V4(p) => v4.push((p, v)),
            Net::V6(p) => v6.push((p, v)),
        };
        for net in allow {
            push(
                net,
                Verdict {
                    allow: true,
                    deny: None,
                },
            );
        }
        for (i, net) in deny.iter().enumerate() {
            push(
                net,
                Verdict {
                    allow: false,
                    deny: Some(i as u32),
                },
            );
        }
        Lists {
            v4: PrefixMap::build(v4, fold),
            v6: PrefixMap::build(v6, fold),
            deny: deny.to_vec(),
        }
    }

    /// What the lists say about `a`.
    #[inline]
    pub fn lookup(&self, a: Addr) -> ListMatch<'_> {
        let v = match a {
            Addr::V4(x) => self.v4.lookup(x),
            Addr::V6(x) => self.v6.lookup(x),
        };
        match v {
            None => ListMatch::None,
            Some(v) if v.allow => ListMatch::Allow,
            Some(Verdict { deny: Some(i), .. }) => match self.deny.get(*i as usize) {
                Some(n) => ListMatch::Deny(n),
                None => ListMatch::None,
            },
            Some(_) => ListMatch::None,
        }
    }

    /// The denylist entries, as configured.
    pub fn denylist(&self) -> &[Net] {
        &self.deny
    }

    /// Heap bytes used by the compiled lists.
    pub fn memory_bytes(&self) -> usize {
        self.v4.memory_bytes()
            + self.v6.memory_bytes()
            + self.deny.capacity() * std::mem::size_of::<Net>()
    }
}

/// A set of networks (trusted proxies).
#[derive(Default)]
pub struct NetSet {
    v4: PrefixMap<u32, ()>,
    v6: PrefixMap<u128, ()>,
}

impl NetSet {
    /// Compiles a set.
    pub fn new(nets: &[Net]) -> NetSet {
        let v4: Vec<(Prefix<u32>, ())> = nets
            .iter()
            .filter_map(|n| match n {
                Net::V4(p) => Some((*p, ())),
                Net::V6(_) => None,
            })
            .collect();
        let v6: Vec<(Prefix<u128>, ())> = nets
            .iter()
            .filter_map(|n| match n {
                Net::V6(p) => Some((*p, ())),
                Net::V4(_) => None,
            })
            .collect();
        NetSet {
            v4: PrefixMap::build(v4, |_, _| ()),
            v6: PrefixMap::build(v6, |_, _| ()),
        }
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// True when `a` is in one of the networks.
    #[inline]
    pub fn contains(&self, a: Addr) -> bool {
        match a {
            Addr::V4(x) => self.v4.lookup(x).is_some(),
            Addr::V6(x) => self.v6.lookup(x).is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<Net> {
        s.iter().map(|x| Net::parse(x).unwrap()).collect()
    }

    fn a(s: &str) -> Addr {
        Addr::parse(s).unwrap()
    }

    #[test]
    fn allow_always_wins() {
        let l = Lists::new(
            &nets(&["10.0.0.0/8", "2001:db8::/32"]),
            &nets(&[
                "10.1.2.3",
                "203.0.113.0/24",
                "203.0.113.128/25",
                "2001:db8::1",
                "::/0",
            ]),
        );
        assert_eq!(l.lookup(a("10.1.2.3")), ListMatch::Allow);
        assert_eq!(l.lookup(a("2001:db8::1")), ListMatch::Allow);
        assert_eq!(
            l.lookup(a("203.0.113.5")),
            ListMatch::Deny(&nets(&["203.0.113.0/24"])[0])
        );
        assert_eq!(
            l.lookup(a("203.0.113.200")),
            ListMatch::Deny(&nets(&["203.0.113.128/25"])[0])
        );
        assert_eq!(
            l.lookup(a("::ffff:203.0.113.5")),
            l.lookup(a("203.0.113.5"))
        );
        assert_eq!(
            l.lookup(a("2001:db9::1")),
            ListMatch::Deny(&nets(&["::/0"])[0])
        );
        assert_eq!(l.lookup(a("192.0.2.1")), ListMatch::None);
    }

    #[test]
    fn deny_inside_allow_is_still_allowed() {
        let l = Lists::new(&nets(&["10.1.2.3"]), &nets(&["10.0.0.0/8"]));
        assert_eq!(l.lookup(a("10.1.2.3")), ListMatch::Allow);
        assert!(matches!(l.lookup(a("10.1.2.4")), ListMatch::Deny(_)));
    }

    #[test]
    fn net_sets() {
        let s = NetSet::new(&nets(&["127.0.0.1", "fd00::/8"]));
        assert!(s.contains(a("127.0.0.1")));
        assert!(s.contains(a("::ffff:127.0.0.1")));
        assert!(s.contains(a("fd12::1")));
        assert!(!s.contains(a("127.0.0.2")));
        assert!(NetSet::new(&[]).is_empty());
    }
}
