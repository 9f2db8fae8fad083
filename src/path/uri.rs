//! Request targets: the path as nginx's `$uri` would be, percent-decoding
//! and dot segments, without allocating on the fast path.
//!
//! - [`split`] cuts a target (`$request_uri`) into path and query;
//! - [`plain`] tells, in one pass, whether a path or query holds anything
//!   that decoding or the detector's payload rule would look at: most do
//!   not, and then nothing else is done;
//! - [`decode_into`] percent-decodes once, [`decode_fully`] until nothing
//!   changes (double and triple encoding, as attack tools send them), with
//!   `%uXXXX` (IIS) and overlong UTF-8 (`%c0%af` for `/`) turned into the
//!   ASCII they stand for;
//! - [`resolve_into`] merges slashes and resolves `.` and `..` segments
//!   (never above `/`), and tells whether a `..` segment was there;
//! - [`normalize_path`]: all of it, once, as nginx does for `$uri` (the
//!   admin API's `/security/check` uses it for `X-Original-URI`).

/// The path and the query of a request target (`$request_uri`): the path
/// ends at the first `?` or `#`; the query (without its `?`) is `None` when
/// there is no `?`.
///
/// ```
/// use warden_core::path::uri::split;
/// assert_eq!(split(b"/a?b=1"), (&b"/a"[..], Some(&b"b=1"[..])));
/// assert_eq!(split(b"/a#x"), (&b"/a"[..], None));
/// ```
#[inline]
pub fn split(target: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr2(b'?', b'#', target) {
        None => (target, None),
        Some(i) if target[i] == b'#' => (&target[..i], None),
        Some(i) => {
            let q = &target[i + 1..];
            let end = memchr::memchr(b'#', q).unwrap_or(q.len());
            (&target[..i], Some(&q[..end]))
        }
    }
}

/// Bytes that need no decoding and carry no payload: in a path, letters,
/// digits and `-_.~/+,!@=`; in a query, letters, digits and `-_.~=&`.
/// Everything else (`%`, `+` in a query, quotes, brackets, `;`, `|`, `:`,
/// `<`, `$`, `{`, spaces...) makes the detector decode and look.
const SAFE_PATH: u8 = 1;
const SAFE_QUERY: u8 = 2;

static SAFE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
            t[b] = SAFE_PATH | SAFE_QUERY;
        } else if matches!(c, b'/' | b'+' | b',' | b'!' | b'@') {
            t[b] = SAFE_PATH;
        } else if c == b'=' {
            t[b] = SAFE_PATH | SAFE_QUERY;
        } else if c == b'&' {
            t[b] = SAFE_QUERY;
        }
        b += 1;
    }
    t
};

/// True when `path` needs neither decoding nor dot-segment resolution and
/// carries nothing the payload rule looks for: only [`SAFE`] bytes, no
/// `/.` and no `//`.
///
/// ```
/// use warden_core::path::uri::plain_path;
/// assert!(plain_path(b"/docs/library/os.html"));
/// assert!(!plain_path(b"/%2eenv") && !plain_path(b"/a/../b") && !plain_path(b"/.env"));
/// ```
#[inline]
pub fn plain_path(path: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in path {
        if SAFE[b as usize] & SAFE_PATH == 0 || (prev == b'/' && (b == b'.' || b == b'/')) {
            return false;
        }
        prev = b;
    }
    true
}

/// True when `query` carries nothing to decode or look at: only letters,
/// digits and `-_.~=&` (`page=2&sort=name`, `v=1.2.3`).
#[inline]
pub fn plain_query(query: &[u8]) -> bool {
    query.iter().all(|&b| SAFE[b as usize] & SAFE_QUERY != 0)
}

/// True when [`plain_query`] accepts byte `b`.
pub fn is_query_safe_byte(b: u8) -> bool {
    SAFE[b as usize] & SAFE_QUERY != 0
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `src` once into `out` (cleared first). With `plus`, a
/// `+` is a space (a query, as HTML forms encode it). Invalid escapes are
/// kept as they are. Returns true when anything was decoded.
///
/// ```
/// use warden_core::path::uri::decode_into;
/// let mut out = Vec::new();
/// assert!(decode_into(b"a%20b+c%zz", &mut out, true));
/// assert_eq!(out, b"a b c%zz");
/// ```
pub fn decode_into(src: &[u8], out: &mut Vec<u8>, plus: bool) -> bool {
    out.clear();
    out.reserve(src.len());
    let mut changed = false;
    let mut i = 0;
    while i < src.len() {
        let b = src[i];
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                src.get(i + 1).copied().and_then(hex),
                src.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                changed = true;
                continue;
            }
            // %uXXXX (IIS): the ASCII it stands for
            if matches!(src.get(i + 1), Some(b'u' | b'U')) && src.get(i + 2..i + 4) == Some(b"00") {
                if let (Some(h), Some(l)) = (
                    src.get(i + 4).copied().and_then(hex),
                    src.get(i + 5).copied().and_then(hex),
                ) {
                    out.push(h << 4 | l);
                    i += 6;
                    changed = true;
                    continue;
                }
            }
        } else if b == b'+' && plus {
            out.push(b' ');
            i += 1;
            changed = true;
            continue;
        }
        out.push(b);
        i += 1;
    }
    // overlong UTF-8 for ASCII (`%c0%af` is `/` to some decoders)
    if changed && out.iter().any(|&b| b == 0xc0 || b == 0xc1 || b == 0xe0) {
        fold_overlong(out);
    }
    changed
}

/// Replaces overlong UTF-8 encodings of ASCII characters (`c0 af`, `e0 80
/// af`) with the character.
fn fold_overlong(v: &mut Vec<u8>) {
    let cont = |b: u8| b & 0xc0 == 0x80;
    let (mut r, mut w) = (0, 0);
    while r < v.len() {
        let b = v[r];
        if (b == 0xc0 || b == 0xc1) && r + 1 < v.len() && cont(v[r + 1]) {
            v[w] = (b & 1) << 6 | (v[r + 1] & 0x3f);
            r += 2;
        } else if b == 0xe0 && r + 2 < v.len() && v[r + 1] & 0xe0 == 0x80 && cont(v[r + 2]) {
            v[w] = (v[r + 1] & 1) << 6 | (v[r + 2] & 0x3f);
            r += 3;
        } else {
            v[w] = b;
            r += 1;
        }
        w += 1;
    }
    v.truncate(w);
}

/// Percent-decodes `src` into `out` until nothing changes, at most
/// `passes` times (`%252e` is `.` after two); `tmp` is scratch space. With
/// `plus`, a `+` of `src` is a space (only in the first pass: `%2B` is a
/// plus sign).
///
/// ```
/// use warden_core::path::uri::decode_fully;
/// let (mut out, mut tmp) = (Vec::new(), Vec::new());
/// decode_fully(b"/%252e%252e/x", &mut out, &mut tmp, false, 3);
/// assert_eq!(out, b"/../x");
/// ```
pub fn decode_fully(src: &[u8], out: &mut Vec<u8>, tmp: &mut Vec<u8>, plus: bool, passes: u8) {
    if !decode_into(src, out, plus) {
        return;
    }
    for _ in 1..passes {
        if memchr::memchr(b'%', out).is_none() {
            return;
        }
        std::mem::swap(out, tmp);
        if !decode_into(tmp, out, false) {
            return;
        }
    }
}

/// Resolves a decoded path into `out` (cleared first) as nginx does: `//`
/// merged, `.` segments dropped, `..` segments remove the segment before
/// them (never above `/`). Returns true when the path had a `..` segment:
/// browsers resolve those before sending, so only tools send them.
///
/// ```
/// use warden_core::path::uri::resolve_into;
/// let mut out = Vec::new();
/// assert!(resolve_into(b"/a/../../etc//passwd", &mut out));
/// assert_eq!(out, b"/etc/passwd");
/// assert!(!resolve_into(b"a/./b/", &mut out));
/// assert_eq!(out, b"/a/b/");
/// ```
pub fn resolve_into(decoded: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    out.reserve(decoded.len() + 1);
    let mut dotdot = false;
    let mut last = b"" as &[u8];
    for seg in decoded.split(|&b| b == b'/') {
        last = seg;
        match seg {
            b"" | b"." => {}
            b".." => {
                dotdot = true;
                let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            s => {
                out.push(b'/');
                out.extend_from_slice(s);
            }
        }
    }
    if out.is_empty() || matches!(last, b"" | b"." | b"..") && out.last() != Some(&b'/') {
        out.push(b'/');
    }
    dotdot
}

/// The path of a request target as nginx's `$uri` would be: without the
/// query, percent-decoded once, with `//` merged and `.`/`..` resolved
/// (never above `/`). For `X-Original-URI` in `/security/check`.
///
/// ```
/// use warden_core::path::uri::normalize_path;
/// assert_eq!(normalize_path(b"/a/./b/../%61dmin//x?q=1"), b"/a/admin/x".to_vec());
/// ```
pub fn normalize_path(target: &[u8]) -> Vec<u8> {
    let (raw, _) = split(target);
    let mut decoded = Vec::new();
    decode_plain(raw, &mut decoded);
    let mut out = Vec::new();
    resolve_into(&decoded, &mut out);
    out
}

/// `%XX` only, once: what nginx decodes in a path.
fn decode_plain(src: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < src.len() {
        if src[i] == b'%' {
            if let (Some(h), Some(l)) = (
                src.get(i + 1).copied().and_then(hex),
                src.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(src[i]);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn full(s: &str, plus: bool) -> String {
        let (mut out, mut tmp) = (Vec::new(), Vec::new());
        decode_fully(s.as_bytes(), &mut out, &mut tmp, plus, 3);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn decoding() {
        assert_eq!(full("%2e%2E%2f", false), "../");
        assert_eq!(full("%252e%252e%252f", false), "../");
        assert_eq!(full("%25252e", false), ".");
        assert_eq!(full("%2525252e", false), "%2e"); // three passes at most
        assert_eq!(full("a+b%2Bc", true), "a b+c");
        assert_eq!(full("a+b", false), "a+b");
        assert_eq!(full("%u002e%u002E/%u2215", false), "../%u2215");
        assert_eq!(full("..%c0%af..%c0%afetc", false), "../../etc");
        assert_eq!(full("%e0%80%ae", false), ".");
        assert_eq!(full("%", false), "%");
        assert_eq!(full("%4", false), "%4");
        assert_eq!(full("caf%C3%A9", false), "café");
        assert_eq!(full("100%25-cotton", false), "100%-cotton");
    }

    #[test]
    fn plainness() {
        for p in ["/", "/a/b.css", "/@user", "/c++/x", "/a,b", "/x=1"] {
            assert!(plain_path(p.as_bytes()), "{p}");
        }
        for p in [
            "/%41", "//x", "/./x", "/a/..", "/a b", "/a;b", "/a'b", "/a:b", "/<", "/.env",
        ] {
            assert!(!plain_path(p.as_bytes()), "{p}");
        }
        for q in ["", "page=2&sort=desc", "v=1.2.3", "utm_source=x-y_z"] {
            assert!(plain_query(q.as_bytes()), "{q}");
        }
        for q in [
            "q=a+b",
            "q=%27",
            "u=http://x",
            "a=b;c",
            "x=@@version",
            "f=(1)",
        ] {
            assert!(!plain_query(q.as_bytes()), "{q}");
        }
    }

    #[test]
    fn normalization() {
        for (raw, want) in [
            ("/", "/"),
            ("", "/"),
            ("/a/b/", "/a/b/"),
            ("/a/../../etc/passwd", "/etc/passwd"),
            ("//admin///x", "/admin/x"),
            ("/%2e%2e/admin", "/admin"),
            ("/admin/.", "/admin/"),
            ("/admin/..", "/"),
            ("/a/b/..", "/a/"),
            ("/x?/y", "/x"),
            ("/bad%zz%4", "/bad%zz%4"),
            ("/%41", "/A"),
        ] {
            assert_eq!(
                String::from_utf8(normalize_path(raw.as_bytes())).unwrap(),
                want,
                "{raw}"
            );
        }
        assert_eq!(normalize_path(b"/a/%2541"), b"/a/%41".to_vec());
        assert_eq!(normalize_path(b"//ap/%%333/./"), b"/ap/%33/".to_vec());
    }

    /// A naive reference: split on '/', a stack of segments.
    fn naive_resolve(p: &[u8]) -> (Vec<u8>, bool) {
        let mut segs: Vec<&[u8]> = Vec::new();
        let mut dotdot = false;
        for s in p.split(|&b| b == b'/') {
            match s {
                b"" | b"." => {}
                b".." => {
                    dotdot = true;
                    segs.pop();
                }
                s => segs.push(s),
            }
        }
        let mut out = Vec::new();
        for s in &segs {
            out.push(b'/');
            out.extend_from_slice(s);
        }
        let trailing = p.ends_with(b"/") || p.ends_with(b"/.") || p.ends_with(b"/..");
        if out.is_empty() || (trailing && !segs.is_empty()) {
            out.push(b'/');
        }
        (out, dotdot)
    }

    proptest! {
        #[test]
        fn resolve_agrees_with_a_segment_stack(
            p in proptest::collection::vec(prop::sample::select(b"ab./".to_vec()), 0..24),
        ) {
            let mut out = Vec::new();
            let dotdot = resolve_into(&p, &mut out);
            let (want, want_dd) = naive_resolve(&p);
            prop_assert_eq!(out, want);
            prop_assert_eq!(dotdot, want_dd);
        }

        #[test]
        fn plain_paths_decode_and_resolve_to_themselves(
            p in proptest::collection::vec(prop::sample::select(b"ab.%2/+".to_vec()), 1..24),
        ) {
            let mut p = p;
            p.insert(0, b'/');
            if plain_path(&p) {
                let mut out = Vec::new();
                prop_assert!(!decode_into(&p, &mut out, false));
                let mut r = Vec::new();
                resolve_into(&p, &mut r);
                // a plain path may end in "/" or not: resolution keeps it
                prop_assert_eq!(r, p);
            }
        }
    }
}
