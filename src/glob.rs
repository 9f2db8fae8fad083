//! Path globs: `*` matches within one path segment, `**` across segments,
//! `?` one byte other than `/`. Everything else is literal.
//!
//! `/admin` matches only `/admin`; `/admin/*` matches `/admin/users` but
//! not `/admin/users/1`; `/api/**` matches everything below `/api/`;
//! `**/.env` matches `/.env` and `/app/.env` (`**/` may match nothing).
//!
//! Used by the detector (probe paths, harmless 404s, ignored paths) and by
//! protected routes.

use std::fmt;

/// A compiled glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    bytes: Vec<u8>,
    caseless: bool,
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
    /// use warden_core::glob::Glob;
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
        matches(&self.bytes, path, self.caseless)
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

/// Several globs, matched in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobSet {
    globs: Vec<Glob>,
}

impl GlobSet {
    /// Compiles every pattern.
    pub fn new<S: AsRef<str>>(patterns: &[S], caseless: bool) -> Result<GlobSet, GlobError> {
        let globs = patterns
            .iter()
            .map(|p| Glob::new(p.as_ref(), caseless))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GlobSet { globs })
    }

    /// True when there are no globs.
    pub fn is_empty(&self) -> bool {
        self.globs.is_empty()
    }

    /// The first glob matching `path`.
    pub fn find(&self, path: &[u8]) -> Option<&Glob> {
        self.globs.iter().find(|g| g.matches(path))
    }

    /// True when a glob matches `path`.
    pub fn matches(&self, path: &[u8]) -> bool {
        self.find(path).is_some()
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
        fn agrees_with_naive(p in "/[ab/*?]{0,8}", s in "/[ab/]{0,10}") {
            prop_assume!(!p.contains("***"));
            let g = Glob::new(&p, false).unwrap();
            prop_assert_eq!(g.matches(s.as_bytes()), naive(p.as_bytes(), s.as_bytes()), "{} vs {}", p, s);
        }
    }
}
