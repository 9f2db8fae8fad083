//! DNS over UDP for the cosockets of `lua/resty/warden/crawler.lua`: the
//! queries and the reading of their answers, as [`super::http`] does for
//! HTTP. Only what crawler verification needs (RFC 1035): a question of
//! type `PTR`, `A` or `AAAA`, class `IN`, recursion desired; an answer
//! read for the records of that question's name, following `CNAME`s; the
//! resolvers to ask ([`Server`], [`nameservers`] from `/etc/resolv.conf`).
//!
//! Reading never panics and stays in bounds whatever the bytes: names
//! follow compression pointers only backwards (no loops), lengths are
//! checked against the message, and a reply that does not answer the
//! question asked (another id, name, type or class, not a response) is
//! refused, so a stray or spoofed datagram is told apart from the answer.

use std::fmt;

use crate::net::addr::Addr;

/// Largest datagram read (no EDNS: answers above 512 bytes are truncated
/// by the server, and a truncated answer is read as it is).
pub const MAX_MESSAGE: usize = 512;
/// Longest name (RFC 1035: 255 bytes on the wire, 253 as text).
pub const MAX_NAME: usize = 253;
/// Most `CNAME`s followed from the question's name.
const MAX_CHAIN: usize = 8;

/// Record types this module asks for and reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QType {
    /// An IPv4 address.
    A,
    /// A name for an address (reverse lookups).
    Ptr,
    /// An IPv6 address.
    Aaaa,
}

impl QType {
    /// The type's number on the wire.
    pub fn code(self) -> u16 {
        match self {
            QType::A => 1,
            QType::Ptr => 12,
            QType::Aaaa => 28,
        }
    }

    /// The forward type of an address's family.
    pub fn of(a: Addr) -> QType {
        match a {
            Addr::V4(_) => QType::A,
            Addr::V6(_) => QType::Aaaa,
        }
    }
}

const CNAME: u16 = 5;
const CLASS_IN: u16 = 1;

/// A query that cannot be made or an answer that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsError(String);

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DnsError {}

fn err(m: impl Into<String>) -> DnsError {
    DnsError(m.into())
}

/// An answer to a question, as far as it concerns that question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The response code: 0 no error, 2 server failure, 3 no such name.
    pub rcode: u8,
    /// The server cut the answer (TC): what is here may be incomplete.
    pub truncated: bool,
    /// `PTR` answers: the names, lower case, without the final dot.
    pub names: Vec<String>,
    /// `A`/`AAAA` answers: the addresses.
    pub addrs: Vec<Addr>,
    /// The smallest TTL (seconds) of the records read (the `CNAME`s that
    /// led to them included); `u32::MAX` when none was.
    pub ttl: u32,
}

impl Default for Answer {
    fn default() -> Answer {
        Answer {
            rcode: 0,
            truncated: false,
            names: Vec::new(),
            addrs: Vec::new(),
            ttl: u32::MAX,
        }
    }
}

/// Response codes ([`Answer::rcode`]) this crate branches on.
pub mod rcode {
    /// No error.
    pub const NOERROR: u8 = 0;
    /// The name does not exist.
    pub const NXDOMAIN: u8 = 3;
}

/// The reverse name of an address: `1.2.0.192.in-addr.arpa` or the 32
/// nibbles of `ip6.arpa`.
///
/// ```
/// use warden_core::net::{addr::Addr, dns::reverse_name};
/// let a = Addr::parse("66.249.66.1").unwrap();
/// assert_eq!(reverse_name(a), "1.66.249.66.in-addr.arpa");
/// let b = Addr::parse("2001:db8::1").unwrap();
/// assert!(reverse_name(b).starts_with("1.0.0.0.") && reverse_name(b).ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"));
/// ```
pub fn reverse_name(a: Addr) -> String {
    match a {
        Addr::V4(v) => {
            let b = v.to_be_bytes();
            format!("{}.{}.{}.{}.in-addr.arpa", b[3], b[2], b[1], b[0])
        }
        Addr::V6(v) => {
            let mut s = String::with_capacity(72);
            for i in 0..32 {
                let nibble = (v >> (4 * i)) & 0xf;
                s.push(char::from_digit(nibble as u32, 16).unwrap_or('0'));
                s.push('.');
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// Writes a query for `name` (text, an optional final dot) of type `qtype`,
/// with id `id` and recursion desired.
///
/// ```
/// use warden_core::net::dns::{query, parse, QType};
/// let q = query(0x1234, "example.com", QType::A).unwrap();
/// assert_eq!(&q[..2], &[0x12, 0x34]);
/// assert_eq!(q.len(), 12 + 13 + 4);
/// assert!(query(1, "a..b", QType::A).is_err());
/// ```
pub fn query(id: u16, name: &str, qtype: QType) -> Result<Vec<u8>, DnsError> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question
    write_name(&mut q, name)?;
    q.extend_from_slice(&qtype.code().to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// Writes `name` as labels.
fn write_name(out: &mut Vec<u8>, name: &str) -> Result<(), DnsError> {
    let n = name.strip_suffix('.').unwrap_or(name);
    if n.is_empty() || n.len() > MAX_NAME {
        return Err(err(format!("invalid DNS name '{}'", short(name))));
    }
    for label in n.split('.') {
        if label.is_empty()
            || label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(err(format!("invalid DNS name '{}'", short(name))));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

fn u16_at(m: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(at)?, *m.get(at + 1)?]))
}

/// Reads the name at `at`: its text (lower case, no final dot) and where
/// the bytes after it start. Pointers must go backwards, so reading ends.
fn read_name(m: &[u8], mut at: usize) -> Result<(String, usize), DnsError> {
    let mut text = String::new();
    let mut end = None;
    let mut floor = at; // a pointer must go below every position read
    loop {
        let len = *m.get(at).ok_or_else(|| err("name past the end"))? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => {
                return Ok((text, end.unwrap_or(at + 1)));
            }
            0x00 => {
                let label = m
                    .get(at + 1..at + 1 + len)
                    .ok_or_else(|| err("label past the end"))?;
                if label.iter().any(|&b| b == b'.' || !b.is_ascii_graphic()) {
                    return Err(err("a label holds a dot or an unprintable byte"));
                }
                if !text.is_empty() {
                    text.push('.');
                }
                text.extend(label.iter().map(|b| b.to_ascii_lowercase() as char));
                if text.len() > MAX_NAME {
                    return Err(err("name longer than 253 bytes"));
                }
                at += 1 + len;
            }
            0xc0 => {
                let ptr =
                    (u16_at(m, at).ok_or_else(|| err("pointer past the end"))? & 0x3fff) as usize;
                if ptr >= floor {
                    return Err(err("name pointer does not point backwards"));
                }
                end.get_or_insert(at + 2);
                floor = ptr;
                at = ptr;
            }
            _ => return Err(err("unknown label type")),
        }
    }
}

/// True when `a` and `b` name the same node (case-insensitive, final dot
/// ignored).
fn same_name(a: &str, b: &str) -> bool {
    a.strip_suffix('.')
        .unwrap_or(a)
        .eq_ignore_ascii_case(b.strip_suffix('.').unwrap_or(b))
}

/// A record of the answer section, as read.
struct Record<'m> {
    owner: String,
    ty: u16,
    ttl: u32,
    start: usize,
    data: &'m [u8],
}

/// Reads a reply to the query (`id`, `name`, `qtype`): an error when it is
/// malformed or answers another question (the caller waits for the right
/// one); otherwise the records for `name` and the names its `CNAME`s lead
/// to.
///
/// ```
/// use warden_core::net::dns::{parse, query, QType};
/// let q = query(7, "example.com", QType::A).unwrap();
/// // the question echoed, flags QR|RD|RA, NXDOMAIN, no records
/// let mut r = q.clone();
/// r[2] = 0x81;
/// r[3] = 0x83;
/// let a = parse(&r, 7, "example.com", QType::A).unwrap();
/// assert_eq!((a.rcode, a.addrs.len()), (3, 0));
/// assert!(parse(&r, 8, "example.com", QType::A).is_err()); // another id
/// ```
pub fn parse(m: &[u8], id: u16, name: &str, qtype: QType) -> Result<Answer, DnsError> {
    if m.len() < 12 {
        return Err(err("message shorter than its header"));
    }
    if u16_at(m, 0) != Some(id) {
        return Err(err("another query's id"));
    }
    let (f1, f2) = (m[2], m[3]);
    if f1 & 0x80 == 0 || f1 & 0x78 != 0 {
        return Err(err("not a response to a standard query"));
    }
    let qd = u16_at(m, 4).unwrap_or(0);
    let an = u16_at(m, 6).unwrap_or(0);
    if qd != 1 {
        return Err(err("a reply must repeat the one question"));
    }
    let (qname, at) = read_name(m, 12)?;
    let (qt, qc) = (u16_at(m, at), u16_at(m, at + 2));
    if !same_name(&qname, name) || qt != Some(qtype.code()) || qc != Some(CLASS_IN) {
        return Err(err("the reply answers another question"));
    }
    let mut at = at + 4;
    let mut records = Vec::new();
    for _ in 0..an {
        let (owner, next) = read_name(m, at)?;
        let ty = u16_at(m, next).ok_or_else(|| err("record past the end"))?;
        let class = u16_at(m, next + 2).ok_or_else(|| err("record past the end"))?;
        let ttl = match (u16_at(m, next + 4), u16_at(m, next + 6)) {
            (Some(hi), Some(lo)) => (u32::from(hi) << 16) | u32::from(lo),
            _ => return Err(err("record past the end")),
        };
        let len = u16_at(m, next + 8).ok_or_else(|| err("record past the end"))? as usize;
        let start = next + 10;
        let data = m
            .get(start..start + len)
            .ok_or_else(|| err("record data past the end"))?;
        at = start + len;
        if class != CLASS_IN {
            continue;
        }
        records.push(Record {
            owner,
            ty,
            ttl,
            start,
            data,
        });
    }
    let mut a = Answer {
        rcode: f2 & 0x0f,
        truncated: f1 & 0x02 != 0,
        ..Answer::default()
    };
    // the names that answer: the question's, then its CNAMEs in turn (a
    // CNAME whose target cannot be read ends the chain)
    let mut chain = vec![qname];
    while chain.len() <= MAX_CHAIN {
        let last = &chain[chain.len() - 1];
        let Some(r) = records
            .iter()
            .find(|r| r.ty == CNAME && same_name(&r.owner, last))
        else {
            break;
        };
        let Ok((target, _)) = read_name(m, r.start) else {
            break;
        };
        if chain.iter().any(|c| same_name(c, &target)) {
            break; // a CNAME loop
        }
        a.ttl = a.ttl.min(r.ttl);
        chain.push(target);
    }
    for r in &records {
        if r.ty != qtype.code() || !chain.iter().any(|c| same_name(c, &r.owner)) {
            continue;
        }
        let before = (a.names.len(), a.addrs.len());
        match qtype {
            QType::Ptr => {
                if let Ok((n, _)) = read_name(m, r.start) {
                    a.names.push(n);
                }
            }
            QType::A if r.data.len() == 4 => a.addrs.extend(Addr::from_binary(r.data)),
            QType::Aaaa if r.data.len() == 16 => a.addrs.extend(Addr::from_binary(r.data)),
            _ => {}
        }
        if (a.names.len(), a.addrs.len()) != before {
            a.ttl = a.ttl.min(r.ttl);
        }
    }
    Ok(a)
}

/// A resolver to ask: an address and a port (53 unless given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Server {
    /// The resolver's address.
    pub addr: Addr,
    /// Its UDP port.
    pub port: u16,
}

impl Server {
    /// Reads `192.0.2.53`, `192.0.2.53:5353`, `2001:db8::53` or
    /// `[2001:db8::53]:5353`.
    ///
    /// ```
    /// use warden_core::net::dns::Server;
    /// let s = Server::parse("[::1]:5353").unwrap();
    /// assert_eq!((s.host(), s.port), ("[::1]".to_string(), 5353));
    /// assert_eq!(Server::parse("127.0.0.53").unwrap().to_string(), "127.0.0.53:53");
    /// assert!(Server::parse("resolver.example").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Server, String> {
        let bad = || {
            format!(
                "'{}', which is not a resolver address like '127.0.0.53', '192.0.2.1:5353' \
                 or '[::1]:53'",
                short(s)
            )
        };
        let t = s.trim();
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (h, p) = rest.split_once(']').ok_or_else(bad)?;
            match p {
                "" => (h, None),
                p => (h, Some(p.strip_prefix(':').ok_or_else(bad)?)),
            }
        } else if t.matches(':').count() == 1 {
            let (h, p) = t.split_once(':').ok_or_else(bad)?;
            (h, Some(p))
        } else {
            (t, None)
        };
        let addr = Addr::parse(host).map_err(|_| bad())?;
        let port = match port {
            None => 53,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad()),
            },
        };
        Ok(Server { addr, port })
    }

    /// The host as nginx's `setpeername` takes it (IPv6 in brackets).
    pub fn host(&self) -> String {
        match self.addr {
            Addr::V4(_) => self.addr.to_string(),
            Addr::V6(_) => format!("[{}]", self.addr),
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host(), self.port)
    }
}

/// The `nameserver` lines of a `resolv.conf` text, in order (addresses
/// with a zone id, `fe80::1%eth0`, are left out: a cosocket cannot use
/// them).
///
/// ```
/// use warden_core::net::dns::nameservers;
/// let t = "# systemd-resolved\nnameserver 127.0.0.53\noptions edns0\nnameserver ::1\n";
/// let n: Vec<String> = nameservers(t).iter().map(|s| s.to_string()).collect();
/// assert_eq!(n, vec!["127.0.0.53:53", "[::1]:53"]);
/// ```
pub fn nameservers(text: &str) -> Vec<Server> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let a = words.next()?;
            Addr::parse(a).ok().map(|addr| Server { addr, port: 53 })
        })
        .collect()
}

/// Test helpers: answers as a server writes them.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// A record of an answer: owner, and either a name (`PTR`, `CNAME`)
    /// or an address.
    pub enum Rr<'a> {
        /// A `PTR` record.
        Ptr(&'a str, &'a str),
        /// A `CNAME` record.
        Cname(&'a str, &'a str),
        /// An `A` or `AAAA` record.
        Addr(&'a str, Addr),
    }

    /// The reply to `query` with `records` and response code `rcode`.
    pub fn reply(query: &[u8], rcode: u8, records: &[Rr]) -> Vec<u8> {
        reply_ttl(query, rcode, records, 300)
    }

    /// [`reply`] with every record's TTL `ttl`.
    pub fn reply_ttl(query: &[u8], rcode: u8, records: &[Rr], ttl: u32) -> Vec<u8> {
        let mut m = query.to_vec();
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for r in records {
            let (owner, ty, data) = match r {
                Rr::Ptr(o, n) | Rr::Cname(o, n) => {
                    let mut d = Vec::new();
                    write_name(&mut d, n).unwrap();
                    let ty = if matches!(r, Rr::Ptr(..)) { 12 } else { CNAME };
                    (*o, ty, d)
                }
                Rr::Addr(o, Addr::V4(v)) => (*o, 1, v.to_be_bytes().to_vec()),
                Rr::Addr(o, Addr::V6(v)) => (*o, 28, v.to_be_bytes().to_vec()),
            };
            if same_name(owner, &read_name(query, 12).unwrap().0) {
                m.extend_from_slice(&[0xc0, 12]); // compressed: the question's name
            } else {
                write_name(&mut m, owner).unwrap();
            }
            m.extend_from_slice(&ty.to_be_bytes());
            m.extend_from_slice(&CLASS_IN.to_be_bytes());
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(&data);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{reply, Rr};
    use super::*;
    use proptest::prelude::*;

    fn a(s: &str) -> Addr {
        Addr::parse(s).unwrap()
    }

    #[test]
    fn reverse_names() {
        assert_eq!(reverse_name(a("192.0.2.1")), "1.2.0.192.in-addr.arpa");
        assert_eq!(
            reverse_name(a("2001:db8::567:89ab")),
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
        assert_eq!(
            reverse_name(a("::ffff:192.0.2.1")),
            "1.2.0.192.in-addr.arpa"
        );
    }

    #[test]
    fn ptr_then_forward() {
        let name = reverse_name(a("66.249.66.1"));
        let q = query(99, &name, QType::Ptr).unwrap();
        let r = reply(&q, 0, &[Rr::Ptr(&name, "Crawl-66-249-66-1.GoogleBot.com.")]);
        let ans = parse(&r, 99, &name, QType::Ptr).unwrap();
        assert_eq!(ans.names, vec!["crawl-66-249-66-1.googlebot.com"]);
        let host = &ans.names[0];
        let q = query(100, host, QType::A).unwrap();
        let r = reply(
            &q,
            0,
            &[
                Rr::Addr(host, a("66.249.66.1")),
                Rr::Addr("other.example", a("192.0.2.9")),
            ],
        );
        let ans = parse(&r, 100, host, QType::A).unwrap();
        assert_eq!(ans.addrs, vec![a("66.249.66.1")]);
        // the same bytes are not the answer to another question
        assert!(parse(&r, 100, "other.example", QType::A).is_err());
        assert!(parse(&r, 100, host, QType::Aaaa).is_err());
        assert!(parse(&q, 100, host, QType::A).is_err()); // not a response
    }

    #[test]
    fn cnames_are_followed_and_loops_end() {
        let q = query(5, "www.example.com", QType::Aaaa).unwrap();
        let r = reply(
            &q,
            0,
            &[
                Rr::Cname("www.example.com", "edge.example.net"),
                Rr::Cname("edge.example.net", "www.example.com"),
                Rr::Addr("edge.example.net", a("2001:db8::5")),
                Rr::Addr("unrelated.example", a("2001:db8::6")),
            ],
        );
        let ans = parse(&r, 5, "www.example.com.", QType::Aaaa).unwrap();
        assert_eq!(ans.addrs, vec![a("2001:db8::5")]);
    }

    #[test]
    fn malformed_answers() {
        let q = query(1, "example.com", QType::A).unwrap();
        let good = reply(&q, 0, &[Rr::Addr("example.com", a("192.0.2.1"))]);
        // every truncation fails or reads no more than what is there
        for n in 0..good.len() {
            if let Ok(ans) = parse(&good[..n], 1, "example.com", QType::A) {
                assert!(ans.addrs.is_empty(), "{n}");
            }
        }
        // a pointer to itself, a pointer forwards
        let mut looped = good.clone();
        let at = q.len();
        looped[at] = 0xc0;
        looped[at + 1] = at as u8;
        assert!(parse(&looped, 1, "example.com", QType::A).is_err());
        // an address of the wrong size is ignored
        let mut short = good.clone();
        let n = short.len();
        short[n - 6] = 0;
        short[n - 5] = 3;
        short.truncate(n - 1);
        assert_eq!(
            parse(&short, 1, "example.com", QType::A).unwrap().addrs,
            vec![]
        );
        // two questions, an unknown label type, a dot inside a label
        let mut two = good.clone();
        two[5] = 2;
        assert!(parse(&two, 1, "example.com", QType::A).is_err());
        let mut odd = good.clone();
        odd[12] = 0x40;
        assert!(parse(&odd, 1, "example.com", QType::A).is_err());
        let mut dot = good.clone();
        dot[13] = b'.';
        assert!(parse(&dot, 1, "example.com", QType::A).is_err());
        // truncated (TC) and server failure are reported as such
        let mut tc = good.clone();
        tc[2] |= 0x02;
        assert!(parse(&tc, 1, "example.com", QType::A).unwrap().truncated);
        let fail = reply(&q, 2, &[]);
        assert_eq!(parse(&fail, 1, "example.com", QType::A).unwrap().rcode, 2);
    }

    #[test]
    fn names_that_cannot_be_asked() {
        for bad in [
            "",
            ".",
            "a..b",
            "a b.example",
            &"x".repeat(64),
            &"a.".repeat(128),
        ] {
            assert!(query(1, bad, QType::A).is_err(), "{bad:?}");
        }
        assert!(query(1, "_dmarc.example.com.", QType::A).is_ok());
    }

    #[test]
    fn ttls_compression_and_servers() {
        use super::testing::reply_ttl;
        let q = query(9, "www.example.com", QType::A).unwrap();
        let r = reply_ttl(&q, 0, &[Rr::Addr("www.example.com", a("192.0.2.1"))], 42);
        assert_eq!(parse(&r, 9, "www.example.com", QType::A).unwrap().ttl, 42);
        assert_eq!(
            parse(&reply(&q, 3, &[]), 9, "www.example.com", QType::A)
                .unwrap()
                .ttl,
            u32::MAX
        );
        // a name made of labels and a pointer to a suffix of the question
        // ("example.com" at offset 16)
        let mut m = q.clone();
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 1;
        m.extend_from_slice(&[0xc0, 12, 0, 12, 0, 1, 0, 0, 0, 9, 0, 6]);
        m.extend_from_slice(&[4, b'h', b'o', b's', b't', 0xc0, 16]);
        let q2 = query(9, "www.example.com", QType::Ptr).unwrap();
        m[12..q.len()].copy_from_slice(&q2[12..]);
        let ans = parse(&m, 9, "www.example.com", QType::Ptr).unwrap();
        assert_eq!(
            (ans.names, ans.ttl),
            (vec!["host.example.com".to_string()], 9)
        );
        // servers
        for (text, shown) in [
            ("127.0.0.53", "127.0.0.53:53"),
            (" 192.0.2.1:5353 ", "192.0.2.1:5353"),
            ("2001:db8::53", "[2001:db8::53]:53"),
            ("[2001:db8::53]", "[2001:db8::53]:53"),
            ("[::1]:5353", "[::1]:5353"),
        ] {
            assert_eq!(Server::parse(text).unwrap().to_string(), shown, "{text}");
        }
        for bad in [
            "",
            "::1]:53",
            "[::1]53",
            "127.0.0.1:0",
            "127.0.0.1:x",
            "localhost",
        ] {
            assert!(Server::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            nameservers("nameserver fe80::1%eth0\n#nameserver 1.1.1.1\n"),
            vec![]
        );
    }

    proptest! {
        /// A valid answer with any byte changed is read or refused, never
        /// a panic, and whatever is read is in the message.
        #[test]
        fn mutated_answers(at in 0usize..200, byte: u8, ptr: bool) {
            let name = "crawl-66-249-66-1.googlebot.com";
            let qt = if ptr { QType::Ptr } else { QType::A };
            let q = query(3, name, qt).unwrap();
            let rr = if ptr {
                vec![Rr::Ptr(name, "x.googlebot.com"), Rr::Cname(name, "y.example")]
            } else {
                vec![Rr::Cname(name, "y.example"), Rr::Addr("y.example", a("66.249.66.1"))]
            };
            let mut m = reply(&q, 0, &rr);
            let i = at % m.len();
            m[i] = byte;
            if let Ok(ans) = parse(&m, 3, name, qt) {
                prop_assert!(ans.names.len() + ans.addrs.len() <= 2);
                for n in &ans.names {
                    prop_assert!(n.len() <= MAX_NAME);
                }
            }
        }

        #[test]
        fn round_trips(
            id: u16,
            labels in proptest::collection::vec("[a-z0-9-]{1,20}", 1..6),
            v4 in proptest::collection::vec(any::<u32>(), 0..5),
            ptrs in proptest::collection::vec("[a-z0-9]{1,10}\\.[a-z]{2,5}", 0..4),
        ) {
            let name = labels.join(".");
            let q = query(id, &name, QType::A).unwrap();
            let rrs: Vec<Rr> = v4.iter().map(|v| Rr::Addr(&name, Addr::V4(*v))).collect();
            let ans = parse(&reply(&q, 0, &rrs), id, &name, QType::A).unwrap();
            prop_assert_eq!(ans.addrs, v4.iter().map(|v| Addr::V4(*v)).collect::<Vec<_>>());
            let q = query(id, &name, QType::Ptr).unwrap();
            let rrs: Vec<Rr> = ptrs.iter().map(|p| Rr::Ptr(&name, p)).collect();
            let ans = parse(&reply(&q, 0, &rrs), id, &name, QType::Ptr).unwrap();
            prop_assert_eq!(ans.names, ptrs);
        }

        #[test]
        fn any_bytes_are_read_or_refused(m in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&m, u16_at(&m, 0).unwrap_or(0), "example.com", QType::Ptr);
        }
    }
}
