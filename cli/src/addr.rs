//! Addresses and networks as arguments: checked before anything is sent,
//! so that a typo is a usage error naming the value, and compared (which
//! blocks cover an address) for `warden why`.
//!
//! The admin API validates and normalises what it is sent itself
//! (`10.1.2.3/8` is stored as `10.0.0.0/8`); this is only the check a
//! person gets before the request.

use std::fmt;
use std::net::IpAddr;

/// An IP address or a network (`addr/len`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The address (IPv4-mapped IPv6 is kept as IPv4).
    pub addr: IpAddr,
    /// The prefix length; the address's full length for one address.
    pub len: u8,
}

fn max_len(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `::ffff:192.0.2.1` is `192.0.2.1` (as warden treats it).
fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl Target {
    /// Parses an address or a network; the error names the value.
    pub fn parse(s: &str) -> Result<Target, String> {
        let bad = |why: &str| format!("invalid IP address or CIDR '{s}'{why}");
        let (addr_text, len_text) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let parsed: IpAddr = addr_text.parse().map_err(|_| bad(""))?;
        let mapped = matches!(parsed, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
        let addr = canonical(parsed);
        let max = max_len(parsed);
        let len = match len_text {
            None => max,
            Some(l) => {
                let n: u8 = l
                    .parse()
                    .ok()
                    .filter(|n| *n <= max && l.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| bad(&format!(": prefix length must be 0 to {max}")))?;
                n
            }
        };
        // a mapped network keeps its meaning within the IPv4 space
        let len = if mapped {
            len.checked_sub(96)
                .ok_or_else(|| bad(": an IPv4-mapped prefix must be /96 or longer"))?
        } else {
            len
        };
        // host bits are dropped, as the admin API does (10.1.2.3/8 is
        // 10.0.0.0/8)
        Ok(Target { addr, len }.network(len))
    }

    /// Parses one address (not a network); the error names the value.
    pub fn parse_address(s: &str) -> Result<Target, String> {
        let t = Target::parse(s).map_err(|_| format!("invalid IP address '{s}'"))?;
        if t.len != max_len(t.addr) {
            return Err(format!(
                "'{s}' is a network: give one address (e.g. the client's)"
            ));
        }
        Ok(t)
    }

    /// Whether this is one address rather than a network.
    pub fn is_address(&self) -> bool {
        self.len == max_len(self.addr)
    }

    /// Whether the network covers address `a`.
    pub fn contains(&self, a: IpAddr) -> bool {
        let a = canonical(a);
        if a.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let shift = u32::from(max_len(a) - self.len);
        if shift >= 128 {
            return true;
        }
        bits(a) >> shift == bits(self.addr) >> shift
    }

    /// The network of `len` bits around this address (`2001:db8:1:2::/64`).
    pub fn network(&self, len: u8) -> Target {
        let len = len.min(max_len(self.addr));
        let shift = u32::from(max_len(self.addr) - len);
        let b = if shift >= 128 {
            0
        } else {
            bits(self.addr) >> shift << shift
        };
        let addr = match self.addr {
            IpAddr::V4(_) => IpAddr::V4((b as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(b.into()),
        };
        Target { addr, len }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_address() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    #[test]
    fn parses_addresses_and_networks() {
        assert_eq!(t("192.0.2.1").to_string(), "192.0.2.1");
        assert_eq!(t("198.51.100.0/24").to_string(), "198.51.100.0/24");
        assert_eq!(t("2001:db8::1").to_string(), "2001:db8::1");
        assert_eq!(t("2001:db8:1:2::/64").to_string(), "2001:db8:1:2::/64");
        assert_eq!(t("::ffff:192.0.2.1").to_string(), "192.0.2.1");
        assert_eq!(t("::ffff:192.0.2.0/120").to_string(), "192.0.2.0/24");
        assert_eq!(t("0.0.0.0/0").len, 0);
        assert_eq!(t("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(t("2001:db8:1:2:3::1/64").to_string(), "2001:db8:1:2::/64");
        assert!(t("10.0.0.1").is_address() && !t("10.0.0.0/8").is_address());
    }

    #[test]
    fn refuses_with_the_value_named() {
        for (s, want) in [
            ("1.2.3.256", "invalid IP address or CIDR '1.2.3.256'"),
            ("not-an-ip", "invalid IP address or CIDR 'not-an-ip'"),
            ("", "invalid IP address or CIDR ''"),
            (
                "10.0.0.0/33",
                "invalid IP address or CIDR '10.0.0.0/33': prefix length must be 0 to 32",
            ),
            (
                "2001:db8::/129",
                "invalid IP address or CIDR '2001:db8::/129': prefix length must be 0 to 128",
            ),
            (
                "10.0.0.0/+8",
                "invalid IP address or CIDR '10.0.0.0/+8': prefix length must be 0 to 32",
            ),
            (
                "10.0.0.0/",
                "invalid IP address or CIDR '10.0.0.0/': prefix length must be 0 to 32",
            ),
            ("fe80::1%eth0", "invalid IP address or CIDR 'fe80::1%eth0'"),
            ("192.0.2.1:80", "invalid IP address or CIDR '192.0.2.1:80'"),
        ] {
            assert_eq!(Target::parse(s).unwrap_err(), want);
        }
        assert_eq!(
            Target::parse_address("10.0.0.0/8").unwrap_err(),
            "'10.0.0.0/8' is a network: give one address (e.g. the client's)"
        );
        assert_eq!(
            Target::parse_address("10.0.0.x").unwrap_err(),
            "invalid IP address '10.0.0.x'"
        );
    }

    #[test]
    fn networks_contain_their_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(t("198.51.100.0/24").contains(ip("198.51.100.7")));
        assert!(!t("198.51.100.0/24").contains(ip("198.51.101.7")));
        assert!(t("192.0.2.1").contains(ip("192.0.2.1")));
        assert!(t("192.0.2.1").contains(ip("::ffff:192.0.2.1")));
        assert!(!t("192.0.2.1").contains(ip("192.0.2.2")));
        assert!(t("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!t("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(t("::/0").contains(ip("2001:db8::1")));
        assert!(t("2001:db8:1:2::/64").contains(ip("2001:db8:1:2:ffff::1")));
        assert!(!t("2001:db8:1:2::/64").contains(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn networks_around_an_address() {
        assert_eq!(
            t("2001:db8:1:2:3:4:5:6").network(64).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(t("192.0.2.77").network(24).to_string(), "192.0.2.0/24");
        assert_eq!(t("192.0.2.77").network(64).to_string(), "192.0.2.77");
        assert_eq!(t("2001:db8::1").network(0).to_string(), "::/0");
    }
}
