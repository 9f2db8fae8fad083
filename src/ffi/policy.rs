//! Path and site policies in the access phase: whitelisted paths,
//! disabled sites, allowed_ips, blocked_paths, rate limits and protected
//! routes (`lua/resty/warden/access.lua`).

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::bytes;
use super::request::WardenClient;
use crate::engine::{code, Engine};
use crate::metrics::Stat;

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

/// What `warden_policy_active` reports, without the stale bit: bit 1 when
/// a policy applies by path or site, bit 2 when real-time capture is on,
/// bit 8 when capture went off less than a minute ago.
#[inline]
pub(super) fn active_bits(w: &Engine) -> c_int {
    if w.policy_active() {
        let capture = w.policy().capture;
        let off = !capture && w.capture_recently_off();
        1 | (c_int::from(capture) << 1) | (c_int::from(off) << 3)
    } else {
        c_int::from(w.capture_recently_off()) << 3
    }
}

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
        (c_int::from(w.stale()) << 2) | active_bits(w)
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
