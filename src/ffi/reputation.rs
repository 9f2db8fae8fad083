//! The iprepd reputation cache and iprepd-nginx's allowlist, per request.

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::bytes;
use crate::net::addr::Addr;

/// `warden_rep_get`: nobody is looking the address up; the caller must.
pub const REP_FETCH: c_int = -1;
/// `warden_rep_get`: another request is looking the address up.
pub const REP_WAIT: c_int = -2;
/// An address that cannot be parsed.
pub const REP_BAD_ADDRESS: c_int = -3;
/// A NULL argument or a caught panic.
pub const REP_INTERNAL: c_int = -4;

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
            crate::reputation::Lookup::Fetch => REP_FETCH,
            crate::reputation::Lookup::Wait => REP_WAIT,
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
        return REP_INTERNAL;
    }
    // SAFETY: see `# Safety`.
    let (c, ip) = unsafe { (&*c, bytes(ip, len)) };
    catch_unwind(AssertUnwindSafe(|| match Addr::parse_bytes(ip) {
        Ok(a) => f(c, a),
        Err(_) => REP_BAD_ADDRESS,
    }))
    .unwrap_or(REP_INTERNAL)
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
                c.abandon(a, crate::engine::now_ms());
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
        return REP_INTERNAL;
    }
    // SAFETY: see `# Safety`.
    let (s, ip) = unsafe { (&*s, bytes(ip, len)) };
    catch_unwind(AssertUnwindSafe(|| match Addr::parse_bytes(ip) {
        Ok(a) => c_int::from(s.contains(a)),
        Err(_) => REP_BAD_ADDRESS,
    }))
    .unwrap_or(REP_INTERNAL)
}
