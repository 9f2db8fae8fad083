//! `check()` and `log()`: one FFI call per phase.
//!
//! The access phase ([`warden_access`]) reads the peer (and, from a
//! trusted proxy, `X-Forwarded-For` or `X-Real-IP`) itself, resolves the
//! client once ([`crate::net::client`]), decides, and remembers client and
//! verdict for the log phase of the same request. The log phase
//! ([`warden_log`]) reads them back, then the path, user agent and status,
//! and feeds the detector. Nothing is formatted or allocated here.

use std::ffi::c_void;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::nginx::{self, Request};
use super::{bytes, flags};
use crate::detect::{Header, Request as Finished};
use crate::engine::{code, Engine};
use crate::metrics::Stat;
use crate::net::addr::Addr;
use crate::net::client::{Client, Seen};

/// The resolved client of a request, filled by [`warden_access`] and
/// [`warden_check_text`].
#[repr(C)]
pub struct WardenClient {
    /// Address bytes: 4 for IPv4, 16 for IPv6, network order.
    pub addr: [u8; 16],
    /// 4 or 6; 0 when no address was resolved.
    pub family: u8,
    /// 1 when a forwarding header from a trusted proxy could not be parsed.
    pub bad_forwarded: u8,
    /// Padding to 24 bytes.
    pub pad: [u8; 6],
}

impl WardenClient {
    /// The address, when one was resolved.
    pub(super) fn addr(&self) -> Option<Addr> {
        match self.family {
            4 => Addr::from_binary(&self.addr[..4]),
            6 => Addr::from_binary(&self.addr),
            _ => None,
        }
    }

    fn fill(&mut self, c: Client) {
        self.family = match c.addr {
            Addr::V4(_) => 4,
            Addr::V6(_) => 6,
        };
        c.addr.to_bytes(&mut self.addr);
        self.bad_forwarded = u8::from(c.bad_forwarded);
    }
}

/// The peer of request `r` and its client (one resolution,
/// [`crate::net::client`]), or `None` when the peer is not an IP address
/// (a unix socket).
#[inline]
fn client_of(w: &Engine, r: Request) -> Option<(Addr, Client)> {
    let peer = r
        .var(&nginx::BINARY_REMOTE_ADDR)
        .and_then(Addr::from_binary)?;
    let client = w.resolve(
        peer,
        || r.var(&nginx::X_FORWARDED_FOR),
        || r.var(&nginx::X_REAL_IP),
    );
    Some((peer, client))
}

/// The policy bits 1 and 2 of `warden_policy_active()` in their place in
/// an outcome ([`flags::POLICY_SHIFT`]), when a policy applies.
#[inline]
fn policy_bits(w: &Engine) -> c_int {
    if w.policy_active() {
        (super::policy::active_bits(w) & 3) << flags::POLICY_SHIFT
    } else {
        0
    }
}

/// Decides on a client and reports what else applies: the verdict in the
/// low byte, the policy bits 1 and 2 of `warden_policy_active()` from
/// [`flags::POLICY_SHIFT`] on when a policy applies by path or site, and
/// [`flags::BAD_FORWARDED`] when a forwarding header was bad.
/// A challenged client with a valid cookie (read with `cookie()` only
/// then, [`crate::challenge`]) passes.
#[inline]
fn decided<'a>(w: &Engine, c: Client, cookie: impl FnOnce() -> Option<&'a [u8]>) -> c_int {
    if c.bad_forwarded {
        w.count(Stat::BadForwarded);
    }
    let mut rc = w.decide(c.addr, cookie) | policy_bits(w);
    if c.bad_forwarded {
        rc |= flags::BAD_FORWARDED;
    }
    rc
}

/// The access phase of `check()`: resolves the client of request `r` and
/// decides.
///
/// - `w`: the engine (from `engine:ptr()`); `r`: the request (lua-resty-
///   core's `get_request()`).
/// - `fl`: [`flags::NO_SYNC`] to decide with the replica as it is (the
///   second call, after a sync).
/// - `out`: receives the client (may be NULL).
///
/// Returns `SYNC` when the worker must replay the block journal first;
/// otherwise an outcome (`PASS`, `ALLOW`, `DENY`, `BLOCK_MANUAL`,
/// `BLOCK_AUTO`, `CHALLENGE`: a challenged client without a valid cookie;
/// one with a valid cookie is `PASS`) in the low byte, with the policy bits and
/// [`flags::BAD_FORWARDED`] above it (see `decided`); `BAD_ADDRESS` when the peer is not
/// an IP address (a unix socket); `INTERNAL` for a NULL argument or a
/// caught panic.
///
/// # Safety
/// `w` must be NULL or a live engine pointer from `engine:ptr()`; `r` must
/// be NULL or the current request; `out` must be NULL or point to a
/// writable `warden_client_t`.
#[no_mangle]
pub unsafe extern "C" fn warden_access(
    w: *const Engine,
    r: *mut c_void,
    fl: u32,
    out: *mut WardenClient,
) -> c_int {
    // SAFETY: see `# Safety`.
    let (Some(w), Some(r)) = (unsafe { w.as_ref() }, unsafe { Request::new(r) }) else {
        return code::INTERNAL;
    };
    // SAFETY: see `# Safety`.
    let out = unsafe { out.as_mut() };
    catch_unwind(AssertUnwindSafe(|| {
        if fl & flags::NO_SYNC == 0 && w.stale() {
            return code::SYNC;
        }
        let (id, start) = (r.id(), r.started());
        // the access phase again after an internal redirect (an index
        // file, error_page, try_files): the client is known already (a
        // request that is not internal may be a new one in the memory of
        // an earlier one whose log phase did not run: resolve it)
        if let Some(seen) = r.is_internal().then(|| w.seen(id, start)).flatten() {
            // decided once per request (counted once): only what applies
            // by path or site may differ in the new location
            if let Some(out) = out {
                out.fill(seen.client);
            }
            return i32::from(seen.verdict) | policy_bits(w);
        }
        let Some((_, client)) = client_of(w, r) else {
            w.count(Stat::BadAddress);
            return code::BAD_ADDRESS;
        };
        // the detector's slot, fetched while the rest of the request runs
        let place = w.place(client.addr);
        let rc = decided(w, client, || r.var(&nginx::CHALLENGE_COOKIE));
        w.remember(
            id,
            start,
            Seen {
                client,
                verdict: (rc & 0xff) as i8,
                flags: 0,
                place: place.into(),
            },
        );
        if let Some(out) = out {
            out.fill(client);
        }
        rc
    }))
    .unwrap_or(code::INTERNAL)
}

/// `check(ip)`: decides on the textual address `ip` (the caller's choice
/// of client, as iprepd-nginx's `check(ip)`).
///
/// Returns what [`warden_access`] returns; `BAD_ADDRESS` for an address
/// that cannot be parsed.
///
/// # Safety
/// `w` must be NULL or a live engine pointer; `ip` must be NULL or valid
/// for `len` bytes; `out` must be NULL or point to a writable
/// `warden_client_t`.
#[no_mangle]
pub unsafe extern "C" fn warden_check_text(
    w: *const Engine,
    ip: *const u8,
    len: usize,
    fl: u32,
    out: *mut WardenClient,
) -> c_int {
    // SAFETY: see `# Safety`.
    let (Some(w), ip, out) = (unsafe { w.as_ref() }, unsafe { bytes(ip, len) }, unsafe {
        out.as_mut()
    }) else {
        return code::INTERNAL;
    };
    catch_unwind(AssertUnwindSafe(|| {
        if fl & flags::NO_SYNC == 0 && w.stale() {
            return code::SYNC;
        }
        let Ok(addr) = Addr::parse_bytes(ip) else {
            w.count(Stat::BadAddress);
            return code::BAD_ADDRESS;
        };
        let client = Client {
            addr,
            bad_forwarded: false,
        };
        if let Some(out) = out {
            out.fill(client);
        }
        decided(w, client, || None)
    }))
    .unwrap_or(code::INTERNAL)
}

/// The log phase of `log()`: feeds the finished request `r` to the
/// detector, with the client and verdict its access phase found (or, when
/// `check()` did not run, resolved now).
///
/// - `fl`: [`flags::NO_SYNC`] (the second call, after a sync);
///   [`flags::OBSERVE`]: the path and site policies' part of the log phase
///   is done, observe now.
/// - `status`: the status to observe, or 0 for the response's (a refusal
///   in the access phase observes its own status there, as the log phase
///   may not run).
///
/// Returns `PASS` when nothing tripped (or the detector is off, or the
/// client is allowlisted, denylisted or blocked); `TRIP` when a rule
/// tripped (the details wait in `engine:trip()`); `SYNC` when the worker
/// is behind the journal (the policy, and with it real-time capture, may
/// have changed); `PASS` with the capture bits (2, 8) of
/// `warden_policy_active()` from [`flags::POLICY_SHIFT`] on when real-time
/// capture applies (the
/// caller handles it, then calls again with [`flags::OBSERVE`]);
/// `BAD_ADDRESS`; `INTERNAL` for a NULL argument or a caught panic.
///
/// # Safety
/// `w` must be NULL or a live engine pointer; `r` must be NULL or the
/// current request.
#[no_mangle]
pub unsafe extern "C" fn warden_log(
    w: *const Engine,
    r: *mut c_void,
    fl: u32,
    status: u32,
) -> c_int {
    // SAFETY: see `# Safety`.
    let (Some(w), Some(r)) = (unsafe { w.as_ref() }, unsafe { Request::new(r) }) else {
        return code::INTERNAL;
    };
    catch_unwind(AssertUnwindSafe(|| {
        if fl & flags::NO_SYNC == 0 && w.stale() {
            return code::SYNC;
        }
        if fl & flags::OBSERVE == 0 {
            // only real-time capture needs Lua here (a record of the
            // request); what the policies left out of the detector, the
            // access phase marked (`Seen::UNOBSERVED`)
            let p = super::policy::active_bits(w) & !1;
            if p != 0 {
                return code::PASS | p << flags::POLICY_SHIFT;
            }
        }
        if !w.detects() {
            return code::PASS;
        }
        let (client, verdict, refused, place) = match w.recall(r.id(), r.started()) {
            Some(seen) if seen.flags & Seen::UNOBSERVED != 0 => return code::PASS,
            Some(seen) => (
                seen.client.addr,
                i32::from(seen.verdict),
                seen.flags & Seen::REFUSED != 0,
                seen.place.into(),
            ),
            None => {
                let Some((_, c)) = client_of(w, r) else {
                    return code::BAD_ADDRESS;
                };
                (c.addr, w.verdict(c.addr), false, Default::default())
            }
        };
        if verdict != code::PASS {
            return code::PASS;
        }
        let headers = |h: Header| {
            r.var(match h {
                Header::SecFetchDest => &nginx::SEC_FETCH_DEST,
                Header::SecPurpose => &nginx::SEC_PURPOSE,
                Header::Purpose => &nginx::PURPOSE,
            })
        };
        let req = Finished {
            uri: r.var(&nginx::REQUEST_URI).unwrap_or_default(),
            status: if status == 0 {
                r.status()
            } else {
                status.min(999) as u16
            },
            user_agent: r.var(&nginx::USER_AGENT).unwrap_or_default(),
            refused,
            headers: Some(&headers),
        };
        w.observe_at(client, place, &req, crate::engine::now_ms())
    }))
    .unwrap_or(code::INTERNAL)
}

/// Resolves the client of request `r` without deciding anything (the
/// admin API's `/security/check` about its caller's request).
///
/// Returns 1 when the peer is a trusted proxy (a trusted caller, who may
/// name another client), 0 when it is not; `BAD_ADDRESS` when the peer is
/// not an IP address; `INTERNAL` for a NULL argument or a caught panic.
///
/// # Safety
/// As [`warden_access`].
#[no_mangle]
pub unsafe extern "C" fn warden_resolve(
    w: *const Engine,
    r: *mut c_void,
    out: *mut WardenClient,
) -> c_int {
    // SAFETY: see `# Safety`.
    let (Some(w), Some(r)) = (unsafe { w.as_ref() }, unsafe { Request::new(r) }) else {
        return code::INTERNAL;
    };
    // SAFETY: see `# Safety`.
    let out = unsafe { out.as_mut() };
    catch_unwind(AssertUnwindSafe(|| {
        let Some((peer, client)) = client_of(w, r) else {
            return code::BAD_ADDRESS;
        };
        if let Some(out) = out {
            out.fill(client);
        }
        c_int::from(w.trusted(peer))
    }))
    .unwrap_or(code::INTERNAL)
}

/// Marks request `r` for its log phase with `flag`: `SEEN_UNOBSERVED`
/// (not fed to the detector: its status is not about its client, as a
/// `/security/check` answer) or `SEEN_REFUSED` (a site's own policy,
/// `allowed_ips`, `blocked_paths`, `rate_limit`, refused it: the detector
/// counts only what it carries, never its status). Returns 0, or
/// `INTERNAL` (also for an unknown flag).
///
/// # Safety
/// `w` must be NULL or a live engine pointer; `r` must be NULL or the
/// current request.
#[no_mangle]
pub unsafe extern "C" fn warden_mark(w: *const Engine, r: *mut c_void, flag: c_int) -> c_int {
    // SAFETY: see `# Safety`.
    let (Some(w), Some(r)) = (unsafe { w.as_ref() }, unsafe { Request::new(r) }) else {
        return code::INTERNAL;
    };
    let flag = match u8::try_from(flag) {
        Ok(f @ (Seen::UNOBSERVED | Seen::REFUSED)) => f,
        _ => return code::INTERNAL,
    };
    catch_unwind(AssertUnwindSafe(|| {
        w.mark(r.id(), r.started(), flag);
        0
    }))
    .unwrap_or(code::INTERNAL)
}

/// Records that request `r` of client `c` is refused with `verdict`
/// (`DENY`, `BLOCK_MANUAL` or `BLOCK_AUTO`; in monitor mode, would have
/// been): a `blocked_ip` event, one per client and minute with a count
/// ([`crate::events::refusals`]). `check()` calls it for the requests it
/// refuses, so requests let through never come here. Returns 0, or
/// `INTERNAL`.
///
/// # Safety
/// `w` must be NULL or a live engine pointer; `r` must be NULL or the
/// current request; `c` must be NULL or point to a `warden_client_t`
/// filled by [`warden_access`] or [`warden_check_text`].
#[no_mangle]
pub unsafe extern "C" fn warden_refusal(
    w: *const Engine,
    r: *mut c_void,
    c: *const WardenClient,
    verdict: c_int,
) -> c_int {
    // SAFETY: see `# Safety`.
    let (Some(w), Some(c)) = (unsafe { w.as_ref() }, unsafe { c.as_ref() }) else {
        return code::INTERNAL;
    };
    // SAFETY: see `# Safety`.
    let r = unsafe { Request::new(r) };
    catch_unwind(AssertUnwindSafe(|| {
        let Some(addr) = c.addr() else {
            return code::BAD_ADDRESS;
        };
        let now = r.map_or_else(crate::engine::now_ms, |r| r.start_ms());
        w.record_refusal(addr, verdict, now, |e| {
            if let Some(r) = r {
                let text = |v| String::from_utf8_lossy(r.var(v).unwrap_or_default()).into_owned();
                e.method = text(&nginx::REQUEST_METHOD);
                e.path = text(&nginx::REQUEST_URI);
                e.user_agent = text(&nginx::USER_AGENT);
            }
        });
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
/// `c` must point to a `warden_client_t` filled by [`warden_access`] or
/// [`warden_check_text`]; `buf` must be valid for `len` writable bytes.
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
            pad: [0; 6],
        }
    }

    #[test]
    fn check_text_through_the_c_abi() {
        let cfg = Config::from_value(&serde_json::json!({
            "dict": "t-ffi", "denylist": ["192.0.2.0/24"], "trusted_proxies": ["127.0.0.1"],
        }))
        .unwrap();
        let e = Engine::new(cfg).unwrap();
        let mut out = client();
        let call = |ip: &[u8], out: &mut WardenClient| unsafe {
            warden_check_text(&e, ip.as_ptr(), ip.len(), 0, out)
        };
        assert_eq!(call(b"192.0.2.7", &mut out), code::DENY);
        let mut buf = [0u8; 64];
        let n = unsafe { warden_client_text(&out, buf.as_mut_ptr(), buf.len()) };
        assert_eq!(&buf[..n as usize], b"192.0.2.7");
        assert_eq!(call(b"::ffff:192.0.2.7", &mut out), code::DENY);
        assert_eq!(out.family, 4);
        assert_eq!(call(b"nonsense", &mut out), code::BAD_ADDRESS);
        assert_eq!(call(b"198.51.100.1", &mut out), code::PASS);
        let null = std::ptr::null();
        let mut dummy = 0u8;
        assert_eq!(
            unsafe { warden_check_text(null, b"x".as_ptr(), 1, 0, &mut out) },
            code::INTERNAL
        );
        assert_eq!(
            unsafe { warden_access(null, (&mut dummy as *mut u8).cast(), 0, &mut out) },
            code::INTERNAL
        );
        assert_eq!(
            unsafe { warden_log(&e, std::ptr::null_mut(), 0, 0) },
            code::INTERNAL
        );
    }
}
