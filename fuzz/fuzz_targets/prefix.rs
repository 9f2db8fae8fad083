//! The prefix map agrees with a naive scan for the longest match.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::net::prefix::{Prefix, PrefixMap};

fuzz_target!(|data: &[u8]| {
    // 5 bytes per prefix (address, length), then 4 bytes per probe
    let split = (data.first().copied().unwrap_or(0) as usize % 64) * 5;
    let (entries, probes) = data
        .get(1..)
        .unwrap_or(&[])
        .split_at(split.min(data.len().saturating_sub(1)));
    let mut list: Vec<(Prefix<u32>, usize)> = Vec::new();
    for c in entries.chunks_exact(5) {
        let a = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        let len = c[4] % 33;
        let Some(p) = Prefix::new(a, len) else {
            continue;
        };
        if list.iter().all(|(q, _)| *q != p) {
            let i = list.len();
            list.push((p, i));
        }
    }
    let map = PrefixMap::build(list.clone(), |_, inner| *inner);
    for c in probes.chunks_exact(4).chain(std::iter::once(&[0u8; 4][..])) {
        let a = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        let naive = list
            .iter()
            .filter(|(p, _)| p.contains(a))
            .max_by_key(|(p, _)| p.len)
            .map(|(_, v)| *v);
        assert_eq!(map.lookup(a).copied(), naive, "{a:#x} in {list:?}");
    }
});
