//! Blocks made at run time (by `block()`, the admin API or the detector),
//! and their records in the shared dict.
//!
//! The shared dict is the source of truth: one key per blocked target plus
//! a journal of changes ([`journal`]: the protocol and the writes). Each worker
//! keeps a replica here, built from the dict and kept current by replaying
//! the journal, so that a request's lookup is a hash probe for single
//! addresses and one longest-prefix search for ranges, with no lock.
//!
//! Record formats (the dict's keys and values; stable across versions):
//! - block key `b|<target>`, value `<expires_ms>|<source>|<reason>`, or
//!   `<expires_ms>|<source>:challenge|<reason>` for a challenge (the
//!   client is let through with a solved challenge's cookie,
//!   [`crate::challenge`]; versions before challenges refuse the record
//!   as malformed);
//! - journal entry `+|<target>|<expires_ms>|<source>|<reason>` or
//!   `-|<target>`.
//!
//! `expires_ms` is the expiry time in milliseconds since the epoch, `0`
//! for a permanent block. The fleet's wire form ([`Change::wire`]) carries
//! the same fields.

pub mod journal;

use std::fmt;

use ahash::{AHashMap, AHashSet};

use crate::net::addr::{Addr, Net};
use crate::net::prefix::{Bits, Prefix, PrefixMap};

/// Who made a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The configured denylist.
    Denylist,
    /// `block()` or the admin API.
    Manual,
    /// The behavioural detector.
    Auto,
}

impl Source {
    /// The name used in records and in the Lua API.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Denylist => "denylist",
            Source::Manual => "manual",
            Source::Auto => "auto",
        }
    }

    /// Parses a source name.
    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "denylist" => Some(Source::Denylist),
            "manual" => Some(Source::Manual),
            "auto" => Some(Source::Auto),
            _ => None,
        }
    }
}

/// What a block record does to its client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Action {
    /// Refuse it (`block_status`).
    #[default]
    Block,
    /// Challenge it: a page with a proof of work, or 429 for what cannot
    /// run the page; a valid cookie lets it through.
    Challenge,
}

impl Action {
    /// The name in records, the admin API and the Lua API.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Challenge => "challenge",
        }
    }

    /// Parses an action name.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "block" => Some(Action::Block),
            "challenge" => Some(Action::Challenge),
            _ => None,
        }
    }
}

/// One block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The blocked address or range.
    pub net: Net,
    /// Expiry in ms since the epoch; 0 = permanent.
    pub expires_ms: u64,
    /// Who made it.
    pub source: Source,
    /// Free text.
    pub reason: String,
    /// What it does.
    pub action: Action,
}

/// A record that could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError(String);

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed block record '{}'", self.0)
    }
}

impl std::error::Error for RecordError {}

fn bad(s: &str) -> RecordError {
    RecordError(s.chars().take(100).collect())
}

/// One change in the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A block added or replaced.
    Add(Block),
    /// A target unblocked.
    Remove(Net),
}

impl Block {
    /// True when the block has expired at `now_ms`.
    #[inline]
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms != 0 && self.expires_ms <= now_ms
    }

    /// Seconds the dict should keep the block's record at `now_ms`: 0
    /// (forever) for a permanent block, at least 1 ms otherwise.
    pub fn ttl(&self, now_ms: u64) -> f64 {
        if self.expires_ms == 0 {
            0.0
        } else {
            self.expires_ms.saturating_sub(now_ms).max(1) as f64 / 1000.0
        }
    }

    /// The dict key of a target.
    pub fn key(net: &Net) -> String {
        format!("b|{net}")
    }

    /// The dict value of this block.
    pub fn value(&self) -> String {
        let action = match self.action {
            Action::Block => "",
            Action::Challenge => ":challenge",
        };
        format!(
            "{}|{}{action}|{}",
            self.expires_ms,
            self.source.as_str(),
            self.reason
        )
    }

    /// Decodes a block from its dict key and value.
    pub fn decode(key: &str, value: &str) -> Result<Block, RecordError> {
        let target = key.strip_prefix("b|").ok_or_else(|| bad(key))?;
        let net = Net::parse(target).map_err(|_| bad(key))?;
        let mut it = value.splitn(3, '|');
        let expires_ms = it
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(value))?;
        let field = it.next().ok_or_else(|| bad(value))?;
        let (source, action) = match field.split_once(':') {
            None => (Source::parse(field), Some(Action::Block)),
            Some((s, "challenge")) => (Source::parse(s), Some(Action::Challenge)),
            Some(_) => (None, None),
        };
        let (Some(source), Some(action)) = (source, action) else {
            return Err(bad(value));
        };
        let reason = it.next().ok_or_else(|| bad(value))?.to_string();
        Ok(Block {
            net,
            expires_ms,
            source,
            reason,
            action,
        })
    }
}

impl Change {
    /// Encodes the change as a journal entry.
    pub fn encode(&self) -> String {
        match self {
            Change::Add(b) => format!("+|{}|{}", b.net, b.value()),
            Change::Remove(n) => format!("-|{n}"),
        }
    }

    /// The target changed.
    pub fn net(&self) -> &Net {
        match self {
            Change::Add(b) => &b.net,
            Change::Remove(n) => n,
        }
    }

    /// The fleet's wire form: operation (`+` or `-`), target, value (the
    /// dict's, empty for a removal) and expiry in ms (0: permanent, or a
    /// removal), as the Redis scripts take them.
    pub fn wire(&self) -> (&'static str, String, String, u64) {
        match self {
            Change::Add(b) => ("+", b.net.to_string(), b.value(), b.expires_ms),
            Change::Remove(n) => ("-", n.to_string(), String::new(), 0),
        }
    }

    /// Decodes a journal entry.
    pub fn decode(s: &str) -> Result<Change, RecordError> {
        if let Some(rest) = s.strip_prefix("+|") {
            let (target, value) = rest.split_once('|').ok_or_else(|| bad(s))?;
            return Block::decode(&format!("b|{target}"), value).map(Change::Add);
        }
        if let Some(target) = s.strip_prefix("-|") {
            return Net::parse(target).map(Change::Remove).map_err(|_| bad(s));
        }
        Err(bad(s))
    }
}

/// A range index for one family: ranges nest, so each interval keeps the
/// chain of covering ranges, innermost first, and a lookup takes the first
/// one that has not expired.
struct RangeIndex<K: Bits> {
    map: PrefixMap<K, Box<[u32]>>,
    nets: Vec<Net>,
}

impl<K: Bits> Default for RangeIndex<K> {
    fn default() -> Self {
        RangeIndex {
            map: PrefixMap::default(),
            nets: Vec::new(),
        }
    }
}

#[allow(clippy::borrowed_box)] // the merge signature is fixed by PrefixMap
fn chain(outer: &Box<[u32]>, inner: &Box<[u32]>) -> Box<[u32]> {
    inner.iter().chain(outer.iter()).copied().collect()
}

/// The worker's replica of the blocks.
#[derive(Default)]
pub struct Blocks {
    hosts4: AHashMap<u32, Block>,
    hosts6: AHashMap<u128, Block>,
    ranges: AHashMap<Net, Block>,
    index4: RangeIndex<u32>,
    index6: RangeIndex<u128>,
    dirty: bool,
}

impl Blocks {
    /// Adds or replaces a block. Call [`Blocks::commit`] after a batch.
    pub fn insert(&mut self, b: Block) {
        match b.net {
            Net::V4(p) if p.len == 32 => {
                self.hosts4.insert(p.addr, b);
            }
            Net::V6(p) if p.len == 128 => {
                self.hosts6.insert(p.addr, b);
            }
            net => {
                self.ranges.insert(net, b);
                self.dirty = true;
            }
        }
    }

    /// Removes the block of exactly `net`, if any.
    pub fn remove(&mut self, net: &Net) -> Option<Block> {
        match *net {
            Net::V4(p) if p.len == 32 => self.hosts4.remove(&p.addr),
            Net::V6(p) if p.len == 128 => self.hosts6.remove(&p.addr),
            _ => {
                let r = self.ranges.remove(net);
                self.dirty |= r.is_some();
                r
            }
        }
    }

    /// Applies a journal change.
    pub fn apply(&mut self, c: Change) {
        match c {
            Change::Add(b) => self.insert(b),
            Change::Remove(n) => {
                self.remove(&n);
            }
        }
    }

    /// Removes every block.
    pub fn clear(&mut self) {
        *self = Blocks::default();
    }

    /// Rebuilds the range index if ranges changed since the last commit.
    pub fn commit(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let mut nets4 = Vec::new();
        let mut nets6 = Vec::new();
        let mut e4: Vec<(Prefix<u32>, Box<[u32]>)> = Vec::new();
        let mut e6: Vec<(Prefix<u128>, Box<[u32]>)> = Vec::new();
        for net in self.ranges.keys() {
            match *net {
                Net::V4(p) => {
                    e4.push((p, Box::new([nets4.len() as u32])));
                    nets4.push(*net);
                }
                Net::V6(p) => {
                    e6.push((p, Box::new([nets6.len() as u32])));
                    nets6.push(*net);
                }
            }
        }
        self.index4 = RangeIndex {
            map: PrefixMap::build(e4, chain),
            nets: nets4,
        };
        self.index6 = RangeIndex {
            map: PrefixMap::build(e6, chain),
            nets: nets6,
        };
    }

    /// The block that applies to `a` at time `now()` (ms since the epoch,
    /// read only when a candidate is found): its own address first, then
    /// the most specific unexpired range.
    #[inline]
    pub fn lookup(&self, a: Addr, now: impl Fn() -> u64) -> Option<&Block> {
        let (host, idx) = match a {
            Addr::V4(x) => (
                self.hosts4.get(&x),
                self.index4.map.lookup(x).map(|c| (c, &self.index4.nets)),
            ),
            Addr::V6(x) => (
                self.hosts6.get(&x),
                self.index6.map.lookup(x).map(|c| (c, &self.index6.nets)),
            ),
        };
        if host.is_none() && idx.is_none() {
            return None;
        }
        let now_ms = now();
        if let Some(b) = host {
            if !b.expired(now_ms) {
                return Some(b);
            }
        }
        let (chain, nets) = idx?;
        self.in_ranges(chain, nets, now_ms)
    }

    /// The most specific unexpired block of the ranges `chain` (indices
    /// into `nets`), out of line: most clients are in no blocked range.
    #[inline(never)]
    fn in_ranges(&self, chain: &[u32], nets: &[Net], now_ms: u64) -> Option<&Block> {
        chain
            .iter()
            .filter_map(|i| nets.get(*i as usize))
            .filter_map(|n| self.ranges.get(n))
            .find(|b| !b.expired(now_ms))
    }

    /// The block of exactly `net`, if any (expired or not).
    pub fn get(&self, net: &Net) -> Option<&Block> {
        match *net {
            Net::V4(p) if p.len == 32 => self.hosts4.get(&p.addr),
            Net::V6(p) if p.len == 128 => self.hosts6.get(&p.addr),
            _ => self.ranges.get(net),
        }
    }

    /// Drops expired blocks; returns how many.
    pub fn sweep(&mut self, now_ms: u64) -> usize {
        let before = self.len();
        self.hosts4.retain(|_, b| !b.expired(now_ms));
        self.hosts6.retain(|_, b| !b.expired(now_ms));
        let ranges = self.ranges.len();
        self.ranges.retain(|_, b| !b.expired(now_ms));
        if self.ranges.len() != ranges {
            self.dirty = true;
            self.commit();
        }
        before - self.len()
    }

    /// Number of blocks (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.hosts4.len() + self.hosts6.len() + self.ranges.len()
    }

    /// True when there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every block.
    pub fn iter(&self) -> impl Iterator<Item = &Block> {
        self.hosts4
            .values()
            .chain(self.hosts6.values())
            .chain(self.ranges.values())
    }
}

/// A comparison of the replica with another copy of the blocks (the
/// fleet's Redis), read page by page so that neither side is ever held
/// whole in Lua: [`Diff::page`] for each page of the other copy, then
/// [`Diff::unseen`]. Only the targets found on both sides are remembered.
#[derive(Default)]
pub struct Diff {
    seen: AHashSet<Net>,
}

/// One page's outcome (see [`Diff::page`]).
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    /// Unexpired entries that the replica lacks or has with another value.
    pub differ: Vec<Block>,
    /// Unexpired entries in the page.
    pub live: usize,
    /// Entries that are not records (named, for the log).
    pub malformed: Vec<String>,
}

impl Diff {
    /// Compares a page of `(target, value)` records (the dict's formats
    /// without the `b|`) with `blocks` at `now_ms`. Expired entries count
    /// as absent.
    pub fn page<'a>(
        &mut self,
        blocks: &Blocks,
        records: impl IntoIterator<Item = (&'a str, &'a str)>,
        now_ms: u64,
    ) -> Page {
        let mut out = Page::default();
        for (target, value) in records {
            let Ok(b) = Block::decode(&format!("b|{target}"), value) else {
                out.malformed.push(format!("{target} = {value}"));
                continue;
            };
            if b.expired(now_ms) {
                continue;
            }
            out.live += 1;
            match blocks.get(&b.net) {
                Some(mine) if !mine.expired(now_ms) => {
                    self.seen.insert(b.net);
                    if *mine != b {
                        out.differ.push(b);
                    }
                }
                _ => out.differ.push(b),
            }
        }
        out
    }

    /// The replica's blocks in force at `now_ms` that no page had.
    pub fn unseen<'b>(&self, blocks: &'b Blocks, now_ms: u64) -> Vec<&'b Block> {
        blocks
            .iter()
            .filter(|b| !b.expired(now_ms) && !self.seen.contains(&b.net))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blk(t: &str, exp: u64) -> Block {
        Block {
            net: Net::parse(t).unwrap(),
            expires_ms: exp,
            source: Source::Manual,
            reason: "r|with|bars".into(),
            action: crate::blocks::Action::Block,
        }
    }

    fn a(s: &str) -> Addr {
        Addr::parse(s).unwrap()
    }

    #[test]
    fn records_round_trip() {
        let b = blk("10.0.0.0/8", 123);
        assert_eq!(
            Block::decode(&Block::key(&b.net), &b.value()),
            Ok(b.clone())
        );
        let add = Change::Add(b.clone());
        assert_eq!(Change::decode(&add.encode()), Ok(add));
        let rm = Change::Remove(Net::parse("2001:db8::/32").unwrap());
        assert_eq!(rm.encode(), "-|2001:db8::/32");
        assert_eq!(Change::decode(&rm.encode()), Ok(rm));
        for junk in [
            "",
            "x",
            "+|",
            "+|1.2.3.4",
            "+|1.2.3.4|x|manual|",
            "+|1.2.3.4|1|who|",
            "-|nope",
        ] {
            assert!(Change::decode(junk).is_err(), "{junk:?}");
        }
        assert!(Block::decode("b|1.2.3.4", "5|manual").is_err());
    }

    #[test]
    fn hosts_ranges_and_expiry() {
        let mut bs = Blocks::default();
        bs.insert(blk("192.0.2.1", 0));
        bs.insert(blk("10.0.0.0/8", 0));
        bs.insert(blk("10.1.0.0/16", 1_000));
        bs.insert(blk("2001:db8::/64", 0));
        bs.commit();
        assert!(bs.lookup(a("192.0.2.1"), || 5).is_some());
        assert!(bs.lookup(a("::ffff:192.0.2.1"), || 5).is_some());
        assert!(bs.lookup(a("192.0.2.2"), || 5).is_none());
        assert_eq!(
            bs.lookup(a("10.1.2.3"), || 500).unwrap().net.to_string(),
            "10.1.0.0/16"
        );
        // The inner range expired: the outer one still applies.
        assert_eq!(
            bs.lookup(a("10.1.2.3"), || 1_000).unwrap().net.to_string(),
            "10.0.0.0/8"
        );
        assert!(bs.lookup(a("2001:db8::ffff"), || 0).is_some());
        assert!(bs.lookup(a("2001:db8:0:1::"), || 0).is_none());
        assert_eq!(bs.sweep(2_000), 1);
        assert_eq!(bs.len(), 3);
        assert!(bs.remove(&Net::parse("10.0.0.0/8").unwrap()).is_some());
        bs.commit();
        assert!(bs.lookup(a("10.1.2.3"), || 0).is_none());
        bs.apply(Change::Remove(Net::parse("192.0.2.1").unwrap()));
        assert!(bs.lookup(a("192.0.2.1"), || 0).is_none());
    }
    // A naive comparison: the other copy as a map, both filtered for expiry.
    fn naive(mine: &[Block], theirs: &[(String, String)], now: u64) -> (Vec<String>, Vec<String>) {
        use std::collections::BTreeMap;
        let live = |b: &Block| !b.expired(now);
        let mine: BTreeMap<String, &Block> = mine
            .iter()
            .filter(|b| live(b))
            .map(|b| (b.net.to_string(), b))
            .collect();
        let mut other = BTreeMap::new();
        for (t, v) in theirs {
            if let Ok(b) = Block::decode(&format!("b|{t}"), v) {
                if live(&b) {
                    other.insert(b.net.to_string(), b);
                }
            }
        }
        let mut differ: Vec<String> = other
            .iter()
            .filter(|(t, b)| mine.get(*t).is_none_or(|m| *m != *b))
            .map(|(t, b)| format!("{t} {}", b.value()))
            .collect();
        let mut unseen: Vec<String> = mine
            .keys()
            .filter(|t| !other.contains_key(*t))
            .cloned()
            .collect();
        differ.sort();
        unseen.sort();
        (differ, unseen)
    }

    proptest::proptest! {
        #[test]
        fn diff_matches_naive(
            mine in proptest::collection::vec((0u8..40, 0u64..4, proptest::bool::ANY), 0..60),
            theirs in proptest::collection::vec((0u8..40, 0u64..4, proptest::bool::ANY), 0..60),
            page in 1usize..7,
        ) {
            let now = 2;
            let target = |i: u8| if i % 3 == 0 {
                format!("2001:db8:{i}::/48")
            } else {
                format!("192.0.2.{i}")
            };
            let block = |(i, exp, auto): (u8, u64, bool)| Block {
                net: Net::parse(&target(i)).unwrap(),
                expires_ms: exp,
                source: if auto { Source::Auto } else { Source::Manual },
                reason: "r".into(),
                action: crate::blocks::Action::Block,
            };
            let mine: Vec<Block> = mine.into_iter().map(block).collect();
            let mut bs = Blocks::default();
            for b in &mine {
                bs.insert(b.clone());
            }
            bs.commit();
            let mine: Vec<Block> = bs.iter().cloned().collect();
            let mut theirs: Vec<(String, String)> = theirs
                .into_iter()
                .map(block)
                .map(|b| (b.net.to_string(), b.value()))
                .collect();
            theirs.push(("nope".into(), "0|manual|x".into()));
            theirs.push(("192.0.2.99".into(), "x|manual|x".into()));
            // The other copy has one record per target, as a Redis hash.
            let mut uniq = std::collections::BTreeMap::new();
            for (t, v) in theirs {
                uniq.insert(t, v);
            }
            let theirs: Vec<(String, String)> = uniq.into_iter().collect();
            let mut d = Diff::default();
            let mut differ = Vec::new();
            let mut malformed = 0;
            for chunk in theirs.chunks(page) {
                let p = d.page(&bs, chunk.iter().map(|(t, v)| (t.as_str(), v.as_str())), now);
                malformed += p.malformed.len();
                differ.extend(p.differ.iter().map(|b| format!("{} {}", b.net, b.value())));
            }
            differ.sort();
            let mut unseen: Vec<String> =
                d.unseen(&bs, now).iter().map(|b| b.net.to_string()).collect();
            unseen.sort();
            proptest::prop_assert_eq!((differ, unseen), naive(&mine, &theirs, now));
            proptest::prop_assert_eq!(malformed, 2);
        }
    }
}
