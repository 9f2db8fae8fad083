//! The per-request entry points, called from Lua through LuaJIT's FFI.
//!
//! These are plain `extern "C"` functions: LuaJIT compiles calls to them
//! into its traces (a few ns each), where a call through mlua would cost
//! ~50 ns and stop the JIT. Set-up and admin work goes through mlua
//! (`lua.rs`) instead.
//!
//! Every function catches panics: a bug must never unwind into nginx.
//! Strings are passed as pointer + length and never need a NUL.
//!
//! The matching declarations are in `lua/resty/warden/core.lua`.

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub mod iprepd;

use crate::engine::{code, Engine};
use crate::metrics::Stat;
use crate::net::addr::Addr;

/// The resolved client of a request, filled by [`warden_check`].
#[repr(C)]
pub struct WardenClient {
    /// Address bytes: 4 for IPv4, 16 for IPv6, network order.
    pub addr: [u8; 16],
    /// 4 or 6; 0 when no address was resolved.
    pub family: u8,
    /// 1 when an X-Forwarded-For element could not be parsed.
    pub bad_forwarded: u8,
    _pad: [u8; 6],
}

impl WardenClient {
    /// The address, when one was resolved.
    fn addr(&self) -> Option<Addr> {
        match self.family {
            4 => Addr::from_binary(&self.addr[..4]),
            6 => Addr::from_binary(&self.addr),
            _ => None,
        }
    }
}

/// `flags` bit: `peer` is a textual address (`check(ip)`), not
/// `$binary_remote_addr`. A textual address is the client itself.
pub const PEER_TEXT: u32 = 1;
/// `flags` bit: `fwd`/`fwd_len` hold the X-Forwarded-For header (possibly
/// absent: NULL/0).
pub const HAVE_FORWARDED: u32 = 2;
/// `flags` bit: decide with the replica as it is, even if it is behind
/// (used for the second call, after a sync).
pub const NO_SYNC: u32 = 4;

/// # Safety
/// `ptr` must be NULL or valid for `len` bytes.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller guarantees `ptr` is valid for `len` bytes.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// Checks one request.
///
/// - `w`: the engine (from `engine:ptr()` in Lua).
/// - `peer`, `peer_len`: the peer address, binary (4 or 16 bytes, from
///   `$binary_remote_addr`) or text when `flags & PEER_TEXT`.
/// - `fwd`, `fwd_len`: X-Forwarded-For, read only when `flags &
///   HAVE_FORWARDED`.
/// - `out`: receives the resolved client (may be NULL).
///
/// Returns one of the `code` constants: `PASS`, `ALLOW`, `DENY`,
/// `BLOCK_MANUAL`, `BLOCK_AUTO`; `NEED_FORWARDED` when the peer is a trusted
/// proxy and the header was not passed; `SYNC` when the worker must replay
/// the block journal first (unless `flags & NO_SYNC`); `BAD_ADDRESS` for an unparsable address;
/// `INTERNAL` for a NULL engine or a caught panic.
///
/// # Safety
/// `w` must be NULL or a pointer returned by `engine:ptr()` whose engine is
/// still alive; `peer`/`fwd` must be NULL or valid for their lengths; `out`
/// must be NULL or point to a writable `warden_client_t`.
#[no_mangle]
pub unsafe extern "C" fn warden_check(
    w: *const Engine,
    peer: *const u8,
    peer_len: usize,
    fwd: *const u8,
    fwd_len: usize,
    flags: u32,
    out: *mut WardenClient,
) -> c_int {
    if w.is_null() {
        return code::INTERNAL;
    }
    // SAFETY: checked non-null; the caller keeps the engine alive and
    // passes valid buffers (see `# Safety`).
    let (w, peer, fwd, out) = unsafe {
        (
            &*w,
            bytes(peer, peer_len),
            bytes(fwd, fwd_len),
            out.as_mut(),
        )
    };
    catch_unwind(AssertUnwindSafe(|| check(w, peer, fwd, flags, out))).unwrap_or(code::INTERNAL)
}

/// The client of a request: the textual address itself (`PEER_TEXT`), or
/// the binary peer address resolved through X-Forwarded-For when it is a
/// trusted proxy. `Err(BAD_ADDRESS)`, or `Err(NEED_FORWARDED)` when the
/// header is needed and was not passed.
#[inline]
fn client_of(
    w: &Engine,
    peer: &[u8],
    fwd: &[u8],
    flags: u32,
) -> Result<crate::engine::Client, c_int> {
    if flags & PEER_TEXT != 0 {
        return Addr::parse_bytes(peer)
            .map(|addr| crate::engine::Client {
                addr,
                bad_forwarded: false,
            })
            .map_err(|_| code::BAD_ADDRESS);
    }
    let peer = Addr::from_binary(peer).ok_or(code::BAD_ADDRESS)?;
    let fwd = (flags & HAVE_FORWARDED != 0).then_some(fwd);
    w.resolve(peer, fwd).ok_or(code::NEED_FORWARDED)
}

#[inline]
fn check(w: &Engine, peer: &[u8], fwd: &[u8], flags: u32, out: Option<&mut WardenClient>) -> c_int {
    if flags & NO_SYNC == 0 && w.stale() {
        return code::SYNC;
    }
    let client = match client_of(w, peer, fwd, flags) {
        Ok(c) => c,
        Err(rc) => {
            if rc == code::BAD_ADDRESS {
                w.count(Stat::BadAddress);
            }
            return rc;
        }
    };
    if client.bad_forwarded {
        w.count(Stat::BadForwarded);
    }
    if let Some(out) = out {
        out.family = match client.addr {
            Addr::V4(_) => 4,
            Addr::V6(_) => 6,
        };
        client.addr.to_bytes(&mut out.addr);
        out.bad_forwarded = client.bad_forwarded as u8;
    }
    w.decide(client.addr)
}

/// A finished request, for [`warden_log`]. Every pointer may be NULL
/// with length 0.
#[repr(C)]
pub struct WardenLog {
    /// `$binary_remote_addr`.
    pub peer: *const u8,
    /// Its length (4 or 16).
    pub peer_len: usize,
    /// X-Forwarded-For, read only when `flags & HAVE_FORWARDED`.
    pub fwd: *const u8,
    /// Its length.
    pub fwd_len: usize,
    /// `$request_uri`.
    pub uri: *const u8,
    /// Its length.
    pub uri_len: usize,
    /// The user agent.
    pub ua: *const u8,
    /// Its length.
    pub ua_len: usize,
    /// The response status.
    pub status: u32,
    /// `HAVE_FORWARDED`, `PEER_TEXT`.
    pub flags: u32,
}

/// Feeds a finished request to the detector (the log phase).
///
/// Returns `code::PASS` when nothing tripped (or the detector is off, or
/// the client is allowlisted, denylisted or blocked); `code::TRIP` when a
/// rule tripped: the details wait in `engine:trip()`; `NEED_FORWARDED`
/// when the peer is a trusted proxy and the header was not passed;
/// `BAD_ADDRESS`; `INTERNAL` for a NULL argument or a caught panic.
///
/// # Safety
/// `w` must be NULL or a live engine pointer from `engine:ptr()`; `req`
/// must be NULL or point to a `warden_log_t` whose pointers are NULL or
/// valid for their lengths.
#[no_mangle]
pub unsafe extern "C" fn warden_log(w: *const Engine, req: *const WardenLog) -> c_int {
    if w.is_null() || req.is_null() {
        return code::INTERNAL;
    }
    // SAFETY: checked non-null; the caller keeps both alive and their
    // buffers valid (see `# Safety`).
    let (w, r) = unsafe { (&*w, &*req) };
    // SAFETY: as above, each pointer is NULL or valid for its length.
    let (peer, fwd, uri, ua) = unsafe {
        (
            bytes(r.peer, r.peer_len),
            bytes(r.fwd, r.fwd_len),
            bytes(r.uri, r.uri_len),
            bytes(r.ua, r.ua_len),
        )
    };
    let (status, flags) = (r.status, r.flags);
    catch_unwind(AssertUnwindSafe(|| {
        let client = match client_of(w, peer, fwd, flags) {
            Ok(c) => c.addr,
            Err(rc) => return rc,
        };
        let req = crate::detect::Request {
            uri,
            status: status.min(999) as u16,
            user_agent: ua,
        };
        w.observe(client, &req)
    }))
    .unwrap_or(code::INTERNAL)
}

/// Reputation of the textual address `ip` in the shared iprepd cache at
/// `now_ms` (ms since the epoch; 0: the library's clock).
///
/// Returns 0-100 for a cached reputation; -1 when the caller must look it
/// up (the address is now marked as in flight); -2 when another request
/// is looking it up; -3 for an invalid address; -4 for a NULL cache or a
/// caught panic.
///
/// # Safety
/// `c` must be NULL or a live cache pointer from `cache:ptr()`; `ip` must
/// be valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn warden_rep_get(
    c: *const crate::reputation::Cache,
    ip: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        with_cache(c, ip, len, |c, a| match c.get(a, crate::engine::now_ms()) {
            crate::reputation::Lookup::Hit(r) => c_int::from(r),
            crate::reputation::Lookup::Fetch => -1,
            crate::reputation::Lookup::Wait => -2,
        })
    }
}

/// The common part of the cache entry points: NULL checks, the address
/// (-3 when invalid), and a caught panic (-4).
///
/// # Safety
/// `c` must be NULL or a live cache; `ip` valid for `len` bytes.
unsafe fn with_cache(
    c: *const crate::reputation::Cache,
    ip: *const u8,
    len: usize,
    f: impl FnOnce(&crate::reputation::Cache, Addr) -> c_int,
) -> c_int {
    if c.is_null() {
        return -4;
    }
    // SAFETY: see `# Safety`.
    let (c, ip) = unsafe { (&*c, bytes(ip, len)) };
    catch_unwind(AssertUnwindSafe(|| match Addr::parse_bytes(ip) {
        Ok(a) => f(c, a),
        Err(_) => -3,
    }))
    .unwrap_or(-4)
}

/// Stores a reputation (0-100) for `ttl_ms`; a negative `reputation`
/// clears the in-flight mark instead (the lookup failed, not cached).
/// Returns 0, or -3 for an invalid address, -4 for a NULL cache or a
/// caught panic.
///
/// # Safety
/// As [`warden_rep_get`].
#[no_mangle]
pub unsafe extern "C" fn warden_rep_put(
    c: *const crate::reputation::Cache,
    ip: *const u8,
    len: usize,
    reputation: c_int,
    ttl_ms: u64,
) -> c_int {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        with_cache(c, ip, len, |c, a| {
            if reputation < 0 {
                c.abandon(a);
            } else {
                let r = reputation.min(100) as u8;
                c.put(a, r, ttl_ms, crate::engine::now_ms());
            }
            0
        })
    }
}

/// Whether the textual address `ip` is inside the network set `s`:
/// 1 yes, 0 no, -3 invalid address, -4 NULL set or a caught panic.
///
/// # Safety
/// `s` must be NULL or a live set pointer from `netset:ptr()`; `ip` must
/// be valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn warden_netset_contains(
    s: *const crate::net::lists::NetSet,
    ip: *const u8,
    len: usize,
) -> c_int {
    if s.is_null() {
        return -4;
    }
    // SAFETY: see `# Safety`.
    let (s, ip) = unsafe { (&*s, bytes(ip, len)) };
    catch_unwind(AssertUnwindSafe(|| match Addr::parse_bytes(ip) {
        Ok(a) => c_int::from(s.contains(a)),
        Err(_) => -3,
    }))
    .unwrap_or(-4)
}

/// A request as the path and site policies see it, for
/// [`warden_policy_skip`] and [`warden_policy_require`]. Every pointer may
/// be NULL with length 0.
#[repr(C)]
pub struct WardenPolicy {
    /// The normalized path (`$uri`).
    pub path: *const u8,
    /// Its length.
    pub path_len: usize,
    /// The request method.
    pub method: *const u8,
    /// Its length.
    pub method_len: usize,
    /// The site given to `check{ site = ... }`.
    pub site: *const u8,
    /// Its length.
    pub site_len: usize,
    /// Out: the index of the protected route covering the request, -1.
    pub route: c_int,
    /// Out: the site's rate limit (0: none).
    pub rate_limit: u32,
    /// Out: its window in seconds.
    pub rate_window: u32,
}

/// `warden_policy_require`: the client is not in the site's `allowed_ips`.
pub const POLICY_FORBIDDEN_IP: c_int = 2;
/// `warden_policy_require`: the path is one of the site's `blocked_paths`.
pub const POLICY_BLOCKED_PATH: c_int = 3;

/// Bit 1 when a policy applies by path or site (whitelisted paths,
/// protected routes, sites, real-time capture), plus bit 2 when real-time
/// capture is on, plus bit 4 when the worker is behind the journal (sync
/// first, then ask again: the policy may have changed), plus bit 8 when
/// capture went off less than a minute ago (the log phase still records
/// requests that `check()` saw while it was on); 0 when none applies;
/// `INTERNAL` for a NULL engine.
///
/// # Safety
/// `w` must be NULL or a live engine pointer from `engine:ptr()`.
#[no_mangle]
pub unsafe extern "C" fn warden_policy_active(w: *const Engine) -> c_int {
    // SAFETY: see `# Safety`.
    let Some(w) = (unsafe { w.as_ref() }) else {
        return code::INTERNAL;
    };
    catch_unwind(AssertUnwindSafe(|| {
        let stale = c_int::from(w.stale()) << 2;
        if w.policy_active() {
            let capture = w.policy().capture;
            let off = !capture && w.capture_recently_off();
            stale | 1 | (c_int::from(capture) << 1) | (c_int::from(off) << 3)
        } else {
            stale | (c_int::from(w.capture_recently_off()) << 3)
        }
    }))
    .unwrap_or(code::INTERNAL)
}

/// When this worker learnt that real-time capture is on, in seconds since
/// the epoch with milliseconds (as `ngx.req.start_time()`); 0 when it is
/// off or `w` is NULL.
///
/// # Safety
/// `w` must be NULL or a live engine pointer from `engine:ptr()`.
#[no_mangle]
pub unsafe extern "C" fn warden_capture_since(w: *const Engine) -> f64 {
    // SAFETY: see `# Safety`.
    match unsafe { w.as_ref() } {
        Some(w) => {
            catch_unwind(AssertUnwindSafe(|| w.capture_on_ms() as f64 / 1000.0)).unwrap_or(0.0)
        }
        None => 0.0,
    }
}

/// 1 when warden leaves the request alone (a whitelisted path, a site
/// whose policy is disabled), counted as skipped (and no longer as what
/// `verdict`, the outcome of `warden_check`, counted it as); 0 otherwise;
/// `INTERNAL` for a NULL argument or a caught panic.
///
/// # Safety
/// `w` must be NULL or a live engine pointer; `p` must be NULL or point to
/// a `warden_policy_t` whose pointers are NULL or valid for their lengths.
#[no_mangle]
pub unsafe extern "C" fn warden_policy_skip(
    w: *const Engine,
    p: *const WardenPolicy,
    verdict: c_int,
) -> c_int {
    if w.is_null() || p.is_null() {
        return code::INTERNAL;
    }
    // SAFETY: checked non-null; see `# Safety`.
    let (w, p) = unsafe { (&*w, &*p) };
    // SAFETY: as above.
    let (path, site) = unsafe { (bytes(p.path, p.path_len), bytes(p.site, p.site_len)) };
    catch_unwind(AssertUnwindSafe(|| {
        let skip = w.policy().skips(path, site);
        if skip {
            w.uncount(verdict);
            w.count(Stat::PolicySkipped);
        }
        c_int::from(skip)
    }))
    .unwrap_or(code::INTERNAL)
}

/// What the site and the protected routes require of a request from the
/// client `c` (filled by [`warden_check`], whose outcome was `verdict`).
///
/// Returns 0 when the request may go on (then `p->route` is the protected
/// route to authenticate against, or -1, and `p->rate_limit` the site's
/// limit), `POLICY_FORBIDDEN_IP` or `POLICY_BLOCKED_PATH` (counted),
/// `INTERNAL` for a NULL argument or a caught panic.
///
/// # Safety
/// `w` must be NULL or a live engine pointer; `c` must be NULL or point to
/// a `warden_client_t` filled by `warden_check`; `p` must be NULL or point
/// to a writable `warden_policy_t` whose pointers are NULL or valid for
/// their lengths.
#[no_mangle]
pub unsafe extern "C" fn warden_policy_require(
    w: *const Engine,
    c: *const WardenClient,
    verdict: c_int,
    p: *mut WardenPolicy,
) -> c_int {
    if w.is_null() || c.is_null() || p.is_null() {
        return code::INTERNAL;
    }
    // SAFETY: checked non-null; see `# Safety`.
    let (w, c, p) = unsafe { (&*w, &*c, &mut *p) };
    // SAFETY: as above.
    let (path, method, site) = unsafe {
        (
            bytes(p.path, p.path_len),
            bytes(p.method, p.method_len),
            bytes(p.site, p.site_len),
        )
    };
    catch_unwind(AssertUnwindSafe(|| {
        let Some(client) = c.addr() else {
            return code::BAD_ADDRESS;
        };
        let r = w
            .policy()
            .require(client, verdict == code::ALLOW, path, method, site);
        p.route = r.route.map_or(-1, |i| i as c_int);
        p.rate_limit = r.rate_limit.0;
        p.rate_window = r.rate_limit.1;
        if r.forbidden_ip || r.blocked_path {
            w.count(Stat::SiteDenied);
            return if r.forbidden_ip {
                POLICY_FORBIDDEN_IP
            } else {
                POLICY_BLOCKED_PATH
            };
        }
        0
    }))
    .unwrap_or(code::INTERNAL)
}

/// Writes the textual form of a resolved client into `buf`.
///
/// Returns the number of bytes written, or -1 if `c` holds no address or
/// `buf` is too small (46 bytes always suffice).
///
/// # Safety
/// `c` must point to a `warden_client_t` filled by [`warden_check`]; `buf`
/// must be valid for `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn warden_client_text(
    c: *const WardenClient,
    buf: *mut u8,
    len: usize,
) -> c_int {
    if c.is_null() || buf.is_null() {
        return -1;
    }
    // SAFETY: checked non-null; the caller guarantees validity.
    let c = unsafe { &*c };
    catch_unwind(AssertUnwindSafe(|| {
        let Some(addr) = c.addr() else { return -1 };
        let s = addr.to_string();
        if s.len() > len {
            return -1;
        }
        // SAFETY: `buf` is valid for `len >= s.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), buf, s.len()) };
        s.len() as c_int
    }))
    .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn client() -> WardenClient {
        WardenClient {
            addr: [0; 16],
            family: 0,
            bad_forwarded: 0,
            _pad: [0; 6],
        }
    }

    #[test]
    fn check_through_the_c_abi() {
        let cfg = Config::from_value(&serde_json::json!({
            "dict": "t-ffi", "denylist": ["192.0.2.0/24"], "trusted_proxies": ["127.0.0.1"],
        }))
        .unwrap();
        let e = Engine::new(cfg).unwrap();
        let mut out = client();
        let call = |peer: &[u8], fwd: Option<&[u8]>, flags: u32, out: &mut WardenClient| unsafe {
            let (fp, fl) = fwd.map_or((std::ptr::null(), 0), |f| (f.as_ptr(), f.len()));
            warden_check(&e, peer.as_ptr(), peer.len(), fp, fl, flags, out)
        };
        assert_eq!(call(b"192.0.2.7", None, PEER_TEXT, &mut out), code::DENY);
        assert_eq!(
            call(b"nonsense", None, PEER_TEXT, &mut out),
            code::BAD_ADDRESS
        );
        assert_eq!(call(&[192, 0, 2, 7], None, 0, &mut out), code::DENY);
        assert_eq!(
            call(&[127, 0, 0, 1], None, 0, &mut out),
            code::NEED_FORWARDED
        );
        assert_eq!(
            call(
                &[127, 0, 0, 1],
                Some(b"192.0.2.9"),
                HAVE_FORWARDED,
                &mut out
            ),
            code::DENY
        );
        let mut buf = [0u8; 64];
        let n = unsafe { warden_client_text(&out, buf.as_mut_ptr(), buf.len()) };
        assert_eq!(&buf[..n as usize], b"192.0.2.9");
        assert_eq!(
            call(&[127, 0, 0, 1], None, HAVE_FORWARDED, &mut out),
            code::PASS
        );
        assert_eq!(call(&[1, 2, 3], None, 0, &mut out), code::BAD_ADDRESS);
        assert_eq!(
            unsafe {
                warden_check(
                    std::ptr::null(),
                    std::ptr::null(),
                    0,
                    std::ptr::null(),
                    0,
                    0,
                    &mut out,
                )
            },
            code::INTERNAL
        );
    }
}
