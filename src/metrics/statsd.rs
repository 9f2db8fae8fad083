//! statsd packets: formatting and buffering live here; the Lua side only
//! sends the packets over UDP.
//!
//! Counters are summed per name between flushes (`name:N|c`, as a
//! statsd server would sum them anyway); timings (`|ms`) and set members
//! (`|s`) are kept one per line. Names keep letters, digits and `._-`;
//! anything else (`:`, `|`, newlines, ...) becomes `_`, so a metric can
//! never forge another. Packets stay under [`MAX_PACKET`] bytes.

use std::collections::HashMap;
use std::fmt::Write as _;

/// Largest statsd datagram (fits an Ethernet MTU with IP and UDP headers).
pub const MAX_PACKET: usize = 1432;

/// A metric name made safe for the statsd line protocol.
pub fn metric_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// Buffered statsd metrics of one worker.
#[derive(Debug, Default)]
pub struct Metrics {
    counts: HashMap<String, i64>,
    order: Vec<String>,
    lines: Vec<String>,
}

impl Metrics {
    /// Adds `n` to counter `name`.
    pub fn count(&mut self, name: &str, n: i64) {
        let name = metric_name(name);
        match self.counts.get_mut(&name) {
            Some(c) => *c = c.saturating_add(n),
            None => {
                self.order.push(name.clone());
                self.counts.insert(name, n);
            }
        }
    }

    /// Records a timing in ms.
    pub fn time(&mut self, name: &str, ms: f64) {
        self.lines
            .push(format!("{}:{}|ms", metric_name(name), num(ms)));
    }

    /// Records a gauge's current value.
    pub fn gauge(&mut self, name: &str, value: f64) {
        self.lines
            .push(format!("{}:{}|g", metric_name(name), num(value.max(0.0))));
    }

    /// Records a set member (made safe like a name).
    pub fn set(&mut self, name: &str, value: &str) {
        self.lines
            .push(format!("{}:{}|s", metric_name(name), metric_name(value)));
    }

    /// Metrics buffered: distinct counters plus other lines.
    pub fn len(&self) -> usize {
        self.order.len() + self.lines.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the buffer into datagrams of at most [`MAX_PACKET`] bytes,
    /// one metric per line.
    pub fn drain(&mut self) -> Vec<String> {
        let mut all: Vec<String> = self
            .order
            .drain(..)
            .map(|n| {
                let c = self.counts.remove(&n).unwrap_or(0);
                format!("{n}:{c}|c")
            })
            .collect();
        all.append(&mut self.lines);
        let mut packets = Vec::new();
        let mut cur = String::new();
        for line in all {
            if !cur.is_empty() && cur.len() + line.len() + 1 > MAX_PACKET {
                packets.push(std::mem::take(&mut cur));
            }
            let _ = writeln!(cur, "{line}");
        }
        if !cur.is_empty() {
            packets.push(cur);
        }
        packets
    }
}

fn num(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.is_finite() {
        format!("{v}")
    } else {
        "0".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_and_lines_are_safe() {
        let mut m = Metrics::default();
        m.count("iprepd.cache_hit", 1);
        m.count("iprepd.cache_hit", 1);
        m.count("iprepd.err.500", 1);
        m.time("t", 12.5);
        m.set("iprepd.ips_seen", "192.0.2.1");
        m.count("evil:1|c\nx", 1);
        assert_eq!(m.len(), 5);
        let p = m.drain();
        assert_eq!(
            p,
            vec![
                "iprepd.cache_hit:2|c\niprepd.err.500:1|c\nevil_1_c_x:1|c\nt:12.5|ms\n\
                 iprepd.ips_seen:192.0.2.1|s\n"
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
            m.count(&format!("metric.number.{i}"), i);
        }
        let p = m.drain();
        assert!(p.len() > 1);
        assert!(p.iter().all(|x| x.len() <= MAX_PACKET));
        assert_eq!(p.iter().map(|x| x.lines().count()).sum::<usize>(), 500);
    }
}
