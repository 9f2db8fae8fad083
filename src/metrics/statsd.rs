//! statsd packets: formatting and buffering live here; the Lua side only
//! sends the packets over UDP.
//!
//! The lines are iprepd-nginx's: one per metric, in the order recorded,
//! `name:value|c` (counters), `|ms` (timings), `|g` (gauges), `|s` (set
//! members), values written as Lua writes numbers. Two things differ, on
//! purpose: the characters of the line protocol itself (`:`, `|`, line
//! breaks, NUL) become `_` in names and set members, so that a metric can
//! neither forge another nor break the line (an IPv6 address as a set
//! member did in iprepd-nginx); and a buffer is sent in datagrams of at
//! most [`MAX_PACKET`] bytes, where iprepd-nginx sent one datagram of any
//! size (lost when too large).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};

/// Largest statsd datagram (fits an Ethernet MTU with IP and UDP headers).
pub const MAX_PACKET: usize = 1432;

/// Seconds between two lines about failed sends.
pub const SEND_ERROR_EVERY_MS: u64 = 60_000;

/// `s` with the line protocol's own characters (`:`, `|`, line breaks,
/// NUL) replaced by `_`; `_` for an empty string.
///
/// ```
/// use warden_core::metrics::statsd::safe;
/// assert_eq!(safe("iprepd.err.500"), "iprepd.err.500");
/// assert_eq!(safe("2001:db8::1"), "2001_db8__1");
/// assert_eq!(safe("a|c\nb"), "a_c_b");
/// ```
pub fn safe(s: &str) -> Cow<'_, str> {
    let bad = |c: char| matches!(c, ':' | '|' | '\n' | '\r' | '\0');
    if s.is_empty() {
        Cow::Borrowed("_")
    } else if s.contains(bad) {
        Cow::Owned(s.replace(bad, "_"))
    } else {
        Cow::Borrowed(s)
    }
}

/// A number as Lua writes it (`tostring(n)`, `n .. ""`): C's `%.14g`.
///
/// ```
/// use warden_core::metrics::statsd::lua_number;
/// assert_eq!(lua_number(1.0), "1");
/// assert_eq!(lua_number(0.1 + 0.2), "0.3");
/// assert_eq!(lua_number(1e15), "1e+15");
/// assert_eq!(lua_number(-2.5e-7), "-2.5e-07");
/// ```
pub fn lua_number(v: f64) -> String {
    if v.is_nan() {
        return if v.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    fn trim(s: &str) -> &str {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            s
        }
    }
    let e = format!("{v:.13e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..14).contains(&exp) {
        let fixed = format!("{v:.*}", (13 - exp) as usize);
        trim(&fixed).to_string()
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.unsigned_abs())
    }
}

#[derive(Debug)]
enum Value {
    Count(f64),
    Time(f64),
    Gauge(f64),
    Set(String),
}

#[derive(Debug)]
struct Line {
    name: Cow<'static, str>,
    value: Value,
}

/// Buffered statsd metrics of one worker.
#[derive(Debug, Default)]
pub struct Metrics {
    lines: Vec<Line>,
    send_error_logged_ms: Option<u64>,
}

impl Metrics {
    fn push(&mut self, name: impl Into<Cow<'static, str>>, value: Value) {
        self.lines.push(Line {
            name: name.into(),
            value,
        });
    }

    /// Adds `n` to counter `name` (a `&'static str` name costs no
    /// allocation).
    pub fn count(&mut self, name: impl Into<Cow<'static, str>>, n: f64) {
        self.push(name, Value::Count(n));
    }

    /// Records a timing in ms.
    pub fn time(&mut self, name: impl Into<Cow<'static, str>>, ms: f64) {
        self.push(name, Value::Time(ms));
    }

    /// Records a gauge's current value (negative values are sent as 0: a
    /// leading `-` would make statsd subtract).
    pub fn gauge(&mut self, name: impl Into<Cow<'static, str>>, value: f64) {
        self.push(name, Value::Gauge(value.max(0.0)));
    }

    /// Records a set member.
    pub fn set(&mut self, name: impl Into<Cow<'static, str>>, member: &str) {
        self.push(name, Value::Set(member.to_string()));
    }

    /// Metrics buffered (iprepd-nginx's `buffer_count()`).
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Empties the buffer into datagrams of at most [`MAX_PACKET`] bytes
    /// (a single longer line goes alone), one metric per line.
    pub fn drain(&mut self) -> Vec<String> {
        let mut packets = Vec::new();
        let mut cur = String::new();
        let mut line = String::new();
        for l in self.lines.drain(..) {
            line.clear();
            let (value, kind) = match &l.value {
                Value::Count(n) => (lua_number(*n), "c"),
                Value::Time(ms) => (lua_number(*ms), "ms"),
                Value::Gauge(g) => (lua_number(*g), "g"),
                Value::Set(m) => (safe(m).into_owned(), "s"),
            };
            let _ = writeln!(line, "{}:{value}|{kind}", safe(&l.name));
            if !cur.is_empty() && cur.len() + line.len() > MAX_PACKET {
                packets.push(std::mem::take(&mut cur));
            }
            cur.push_str(&line);
        }
        if !cur.is_empty() {
            packets.push(cur);
        }
        packets
    }

    /// The line to log when sending to `host:port` failed with `err`, at
    /// most once every [`SEND_ERROR_EVERY_MS`]; `None` in between.
    pub fn send_failed(&mut self, host: &str, port: u16, err: &str, now_ms: u64) -> Option<String> {
        if let Some(t) = self.send_error_logged_ms {
            if now_ms.saturating_sub(t) < SEND_ERROR_EVERY_MS {
                return None;
            }
        }
        self.send_error_logged_ms = Some(now_ms);
        Some(format!(
            "Error sending stats to statsd at {host}:{port}: {err}"
        ))
    }
}

/// A worker's metrics and the count at which they are sent
/// (`statsd_max_buffer_count`), shared by whoever records them (the
/// iprepd client's FFI entry points, `client.statsd` in Lua).
#[derive(Debug)]
pub struct Buffer {
    metrics: Mutex<Metrics>,
    max: usize,
}

impl Buffer {
    /// An empty buffer sent at `max` metrics (at least 1).
    pub fn new(max: usize) -> Buffer {
        Buffer {
            metrics: Mutex::new(Metrics::default()),
            max: max.max(1),
        }
    }

    /// The metrics (a panic elsewhere cannot make them unusable).
    pub fn lock(&self) -> MutexGuard<'_, Metrics> {
        self.metrics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when the buffer holds `max` metrics or more: time to send.
    pub fn full(&self) -> bool {
        self.lock().len() >= self.max
    }

    /// The count at which the buffer is sent.
    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_in_order_one_per_metric_and_safe() {
        let mut m = Metrics::default();
        m.count("iprepd.get_reputation", 1.0);
        m.count("iprepd.cache_hit", 1.0);
        m.count("iprepd.cache_hit", 1.0);
        m.time("t", 12.5);
        m.set("iprepd.ips_seen", "192.0.2.1");
        m.set("iprepd.ips_seen", "2001:db8::1");
        m.count(String::from("evil:1|c\nx"), 1.0);
        m.gauge("g", -3.0);
        assert_eq!(m.len(), 8);
        let p = m.drain();
        assert_eq!(
            p,
            vec![
                "iprepd.get_reputation:1|c\niprepd.cache_hit:1|c\niprepd.cache_hit:1|c\n\
                  t:12.5|ms\niprepd.ips_seen:192.0.2.1|s\niprepd.ips_seen:2001_db8__1|s\n\
                  evil_1_c_x:1|c\ng:0|g\n"
                    .to_string()
            ]
        );
        assert!(m.is_empty());
        assert!(m.drain().is_empty());
    }

    #[test]
    fn packets_stay_small() {
        let mut m = Metrics::default();
        for i in 0..500 {
            m.count(format!("metric.number.{i}"), f64::from(i));
        }
        let p = m.drain();
        assert!(p.len() > 1);
        assert!(p.iter().all(|x| x.len() <= MAX_PACKET));
        assert_eq!(p.iter().map(|x| x.lines().count()).sum::<usize>(), 500);
    }

    #[test]
    fn send_errors_are_logged_once_a_minute() {
        let mut m = Metrics::default();
        assert_eq!(
            m.send_failed("127.0.0.1", 8125, "connection refused", 1_000)
                .as_deref(),
            Some("Error sending stats to statsd at 127.0.0.1:8125: connection refused")
        );
        assert_eq!(m.send_failed("127.0.0.1", 8125, "x", 60_999), None);
        assert!(m.send_failed("127.0.0.1", 8125, "x", 61_000).is_some());
        let b = Buffer::new(2);
        b.lock().count("a", 1.0);
        assert!(!b.full());
        b.lock().count("a", 1.0);
        assert!(b.full());
    }

    #[test]
    fn numbers_as_lua_writes_them() {
        for (v, s) in [
            (1.0, "1"),
            (-1.0, "-1"),
            (12.5, "12.5"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.33333333333333"),
            (123456789012346.0, "1.2345678901235e+14"),
            (99999999999999.0, "99999999999999"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e300, "1e+300"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(lua_number(v), s, "{v}");
        }
    }

    proptest! {
        /// Lua's `%.14g` reads back within its 14 significant digits.
        #[test]
        fn lua_numbers_read_back(v in proptest::num::f64::NORMAL) {
            let s = lua_number(v);
            let back: f64 = s.parse().unwrap();
            prop_assert!(((back - v) / v).abs() < 1e-13, "{} {}", v, s);
        }
    }
}
