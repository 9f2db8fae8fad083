//! The detector's work per finished request (what `warden:log()` costs in
//! Rust): classification, the shared counters, the rule checks.
//! Run with `cargo bench --bench detector`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use warden_core::detect::counters::{Place, SLOT_BYTES};
use warden_core::detect::{Detector, DetectorConfig, Request};
use warden_core::net::addr::Addr;

const UA: &[u8] = b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

fn requests() -> Vec<Request<'static>> {
    // an ordinary mix: pages, assets, API calls, a few 404s
    let uris: [&'static [u8]; 8] = [
        b"/",
        b"/static/app.3f9a1c.js",
        b"/static/site.css",
        b"/img/logo.png",
        b"/api/v1/items?page=2",
        b"/blog/2026/11/some-article",
        b"/favicon.ico",
        b"/missing-page",
    ];
    uris.iter()
        .map(|&u| Request {
            uri: u,
            status: if u == b"/missing-page" { 404 } else { 200 },
            user_agent: UA,
            ..Request::default()
        })
        .collect()
}

/// Requests with query strings: plain ones (nothing to decode), ordinary
/// ones that need decoding, and attack payloads.
fn with_queries() -> Vec<Request<'static>> {
    let uris: [&'static [u8]; 8] = [
        b"/api/v1/items?page=2&sort=name",
        b"/search?q=rock+and+roll",
        b"/login?next=%2Faccount%2Fsettings",
        b"/products?utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale",
        b"/search?q=%22exact+phrase%22+-excluded",
        b"/item?id=1%27%20AND%201%3D1--%20-",
        b"/page?file=..%2f..%2f..%2fetc%2fpasswd",
        b"/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    ];
    uris.iter()
        .map(|&u| Request {
            uri: u,
            status: 200,
            user_agent: UA,
            ..Request::default()
        })
        .collect()
}

fn observe(c: &mut Criterion) {
    eprintln!("detector: {SLOT_BYTES} bytes per tracked client");
    // thresholds out of reach, so that nothing trips during the run
    let cfg = DetectorConfig::from_value(&serde_json::json!({
        "max_clients": 65536, "rate_threshold": 65535, "not_found_threshold": 255,
        "repeated_hits_threshold": 32767, "auto_block_threshold": 255,
        "payload_threshold": 255,
    }))
    .unwrap();
    let d = Detector::new(cfg, "").unwrap();
    let reqs = requests();
    let now = 1_000_000;

    let hot = Addr::V4(0xc000_0201);
    let mut i = 0usize;
    c.bench_function("observe/one client, request mix", |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            black_box(d.observe(black_box(hot), &reqs[i], now))
        })
    });
    let queries = with_queries();
    for (name, range) in [
        ("plain query", 0..1),
        ("ordinary queries to decode", 1..5),
        ("attack payloads", 5..8),
    ] {
        let qs = &queries[range];
        c.bench_function(&format!("observe/one client, {name}"), |b| {
            b.iter(|| {
                i = (i + 1) % qs.len();
                black_box(d.observe(black_box(hot), &qs[i], now))
            })
        });
    }

    // 50k distinct clients in random order: the table (16 MiB) is out of
    // the CPU's private caches, as with real traffic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let clients: Vec<Addr> = (0..1 << 16)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Addr::V4(0x0a00_0000 + (x % 50_000) as u32)
        })
        .collect();
    let mut j = 0usize;
    c.bench_function("observe/50k clients, request mix", |b| {
        b.iter(|| {
            j = (j + 1) & (clients.len() - 1);
            black_box(d.observe(clients[j], &reqs[j % reqs.len()], now))
        })
    });
    // the same, each client placed (its slot asked of the CPU) four
    // requests ahead, as the access phase does before the log phase; the
    // placing is inside the measured time
    const AHEAD: usize = 4;
    let mut places = [Place::default(); AHEAD];
    c.bench_function("observe/50k clients, request mix, placed ahead", |b| {
        b.iter(|| {
            j = (j + 1) & (clients.len() - 1);
            let k = (j + AHEAD) & (clients.len() - 1);
            let at = std::mem::replace(&mut places[j % AHEAD], d.place(clients[k]));
            black_box(d.see_at(clients[j], at, &reqs[j % reqs.len()], now))
        })
    });
    let asset = &reqs[1];
    c.bench_function("observe/50k clients, assets only", |b| {
        b.iter(|| {
            j = (j + 1) & (clients.len() - 1);
            black_box(d.observe(clients[j], asset, now))
        })
    });
}

criterion_group!(benches, observe);
criterion_main!(benches);
