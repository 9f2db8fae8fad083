//! The detector's shared counter table: one observation per request.
//! Run with `cargo bench --bench counters`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use warden_core::addr::Addr;
use warden_core::counters::{key_of, Observation, Table, SLOT_BYTES};

fn observe(c: &mut Criterion) {
    eprintln!("counters: {SLOT_BYTES} bytes per tracked client");
    let t = Table::new(65_536, 120_000).unwrap();
    let o = Observation {
        not_found: true,
        events: 1,
        path_hash: 0x1234_5678,
        ..Observation::default()
    };
    let hot = key_of(Addr::V4(0xc000_0201));
    c.bench_function("observe/same client", |b| {
        b.iter(|| black_box(t.observe(black_box(hot), 1_000, &o)))
    });
    // 50k distinct clients, random order: the table is out of cache.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let keys: Vec<[u64; 2]> = (0..1 << 16)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            key_of(Addr::V4((x % 50_000) as u32 + 1))
        })
        .collect();
    let mut i = 0usize;
    c.bench_function("observe/50k clients", |b| {
        b.iter(|| {
            i = (i + 1) & (keys.len() - 1);
            black_box(t.observe(keys[i], 1_000, &o))
        })
    });
}

criterion_group!(benches, observe);
criterion_main!(benches);
