//! The per-request entry points, called from Lua through LuaJIT's FFI.
//!
//! These are plain `extern "C"` functions: LuaJIT compiles calls to them
//! into its traces (a few ns each), where a call through mlua would cost
//! ~50 ns and stop the JIT. Set-up and admin work goes through mlua
//! (`crate::lua`) instead.
//!
//! - [`request`]: `check()` and `log()`, one call per phase;
//! - [`policy`]: path and site policies in the access phase;
//! - [`iprepd`]: the iprepd client (iprepd-nginx's drop-in) per request;
//! - [`nginx`]: reading a request's variables through nginx's own API;
//! - [`cdef`]: the C declarations Lua gives to `ffi.cdef`, the one copy,
//!   with a test that fails when they and these functions drift apart.
//!
//! Every function catches panics: a bug must never unwind into nginx.
//! Strings are passed as pointer + length and never need a NUL.

pub mod cdef;
pub mod crawlers;
pub mod iprepd;
pub mod nginx;
pub mod policy;
pub mod request;

/// Bits of the `flags` argument and of the results of
/// [`request::warden_access`] and [`request::warden_log`] (above the
/// outcome code in the low byte).
pub mod flags {
    use std::os::raw::c_int;

    /// Argument: decide with the replica as it is, even if it is behind
    /// (the second call, after a sync).
    pub const NO_SYNC: u32 = 4;
    /// Argument of `warden_log`: the policies' part of the log phase is
    /// done; observe now.
    pub const OBSERVE: u32 = 8;
    /// Results: the bits of `warden_policy_active()` (1: a policy applies
    /// by path or site, 2: real-time capture is on, 8: capture went off
    /// less than a minute ago) start at this bit.
    pub const POLICY_SHIFT: u32 = 8;
    /// Result of `warden_access`: a forwarding header from a trusted proxy
    /// could not be parsed (the nearest trusted hop is the client).
    pub const BAD_FORWARDED: c_int = 1 << 12;
}

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
