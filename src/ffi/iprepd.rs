//! The iprepd client's per-request entry points
//! ([`crate::reputation::iprepd::Client`]), called from
//! `lua/resty/warden/iprepd.lua` through LuaJIT's FFI. Their C
//! declarations are in [`super::cdef`] with the others.

use std::os::raw::{c_int, c_uint};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::reputation::iprepd::{code, Client};

/// What the entry points write besides their code.
#[repr(C)]
#[derive(Debug, Default)]
pub struct WardenIprepdOut {
    /// The reputation, with `ACCEPT`, `BELOW`, `REJECT` and `HIT`.
    pub reputation: c_int,
    /// 1 when this worker's statsd buffer is full: the caller sends it.
    pub flush: c_int,
}

/// Checks `ip` (text): the allowlist (flag `ALLOWLIST`), the shared cache,
/// the verdict on a cached reputation (flag `VERDICT`), its statsd
/// metrics. Returns a code of [`code`]: `ACCEPT`, `BELOW`, `REJECT` (with
/// `VERDICT`) or `HIT` with `out->reputation`; `ALLOWLISTED`; `FETCH` (ask
/// iprepd), `WAIT` (another request is asking); `BAD_ADDRESS`; `INTERNAL`
/// for a NULL pointer or a caught panic.
///
/// # Safety
/// `c` must be NULL or the pointer of a live client (`client:ptr()`);
/// `ip` valid for `len` bytes; `out` NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn warden_iprepd_check(
    c: *const Client,
    ip: *const u8,
    len: usize,
    flags: c_uint,
    out: *mut WardenIprepdOut,
) -> c_int {
    if c.is_null() {
        return code::INTERNAL;
    }
    // SAFETY: see `# Safety`.
    let (c, ip) = unsafe { (&*c, super::bytes(ip, len)) };
    let r = catch_unwind(AssertUnwindSafe(|| {
        c.check(ip, flags, crate::engine::now_ms())
    }));
    let (rc, reputation, full) = r.unwrap_or((code::INTERNAL, 0, false));
    // SAFETY: `out` is NULL or valid for writes (see `# Safety`).
    if let Some(o) = unsafe { out.as_mut() } {
        o.reputation = reputation as c_int;
        o.flush = c_int::from(full);
    }
    rc
}

/// The verdict on a reputation (`known` = 0: none, fail open): `ACCEPT`,
/// `BELOW` or `REJECT`; with `record`, its `iprepd.status.*` metrics
/// (`out->flush` says whether the buffer is full). `INTERNAL` for a NULL
/// client or a caught panic.
///
/// # Safety
/// As [`warden_iprepd_check`].
#[no_mangle]
pub unsafe extern "C" fn warden_iprepd_verdict(
    c: *const Client,
    known: c_int,
    reputation: c_int,
    record: c_int,
    out: *mut WardenIprepdOut,
) -> c_int {
    if c.is_null() {
        return code::INTERNAL;
    }
    // SAFETY: see `# Safety`.
    let c = unsafe { &*c };
    let rep = (known != 0).then_some(i64::from(reputation));
    let r = catch_unwind(AssertUnwindSafe(|| c.verdict(rep, record != 0)));
    let (rc, full) = r.unwrap_or((code::INTERNAL, false));
    // SAFETY: `out` is NULL or valid for writes (see `# Safety`).
    if let Some(o) = unsafe { out.as_mut() } {
        o.reputation = reputation;
        o.flush = c_int::from(full);
    }
    rc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reputation::iprepd::{ALLOWLIST, VERDICT};
    use crate::reputation::options::Options;

    #[test]
    fn null_pointers_and_codes() {
        let (o, _) = Options::from_value(&serde_json::json!({
            "api_key": "k", "threshold": 50, "allowlist": "10.0.0.0/8"}))
        .unwrap();
        let c = Client::new(o, "1", false).unwrap();
        let mut out = WardenIprepdOut::default();
        // SAFETY: live client, valid buffers.
        unsafe {
            let ip = b"10.0.0.1";
            assert_eq!(
                warden_iprepd_check(&c, ip.as_ptr(), ip.len(), ALLOWLIST | VERDICT, &mut out),
                code::ALLOWLISTED
            );
            assert_eq!(
                warden_iprepd_check(std::ptr::null(), ip.as_ptr(), 8, 0, &mut out),
                code::INTERNAL
            );
            assert_eq!(
                warden_iprepd_check(&c, std::ptr::null(), 0, 0, std::ptr::null_mut()),
                code::BAD_ADDRESS
            );
            assert_eq!(warden_iprepd_verdict(&c, 1, 20, 1, &mut out), code::BELOW);
            assert_eq!(warden_iprepd_verdict(&c, 0, 0, 1, &mut out), code::ACCEPT);
        }
    }
}
