//! Longest-prefix matching over IPv4 (`u32`) and IPv6 (`u128`) keys.
//!
//! [`PrefixMap`] is built once from a set of prefixes and answers, for an
//! address, the fold of the values of every prefix containing it.
//!
//! # Design
//!
//! - **Flattening.** The nested prefixes become sorted, disjoint intervals:
//!   one sort by `(first address, length)`, then a stack sweep that opens a
//!   prefix at its first address and, when it closes, resumes the value of
//!   the prefix around it (or a gap). Adjacent intervals with equal values
//!   are merged. Each interval is a slot `(start, value)`, the value inline
//!   next to the key the search compares: the answer costs no further
//!   memory access.
//! - **Bucket index.** Key `k` falls in bucket `(k - min_start) >> shift`,
//!   and `buckets[b]` is the first slot of bucket `b`. Subtracting the
//!   smallest start drops the leading bits all keys share, so clustered
//!   tables (all of 2000::/3, or one /48) still spread over the buckets.
//!   There is a bucket for every one to four slots, at most 2^22 buckets.
//! - **Lookup.** One bucket read, then a branch-free count over the slots
//!   of that bucket plus the one before it (which holds the value in force
//!   where the bucket begins). These slots are contiguous, so their cache
//!   lines load in parallel: at a million prefixes a lookup is two
//!   dependent memory accesses, whatever the number of prefixes or of
//!   distinct mask lengths (a hash probe per mask length, as in
//!   lua-resty-ipmatcher or CrowdSec's bouncer, costs one access per
//!   length). A bucket holding more than a few slots (skewed tables) is
//!   binary searched instead.
//! - **Keys.** IPv6 starts are stored as four `u32` words ([`Bits::Stored`])
//!   so that slots are aligned to 4 bytes, not 16: a `u32` value makes a
//!   24-byte slot instead of 32.
//!
//! Memory: about two slots per prefix (first address, and where the outer
//! value resumes) plus at most 4 bytes of index per slot; see
//! [`PrefixMap::memory_bytes`].

use std::fmt::Debug;
use std::hash::Hash;

/// An address as an unsigned integer, most significant bit first.
pub trait Bits: Copy + Ord + Eq + Hash + Debug + Default + Send + Sync + 'static {
    /// Number of bits in the address (32 or 128).
    const BITS: u8;
    /// The key as stored in a [`PrefixMap`]'s slots (for `u128`, four
    /// words: 4-byte alignment keeps the slots small).
    type Stored: Copy + Debug + Send + Sync + 'static;
    /// The value as a `u128` (zero-extended).
    fn to_u128(self) -> u128;
    /// The low `Self::BITS` bits of `v`.
    fn from_u128(v: u128) -> Self;
    /// The stored form of the key.
    fn store(self) -> Self::Stored;
    /// The key back from its stored form.
    fn load(s: Self::Stored) -> Self;
    /// `(self - base) >> shift`, at most `last`; None below `base` (a
    /// [`PrefixMap`]'s bucket, in the key's own width).
    fn bucket(self, base: Self, shift: u32, last: usize) -> Option<usize>;
}

impl Bits for u32 {
    const BITS: u8 = 32;
    type Stored = u32;
    #[inline]
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
    #[inline]
    fn from_u128(v: u128) -> Self {
        v as u32
    }
    #[inline]
    fn store(self) -> u32 {
        self
    }
    #[inline]
    fn load(s: u32) -> Self {
        s
    }
    #[inline]
    fn bucket(self, base: u32, shift: u32, last: usize) -> Option<usize> {
        let off = self.checked_sub(base)?;
        Some((off.checked_shr(shift).unwrap_or(0) as usize).min(last))
    }
}

impl Bits for u128 {
    const BITS: u8 = 128;
    /// Least significant word first: the same bytes as a little-endian
    /// `u128`, so loading it back is two 64-bit loads on x86-64.
    type Stored = [u32; 4];
    #[inline]
    fn to_u128(self) -> u128 {
        self
    }
    #[inline]
    fn from_u128(v: u128) -> Self {
        v
    }
    #[inline]
    fn store(self) -> [u32; 4] {
        [
            self as u32,
            (self >> 32) as u32,
            (self >> 64) as u32,
            (self >> 96) as u32,
        ]
    }
    #[inline]
    fn load(s: [u32; 4]) -> Self {
        u128::from(s[0]) | u128::from(s[1]) << 32 | u128::from(s[2]) << 64 | u128::from(s[3]) << 96
    }
    #[inline]
    fn bucket(self, base: u128, shift: u32, last: usize) -> Option<usize> {
        let off = self.checked_sub(base)?;
        // clamped in u128: a key far above the last start must not wrap
        // when narrowed to usize
        Some(usize::try_from(off.checked_shr(shift).unwrap_or(0)).map_or(last, |b| b.min(last)))
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

/// The mask of the host bits of a `len`-bit prefix in a `bits`-bit key
/// (`len` above `bits` counts as `bits`).
fn host_mask(bits: u8, len: u8) -> u128 {
    let host = u32::from(bits.saturating_sub(len));
    let all = if bits >= 128 {
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
    /// use warden_core::net::prefix::Prefix;
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
        K::from_u128(self.addr.to_u128() | host_mask(K::BITS, self.len))
    }

    /// True when `addr` lies inside the prefix.
    #[inline]
    pub fn contains(&self, addr: K) -> bool {
        self.addr <= addr && addr <= self.last()
    }

    /// The same prefix with host bits cleared and the length capped at the
    /// key's width.
    fn normalized(self) -> Self {
        let len = self.len.min(K::BITS);
        let a = self.addr.to_u128() & !host_mask(K::BITS, len);
        Prefix {
            addr: K::from_u128(a),
            len,
        }
    }
}

/// Value index of a gap (no prefix) while building.
const NONE: u32 = u32::MAX;
/// Distinct prefixes beyond this many are ignored, so that slot numbers
/// (at most two per prefix, plus one) fit the `u32` bucket table. It would
/// take some 50 GB of slots to get there.
const MAX_PREFIXES: usize = (u32::MAX / 2 - 1) as usize;
/// Buckets: a power of two between `slots / SLOTS_PER_BUCKET` and twice
/// that, of which the key range uses from half to all: one to four slots
/// per bucket.
const SLOTS_PER_BUCKET: usize = 2;
/// At most 2^this buckets (16 MiB of index, reached from 8M slots up).
const MAX_BUCKET_BITS: u32 = 22;
/// Buckets with more slots than this (skewed tables) are binary searched
/// instead of counted.
const SCAN: usize = 16;

/// One interval: from `start` up to the next slot's start.
#[derive(Clone, Debug)]
struct Slot<S, V> {
    start: S,
    value: Option<V>,
}

/// An immutable longest-prefix-match map. See the module docs.
#[derive(Clone, Debug)]
pub struct PrefixMap<K: Bits, V> {
    /// Intervals by ascending start; `None` in gaps. The last one runs to
    /// the end of the key space.
    slots: Vec<Slot<K::Stored, V>>,
    /// `buckets[b]` = first slot whose start lies in bucket `b` or above;
    /// one more entry than there are buckets.
    buckets: Vec<u32>,
    /// Smallest start; keys below it match nothing.
    base: K,
    /// Bucket of key `k` is `(k - base) >> shift`.
    shift: u32,
    /// Number of distinct prefixes.
    prefixes: usize,
}

impl<K: Bits, V> Default for PrefixMap<K, V> {
    fn default() -> Self {
        PrefixMap {
            slots: Vec::new(),
            buckets: Vec::new(),
            base: K::default(),
            shift: 0,
            prefixes: 0,
        }
    }
}

/// A prefix open during the sweep.
struct Open<K> {
    last: K,
    value: u32,
}

/// The sweep's output: interval starts with value indices (`NONE` for
/// gaps), and the folded value of each distinct prefix.
struct Sweep<K, V> {
    starts: Vec<(K, u32)>,
    values: Vec<V>,
}

impl<K: Bits, V> Sweep<K, V> {
    /// Starts an interval at `pos`; an interval already starting there is
    /// replaced (it was empty).
    fn emit(&mut self, pos: K, value: u32) {
        match self.starts.last_mut() {
            Some(last) if last.0 == pos => last.1 = value,
            _ => self.starts.push((pos, value)),
        }
    }

    /// Closes every open prefix that ends before `start` (all of them for
    /// `None`); after each, the value of the prefix around it resumes.
    fn close_until(&mut self, stack: &mut Vec<Open<K>>, start: Option<K>) {
        while let Some(top) = stack.last() {
            if start.is_some_and(|s| top.last >= s) {
                break;
            }
            let last = top.last;
            stack.pop();
            if last == K::from_u128(u128::MAX) {
                continue; // the prefix runs to the end of the key space
            }
            let next = stack.last().map_or(NONE, |o| o.value);
            self.emit(K::from_u128(last.to_u128() + 1), next);
        }
    }
}

impl<K: Bits, V: Clone + PartialEq> PrefixMap<K, V> {
    /// Builds a map. The value of an address is the fold, outermost first,
    /// of the values of every prefix containing it: `merge(&outer, &inner)`.
    /// A prefix given twice is merged as `merge(&earlier, &later)`. Host
    /// bits set in an entry are cleared; lengths above the key width are
    /// treated as full length. (Distinct prefixes beyond 2^31 - 2, some
    /// 50 GB of map, would be ignored.)
    ///
    /// Longest-prefix match keeps the innermost value:
    ///
    /// ```
    /// use warden_core::net::prefix::{Prefix, PrefixMap};
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
    /// assert_eq!(m.len(), 2);
    /// ```
    pub fn build<F: Fn(&V, &V) -> V>(entries: Vec<(Prefix<K>, V)>, merge: F) -> Self {
        let mut entries: Vec<(Prefix<K>, V)> = entries
            .into_iter()
            .map(|(p, v)| (p.normalized(), v))
            .collect();
        // Outer (shorter) first at equal starts; the sort is stable, so
        // duplicates keep their input order.
        entries.sort_by_key(|e| e.0);

        let mut sweep = Sweep {
            starts: Vec::with_capacity(entries.len() * 2),
            values: Vec::with_capacity(entries.len()),
        };
        let mut stack: Vec<Open<K>> = Vec::new();
        let mut prev: Option<Prefix<K>> = None;

        for (p, v) in entries {
            if prev == Some(p) {
                // A duplicate: fold it into the prefix on top of the stack,
                // which is its first occurrence (its intervals refer to the
                // value by index, and nothing nested in it was seen yet).
                if let Some(slot) = stack
                    .last()
                    .and_then(|top| sweep.values.get_mut(top.value as usize))
                {
                    *slot = merge(slot, &v);
                }
                continue;
            }
            if sweep.values.len() >= MAX_PREFIXES {
                break;
            }
            let idx = sweep.values.len() as u32; // < MAX_PREFIXES < NONE
            prev = Some(p);
            sweep.close_until(&mut stack, Some(p.addr));
            let outer = stack
                .last()
                .and_then(|top| sweep.values.get(top.value as usize));
            let value = match outer {
                Some(o) => merge(o, &v),
                None => v,
            };
            sweep.values.push(value);
            sweep.emit(p.addr, idx);
            stack.push(Open {
                last: p.last(),
                value: idx,
            });
        }
        sweep.close_until(&mut stack, None);

        // Merge adjacent intervals with equal values (only now: duplicates
        // could change a value until the sweep ended), and materialize.
        let Sweep { starts, values } = sweep;
        let mut slots: Vec<Slot<K::Stored, V>> = Vec::with_capacity(starts.len());
        let mut prev_value: Option<Option<&V>> = None;
        for (s, i) in starts {
            let value = values.get(i as usize);
            if prev_value == Some(value) {
                continue;
            }
            prev_value = Some(value);
            slots.push(Slot {
                start: s.store(),
                value: value.cloned(),
            });
        }
        slots.shrink_to_fit();

        let mut map = PrefixMap {
            slots,
            buckets: Vec::new(),
            base: K::default(),
            shift: 0,
            prefixes: values.len(),
        };
        map.index();
        map
    }

    /// Builds the bucket index over the slot starts.
    fn index(&mut self) {
        let start = |s: &Slot<K::Stored, V>| K::load(s.start).to_u128();
        let (Some(first), Some(last)) = (self.slots.first(), self.slots.last()) else {
            return;
        };
        let (first, last) = (start(first), start(last));
        let n = self.slots.len();
        self.base = K::from_u128(first);
        let range = last - first;
        let range_bits = 128 - range.leading_zeros();
        let want = (n / SLOTS_PER_BUCKET).max(1);
        let want_bits = (usize::BITS - want.leading_zeros()).min(MAX_BUCKET_BITS);
        self.shift = range_bits.saturating_sub(want_bits);
        // At most 2^want_bits buckets, since range < 2^(shift + want_bits).
        let nb = usize::try_from(range >> self.shift).map_or(1, |b| b + 1);
        // Count the starts of each bucket, then take prefix sums.
        let mut buckets = vec![0u32; nb + 1];
        for s in &self.slots {
            let b = usize::try_from((start(s) - first) >> self.shift).unwrap_or(nb - 1);
            if let Some(c) = buckets.get_mut(b + 1) {
                *c += 1;
            }
        }
        for b in 0..nb {
            buckets[b + 1] += buckets[b];
        }
        self.buckets = buckets;
    }

    /// The folded value for `addr`, or `None` if no prefix contains it.
    #[inline]
    pub fn lookup(&self, addr: K) -> Option<&V> {
        let last_bucket = self.buckets.len().checked_sub(2)?;
        let b = addr.bucket(self.base, self.shift, last_bucket)?;
        let lo = *self.buckets.get(b)? as usize;
        let hi = *self.buckets.get(b + 1)? as usize;
        // The slot before the bucket holds the value where it begins.
        let from = lo.saturating_sub(1);
        let run = self.slots.get(from..hi)?;
        let count = if run.len() <= SCAN {
            run.iter().filter(|s| K::load(s.start) <= addr).count()
        } else {
            run.partition_point(|s| K::load(s.start) <= addr)
        };
        run.get(count.checked_sub(1)?)?.value.as_ref()
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
        self.slots.capacity() * std::mem::size_of::<Slot<K::Stored, V>>()
            + self.buckets.capacity() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p4(a: u32, len: u8) -> Prefix<u32> {
        Prefix::new(a, len).unwrap()
    }

    fn p6(a: u128, len: u8) -> Prefix<u128> {
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
        let mut hits: Vec<(usize, u8, &V)> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, (p, v))| {
                let p = p.normalized();
                p.contains(addr).then_some((i, p.len, v))
            })
            .collect();
        hits.sort_by_key(|&(i, len, _)| (len, i));
        hits.into_iter().fold(None, |acc, (_, _, v)| {
            Some(match acc {
                None => v.clone(),
                Some(a) => merge(&a, v),
            })
        })
    }

    #[allow(clippy::ptr_arg)] // the merge signature is fixed by PrefixMap
    fn concat(o: &Vec<u8>, i: &Vec<u8>) -> Vec<u8> {
        let mut v = o.clone();
        v.extend_from_slice(i);
        v
    }

    #[test]
    fn empty_and_default() {
        let m: PrefixMap<u32, u32> = lpm(vec![]);
        assert!(m.is_empty());
        assert_eq!(m.len(), 0);
        assert_eq!(m.lookup(0), None);
        assert_eq!(m.lookup(u32::MAX), None);
        assert_eq!(m.memory_bytes(), 0);
        let d = PrefixMap::<u128, ()>::default();
        assert!(d.is_empty());
        assert_eq!(d.lookup(5), None);
        assert_eq!(d.lookup(u128::MAX), None);
    }

    #[test]
    fn whole_space_and_hosts() {
        let m = lpm(vec![(p4(0, 0), 1), (p4(u32::MAX, 32), 2), (p4(0, 32), 3)]);
        assert_eq!(m.lookup(0), Some(&3));
        assert_eq!(m.lookup(1), Some(&1));
        assert_eq!(m.lookup(0x8000_0000), Some(&1));
        assert_eq!(m.lookup(u32::MAX - 1), Some(&1));
        assert_eq!(m.lookup(u32::MAX), Some(&2));
        assert_eq!(m.len(), 3);
        let m6 = lpm(vec![(p6(0, 0), 1), (p6(u128::MAX, 128), 2)]);
        assert_eq!(m6.lookup(u128::MAX), Some(&2));
        assert_eq!(m6.lookup(u128::MAX - 1), Some(&1));
        assert_eq!(m6.lookup(0), Some(&1));
        // /0 alone covers everything.
        let all = lpm(vec![(p4(0x1234_5678, 0), 7)]);
        assert_eq!(all.lookup(0), Some(&7));
        assert_eq!(all.lookup(u32::MAX), Some(&7));
    }

    #[test]
    fn single_host_routes() {
        let m = lpm(vec![(p4(0x0a00_0001, 32), 1), (p4(u32::MAX, 32), 2)]);
        assert_eq!(m.lookup(0x0a00_0000), None);
        assert_eq!(m.lookup(0x0a00_0001), Some(&1));
        assert_eq!(m.lookup(0x0a00_0002), None);
        assert_eq!(m.lookup(u32::MAX - 1), None);
        assert_eq!(m.lookup(u32::MAX), Some(&2));
        let m6 = lpm(vec![(p6(0, 128), 1), (p6(u128::MAX, 128), 2)]);
        assert_eq!(m6.lookup(0), Some(&1));
        assert_eq!(m6.lookup(1), None);
        assert_eq!(m6.lookup(u128::MAX - 1), None);
        assert_eq!(m6.lookup(u128::MAX), Some(&2));
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
        assert_eq!(m.lookup(0x0aff_ffff), Some(&8));
        assert_eq!(m.lookup(0x0b00_0000), Some(&80));
        assert_eq!(m.lookup(0x0c00_0000), None);
        assert_eq!(m.lookup(0x0d12_3456), Some(&130));
        assert_eq!(m.lookup(0x0e00_0000), None);
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn adjacent_equal_values_share_a_slot() {
        // 10.0/16 and 10.1/16 with the same value: one interval.
        let m = lpm(vec![(p4(0x0a00_0000, 16), 1), (p4(0x0a01_0000, 16), 1)]);
        assert_eq!(m.slots.len(), 2);
        assert_eq!(m.lookup(0x0a00_ffff), Some(&1));
        assert_eq!(m.lookup(0x0a01_0000), Some(&1));
        assert_eq!(m.lookup(0x0a02_0000), None);
        assert_eq!(m.len(), 2);
        // Different values stay apart.
        let m = lpm(vec![(p4(0x0a00_0000, 16), 1), (p4(0x0a01_0000, 16), 2)]);
        assert_eq!(m.lookup(0x0a00_ffff), Some(&1));
        assert_eq!(m.lookup(0x0a01_0000), Some(&2));
    }

    #[test]
    fn prefix_ending_where_its_parent_ends() {
        // 10.128/9 is the last half of 10/8: both close at 10.255.255.255.
        let m = lpm(vec![(p4(0x0a00_0000, 8), 1), (p4(0x0a80_0000, 9), 2)]);
        assert_eq!(m.lookup(0x0a7f_ffff), Some(&1));
        assert_eq!(m.lookup(0x0aff_ffff), Some(&2));
        assert_eq!(m.lookup(0x0b00_0000), None);
    }

    #[test]
    fn merge_order_is_outermost_first_and_duplicates_in_input_order() {
        let s = |x: &str| x.to_string();
        let m = PrefixMap::build(
            vec![
                (p4(0x0a01_0000, 16), s("b")),
                (p4(0x0a00_0000, 8), s("a")),
                (p4(0x0a01_0000, 16), s("c")),
                (p4(0x0a01_0200, 24), s("d")),
            ],
            |o: &String, i: &String| format!("{o}{i}"),
        );
        assert_eq!(m.lookup(0x0a01_0001).map(String::as_str), Some("abc"));
        assert_eq!(m.lookup(0x0a01_0201).map(String::as_str), Some("abcd"));
        assert_eq!(m.lookup(0x0a02_0001).map(String::as_str), Some("a"));
        assert_eq!(m.len(), 3);

        // The same with byte vectors over IPv6, given innermost first.
        let m = PrefixMap::build(
            vec![
                (p6(0x2001_0db8 << 96, 64), vec![3]),
                (p6(0x2001_0db8 << 96, 32), vec![2]),
                (p6(0, 0), vec![1]),
                (p6(0x2001_0db8 << 96, 32), vec![4]),
            ],
            concat,
        );
        assert_eq!(m.lookup(0x2001_0db8 << 96), Some(&vec![1, 2, 4, 3]));
        assert_eq!(
            m.lookup((0x2001_0db8 << 96) | 1 << 64),
            Some(&vec![1, 2, 4])
        );
        assert_eq!(m.lookup(1), Some(&vec![1]));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn host_bits_and_long_lengths_are_tolerated() {
        let raw = |addr, len| Prefix { addr, len };
        let m = lpm(vec![(raw(0x0a01_0203u32, 8), 1), (raw(7u32, 99), 2)]);
        assert_eq!(m.lookup(0x09ff_ffff), None);
        assert_eq!(m.lookup(0x0a00_0000), Some(&1));
        assert_eq!(m.lookup(0x0aff_ffff), Some(&1));
        assert_eq!(m.lookup(7), Some(&2));
        assert_eq!(m.lookup(8), None);
        let raw6 = |addr: u128, len| Prefix { addr, len };
        let m6 = lpm(vec![(raw6(u128::MAX, 200), 1), (raw6(u128::MAX, 1), 2)]);
        assert_eq!(m6.lookup(u128::MAX), Some(&1));
        assert_eq!(m6.lookup(1 << 127), Some(&2));
        assert_eq!(m6.lookup(0), None);
        assert_eq!(raw(5u32, 40).last(), 5);
        assert!(raw(5u32, 40).contains(5));
    }

    #[test]
    fn prefix_helpers() {
        let p = p4(0x0a01_0203, 24);
        assert_eq!(p.addr, 0x0a01_0200);
        assert_eq!(p.last(), 0x0a01_02ff);
        assert!(p.contains(0x0a01_02ff) && !p.contains(0x0a01_0300));
        assert_eq!(p4(7, 0).last(), u32::MAX);
        assert_eq!(p4(7, 32).last(), 7);
        assert_eq!(Prefix::new(5u128, 0).unwrap().last(), u128::MAX);
        assert_eq!(p6(u128::MAX, 128).last(), u128::MAX);
        assert!(Prefix::new(0u128, 129).is_none());
        assert!(Prefix::new(0u32, 33).is_none());
        for x in [0u128, 1, 1 << 64, u128::MAX] {
            assert_eq!(u128::load(x.store()), x);
        }
    }

    #[test]
    fn v6_clustered_table_and_far_addresses() {
        // All starts within 2^41 of each other: a key far above must clamp
        // to the last bucket, not wrap around to the first one.
        let m = lpm(vec![(p6(0, 90), 1), (p6(1 << 40, 128), 2)]);
        assert_eq!(m.lookup(0), Some(&1));
        assert_eq!(m.lookup((1 << 38) - 1), Some(&1));
        assert_eq!(m.lookup(1 << 38), None);
        assert_eq!(m.lookup(1 << 40), Some(&2));
        assert_eq!(m.lookup((1 << 40) + 1), None);
        assert_eq!(m.lookup(1 << 102), None);
        assert_eq!(m.lookup(1 << 64), None);
        assert_eq!(m.lookup(u128::MAX), None);

        let db8 = 0x2001_0db8u128 << 96;
        let m = lpm(vec![(p6(db8, 120), 1), (p6(db8 | 0x1_0000, 120), 2)]);
        assert_eq!(m.lookup(db8 | 0xff), Some(&1));
        assert_eq!(m.lookup(db8 | 0x1_00ff), Some(&2));
        assert_eq!(m.lookup(0x2001_0db9u128 << 96), None);
        assert_eq!(m.lookup(db8 - 1), None);
    }

    #[test]
    fn many_prefixes_in_one_bucket() {
        // A skewed table: 1000 host routes in one /22 and one far prefix.
        // The /22's bucket exceeds SCAN and is binary searched.
        let mut e: Vec<(Prefix<u32>, u32)> =
            (0..1000).map(|i| (p4(0x0a00_0000 + i, 32), i)).collect();
        e.push((p4(0xc000_0000, 8), 5000));
        let m = lpm(e);
        for i in 0..1000 {
            assert_eq!(m.lookup(0x0a00_0000 + i), Some(&i));
        }
        assert_eq!(m.lookup(0x0a00_0000 + 1000), None);
        assert_eq!(m.lookup(0x09ff_ffff), None);
        assert_eq!(m.lookup(0xc012_3456), Some(&5000));
        assert_eq!(m.lookup(0xd000_0000), None);
    }

    /// Random prefixes, each with a few prefixes derived from it (nested
    /// inside, or the same), so that nesting and duplicates are common.
    /// With `window`, every address is `anchor ^ (x & window)`: a
    /// clustered table.
    fn prefixes<K: Bits>(window: Option<u128>) -> impl Strategy<Value = Vec<(Prefix<K>, u8)>> {
        let bits = K::BITS;
        let family = (
            any::<u128>(),
            0..=bits,
            any::<u8>(),
            prop::collection::vec((any::<u128>(), 0..=bits, any::<u8>()), 0..4),
        );
        (any::<u128>(), prop::collection::vec(family, 0..40)).prop_map(move |(anchor, raw)| {
            let place = |x: u128| K::from_u128(window.map_or(x, |w| anchor ^ (x & w)));
            let mut out = Vec::new();
            for (a, len, v, kids) in raw {
                let root = Prefix::new(place(a), len).unwrap();
                out.push((root, v));
                for (noise, extra, kv) in kids {
                    // Inside the root: its network bits, random host bits,
                    // at least as long.
                    let host = host_mask(bits, len);
                    let addr = (root.addr.to_u128() & !host) | (noise & host);
                    let klen = len.saturating_add(extra % (bits - len + 1));
                    out.push((Prefix::new(K::from_u128(addr), klen).unwrap(), kv));
                }
            }
            out
        })
    }

    /// Probe addresses: every prefix's first and last address and their
    /// neighbours, the ends of the key space, and `extra`.
    fn probes<K: Bits>(entries: &[(Prefix<K>, u8)], extra: &[u128]) -> Vec<K> {
        let mut out: Vec<K> = extra.iter().map(|&x| K::from_u128(x)).collect();
        out.push(K::from_u128(0));
        out.push(K::from_u128(u128::MAX));
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

    fn check_concat<K: Bits>(
        entries: &[(Prefix<K>, u8)],
        extra: &[u128],
    ) -> Result<(), TestCaseError> {
        let e: Vec<(Prefix<K>, Vec<u8>)> = entries.iter().map(|(p, v)| (*p, vec![*v])).collect();
        let m = PrefixMap::build(e.clone(), concat);
        let distinct: std::collections::HashSet<Prefix<K>> = entries.iter().map(|e| e.0).collect();
        prop_assert_eq!(m.len(), distinct.len());
        for a in probes(entries, extra) {
            prop_assert_eq!(m.lookup(a).cloned(), naive(&e, a, concat), "addr {:?}", a);
        }
        Ok(())
    }

    fn check_lpm<K: Bits>(
        entries: &[(Prefix<K>, u8)],
        extra: &[u128],
    ) -> Result<(), TestCaseError> {
        let m = PrefixMap::build(entries.to_vec(), |_, i| *i);
        for a in probes(entries, extra) {
            prop_assert_eq!(
                m.lookup(a).copied(),
                naive(entries, a, |_, i| *i),
                "addr {:?}",
                a
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn v4_matches_naive(
            entries in prefixes::<u32>(None),
            extra in prop::collection::vec(any::<u128>(), 0..20),
        ) {
            check_concat(&entries, &extra)?;
        }

        #[test]
        fn v6_matches_naive(
            entries in prefixes::<u128>(None),
            extra in prop::collection::vec(any::<u128>(), 0..20),
        ) {
            check_concat(&entries, &extra)?;
        }

        #[test]
        fn v4_clustered_matches_naive(
            entries in prefixes::<u32>(Some(0xffff)),
            extra in prop::collection::vec(any::<u128>(), 0..20),
        ) {
            check_lpm(&entries, &extra)?;
        }

        #[test]
        fn v6_clustered_matches_naive(
            window_bits in 1u32..100,
            entries in prefixes::<u128>(None),
            extra in prop::collection::vec(any::<u128>(), 0..20),
        ) {
            // Re-cluster the generated table into a window of
            // `window_bits` bits, keeping the lengths.
            let w = (1u128 << window_bits) - 1;
            let anchor = entries.first().map_or(0, |e| e.0.addr);
            let e: Vec<(Prefix<u128>, u8)> = entries
                .iter()
                .map(|(p, v)| {
                    let len = p.len.max(128 - window_bits as u8);
                    (Prefix::new(anchor ^ (p.addr & w), len).unwrap(), *v)
                })
                .collect();
            let mut extra = extra;
            extra.extend([anchor ^ w, anchor.wrapping_add(1 << 100), anchor.wrapping_sub(1 << 70)]);
            check_lpm(&e, &extra)?;
        }
    }
}
