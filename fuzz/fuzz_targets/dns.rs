//! DNS answers as a resolver (or anything on its port) may send them: the
//! reader never panics and stays in bounds, follows compression pointers
//! only backwards, and what it reads fits in the message. The same bytes
//! drive a crawler verification to its end, and as text are read as a
//! resolver address and as a resolv.conf.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use warden_core::challenge::crawlers::{Options, Step, Verifier};
use warden_core::net::addr::Addr;
use warden_core::net::dns::{nameservers, parse, QType, Server, MAX_NAME};

const NAMES: [&str; 2] = [
    "1.66.249.66.in-addr.arpa",
    "crawl-66-249-66-1.googlebot.com",
];

fuzz_target!(|data: &[u8]| {
    let id = data
        .get(..2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    for name in NAMES {
        for qt in [QType::Ptr, QType::A, QType::Aaaa] {
            if let Ok(a) = parse(data, id, name, qt) {
                assert!(a.names.len() + a.addrs.len() <= data.len() / 4);
                assert!(a.names.iter().all(|n| n.len() <= MAX_NAME));
            }
        }
    }
    // a verification fed these bytes (its ids are its own: mostly stray
    // datagrams), then silence: it ends
    static V: OnceLock<Verifier> = OnceLock::new();
    let v = V.get_or_init(|| {
        Verifier::with_resolvers(
            &Options::default(),
            vec![Server::parse("127.0.0.1").unwrap()],
        )
    });
    let mut job = v.start(0, Addr::V4(0x42f94201), id, 0);
    let _ = v.step(&mut job, None, 0);
    let _ = v.step(&mut job, Some(data), 1);
    let mut last = v.step(&mut job, None, 100_000);
    for _ in 0..4 {
        last = v.step(&mut job, None, 100_000);
    }
    assert!(matches!(last, Step::Done(_)));
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(server) = Server::parse(s) {
            assert_eq!(Server::parse(&server.to_string()), Ok(server));
        }
        let _ = nameservers(s);
    }
});
