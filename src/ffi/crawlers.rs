//! Verified crawlers' entry points ([`crate::challenge::crawlers`]),
//! called from `lua/resty/warden/crawler.lua` through LuaJIT's FFI: the
//! claim and the cached verdict cost two compiled calls and a dict read,
//! not the mlua calls (which stop the JIT) of the lookups themselves.
//! Their C declarations are in [`super::cdef`] with the others.

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::challenge::crawlers::{key, Record, Verifier};
use crate::engine::now_ms;
use crate::net::addr::Addr;

/// [`warden_crawler_check`]: a verified crawler (the address is in
/// `crawlers.allow`, or this worker remembers the crawler verified).
pub const CRAWLER_VERIFIED: c_int = -1;
/// [`warden_crawler_check`]: not a verified crawler (no crawler claimed,
/// remembered as refused, an invalid address, a NULL verifier, a caught
/// panic).
pub const CRAWLER_NONE: c_int = 0;
/// Room for a key: `cv|`, a crawler's name (at most
/// [`crate::challenge::crawlers::MAX_NAME`]), `|`, an address.
pub const CRAWLER_KEY_MAX: usize = 128;

/// What `ip` (text) with user agent `ua` claims: [`CRAWLER_VERIFIED`],
/// [`CRAWLER_NONE`] (what this worker remembers for [`MEMO_MS`](crate::challenge::crawlers::MEMO_MS) counts),
/// or the length of the dict key of the verdict to look up, written to
/// `key` (at most `cap` bytes; [`CRAWLER_NONE`] when it does not fit):
/// then give [`warden_crawler_verdict`] what the dict holds there.
///
/// # Safety
/// `v` must be NULL or the pointer of live crawlers (`crawlers:ptr()`);
/// `ip` valid for `ip_len` bytes, `ua` for `ua_len` bytes (either may be
/// NULL with length 0); `key` NULL or valid for `cap` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn warden_crawler_check(
    v: *const Verifier,
    ip: *const u8,
    ip_len: usize,
    ua: *const u8,
    ua_len: usize,
    key_out: *mut u8,
    cap: usize,
) -> c_int {
    if v.is_null() || key_out.is_null() {
        return CRAWLER_NONE;
    }
    // SAFETY: see `# Safety`.
    let (v, ip, ua) = unsafe { (&*v, super::bytes(ip, ip_len), super::bytes(ua, ua_len)) };
    // SAFETY: `key_out` is valid for `cap` bytes of writes.
    let out = unsafe { std::slice::from_raw_parts_mut(key_out, cap) };
    catch_unwind(AssertUnwindSafe(|| {
        let Ok(client) = Addr::parse_bytes(ip) else {
            return CRAWLER_NONE;
        };
        if v.allowed(client) {
            return CRAWLER_VERIFIED;
        }
        let Some(c) = v.claim(ua) else {
            return CRAWLER_NONE;
        };
        match v.remembered(c, client, now_ms()) {
            Some(true) => return CRAWLER_VERIFIED,
            Some(false) => return CRAWLER_NONE,
            None => {}
        }
        let k = key(&v.crawlers()[c].name, client);
        match out.get_mut(..k.len()) {
            Some(dst) if k.len() <= c_int::MAX as usize => {
                dst.copy_from_slice(k.as_bytes());
                k.len() as c_int
            }
            _ => CRAWLER_NONE,
        }
    }))
    .unwrap_or(CRAWLER_NONE)
}

/// What a cached dict value says about the claim [`warden_crawler_check`]
/// last gave a key for (this worker then remembers it for [`MEMO_MS`](crate::challenge::crawlers::MEMO_MS)):
/// 1 verified, 0 refused or failed, -1 not a record of
/// [`crate::challenge::crawlers`] (look it up again).
///
/// # Safety
/// `v` as in [`warden_crawler_check`]; `value` NULL or valid for `len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn warden_crawler_verdict(
    v: *const Verifier,
    value: *const u8,
    len: usize,
) -> c_int {
    if v.is_null() {
        return -1;
    }
    // SAFETY: see `# Safety`.
    let (v, value) = unsafe { (&*v, super::bytes(value, len)) };
    catch_unwind(AssertUnwindSafe(|| {
        match std::str::from_utf8(value).ok().and_then(Record::decode) {
            Some(r) => {
                v.remember_last(r.verified(), now_ms());
                c_int::from(r.verified())
            }
            None => -1,
        }
    }))
    .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::crawlers::Options;

    #[test]
    fn codes_and_keys() {
        let o =
            Options::from_challenge(&serde_json::json!({"crawlers": {"allow": "203.0.113.0/24"}}))
                .unwrap();
        let v = Verifier::with_resolvers(&o, vec![]);
        let mut buf = [0u8; CRAWLER_KEY_MAX];
        let check = |ip: &str, ua: &str, buf: &mut [u8]| {
            // SAFETY: live verifier, valid buffers.
            unsafe {
                warden_crawler_check(
                    &v,
                    ip.as_ptr(),
                    ip.len(),
                    ua.as_ptr(),
                    ua.len(),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            }
        };
        assert_eq!(check("203.0.113.9", "", &mut buf), CRAWLER_VERIFIED);
        assert_eq!(check("66.249.66.1", "curl/8", &mut buf), CRAWLER_NONE);
        assert_eq!(check("not an ip", "Googlebot/2.1", &mut buf), CRAWLER_NONE);
        let n = check("66.249.66.1", "Googlebot/2.1", &mut buf);
        assert_eq!(&buf[..n as usize], b"cv|google|66.249.66.1");
        assert_eq!(
            check("66.249.66.1", "Googlebot/2.1", &mut buf[..8]),
            CRAWLER_NONE
        );
        // SAFETY: NULL pointers are allowed.
        unsafe {
            assert_eq!(
                warden_crawler_check(
                    std::ptr::null(),
                    std::ptr::null(),
                    0,
                    std::ptr::null(),
                    0,
                    buf.as_mut_ptr(),
                    1
                ),
                CRAWLER_NONE
            );
            let n = b"n|evil.example|not in google's domains";
            assert_eq!(warden_crawler_verdict(&v, n.as_ptr(), n.len()), 0);
            assert_eq!(warden_crawler_verdict(&v, std::ptr::null(), 0), -1);
            assert_eq!(
                warden_crawler_verdict(std::ptr::null(), n.as_ptr(), n.len()),
                -1
            );
        }
    }
}
