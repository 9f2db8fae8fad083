//! Prefix lookup and build at 1k / 100k / 1M random prefixes, IPv4 and
//! IPv6, with random lookup addresses. Run with `cargo bench --bench prefix`.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use warden_core::prefix::{Bits, Prefix, PrefixMap};

/// xorshift64*: deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn range(&mut self, lo: u8, hi: u8) -> u8 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u8
    }
}

fn v4_prefixes(n: usize, rng: &mut Rng) -> Vec<(Prefix<u32>, u32)> {
    (0..n)
        .map(|i| {
            (
                Prefix::new(rng.next() as u32, rng.range(16, 32)).unwrap(),
                i as u32,
            )
        })
        .collect()
}

fn v6_prefixes(n: usize, rng: &mut Rng) -> Vec<(Prefix<u128>, u32)> {
    (0..n)
        .map(|i| {
            // Global unicast 2000::/3, like real tables.
            let a = (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> 3 | 1u128 << 125;
            (Prefix::new(a, rng.range(32, 128)).unwrap(), i as u32)
        })
        .collect()
}

fn bench_lookups<K: Bits>(
    c: &mut Criterion,
    name: &str,
    entries: Vec<(Prefix<K>, u32)>,
    probes: Vec<K>,
) {
    let n = entries.len();
    let t = Instant::now();
    let m = PrefixMap::build(entries, |_, inner| *inner);
    let built = t.elapsed();
    eprintln!(
        "{name}: {n} prefixes built in {built:?}, {} bytes, {:.1} bytes/prefix",
        m.memory_bytes(),
        m.memory_bytes() as f64 / n as f64
    );
    let mut i = 0usize;
    c.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) & (probes.len() - 1);
            black_box(m.lookup(black_box(probes[i])))
        })
    });
}

fn lookups(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let probes4: Vec<u32> = (0..1 << 16).map(|_| rng.next() as u32).collect();
    let probes6: Vec<u128> = (0..1 << 16)
        .map(|_| (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> 3 | 1u128 << 125)
        .collect();
    for n in [1_000, 100_000, 1_000_000] {
        let e = v4_prefixes(n, &mut rng);
        bench_lookups(c, &format!("lookup/v4/{n}"), e, probes4.clone());
        let e = v6_prefixes(n, &mut rng);
        bench_lookups(c, &format!("lookup/v6/{n}"), e, probes6.clone());
    }
}

fn build(c: &mut Criterion) {
    let mut rng = Rng(42);
    let e4 = v4_prefixes(1_000_000, &mut rng);
    let e6 = v6_prefixes(1_000_000, &mut rng);
    let mut g = c.benchmark_group("build");
    g.sample_size(10);
    g.bench_function("v4/1000000", |b| {
        b.iter(|| PrefixMap::build(black_box(e4.clone()), |_, i| *i))
    });
    g.bench_function("v6/1000000", |b| {
        b.iter(|| PrefixMap::build(black_box(e6.clone()), |_, i| *i))
    });
    g.finish();
}

criterion_group!(benches, lookups, build);
criterion_main!(benches);
