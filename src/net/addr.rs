//! Client addresses and networks: parsing, normalisation and printing.
//!
//! Every address that reaches warden goes through this module, whatever its
//! source (configuration, `block()`, nginx's `$binary_remote_addr`,
//! X-Forwarded-For). IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are
//! normalised to IPv4 here, so that the rest of the crate never sees them.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::net::prefix::Prefix;

/// One client address. IPv4-mapped IPv6 addresses are stored as `V4`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Addr {
    /// An IPv4 address, most significant octet first.
    V4(u32),
    /// An IPv6 address that is not IPv4-mapped.
    V6(u128),
}

/// A network: an address range in CIDR form, normalised (host bits cleared,
/// IPv4-mapped IPv6 ranges of length 96 or more stored as IPv4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Net {
    /// An IPv4 network.
    V4(Prefix<u32>),
    /// An IPv6 network.
    V6(Prefix<u128>),
}

/// Why an address or network could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrError {
    kind: ErrorKind,
    value: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ErrorKind {
    Address,
    Network,
    PrefixLength(u8),
    ZoneId,
}

impl AddrError {
    fn new(kind: ErrorKind, value: &str) -> Self {
        // Keep error messages bounded whatever the input.
        let value: String = value.chars().take(64).collect();
        AddrError { kind, value }
    }
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Address => write!(f, "invalid IP address '{}'", self.value),
            ErrorKind::Network => write!(f, "invalid IP address or CIDR '{}'", self.value),
            ErrorKind::PrefixLength(max) => write!(
                f,
                "invalid CIDR '{}': prefix length must be 0 to {}",
                self.value, max
            ),
            ErrorKind::ZoneId => write!(
                f,
                "invalid IP address '{}': zone ids (%...) are not allowed",
                self.value
            ),
        }
    }
}

impl std::error::Error for AddrError {}

const MAPPED_PREFIX: u128 = 0xffff_0000_0000;

impl Addr {
    /// Builds an address from an IPv6 value, unmapping `::ffff:a.b.c.d`.
    pub fn from_v6(v: u128) -> Addr {
        if v >> 32 == MAPPED_PREFIX >> 32 {
            Addr::V4(v as u32)
        } else {
            Addr::V6(v)
        }
    }

    /// Parses a textual IPv4 or IPv6 address.
    ///
    /// ```
    /// use warden_core::net::addr::Addr;
    /// assert_eq!(Addr::parse("::ffff:192.0.2.1").unwrap(), Addr::parse("192.0.2.1").unwrap());
    /// assert!(Addr::parse("192.0.2.256").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Addr, AddrError> {
        Addr::parse_bytes(s.as_bytes())
    }

    /// Parses bytes as a textual address (see [`Addr::parse`]). IPv4, the
    /// common case of a request, is read straight from the bytes, with
    /// no UTF-8 check and no allocation.
    pub fn parse_bytes(b: &[u8]) -> Result<Addr, AddrError> {
        Addr::read(b).ok_or_else(|| {
            let kind = if b.contains(&b'%') {
                ErrorKind::ZoneId
            } else {
                ErrorKind::Address
            };
            AddrError::new(kind, &String::from_utf8_lossy(b))
        })
    }

    /// [`Addr::parse_bytes`] without the error (nothing is allocated).
    #[inline]
    fn read(b: &[u8]) -> Option<Addr> {
        if let Some(v4) = parse_v4(b) {
            return Some(Addr::V4(v4));
        }
        // IPv6 (and text that is neither) through std's parser
        let v6 = std::str::from_utf8(b).ok()?.parse::<Ipv6Addr>().ok()?;
        Some(Addr::from_v6(u128::from(v6)))
    }

    /// Builds an address from nginx's `$binary_remote_addr` (4 or 16 bytes).
    pub fn from_binary(b: &[u8]) -> Option<Addr> {
        match b.len() {
            4 => Some(Addr::V4(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))),
            16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                Some(Addr::from_v6(u128::from_be_bytes(a)))
            }
            _ => None,
        }
    }

    /// `b` as a dotted-quad IPv4 address and nothing else (no spaces, no
    /// port): the usual `X-Forwarded-For` of a request through one proxy,
    /// read without splitting or trimming it first.
    #[inline]
    pub fn read_v4(b: &[u8]) -> Option<Addr> {
        parse_v4(b).map(Addr::V4)
    }

    /// Parses one X-Forwarded-For element: an address with optional
    /// surrounding spaces, `[v6]`, `[v6]:port` or `v4:port`.
    pub fn parse_forwarded(b: &[u8]) -> Option<Addr> {
        let b = trim(b);
        if b.is_empty() {
            return None;
        }
        if b[0] == b'[' {
            let end = b.iter().position(|&c| c == b']')?;
            let rest = &b[end + 1..];
            if !(rest.is_empty() || (rest[0] == b':' && is_port(&rest[1..]))) {
                return None;
            }
            return match Addr::read(&b[1..end])? {
                a @ Addr::V6(_) => Some(a),
                a @ Addr::V4(_) if b[1..end].contains(&b':') => Some(a),
                Addr::V4(_) => None,
            };
        }
        if let Some(a) = Addr::read(b) {
            return Some(a);
        }
        // a.b.c.d:port (only IPv4 can carry an unbracketed port)
        let colon = b.iter().position(|&c| c == b':')?;
        if b[colon + 1..].contains(&b':') || !is_port(&b[colon + 1..]) {
            return None;
        }
        match Addr::read(&b[..colon])? {
            a @ Addr::V4(_) => Some(a),
            Addr::V6(_) => None,
        }
    }

    /// The host network (/32 or /128) of this address.
    pub fn host(self) -> Net {
        match self {
            Addr::V4(a) => Net::V4(Prefix { addr: a, len: 32 }),
            Addr::V6(a) => Net::V6(Prefix { addr: a, len: 128 }),
        }
    }

    /// Writes the address's bytes (4 or 16) into `out`, returning the length.
    pub fn to_bytes(self, out: &mut [u8; 16]) -> usize {
        match self {
            Addr::V4(a) => {
                out[..4].copy_from_slice(&a.to_be_bytes());
                4
            }
            Addr::V6(a) => {
                out.copy_from_slice(&a.to_be_bytes());
                16
            }
        }
    }
}

/// A dotted-quad IPv4 address, as std's `Ipv4Addr` parser reads it: four
/// decimal octets of one to three digits, each at most 255, without
/// leading zeros (`01` is refused, as it could be read as octal).
#[inline]
fn parse_v4(b: &[u8]) -> Option<u32> {
    if b.len() < 7 || b.len() > 15 {
        return None;
    }
    let digit = |i: usize| -> Option<u32> {
        let d = b.get(i)?.wrapping_sub(b'0');
        (d <= 9).then_some(u32::from(d))
    };
    let (mut addr, mut i) = (0u32, 0usize);
    for k in 0..4 {
        let mut v = digit(i)?;
        i += 1;
        // up to two more digits, none after a leading zero
        for _ in 0..2 {
            match digit(i) {
                Some(d) if v != 0 => {
                    v = v * 10 + d;
                    i += 1;
                }
                Some(_) => return None,
                None => break,
            }
        }
        if v > 255 {
            return None;
        }
        addr = addr << 8 | v;
        if k < 3 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
    }
    (i == b.len()).then_some(addr)
}

fn is_port(b: &[u8]) -> bool {
    !b.is_empty() && b.len() <= 5 && b.iter().all(u8::is_ascii_digit)
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    b
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Addr::V4(a) => Ipv4Addr::from(a).fmt(f),
            Addr::V6(a) => Ipv6Addr::from(a).fmt(f),
        }
    }
}

impl Net {
    /// Parses an address (a host network) or a CIDR. Host bits set in a
    /// CIDR are cleared (`10.1.2.3/8` is `10.0.0.0/8`), as nginx's `allow`
    /// does. IPv4-mapped ranges of length 96 or more become IPv4 ranges.
    ///
    /// ```
    /// use warden_core::net::addr::Net;
    /// assert_eq!(Net::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
    /// assert_eq!(Net::parse("::ffff:10.0.0.0/104").unwrap().to_string(), "10.0.0.0/8");
    /// assert!(Net::parse("10.0.0.0/33").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Net, AddrError> {
        let (addr, len) = match s.split_once('/') {
            None => {
                return Addr::parse(s).map(Addr::host).map_err(|e| match e.kind {
                    ErrorKind::Address => AddrError::new(ErrorKind::Network, s),
                    _ => e,
                })
            }
            Some(parts) => parts,
        };
        let len_ok = !len.is_empty() && len.len() <= 3 && len.bytes().all(|c| c.is_ascii_digit());
        let len: u8 = match len.parse() {
            Ok(l) if len_ok => l,
            _ => return Err(AddrError::new(ErrorKind::Network, s)),
        };
        if let Ok(v4) = addr.parse::<Ipv4Addr>() {
            return Prefix::new(u32::from(v4), len)
                .map(Net::V4)
                .ok_or_else(|| AddrError::new(ErrorKind::PrefixLength(32), s));
        }
        if let Ok(v6) = addr.parse::<Ipv6Addr>() {
            let v = u128::from(v6);
            let p = Prefix::new(v, len)
                .ok_or_else(|| AddrError::new(ErrorKind::PrefixLength(128), s))?;
            if len >= 96 && v >> 32 == MAPPED_PREFIX >> 32 {
                return Ok(Net::V4(Prefix {
                    addr: p.addr as u32,
                    len: len - 96,
                }));
            }
            return Ok(Net::V6(p));
        }
        if addr.contains('%') {
            return Err(AddrError::new(ErrorKind::ZoneId, s));
        }
        Err(AddrError::new(ErrorKind::Network, s))
    }

    /// The network's first address (the address itself for a host).
    pub fn first(&self) -> Addr {
        match self {
            Net::V4(p) => Addr::V4(p.addr),
            Net::V6(p) => Addr::V6(p.addr),
        }
    }

    /// True when this network is a single address (/32 or /128).
    pub fn is_host(&self) -> bool {
        match self {
            Net::V4(p) => p.len == 32,
            Net::V6(p) => p.len == 128,
        }
    }

    /// True when `a` lies inside this network.
    pub fn contains(&self, a: Addr) -> bool {
        match (self, a) {
            (Net::V4(p), Addr::V4(a)) => p.contains(a),
            (Net::V6(p), Addr::V6(a)) => p.contains(a),
            _ => false,
        }
    }
}

impl fmt::Display for Net {
    /// Host networks print as a bare address, others in CIDR form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Net::V4(p) if p.len == 32 => Ipv4Addr::from(p.addr).fmt(f),
            Net::V4(p) => write!(f, "{}/{}", Ipv4Addr::from(p.addr), p.len),
            Net::V6(p) if p.len == 128 => Ipv6Addr::from(p.addr).fmt(f),
            Net::V6(p) => write!(f, "{}/{}", Ipv6Addr::from(p.addr), p.len),
        }
    }
}

/// Parses a list option: a comma-separated string or a list of strings
/// already split by the caller. Whitespace around entries is ignored and
/// empty entries are skipped.
pub fn parse_list<'a, I>(items: I) -> Result<Vec<Net>, AddrError>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut out = Vec::new();
    for item in items {
        for part in item.split(',') {
            let part = part.trim();
            if !part.is_empty() {
                out.push(Net::parse(part)?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // the byte parser reads IPv4 exactly as std's parser does
        #[test]
        fn v4_bytes_agree_with_std(s in "[0-9.]{0,16}|[0-9]{1,3}(\\.[0-9]{1,3}){3}") {
            let std = s.parse::<Ipv4Addr>().ok().map(u32::from);
            prop_assert_eq!(parse_v4(s.as_bytes()), std);
        }

        // the client resolution's shortcut for a one-address
        // X-Forwarded-For finds what its element-by-element reading does
        #[test]
        fn a_plain_v4_header_reads_as_its_one_element(
            b in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..16),
                proptest::collection::vec(
                    proptest::sample::select(b"0123456789., :[]".to_vec()), 0..20),
                "[0-9]{1,3}(\\.[0-9]{1,3}){3}".prop_map(String::into_bytes),
            ]
        ) {
            if let Some(a) = Addr::read_v4(&b) {
                prop_assert!(!b.contains(&b','));
                prop_assert_eq!(Addr::parse_forwarded(&b), Some(a));
            }
        }

        #[test]
        fn v4_bytes_agree_with_std_on_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..16)) {
            let std = std::str::from_utf8(&b).ok()
                .and_then(|s| s.parse::<Ipv4Addr>().ok()).map(u32::from);
            prop_assert_eq!(parse_v4(&b), std);
        }
    }

    #[test]
    fn parses_and_unmaps() {
        assert_eq!(Addr::parse("192.0.2.1").unwrap(), Addr::V4(0xc000_0201));
        assert_eq!(
            Addr::parse("::ffff:192.0.2.1").unwrap(),
            Addr::V4(0xc000_0201)
        );
        assert_eq!(
            Addr::parse("::FFFF:c000:201").unwrap(),
            Addr::V4(0xc000_0201)
        );
        assert!(matches!(Addr::parse("2001:db8::1").unwrap(), Addr::V6(_)));
        assert_eq!(
            Addr::parse("2001:db8::1").unwrap().to_string(),
            "2001:db8::1"
        );
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "",
            " 1.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.256",
            "::g",
            "1.2.3.4\0",
            "fe80::1%eth0",
            "1.2.3.4/32",
        ] {
            assert!(Addr::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Addr::parse("fe80::1%eth0").unwrap_err().to_string(),
            "invalid IP address 'fe80::1%eth0': zone ids (%...) are not allowed"
        );
    }

    #[test]
    fn binary_addresses() {
        assert_eq!(
            Addr::from_binary(&[10, 0, 0, 1]),
            Some(Addr::V4(0x0a00_0001))
        );
        let mut m = [0u8; 16];
        m[10] = 0xff;
        m[11] = 0xff;
        m[12..].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(Addr::from_binary(&m), Some(Addr::V4(0x0a00_0001)));
        assert_eq!(Addr::from_binary(&[1, 2, 3]), None);
        let mut out = [0u8; 16];
        assert_eq!(Addr::V4(0x0a00_0001).to_bytes(&mut out), 4);
        assert_eq!(&out[..4], &[10, 0, 0, 1]);
    }

    #[test]
    fn forwarded_elements() {
        let p = |s: &str| Addr::parse_forwarded(s.as_bytes()).map(|a| a.to_string());
        assert_eq!(p(" 1.2.3.4 ").as_deref(), Some("1.2.3.4"));
        assert_eq!(p("1.2.3.4:8080").as_deref(), Some("1.2.3.4"));
        assert_eq!(p("[2001:db8::1]:443").as_deref(), Some("2001:db8::1"));
        assert_eq!(p("[2001:db8::1]").as_deref(), Some("2001:db8::1"));
        assert_eq!(p("2001:db8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(p("::ffff:1.2.3.4").as_deref(), Some("1.2.3.4"));
        for bad in [
            "",
            "unknown",
            "[1.2.3.4]",
            "1.2.3.4:",
            "1.2.3.4:123456",
            "[::1",
            "[::1]x",
            "2001:db8::1:80:x",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn networks() {
        let n = |s: &str| Net::parse(s).map(|n| n.to_string());
        assert_eq!(n("10.0.0.0/8").unwrap(), "10.0.0.0/8");
        assert_eq!(n("10.9.9.9/8").unwrap(), "10.0.0.0/8");
        assert_eq!(n("10.0.0.1/32").unwrap(), "10.0.0.1");
        assert_eq!(n("0.0.0.0/0").unwrap(), "0.0.0.0/0");
        assert_eq!(n("2001:db8::1/32").unwrap(), "2001:db8::/32");
        assert_eq!(n("::ffff:10.0.0.0/104").unwrap(), "10.0.0.0/8");
        assert_eq!(n("::ffff:1.2.3.4").unwrap(), "1.2.3.4");
        assert_eq!(n("::/0").unwrap(), "::/0");
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/8/8",
            "10.0.0.0/+8",
            "x/8",
            "/8",
        ] {
            assert!(Net::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Net::parse("10.0.0.0/33").unwrap_err().to_string(),
            "invalid CIDR '10.0.0.0/33': prefix length must be 0 to 32"
        );
    }

    #[test]
    fn lists() {
        let l = parse_list(["203.0.113.0/24, 198.51.100.7", "", "2001:db8::/32"]).unwrap();
        assert_eq!(l.len(), 3);
        assert!(parse_list(["1.2.3.4,nope"]).is_err());
    }
}
