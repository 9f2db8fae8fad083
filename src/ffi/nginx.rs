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
//! nginx's `ngx_http_get_variable()` still finds the variable by name on
//! every call (`ngx_hash_find`, ~100-170 instructions, a byte-by-byte
//! comparison) and allocates the value from the request's pool. So each
//! [`Var`] finds its variable once per worker, with nginx's own
//! `ngx_hash_find` on the core module's variable hash (or its prefix
//! variables: `http_*`, `cookie_*`), remembers nginx's
//! `ngx_http_variable_t`, and afterwards calls its handler directly, as
//! `ngx_http_get_variable()` would, with the value on the stack
//! ([`Var::resolve`]). What this reads of nginx's structures
//! (`ngx_http_request_t`'s first fields, `ngx_http_core_main_conf_t`'s
//! first fields, `ngx_http_variable_t`) has had the same layout since
//! nginx 1.3; it is checked before it is trusted (the request's
//! signature, the arrays' element sizes, the variable's own name), and a
//! variable that fails a check is read through `ngx_http_get_variable()`.
//!
//! lua-nginx-module's own exported functions give the response status,
//! the request's start time and whether it was redirected internally the
//! same way.

use std::ffi::c_void;
use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

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
type GetFlushed = unsafe extern "C" fn(r: *mut c_void, index: usize) -> *const NgxVariableValue;
type HashFind = unsafe extern "C" fn(
    hash: *const c_void,
    key: usize,
    name: *const u8,
    len: usize,
) -> *const c_void;
type Handler = unsafe extern "C" fn(r: *mut c_void, v: *mut NgxVariableValue, data: usize) -> isize;

/// `ngx_http_variable_t`.
#[repr(C)]
struct NgxVariable {
    name: NgxStr,
    set_handler: *const c_void,
    get_handler: Option<Handler>,
    data: usize,
    flags: usize,
    index: usize,
}

/// `ngx_array_t`.
#[repr(C)]
struct NgxArray {
    elts: *const c_void,
    nelts: usize,
    size: usize,
    nalloc: usize,
    pool: *const c_void,
}

/// The first fields of `ngx_http_core_main_conf_t`.
#[repr(C)]
struct CoreMainConf {
    servers: NgxArray,
    /// `ngx_http_phase_engine_t`: handlers, two indexes.
    phase_engine: [usize; 3],
    /// `ngx_hash_t`: buckets, size.
    headers_in_hash: [usize; 2],
    variables_hash: [usize; 2],
    variables: NgxArray,
    prefix_variables: NgxArray,
}

/// `"HTTP"`, the first field of every `ngx_http_request_t`.
const REQUEST_SIGNATURE: u32 = 0x5054_5448;
/// `NGX_HTTP_VAR_INDEXED`.
const VAR_INDEXED: usize = 4;
/// `NGX_OK`.
const NGX_OK: isize = 0;
type GetStatus = unsafe extern "C" fn(r: *mut c_void) -> c_int;
type StartTime = unsafe extern "C" fn(r: *mut c_void) -> f64;
type IsInternal = unsafe extern "C" fn(r: *mut c_void) -> c_int;

/// nginx's and lua-nginx-module's functions this module calls.
struct Api {
    get_variable: GetVariable,
    /// To find a variable once and read it directly afterwards; `None`
    /// when nginx does not export them (every variable is then read
    /// through `get_variable`).
    direct: Option<Direct>,
    resp_status: GetStatus,
    start_time: StartTime,
    is_internal: IsInternal,
}

/// What reading variables directly needs.
struct Direct {
    hash_find: HashFind,
    get_flushed: GetFlushed,
    /// `&ngx_http_core_module`, whose first field is its `ctx_index`.
    core_module: *const usize,
}

// SAFETY: the pointer is to nginx's static module structure, only read.
unsafe impl Send for Direct {}
// SAFETY: as above.
unsafe impl Sync for Direct {}

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
        let direct = match (
            symbol(b"ngx_hash_find\0"),
            symbol(b"ngx_http_get_flushed_variable\0"),
            symbol(b"ngx_http_core_module\0"),
        ) {
            // SAFETY: nginx's functions of these signatures and its core
            // module's structure (nginx's public C API).
            (Some(h), Some(f), Some(m)) => unsafe {
                Some(Direct {
                    hash_find: std::mem::transmute::<*mut c_void, HashFind>(h),
                    get_flushed: std::mem::transmute::<*mut c_void, GetFlushed>(f),
                    core_module: m as *const usize,
                })
            },
            _ => None,
        };
        // SAFETY: the symbols are nginx's and lua-nginx-module's functions
        // of these signatures (their public C API).
        unsafe {
            Some(Api {
                get_variable: std::mem::transmute::<*mut c_void, GetVariable>(get),
                direct,
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

/// A variable with its key, hashed at compile time, and nginx's
/// `ngx_http_variable_t` of it once found.
pub struct Var {
    name: &'static [u8],
    key: usize,
    /// The `ngx_http_core_main_conf_t` that `found` was found in (a new
    /// configuration has new variables); 0 until found.
    conf: AtomicUsize,
    /// `ngx_http_variable_t *`, with [`PREFIX`] set for a prefix variable
    /// (`http_`, `cookie_`...), or [`INDIRECT`]: read through
    /// `ngx_http_get_variable()`.
    found: AtomicUsize,
}

/// [`Var::found`]'s tag of a prefix variable (pointers are aligned).
const PREFIX: usize = 1;
/// [`Var::found`] when the variable is read through
/// `ngx_http_get_variable()`.
const INDIRECT: usize = 2;

impl Var {
    const fn new(name: &'static [u8]) -> Var {
        Var {
            name,
            key: key(name),
            conf: AtomicUsize::new(0),
            found: AtomicUsize::new(0),
        }
    }

    /// Finds this variable in the configuration `conf` of request `r`:
    /// its `ngx_http_variable_t` (tagged [`PREFIX`] for a prefix
    /// variable), or [`INDIRECT`] when something does not look as
    /// expected.
    ///
    /// # Safety
    /// `r` is a live request whose signature was checked, `conf` its
    /// `ngx_http_core_main_conf_t`.
    unsafe fn resolve(&self, d: &Direct, conf: *const CoreMainConf) -> usize {
        const VAR: usize = std::mem::size_of::<NgxVariable>();
        // SAFETY: nginx's configuration of a live request (see `# Safety`).
        let c = unsafe { &*conf };
        let arrays_ok = |a: &NgxArray| a.size == VAR && a.nelts <= a.nalloc && a.nelts < 1 << 16;
        if c.servers.size != std::mem::size_of::<usize>()
            || !arrays_ok(&c.variables)
            || !arrays_ok(&c.prefix_variables)
        {
            return INDIRECT;
        }
        let named = |v: &NgxVariable, name: &[u8]| {
            // SAFETY: a variable's name in nginx's configuration.
            v.get_handler.is_some()
                && v.name.len == name.len()
                && unsafe { std::slice::from_raw_parts(v.name.data, v.name.len) } == name
        };
        // SAFETY: nginx's hash of variables, looked up by nginx.
        let v = unsafe {
            (d.hash_find)(
                c.variables_hash.as_ptr() as *const c_void,
                self.key,
                self.name.as_ptr(),
                self.name.len(),
            ) as *const NgxVariable
        };
        // SAFETY: NULL or one of nginx's variables.
        if let Some(v) = unsafe { v.as_ref() } {
            return if named(v, self.name) {
                v as *const NgxVariable as usize
            } else {
                INDIRECT
            };
        }
        // The longest prefix variable the name starts with, as nginx
        // chooses it.
        // SAFETY: the array's `nelts` elements (sizes checked above).
        let prefixes = unsafe {
            std::slice::from_raw_parts(
                c.prefix_variables.elts as *const NgxVariable,
                c.prefix_variables.nelts,
            )
        };
        let mut best: Option<&NgxVariable> = None;
        for p in prefixes {
            // SAFETY: a variable's name in nginx's configuration.
            let pre = unsafe { std::slice::from_raw_parts(p.name.data, p.name.len) };
            if p.get_handler.is_some()
                && self.name.starts_with(pre)
                && best.is_none_or(|b| pre.len() > b.name.len)
            {
                best = Some(p);
            }
        }
        match best {
            Some(p) if named(p, &self.name[..p.name.len]) => {
                p as *const NgxVariable as usize | PREFIX
            }
            _ => INDIRECT,
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
/// `$server_name`: the server's first name.
pub static SERVER_NAME: Var = Var::new(b"server_name");
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

/// A variable's value as bytes in the request's pool; None when it is not
/// found.
#[inline]
fn value_bytes(value: &NgxVariableValue) -> Option<&'static [u8]> {
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
        let Some(d) = &api.direct else {
            return self.var_by_name(api, v, INDIRECT);
        };
        let found = self.find(d, v);
        if found & (PREFIX | INDIRECT) != 0 {
            return self.var_by_name(api, v, found);
        }
        // SAFETY: `found` is a variable of this request's configuration
        // (`find`), read as `ngx_http_get_variable()` reads it: an indexed
        // one from the request's cache, the others by their handler.
        unsafe {
            let var = &*(found as *const NgxVariable);
            if var.flags & VAR_INDEXED != 0 {
                value_bytes((d.get_flushed)(self.r, var.index).as_ref()?)
            } else {
                let mut local = NgxVariableValue {
                    bits: 0,
                    data: std::ptr::null(),
                };
                let handler = var.get_handler?;
                if handler(self.r, &mut local, var.data) != NGX_OK {
                    return None;
                }
                value_bytes(&local)
            }
        }
    }

    /// [`Request::var`] for a prefix variable (`http_*`, `cookie_*`: the
    /// handler takes the whole name) or one read through
    /// `ngx_http_get_variable()` (`found` is [`INDIRECT`]).
    #[cold]
    #[inline(never)]
    fn var_by_name(self, api: &Api, v: &Var, found: usize) -> Option<&'static [u8]> {
        let mut name = NgxStr {
            len: v.name.len(),
            data: v.name.as_ptr(),
        };
        if found == INDIRECT {
            // SAFETY: `self.r` is a live request (see `new`); nginx reads
            // the name and returns NULL or a value allocated from the
            // request's pool.
            return value_bytes(unsafe { (api.get_variable)(self.r, &mut name, v.key).as_ref()? });
        }
        let mut local = NgxVariableValue {
            bits: 0,
            data: std::ptr::null(),
        };
        // SAFETY: `found` is a prefix variable of this request's
        // configuration (`find`); its handler takes the whole name.
        unsafe {
            let var = &*((found & !PREFIX) as *const NgxVariable);
            let handler = var.get_handler?;
            if handler(self.r, &mut local, &name as *const NgxStr as usize) != NGX_OK {
                return None;
            }
        }
        value_bytes(&local)
    }

    /// `v`'s `ngx_http_variable_t` in this request's configuration (found
    /// once per configuration), or [`INDIRECT`].
    #[inline]
    fn find(self, d: &Direct, v: &Var) -> usize {
        // SAFETY: a live request (see `new`): its first fields are
        // `signature`, `connection`, `ctx`, `main_conf`; the core module's
        // `ctx_index` is its first field.
        let conf = unsafe {
            let main_conf = *(self.r as *const *const *const c_void).add(3);
            *main_conf.add(*d.core_module) as usize
        };
        if v.conf.load(Relaxed) == conf {
            return v.found.load(Relaxed);
        }
        // SAFETY: as above; `resolve` is given the checked request's
        // configuration.
        let found = unsafe {
            if conf == 0 || *(self.r as *const u32) != REQUEST_SIGNATURE {
                INDIRECT
            } else {
                v.resolve(d, conf as *const CoreMainConf)
            }
        };
        v.found.store(found, Relaxed);
        v.conf.store(conf, Relaxed);
        found
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

    /// When the request started, as a key: equal in every phase of one
    /// request, and different for a later request at the same address
    /// (the bits of nginx's start time, with no arithmetic).
    #[inline]
    pub fn started(self) -> u64 {
        match api() {
            // SAFETY: a live request (see `new`).
            Some(api) => unsafe { (api.start_time)(self.r) }.to_bits(),
            None => 0,
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
