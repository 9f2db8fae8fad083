//! Prefix lookup at 1k / 100k / 1M random prefixes, IPv4 (/16–/32) and
//! IPv6 (/32–/128 inside 2000::/3), with random lookup addresses; and
//! building 1M. Run with `cargo bench --bench prefix` (add `-- --quick`
//! for a short run). Each map's size is printed once, to stderr.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use warden_core::net::prefix::{Bits, Prefix, PrefixMap};

/// xorshift64*: deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u8, hi: u8) -> u8 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u8
    }

    fn v4(&mut self) -> u32 {
        self.next() as u32
    }

    /// A global unicast address (2000::/3), like real tables.
    fn v6(&mut self) -> u128 {
        (u128::from(self.next()) << 64 | u128::from(self.next())) >> 3 | 1u128 << 125
    }
}

fn v4_prefixes(n: usize, rng: &mut Rng) -> Vec<(Prefix<u32>, u32)> {
    (0..n)
        .filter_map(|i| Some((Prefix::new(rng.v4(), rng.range(16, 32))?, i as u32)))
        .collect()
}

fn v6_prefixes(n: usize, rng: &mut Rng) -> Vec<(Prefix<u128>, u32)> {
    (0..n)
        .filter_map(|i| Some((Prefix::new(rng.v6(), rng.range(32, 128))?, i as u32)))
        .collect()
}

/// Number of pre-generated lookup addresses (a power of two).
const PROBES: usize = 1 << 16;

fn bench_lookups<K: Bits>(
    c: &mut Criterion,
    name: &str,
    entries: Vec<(Prefix<K>, u32)>,
    probes: &[K],
) {
    let n = entries.len();
    let t = Instant::now();
    let m = PrefixMap::build(entries, |_, inner| *inner);
    let built = t.elapsed();
    let hits = probes.iter().filter(|&&a| m.lookup(a).is_some()).count();
    eprintln!(
        "{name}: {} distinct of {n} prefixes, built in {built:.1?}, {} bytes, \
         {:.1} bytes/prefix, {:.0}% of probes match",
        m.len(),
        m.memory_bytes(),
        m.memory_bytes() as f64 / n as f64,
        100.0 * hits as f64 / probes.len() as f64,
    );
    let mut i = 0usize;
    c.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) & (PROBES - 1);
            black_box(m.lookup(black_box(probes[i])))
        })
    });
}

fn lookups(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let probes4: Vec<u32> = (0..PROBES).map(|_| rng.v4()).collect();
    let probes6: Vec<u128> = (0..PROBES).map(|_| rng.v6()).collect();
    for n in [1_000, 100_000, 1_000_000] {
        let e = v4_prefixes(n, &mut rng);
        bench_lookups(c, &format!("lookup/v4/{n}"), e, &probes4);
        let e = v6_prefixes(n, &mut rng);
        bench_lookups(c, &format!("lookup/v6/{n}"), e, &probes6);
    }
}

fn build(c: &mut Criterion) {
    let mut rng = Rng(42);
    let e4 = v4_prefixes(1_000_000, &mut rng);
    let e6 = v6_prefixes(1_000_000, &mut rng);
    let mut g = c.benchmark_group("build");
    g.sample_size(10);
    g.bench_function("v4/1000000", |b| {
        b.iter_batched(
            || e4.clone(),
            |e| PrefixMap::build(e, |_, i| *i),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("v6/1000000", |b| {
        b.iter_batched(
            || e6.clone(),
            |e| PrefixMap::build(e, |_, i| *i),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, lookups, build);
criterion_main!(benches);
