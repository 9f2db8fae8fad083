//! Path and site policies in the access phase: whitelisted paths,
//! disabled sites, allowed_ips, blocked_paths, rate limits and protected
//! routes (`lua/resty/warden/access.lua`), decided in one call.

use std::cell::RefCell;
use std::ffi::c_void;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::bytes;
use super::nginx::{self, Request};
use super::request::WardenClient;
use crate::engine::{code, Engine};
use crate::net::client::Seen;
use crate::policy::decision::{Asked, Decision};

/// What [`warden_decide`] tells besides its outcome. The pointers are
/// valid until the next call in this worker.
#[repr(C)]
pub struct WardenDecision {
    /// `DECIDE_UNAUTHORIZED`: `missing`, `malformed` or `denied`.
    pub why: *const u8,
    /// Its length.
    pub why_len: usize,
    /// `DECIDE_FORBIDDEN_IP`, `DECIDE_BLOCKED_PATH`: the reason the
    /// access phase logs; `DECIDE_UNAUTHORIZED`: the `WWW-Authenticate`
    /// header.
    pub text: *const u8,
    /// Its length.
    pub text_len: usize,
}

/// [`warden_decide`]: nothing in the policies refuses the request.
pub const DECIDE_PASS: c_int = 0;
/// A whitelisted path or a disabled site: nothing else is checked, and
/// the detector leaves the request out.
pub const DECIDE_SKIP: c_int = 1;
/// The client is denylisted or blocked (`verdict` said so).
pub const DECIDE_BLOCKED: c_int = 2;
/// Not in the site's `allowed_ips`.
pub const DECIDE_FORBIDDEN_IP: c_int = 3;
/// One of the site's `blocked_paths`.
pub const DECIDE_BLOCKED_PATH: c_int = 4;
/// A protected route without valid credentials.
pub const DECIDE_UNAUTHORIZED: c_int = 5;
/// The site has a rate limit, counted in the shared dict: the decision
/// is `engine:decide()`'s (nothing was counted here).
pub const DECIDE_RATE: c_int = 6;
/// The site challenges every client (`challenge = true`) and this one has
/// no valid cookie: serve the challenge.
pub const DECIDE_CHALLENGE: c_int = 7;

thread_local! {
    /// The text [`WardenDecision`] points to.
    static TEXT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

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

/// The path and site policies' decision on request `r` of client `c`
/// (filled by `warden_access` or `warden_check_text`, whose outcome was
/// `verdict`), for `site` (`check{ site = ... }`; empty: the server's
/// `server_name`, [`crate::policy::request_site`]): the one decision
/// ([`Engine::policy_decision`]), counted as `check()` counts. Rust reads
/// the path (`$uri`), method and `Authorization` itself.
///
/// Returns one of the `DECIDE_*` codes (`out` filled as
/// [`WardenDecision`] says), `BAD_ADDRESS` when `c` holds no address,
/// `INTERNAL` for a NULL argument or a caught panic.
///
/// # Safety
/// `w` must be NULL or a live engine pointer; `r` NULL or the current
/// request; `c` NULL or a `warden_client_t` filled by `warden_access` or
/// `warden_check_text`; `site` valid for `site_len` bytes (or NULL with
/// 0); `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn warden_decide(
    w: *const Engine,
    r: *mut c_void,
    c: *const WardenClient,
    verdict: c_int,
    site: *const u8,
    site_len: usize,
    out: *mut WardenDecision,
) -> c_int {
    // SAFETY: see `# Safety`.
    let (Some(w), Some(r), Some(c), Some(out)) = (
        unsafe { w.as_ref() },
        unsafe { Request::new(r) },
        unsafe { c.as_ref() },
        unsafe { out.as_mut() },
    ) else {
        return code::INTERNAL;
    };
    // SAFETY: see `# Safety`.
    let site = unsafe { bytes(site, site_len) };
    catch_unwind(AssertUnwindSafe(|| {
        let Some(client) = c.addr() else {
            return code::BAD_ADDRESS;
        };
        let site = if site.is_empty() {
            crate::policy::request_site(None, r.var(&nginx::SERVER_NAME))
        } else {
            site
        };
        let path = r.var(&nginx::URI).unwrap_or_default();
        let asked = Asked {
            site,
            path,
            method: r.var(&nginx::REQUEST_METHOD).unwrap_or_default(),
            authorization: r.var(&nginx::AUTHORIZATION),
            cookie: None,
        };
        let mut decided = w.policy_decision(client, verdict, &asked, |_, _| None);
        if decided == Some(Decision::NeedCookie) {
            // a site that challenges every client: its cookie, read only
            // then (nothing was counted)
            let cookie = Some(r.var(&nginx::CHALLENGE_COOKIE).unwrap_or_default());
            let asked = Asked { cookie, ..asked };
            decided = w.policy_decision(client, verdict, &asked, |_, _| None);
        }
        let Some(d) = decided else {
            return DECIDE_RATE;
        };
        let mut put = |why: &'static str, text: String| {
            TEXT.with(|t| {
                let mut t = t.borrow_mut();
                t.clear();
                t.extend_from_slice(text.as_bytes());
                (out.why, out.why_len) = (why.as_ptr(), why.len());
                (out.text, out.text_len) = (t.as_ptr(), t.len());
            })
        };
        let reason = |d: &Decision| {
            d.site_reason(
                &String::from_utf8_lossy(site),
                &String::from_utf8_lossy(path),
            )
        };
        match &d {
            Decision::Pass | Decision::Allow => DECIDE_PASS,
            Decision::Skip => {
                w.mark(r.id(), r.started(), Seen::UNOBSERVED);
                DECIDE_SKIP
            }
            Decision::Blocked(_) => DECIDE_BLOCKED,
            Decision::ForbiddenIp => {
                put("", reason(&d));
                DECIDE_FORBIDDEN_IP
            }
            Decision::BlockedPath => {
                put("", reason(&d));
                DECIDE_BLOCKED_PATH
            }
            Decision::Challenge => DECIDE_CHALLENGE,
            // only with a counting `rate`, or without a cookie to give
            Decision::RateLimited { .. } | Decision::NeedCookie => DECIDE_RATE,
            Decision::Unauthorized { why, scheme, realm } => {
                put(why, scheme.challenge(realm));
                DECIDE_UNAUTHORIZED
            }
        }
    }))
    .unwrap_or(code::INTERNAL)
}
