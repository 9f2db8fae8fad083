//! Reading a request's variables from Rust, through nginx's own
//! `ngx_http_get_variable()`.
//!
//! lua-resty-core's `ngx_http_lua_ffi_var_get` lower-cases and hashes the
//! variable's name on every read (~270 instructions of `ngx_hash_strlow`
//! for `binary_remote_addr`); here each name's hash key is computed once,
//! at compile time, and nginx only looks it up (~150 instructions). The
//! function is part of nginx's public module API and is exported by every
//! nginx that can load dynamic modules (`-Wl,-E`), OpenResty included; it
//! is found with `dlsym` when the library is loaded. The types crossing
//! the boundary are nginx's `ngx_str_t` and `ngx_variable_value_t`, whose
//! layout has not changed since nginx 1.0.
//!
//! lua-nginx-module's own exported functions give the response status,
//! the request's start time and whether it was redirected internally the
//! same way.

use std::ffi::c_void;
use std::os::raw::{c_char, c_int};

use once_cell::sync::OnceCell;

/// `ngx_str_t`.
#[repr(C)]
struct NgxStr {
    len: usize,
    data: *const u8,
}

/// `ngx_variable_value_t`: `len:28, valid:1, no_cacheable:1, not_found:1,
/// escape:1` in one 32-bit word, then the data pointer.
#[repr(C)]
struct NgxVariableValue {
    bits: u32,
    data: *const u8,
}

const LEN_MASK: u32 = (1 << 28) - 1;
const NOT_FOUND: u32 = 1 << 30;

type GetVariable =
    unsafe extern "C" fn(r: *mut c_void, name: *mut NgxStr, key: usize) -> *const NgxVariableValue;
type GetStatus = unsafe extern "C" fn(r: *mut c_void) -> c_int;
type StartTime = unsafe extern "C" fn(r: *mut c_void) -> f64;
type IsInternal = unsafe extern "C" fn(r: *mut c_void) -> c_int;

/// nginx's and lua-nginx-module's functions this module calls.
struct Api {
    get_variable: GetVariable,
    resp_status: GetStatus,
    start_time: StartTime,
    is_internal: IsInternal,
}

static API: OnceCell<Option<Api>> = OnceCell::new();

fn symbol(name: &[u8]) -> Option<*mut c_void> {
    // SAFETY: a NUL-terminated name looked up in the global namespace of
    // the process (nginx and the modules it loaded with RTLD_GLOBAL).
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr() as *const c_char) };
    (!p.is_null()).then_some(p)
}

fn api() -> Option<&'static Api> {
    API.get_or_init(|| {
        let get = symbol(b"ngx_http_get_variable\0")?;
        let status = symbol(b"ngx_http_lua_ffi_get_resp_status\0")?;
        let start = symbol(b"ngx_http_lua_ffi_req_start_time\0")?;
        let internal = symbol(b"ngx_http_lua_ffi_req_is_internal\0")?;
        // SAFETY: the symbols are nginx's and lua-nginx-module's functions
        // of these signatures (their public C API).
        unsafe {
            Some(Api {
                get_variable: std::mem::transmute::<*mut c_void, GetVariable>(get),
                resp_status: std::mem::transmute::<*mut c_void, GetStatus>(status),
                start_time: std::mem::transmute::<*mut c_void, StartTime>(start),
                is_internal: std::mem::transmute::<*mut c_void, IsInternal>(internal),
            })
        }
    })
    .as_ref()
}

/// Checks, once, that nginx's functions can be found (`new()` calls it so
/// that a missing symbol stops nginx at start-up with a clear error).
pub fn check() -> Result<(), String> {
    match api() {
        Some(_) => Ok(()),
        None => Err("cannot find nginx's ngx_http_get_variable or \
                     lua-nginx-module's ngx_http_lua_ffi_get_resp_status in \
                     this process (warden must run inside nginx with \
                     lua-nginx-module)"
            .to_string()),
    }
}

/// nginx's hash of a variable name (`ngx_hash`: key * 31 + byte, over the
/// lower-case name).
const fn key(name: &[u8]) -> usize {
    let mut k: usize = 0;
    let mut i = 0;
    while i < name.len() {
        k = k.wrapping_mul(31).wrapping_add(name[i] as usize);
        i += 1;
    }
    k
}

/// A variable with its key, hashed at compile time.
pub struct Var {
    name: &'static [u8],
    key: usize,
}

impl Var {
    const fn new(name: &'static [u8]) -> Var {
        Var {
            name,
            key: key(name),
        }
    }
}

/// `$binary_remote_addr`: the peer, 4 or 16 bytes.
pub static BINARY_REMOTE_ADDR: Var = Var::new(b"binary_remote_addr");
/// `$http_x_forwarded_for`.
pub static X_FORWARDED_FOR: Var = Var::new(b"http_x_forwarded_for");
/// `$http_x_real_ip`.
pub static X_REAL_IP: Var = Var::new(b"http_x_real_ip");
/// `$request_uri`: the path and query as the client sent them.
pub static REQUEST_URI: Var = Var::new(b"request_uri");
/// `$uri`: the normalized path.
pub static URI: Var = Var::new(b"uri");
/// `$http_user_agent`.
pub static USER_AGENT: Var = Var::new(b"http_user_agent");
/// `$request_method`.
pub static REQUEST_METHOD: Var = Var::new(b"request_method");
/// `$http_authorization`.
pub static AUTHORIZATION: Var = Var::new(b"http_authorization");
/// `$http_sec_fetch_dest` (no built-in variable: nginx walks the header
/// list, so it is read only when the detector needs it).
pub static SEC_FETCH_DEST: Var = Var::new(b"http_sec_fetch_dest");
/// `$http_sec_purpose` (likewise).
pub static SEC_PURPOSE: Var = Var::new(b"http_sec_purpose");
/// `$http_purpose` (likewise).
pub static PURPOSE: Var = Var::new(b"http_purpose");
/// `$cookie_warden_pass`: the challenge's cookie ([`crate::challenge::COOKIE`]),
/// read only for a challenged client.
pub static CHALLENGE_COOKIE: Var = Var::new(b"cookie_warden_pass");

/// A request being served (nginx's `ngx_http_request_t *`, as lua-resty-
/// core's `get_request()` gives it).
#[derive(Clone, Copy)]
pub struct Request {
    r: *mut c_void,
}

impl Request {
    /// Wraps a request pointer.
    ///
    /// # Safety
    /// `r` must be a live `ngx_http_request_t *` of the current phase
    /// handler, used only during that handler.
    pub unsafe fn new(r: *mut c_void) -> Option<Request> {
        (!r.is_null()).then_some(Request { r })
    }

    /// The request's identity among live requests (its address).
    #[inline]
    pub fn id(self) -> usize {
        self.r as usize
    }

    /// Variable `v`, or None when it is not set (or nginx is not found).
    /// The bytes live in the request's memory pool, as long as the request.
    #[inline]
    pub fn var(self, v: &Var) -> Option<&'static [u8]> {
        let api = api()?;
        let mut name = NgxStr {
            len: v.name.len(),
            data: v.name.as_ptr(),
        };
        // SAFETY: `self.r` is a live request (see `new`); nginx reads the
        // name and returns NULL or a value allocated from the request's
        // pool.
        let value = unsafe { (api.get_variable)(self.r, &mut name, v.key).as_ref()? };
        if value.bits & NOT_FOUND != 0 || value.data.is_null() && value.bits & LEN_MASK != 0 {
            return None;
        }
        let len = (value.bits & LEN_MASK) as usize;
        if len == 0 {
            return Some(&[]);
        }
        // SAFETY: nginx's value points to `len` bytes in the request's pool.
        Some(unsafe { std::slice::from_raw_parts(value.data, len) })
    }

    /// The response status (0 before one is known).
    #[inline]
    pub fn status(self) -> u16 {
        match api() {
            // SAFETY: a live request (see `new`).
            Some(api) => unsafe { (api.resp_status)(self.r) }.clamp(0, 999) as u16,
            None => 0,
        }
    }

    /// True when the request was redirected internally (an index file,
    /// `error_page`, `try_files`...): its phases run again.
    #[inline]
    pub fn is_internal(self) -> bool {
        match api() {
            // SAFETY: a live request (see `new`).
            Some(api) => (unsafe { (api.is_internal)(self.r) }) == 1,
            None => false,
        }
    }

    /// When the request started, in ms since the epoch.
    #[inline]
    pub fn start_ms(self) -> u64 {
        match api() {
            // SAFETY: a live request (see `new`).
            Some(api) => (unsafe { (api.start_time)(self.r) } * 1000.0) as u64,
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_variable_names_the_cookie() {
        let name = format!("cookie_{}", crate::challenge::COOKIE);
        assert_eq!(CHALLENGE_COOKIE.name, name.as_bytes());
    }

    #[test]
    fn keys_are_nginx_hashes() {
        // ngx_hash_key("uri") computed by hand: ((117*31)+114)*31+105
        assert_eq!(key(b"uri"), (117 * 31 + 114) * 31 + 105);
        assert_eq!(URI.key, key(b"uri"));
    }

    #[test]
    fn outside_nginx_nothing_is_found() {
        assert!(check().is_err());
        // SAFETY: a dangling pointer is never dereferenced: api() is None.
        let r = unsafe { Request::new(8 as *mut c_void) }.unwrap();
        assert_eq!(r.var(&URI), None);
        assert_eq!((r.status(), r.start_ms()), (0, 0));
    }
}
