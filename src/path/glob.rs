//! Path globs: `*` matches within one path segment, `**` across segments,
//! `?` one byte other than `/`. Everything else is literal.
//!
//! `/admin` matches only `/admin`; `/admin/*` matches `/admin/users` but
//! not `/admin/users/1`; `/api/**` matches everything below `/api/`;
//! `**/.env` matches `/.env` and `/app/.env` (`**/` may match nothing).
//!
//! Used by the detector (probe paths, harmless 404s, ignored paths) and by
//! protected routes.

use std::collections::HashSet;
use std::fmt;

/// A compiled glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    bytes: Vec<u8>,
    caseless: bool,
    fast: Fast,
}

/// Shapes common enough to match without the general matcher (`L` is a
/// literal without wildcards).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fast {
    /// `L`
    Exact(Vec<u8>),
    /// `**/L`, `L` without `/`: the last segment is `L`... or any path
    /// ending in `/L` when `L` has slashes.
    Suffix(Vec<u8>),
    /// `**/L/**`: contains `/L/`.
    Contains(Vec<u8>),
    /// `**/*L`, `L` without `/`: the last segment ends with `L`.
    SegmentEnd(Vec<u8>),
    /// `**/L*`, `L` without `/`: the last segment starts with `L`.
    SegmentStart(Vec<u8>),
    /// `L/**`: starts with `L/`.
    Below(Vec<u8>),
    /// `L*`: starts with `L`, no `/` after it.
    PrefixInSegment(Vec<u8>),
    /// Anything else.
    General,
}

fn literal(b: &[u8]) -> bool {
    !b.iter().any(|&c| c == b'*' || c == b'?')
}

fn classify(p: &[u8]) -> Fast {
    let no_slash = |b: &[u8]| !b.contains(&b'/');
    if literal(p) {
        return Fast::Exact(p.to_vec());
    }
    if let Some(rest) = p.strip_prefix(b"**/") {
        if let Some(mid) = rest.strip_suffix(b"/**") {
            if literal(mid) {
                return Fast::Contains([b"/", mid, b"/"].concat());
            }
        }
        if literal(rest) {
            return Fast::Suffix([b"/", rest].concat());
        }
        if let Some(end) = rest.strip_prefix(b"*") {
            if literal(end) && no_slash(end) {
                return Fast::SegmentEnd(end.to_vec());
            }
        }
        if let Some(start) = rest.strip_suffix(b"*") {
            if literal(start) && no_slash(start) && !start.ends_with(b"*") {
                return Fast::SegmentStart(start.to_vec());
            }
        }
        return Fast::General;
    }
    if let Some(head) = p.strip_suffix(b"/**") {
        if literal(head) {
            return Fast::Below([head, b"/"].concat());
        }
    }
    if let Some(head) = p.strip_suffix(b"*") {
        if literal(head) && !head.ends_with(b"*") {
            return Fast::PrefixInSegment(head.to_vec());
        }
    }
    Fast::General
}

fn same(p: &[u8], s: &[u8], caseless: bool) -> bool {
    p.len() == s.len() && p.iter().zip(s).all(|(&a, &b)| eq(a, b, caseless))
}

fn starts(s: &[u8], p: &[u8], caseless: bool) -> bool {
    s.len() >= p.len() && same(p, &s[..p.len()], caseless)
}

fn ends(s: &[u8], p: &[u8], caseless: bool) -> bool {
    s.len() >= p.len() && same(p, &s[s.len() - p.len()..], caseless)
}

/// A glob that is not valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobError(String);

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GlobError {}

/// Longest pattern accepted.
pub const MAX_GLOB_LEN: usize = 512;

impl Glob {
    /// Compiles `pattern`, which must start with `/` or `*`.
    ///
    /// ```
    /// use warden_core::path::glob::Glob;
    /// let g = Glob::new("/admin/*", false).unwrap();
    /// assert!(g.matches(b"/admin/users"));
    /// assert!(!g.matches(b"/admin/users/1"));
    /// assert!(Glob::new("admin", false).is_err());
    /// ```
    pub fn new(pattern: &str, caseless: bool) -> Result<Glob, GlobError> {
        if !(pattern.starts_with('/') || pattern.starts_with('*')) {
            return Err(GlobError(format!(
                "path glob '{}' must start with '/' or '*'",
                short(pattern)
            )));
        }
        if pattern.len() > MAX_GLOB_LEN {
            return Err(GlobError(format!(
                "path glob '{}' is longer than {MAX_GLOB_LEN} bytes",
                short(pattern)
            )));
        }
        if pattern.contains("***") {
            return Err(GlobError(format!(
                "path glob '{}' has '***' (use '*' or '**')",
                short(pattern)
            )));
        }
        let bytes = if caseless {
            pattern.to_ascii_lowercase().into_bytes()
        } else {
            pattern.as_bytes().to_vec()
        };
        Ok(Glob {
            pattern: pattern.to_string(),
            fast: classify(&bytes),
            bytes,
            caseless,
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// True when `path` matches the whole pattern.
    pub fn matches(&self, path: &[u8]) -> bool {
        let c = self.caseless;
        let last_segment = || &path[path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1)..];
        match &self.fast {
            Fast::Exact(l) => same(l, path, c),
            Fast::Suffix(l) => ends(path, l, c),
            Fast::Contains(l) => path.windows(l.len()).any(|w| same(l, w, c)),
            Fast::SegmentEnd(l) => path.contains(&b'/') && ends(last_segment(), l, c),
            Fast::SegmentStart(l) => path.contains(&b'/') && starts(last_segment(), l, c),
            Fast::Below(l) => starts(path, l, c),
            Fast::PrefixInSegment(l) => starts(path, l, c) && !path[l.len()..].contains(&b'/'),
            Fast::General => matches(&self.bytes, path, c),
        }
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(77).collect::<String>())
    } else {
        s.to_string()
    }
}

fn eq(p: u8, c: u8, caseless: bool) -> bool {
    p == c || (caseless && p == c.to_ascii_lowercase())
}

/// Iterative matcher with one backtrack point per star kind; `**` may
/// cross `/`, `*` may not. Linear in practice, never recursive.
fn matches(p: &[u8], s: &[u8], caseless: bool) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    // backtrack point for the latest `*` (pattern index after it, string index)
    let mut star: Option<(usize, usize)> = None;
    // backtrack point for the latest `**`
    let mut dstar: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                b'*' if p.get(pi + 1) == Some(&b'*') => {
                    // `**` first matches nothing, then longer spans
                    dstar = Some((pi + 2, si));
                    star = None;
                    pi += 2;
                    continue;
                }
                b'*' => {
                    star = Some((pi + 1, si));
                    pi += 1;
                    continue;
                }
                b'?' if si < s.len() && s[si] != b'/' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                c if si < s.len() && eq(c, s[si], caseless) => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
        } else if si == s.len() {
            return true;
        }
        // mismatch: extend the latest `*` by one byte (not across `/`)
        if let Some((sp, ss)) = star {
            if ss < s.len() && s[ss] != b'/' {
                star = Some((sp, ss + 1));
                pi = sp;
                si = ss + 1;
                continue;
            }
            star = None;
        }
        // else extend the latest `**` by one byte (across anything)
        if let Some((dp, ds)) = dstar {
            if ds < s.len() {
                dstar = Some((dp, ds + 1));
                pi = dp;
                si = ds + 1;
                continue;
            }
        }
        return false;
    }
}

/// Several globs. `**/name` and `**/dir/**` globs (the usual shape of
/// probe paths) are looked up by path segment in hash sets; the others are
/// tried in turn.
#[derive(Clone, Debug, Default)]
pub struct GlobSet {
    globs: Vec<Glob>,
    caseless: bool,
    /// `**/X`: the last segment is X.
    last: HashSet<Vec<u8>, ahash::RandomState>,
    /// `**/X/**`: a segment other than the last is X.
    dirs: HashSet<Vec<u8>, ahash::RandomState>,
    /// Indices of the other globs.
    rest: Vec<usize>,
}

/// Longest segment looked up in the sets.
const MAX_SEGMENT: usize = 64;

impl GlobSet {
    /// Compiles every pattern.
    pub fn new<S: AsRef<str>>(patterns: &[S], caseless: bool) -> Result<GlobSet, GlobError> {
        let globs = patterns
            .iter()
            .map(|p| Glob::new(p.as_ref(), caseless))
            .collect::<Result<Vec<_>, _>>()?;
        let mut set = GlobSet {
            caseless,
            ..GlobSet::default()
        };
        let simple = |l: &[u8]| l.len() <= MAX_SEGMENT && !l.is_empty() && !l.contains(&b'/');
        for (i, g) in globs.iter().enumerate() {
            match &g.fast {
                Fast::Suffix(l) if simple(&l[1..]) => {
                    set.last.insert(l[1..].to_vec());
                }
                Fast::Contains(l) if simple(&l[1..l.len() - 1]) => {
                    set.dirs.insert(l[1..l.len() - 1].to_vec());
                }
                _ => set.rest.push(i),
            }
        }
        set.globs = globs;
        Ok(set)
    }

    /// True when there are no globs.
    pub fn is_empty(&self) -> bool {
        self.globs.is_empty()
    }

    /// The first glob (in the order given) matching `path`.
    pub fn find(&self, path: &[u8]) -> Option<&Glob> {
        self.globs.iter().find(|g| g.matches(path))
    }

    /// True when a glob matches `path`.
    pub fn matches(&self, path: &[u8]) -> bool {
        if !(self.last.is_empty() && self.dirs.is_empty()) {
            let mut buf = [0u8; MAX_SEGMENT];
            let mut segs = path.split(|&b| b == b'/').skip(1).peekable();
            while let Some(seg) = segs.next() {
                let is_last = segs.peek().is_none();
                let set = if is_last { &self.last } else { &self.dirs };
                if set.is_empty() || seg.is_empty() || seg.len() > MAX_SEGMENT {
                    continue;
                }
                let key = if self.caseless {
                    for (d, &c) in buf.iter_mut().zip(seg) {
                        *d = c.to_ascii_lowercase();
                    }
                    &buf[..seg.len()]
                } else {
                    seg
                };
                if set.contains(key) {
                    return true;
                }
            }
        }
        self.rest.iter().any(|&i| self.globs[i].matches(path))
    }

    /// The patterns as given.
    pub fn patterns(&self) -> Vec<&str> {
        self.globs.iter().map(Glob::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p, false).unwrap().matches(s.as_bytes())
    }

    #[test]
    fn examples() {
        assert!(m("/admin", "/admin"));
        assert!(!m("/admin", "/admin/"));
        assert!(!m("/admin", "/administrator"));
        assert!(m("/admin/*", "/admin/users"));
        assert!(m("/admin/*", "/admin/"));
        assert!(!m("/admin/*", "/admin/users/1"));
        assert!(m("/api/**", "/api/v1/users/7"));
        assert!(!m("/api/**", "/apis"));
        assert!(m("**/.env", "/.env"));
        assert!(m("**/.env", "/app/.env"));
        assert!(!m("**/.env", "/app/.envelope"));
        assert!(m("**/.git/**", "/x/.git/config"));
        assert!(m("/apple-touch-icon*", "/apple-touch-icon-120x120.png"));
        assert!(m("/*.php", "/index.php"));
        assert!(!m("/*.php", "/a/index.php"));
        assert!(m("**/*.sql", "/backup/db.sql"));
        assert!(m("/f?o", "/foo"));
        assert!(!m("/f?o", "/f/o"));
        assert!(Glob::new("/WP-Login.php", true)
            .unwrap()
            .matches(b"/wp-LOGIN.php"));
        assert!(!m("/WP-Login.php", "/wp-login.php"));
        assert!(Glob::new("x", false).is_err());
        assert!(Glob::new("/a***", false).is_err());
    }

    /// A naive recursive matcher, the reference.
    fn naive(p: &[u8], s: &[u8]) -> bool {
        if p.is_empty() {
            return s.is_empty();
        }
        if p.starts_with(b"**") {
            return (0..=s.len()).any(|i| naive(&p[2..], &s[i..]));
        }
        match p[0] {
            b'*' => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| naive(&p[1..], &s[i..])),
            b'?' => !s.is_empty() && s[0] != b'/' && naive(&p[1..], &s[1..]),
            c => !s.is_empty() && s[0] == c && naive(&p[1..], &s[1..]),
        }
    }

    proptest! {
        #[test]
        fn shapes_agree_with_naive(
            shape in 0usize..7, lit in "[a.]{1,3}", s in "/[a./]{0,10}"
        ) {
            let p = match shape {
                0 => format!("/{lit}"),
                1 => format!("**/{lit}"),
                2 => format!("**/{lit}/**"),
                3 => format!("**/*{lit}"),
                4 => format!("**/{lit}*"),
                5 => format!("/{lit}/**"),
                _ => format!("/{lit}*"),
            };
            let g = Glob::new(&p, false).unwrap();
            prop_assert_eq!(g.matches(s.as_bytes()), naive(p.as_bytes(), s.as_bytes()), "{} vs {}", p, s);
        }

        #[test]
        fn sets_agree_with_each_glob(
            pats in proptest::collection::vec("(\\*\\*/[aB.]{1,2}(/\\*\\*)?|/[aB.*]{1,3})", 1..5),
            s in "/[aAbB./]{0,10}", caseless in any::<bool>()
        ) {
            prop_assume!(pats.iter().all(|p| !p.contains("***")));
            let set = GlobSet::new(&pats, caseless).unwrap();
            let each = pats.iter().any(|p| Glob::new(p, caseless).unwrap().matches(s.as_bytes()));
            prop_assert_eq!(set.matches(s.as_bytes()), each, "{:?} vs {}", pats, s);
        }

        #[test]
        fn agrees_with_naive(p in "/[ab/*?]{0,8}", s in "/[ab/]{0,10}") {
            prop_assume!(!p.contains("***"));
            let g = Glob::new(&p, false).unwrap();
            prop_assert_eq!(g.matches(s.as_bytes()), naive(p.as_bytes(), s.as_bytes()), "{} vs {}", p, s);
        }
    }
}
