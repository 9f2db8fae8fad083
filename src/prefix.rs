//! Longest-prefix matching over IPv4 (`u32`) and IPv6 (`u128`) keys.
//!
//! [`PrefixMap`] is built once from a set of prefixes and answers, for an
//! address, the fold of the values of every prefix containing it. It
//! flattens the nested prefixes into sorted, disjoint intervals (a sort and
//! a stack sweep), then narrows the binary search with a bucket index over
//! the top bits of the key range. A lookup is one bucket read and a binary
//! search over the few interval starts of that bucket: its cost does not
//! depend on the number of distinct mask lengths, unlike a hash probe per
//! length (lua-resty-ipmatcher, CrowdSec's bouncer).

use std::fmt::Debug;
use std::hash::Hash;

/// An address as an unsigned integer, most significant bit first.
pub trait Bits: Copy + Ord + Eq + Hash + Debug + Default + Send + Sync + 'static {
    /// Number of bits in the address (32 or 128).
    const BITS: u8;
    /// The value as a `u128` (zero-extended).
    fn to_u128(self) -> u128;
    /// The low `Self::BITS` bits of `v`.
    fn from_u128(v: u128) -> Self;
}

impl Bits for u32 {
    const BITS: u8 = 32;
    #[inline]
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
    #[inline]
    fn from_u128(v: u128) -> Self {
        v as u32
    }
}

impl Bits for u128 {
    const BITS: u8 = 128;
    #[inline]
    fn to_u128(self) -> u128 {
        self
    }
    #[inline]
    fn from_u128(v: u128) -> Self {
        v
    }
}

/// A network prefix: `addr` with its host bits cleared, and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix<K> {
    /// First address of the prefix (host bits zero).
    pub addr: K,
    /// Prefix length in bits, `0..=K::BITS`.
    pub len: u8,
}

/// The mask of the host bits of a `len`-bit prefix in a `bits`-bit key.
fn host_mask(bits: u8, len: u8) -> u128 {
    let host = u32::from(bits - len);
    let all = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    match 1u128.checked_shl(host) {
        Some(v) => (v - 1) & all,
        None => all, // host == 128
    }
}

impl<K: Bits> Prefix<K> {
    /// A prefix of `len` bits starting at `addr` (host bits are cleared).
    /// `None` if `len` exceeds the key's width.
    ///
    /// ```
    /// use warden_core::prefix::Prefix;
    /// let p = Prefix::new(0x0a01_0203u32, 8).unwrap();
    /// assert_eq!(p.addr, 0x0a00_0000);
    /// assert!(Prefix::new(0u32, 33).is_none());
    /// ```
    pub fn new(addr: K, len: u8) -> Option<Self> {
        if len > K::BITS {
            return None;
        }
        let a = addr.to_u128() & !host_mask(K::BITS, len);
        Some(Prefix {
            addr: K::from_u128(a),
            len,
        })
    }

    /// The last address of the prefix.
    pub fn last(&self) -> K {
        let len = self.len.min(K::BITS);
        K::from_u128(self.addr.to_u128() | host_mask(K::BITS, len))
    }

    /// True when `addr` lies inside the prefix.
    #[inline]
    pub fn contains(&self, addr: K) -> bool {
        self.addr <= addr && addr <= self.last()
    }
}

const NONE: u32 = u32::MAX;
/// At most this many buckets (4 MiB of index).
const MAX_BUCKET_BITS: u32 = 20;

/// An immutable longest-prefix-match map. See the module docs.
#[derive(Clone, Debug)]
pub struct PrefixMap<K, V> {
    /// Intervals: start (ascending) and value (`None` in gaps); interval
    /// `i` is `[start_i, start_{i+1})`. The value sits in the cache line the
    /// search already loaded: a lookup touches two lines (bucket, interval).
    intervals: Vec<(K, Option<V>)>,
    /// While building: intervals with indices into `values`.
    starts: Vec<(K, u32)>,
    /// While building: folded values, one per distinct prefix.
    values: Vec<V>,
    /// `buckets[b]` = number of starts below the first key of bucket `b`.
    buckets: Vec<u32>,
    /// Smallest start; keys below it match nothing.
    base: u128,
    /// Bucket of key `k` is `(k - base) >> shift`.
    shift: u32,
    prefixes: usize,
}

impl<K, V> Default for PrefixMap<K, V> {
    fn default() -> Self {
        PrefixMap {
            intervals: Vec::new(),
            starts: Vec::new(),
            values: Vec::new(),
            buckets: Vec::new(),
            base: 0,
            shift: 0,
            prefixes: 0,
        }
    }
}

struct Open {
    last: u128,
    value: u32,
}

impl<K: Bits, V: Clone + PartialEq> PrefixMap<K, V> {
    /// Builds a map. The value of an address is the fold, outermost first,
    /// of the values of every prefix containing it: `merge(&outer, &inner)`.
    /// A prefix given twice is merged as `merge(&earlier, &later)`. Host
    /// bits set in an entry are cleared; lengths above the key width are
    /// treated as full length.
    ///
    /// Longest-prefix match keeps the innermost value:
    ///
    /// ```
    /// use warden_core::prefix::{Prefix, PrefixMap};
    /// let m = PrefixMap::build(
    ///     vec![
    ///         (Prefix::new(0x0a00_0000u32, 8).unwrap(), "10/8"),
    ///         (Prefix::new(0x0a01_0000u32, 16).unwrap(), "10.1/16"),
    ///     ],
    ///     |_, inner| *inner,
    /// );
    /// assert_eq!(m.lookup(0x0a01_0203), Some(&"10.1/16"));
    /// assert_eq!(m.lookup(0x0a02_0000), Some(&"10/8"));
    /// assert_eq!(m.lookup(0x0b00_0000), None);
    /// ```
    pub fn build<F: Fn(&V, &V) -> V>(entries: Vec<(Prefix<K>, V)>, merge: F) -> Self {
        let mut entries: Vec<(Prefix<K>, V)> = entries
            .into_iter()
            .map(|(p, v)| {
                let len = p.len.min(K::BITS);
                (Prefix::new(p.addr, len).unwrap_or(p), v)
            })
            .collect();
        // Outer (shorter) first at equal starts; stable keeps input order
        // among duplicates.
        entries.sort_by_key(|e| e.0);

        let mut map = PrefixMap::default();
        let mut stack: Vec<Open> = Vec::new();
        let mut prev: Option<Prefix<K>> = None;

        for (p, v) in entries {
            if prev == Some(p) {
                // A duplicate: fold it into the open entry on top.
                if let Some(top) = stack.last() {
                    let i = top.value as usize;
                    let merged = merge(&map.values[i], &v);
                    map.values[i] = merged;
                }
                continue;
            }
            prev = Some(p);
            let start = p.addr.to_u128();
            map.close_until(&mut stack, Some(start));
            let value = match stack.last() {
                Some(top) => merge(&map.values[top.value as usize], &v),
                None => v,
            };
            map.values.push(value);
            let idx = (map.values.len() - 1) as u32;
            map.emit(start, idx);
            stack.push(Open {
                last: p.last().to_u128(),
                value: idx,
            });
        }
        map.close_until(&mut stack, None);
        map.prefixes = map.values.len();
        // Adjacent intervals with equal values were not merged while the
        // values could still change (duplicates); merge them now.
        map.coalesce();
        map.index();
        let values = std::mem::take(&mut map.values);
        map.intervals = std::mem::take(&mut map.starts)
            .into_iter()
            .map(|(k, v)| (k, values.get(v as usize).cloned()))
            .collect();
        map
    }

    /// Closes every open prefix that ends before `start` (all of them for
    /// `None`), marking where each one's outer value resumes.
    fn close_until(&mut self, stack: &mut Vec<Open>, start: Option<u128>) {
        while let Some(top) = stack.last() {
            if start.is_some_and(|s| top.last >= s) {
                break;
            }
            let last = top.last;
            stack.pop();
            if last == u128::MAX || (K::BITS < 128 && last >= (1u128 << K::BITS) - 1) {
                continue; // the prefix runs to the end of the key space
            }
            let next = match stack.last() {
                Some(o) => o.value,
                None => NONE,
            };
            self.emit(last + 1, next);
        }
    }

    fn emit(&mut self, pos: u128, value: u32) {
        let k = K::from_u128(pos);
        match self.starts.last_mut() {
            Some(last) if last.0 == k => last.1 = value,
            _ => self.starts.push((k, value)),
        }
    }

    fn coalesce(&mut self) {
        let mut out: Vec<(K, u32)> = Vec::with_capacity(self.starts.len());
        for &(s, v) in &self.starts {
            if let Some(&(_, p)) = out.last() {
                let same = p == v
                    || (p != NONE
                        && v != NONE
                        && self.values[p as usize] == self.values[v as usize]);
                if same {
                    continue;
                }
            }
            out.push((s, v));
        }
        out.shrink_to_fit();
        self.starts = out;
    }

    fn index(&mut self) {
        let n = self.starts.len();
        if n == 0 {
            return;
        }
        self.base = self.starts[0].0.to_u128();
        let range = self.starts[n - 1].0.to_u128() - self.base;
        let range_bits = 128 - range.leading_zeros();
        let want_bits = (usize::BITS - n.leading_zeros()).min(MAX_BUCKET_BITS);
        self.shift = range_bits.saturating_sub(want_bits);
        let nb = ((range >> self.shift) as usize) + 1;
        // Count the starts of each bucket, then take prefix sums.
        let mut buckets = vec![0u32; nb + 1];
        for (s, _) in &self.starts {
            let b = ((s.to_u128() - self.base) >> self.shift) as usize;
            buckets[b + 1] += 1;
        }
        for b in 0..nb {
            buckets[b + 1] += buckets[b];
        }
        self.buckets = buckets;
    }

    /// The folded value for `addr`, or `None` if no prefix contains it.
    #[inline]
    pub fn lookup(&self, addr: K) -> Option<&V> {
        let a = addr.to_u128();
        if self.intervals.is_empty() || a < self.base {
            return None;
        }
        let nb = self.buckets.len() - 1;
        let b = (((a - self.base) >> self.shift) as usize).min(nb - 1);
        let lo = *self.buckets.get(b)? as usize;
        let hi = *self.buckets.get(b + 1)? as usize;
        let run = self.intervals.get(lo..hi)?;
        let count = lo + run.partition_point(|(s, _)| *s <= addr);
        self.intervals.get(count.checked_sub(1)?)?.1.as_ref()
    }

    /// Number of distinct prefixes.
    pub fn len(&self) -> usize {
        self.prefixes
    }

    /// True when the map holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.prefixes == 0
    }

    /// Heap bytes used (not counting heap data owned by the values).
    pub fn memory_bytes(&self) -> usize {
        self.intervals.capacity() * std::mem::size_of::<(K, Option<V>)>()
            + self.buckets.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p4(a: u32, len: u8) -> Prefix<u32> {
        Prefix::new(a, len).unwrap()
    }

    fn lpm<K: Bits>(entries: Vec<(Prefix<K>, u32)>) -> PrefixMap<K, u32> {
        PrefixMap::build(entries, |_, inner| *inner)
    }

    /// The reference: scan every prefix, fold the containing ones from the
    /// shortest, in input order among equal prefixes.
    fn naive<K: Bits, V: Clone>(
        entries: &[(Prefix<K>, V)],
        addr: K,
        merge: impl Fn(&V, &V) -> V,
    ) -> Option<V> {
        let mut hits: Vec<(usize, &(Prefix<K>, V))> = entries
            .iter()
            .enumerate()
            .filter(|(_, (p, _))| {
                let p = Prefix::new(p.addr, p.len.min(K::BITS)).unwrap();
                p.contains(addr)
            })
            .collect();
        hits.sort_by_key(|(i, (p, _))| (p.len.min(K::BITS), *i));
        let mut acc: Option<V> = None;
        for (_, (_, v)) in hits {
            acc = Some(match acc {
                None => v.clone(),
                Some(a) => merge(&a, v),
            });
        }
        acc
    }

    #[test]
    fn empty_and_default() {
        let m: PrefixMap<u32, u32> = lpm(vec![]);
        assert!(m.is_empty());
        assert_eq!(m.lookup(0), None);
        assert_eq!(PrefixMap::<u128, ()>::default().lookup(5), None);
    }

    #[test]
    fn whole_space_and_hosts() {
        let m = lpm(vec![(p4(0, 0), 1), (p4(u32::MAX, 32), 2), (p4(0, 32), 3)]);
        assert_eq!(m.lookup(0), Some(&3));
        assert_eq!(m.lookup(1), Some(&1));
        assert_eq!(m.lookup(u32::MAX - 1), Some(&1));
        assert_eq!(m.lookup(u32::MAX), Some(&2));
        let m6 = lpm(vec![
            (Prefix::new(0u128, 0).unwrap(), 1),
            (Prefix::new(u128::MAX, 128).unwrap(), 2),
        ]);
        assert_eq!(m6.lookup(u128::MAX), Some(&2));
        assert_eq!(m6.lookup(u128::MAX - 1), Some(&1));
        assert_eq!(m6.lookup(0), Some(&1));
    }

    #[test]
    fn nested_adjacent_and_gaps() {
        let m = lpm(vec![
            (p4(0x0a00_0000, 8), 8),
            (p4(0x0a01_0000, 16), 16),
            (p4(0x0a01_0200, 24), 24),
            (p4(0x0b00_0000, 8), 80),
            (p4(0x0d00_0000, 8), 130),
        ]);
        assert_eq!(m.lookup(0x09ff_ffff), None);
        assert_eq!(m.lookup(0x0a00_0000), Some(&8));
        assert_eq!(m.lookup(0x0a01_01ff), Some(&16));
        assert_eq!(m.lookup(0x0a01_0200), Some(&24));
        assert_eq!(m.lookup(0x0a01_02ff), Some(&24));
        assert_eq!(m.lookup(0x0a01_0300), Some(&16));
        assert_eq!(m.lookup(0x0a02_0000), Some(&8));
        assert_eq!(m.lookup(0x0b00_0000), Some(&80));
        assert_eq!(m.lookup(0x0c00_0000), None);
        assert_eq!(m.lookup(0x0d12_3456), Some(&130));
        assert_eq!(m.lookup(0x0e00_0000), None);
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn merge_order_is_outermost_first_and_duplicates_in_input_order() {
        let s = |x: &str| x.to_string();
        let m = PrefixMap::build(
            vec![
                (p4(0x0a01_0000, 16), s("b")),
                (p4(0x0a00_0000, 8), s("a")),
                (p4(0x0a01_0000, 16), s("c")),
            ],
            |o: &String, i: &String| format!("{o}{i}"),
        );
        assert_eq!(m.lookup(0x0a01_0001).map(String::as_str), Some("abc"));
        assert_eq!(m.lookup(0x0a02_0001).map(String::as_str), Some("a"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn host_bits_and_long_lengths_are_tolerated() {
        let m = lpm(vec![
            (
                Prefix {
                    addr: 0x0a01_0203u32,
                    len: 8,
                },
                1,
            ),
            (
                Prefix {
                    addr: 7u32,
                    len: 99,
                },
                2,
            ),
        ]);
        assert_eq!(m.lookup(0x0aff_ffff), Some(&1));
        assert_eq!(m.lookup(7), Some(&2));
        assert_eq!(m.lookup(8), None);
    }

    #[test]
    fn prefix_helpers() {
        let p = p4(0x0a01_0203, 24);
        assert_eq!(p.addr, 0x0a01_0200);
        assert_eq!(p.last(), 0x0a01_02ff);
        assert!(p.contains(0x0a01_02ff) && !p.contains(0x0a01_0300));
        assert_eq!(Prefix::new(5u128, 0).unwrap().last(), u128::MAX);
        assert!(Prefix::new(0u128, 129).is_none());
    }

    fn prefixes<K: Bits + Arbitrary>(bits: u8) -> impl Strategy<Value = Vec<(Prefix<K>, u8)>> {
        // Seeds plus prefixes derived from them, so that nesting and
        // duplicates happen often.
        prop::collection::vec((any::<K>(), 0..=bits, any::<u8>(), 0..=bits), 0..60).prop_map(
            move |raw| {
                let mut out = Vec::new();
                for (a, len, v, len2) in raw {
                    let p = Prefix::new(a, len).unwrap();
                    out.push((p, v));
                    out.push((Prefix::new(a, len2).unwrap(), v.wrapping_add(1)));
                }
                out
            },
        )
    }

    fn probes<K: Bits>(entries: &[(Prefix<K>, u8)], extra: &[K]) -> Vec<K> {
        let mut out: Vec<K> = extra.to_vec();
        for (p, _) in entries {
            let first = p.addr.to_u128();
            let last = p.last().to_u128();
            out.push(p.addr);
            out.push(p.last());
            out.push(K::from_u128(first.wrapping_sub(1)));
            out.push(K::from_u128(last.wrapping_add(1)));
        }
        out
    }

    #[allow(clippy::ptr_arg)] // the merge signature is fixed by PrefixMap
    fn concat(o: &Vec<u8>, i: &Vec<u8>) -> Vec<u8> {
        let mut v = o.clone();
        v.extend_from_slice(i);
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn v4_matches_naive(entries in prefixes::<u32>(32), extra in prop::collection::vec(any::<u32>(), 0..20)) {
            let e: Vec<(Prefix<u32>, Vec<u8>)> = entries.iter().map(|(p, v)| (*p, vec![*v])).collect();
            let m = PrefixMap::build(e.clone(), concat);
            for a in probes(&entries, &extra) {
                prop_assert_eq!(m.lookup(a).cloned(), naive(&e, a, concat), "addr {:#x}", a);
            }
        }

        #[test]
        fn v6_matches_naive(entries in prefixes::<u128>(128), extra in prop::collection::vec(any::<u128>(), 0..20)) {
            let e: Vec<(Prefix<u128>, Vec<u8>)> = entries.iter().map(|(p, v)| (*p, vec![*v])).collect();
            let m = PrefixMap::build(e.clone(), concat);
            for a in probes(&entries, &extra) {
                prop_assert_eq!(m.lookup(a).cloned(), naive(&e, a, concat), "addr {:#x}", a);
            }
        }

        #[test]
        fn v4_clustered_lpm_matches_naive(
            raw in prop::collection::vec((0u32..4096, 20u8..=32, any::<u8>()), 0..300),
            extra in prop::collection::vec(0u32..0x1000_0000, 0..50),
        ) {
            // Dense prefixes in a small range: exercises the bucket index.
            let e: Vec<(Prefix<u32>, u8)> = raw.iter()
                .map(|(a, l, v)| (Prefix::new(0x0a00_0000 | (a << 12), *l).unwrap(), *v)).collect();
            let m = PrefixMap::build(e.clone(), |_, i| *i);
            let extra: Vec<u32> = extra.iter().map(|x| 0x0a00_0000 ^ x).collect();
            for a in probes(&e, &extra) {
                prop_assert_eq!(m.lookup(a).copied(), naive(&e, a, |_, i| *i));
            }
        }
    }
}
