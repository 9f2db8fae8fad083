//! The C declarations of the FFI entry points, as Lua gives them to
//! `ffi.cdef`: the one copy. The library exports this text
//! (`require("warden_core").cdef`), the outcome codes and the flag bits
//! (`.codes`), and the sizes of its structs (`.layout`), so the Lua side
//! never writes them again; a test here fails when the text and the Rust
//! functions and `#[repr(C)]` structs drift apart, and `t/03-jit.t`
//! compares LuaJIT's view of the structs with Rust's.

/// The declarations, for `ffi.cdef`.
pub const CDEF: &str = r#"
typedef struct warden_engine warden_engine_t;

typedef struct {
    unsigned char addr[16];
    unsigned char family;
    unsigned char bad_forwarded;
    unsigned char pad[6];
} warden_client_t;

int warden_access(const warden_engine_t *w, void *r, unsigned int fl,
                  warden_client_t *out);
int warden_check_text(const warden_engine_t *w, const unsigned char *ip,
                      size_t len, unsigned int fl, warden_client_t *out);
int warden_log(const warden_engine_t *w, void *r, unsigned int fl,
               unsigned int status);
int warden_resolve(const warden_engine_t *w, void *r, warden_client_t *out);
int warden_mark(const warden_engine_t *w, void *r, int flag);
int warden_refusal(const warden_engine_t *w, void *r,
                   const warden_client_t *c, int verdict);
int warden_client_text(const warden_client_t *c, unsigned char *buf,
                       size_t len);

typedef struct {
    const unsigned char *why;
    size_t why_len;
    const unsigned char *text;
    size_t text_len;
} warden_decision_t;

int warden_policy_active(const warden_engine_t *w);
double warden_capture_since(const warden_engine_t *w);
int warden_decide(const warden_engine_t *w, void *r,
                  const warden_client_t *c, int verdict,
                  const unsigned char *site, size_t site_len,
                  warden_decision_t *out);

typedef struct warden_iprepd warden_iprepd_t;
typedef struct {
    int reputation;
    int flush;
} warden_iprepd_out_t;
int warden_iprepd_check(const warden_iprepd_t *c, const unsigned char *ip,
                        size_t len, unsigned int flags,
                        warden_iprepd_out_t *out);
int warden_iprepd_verdict(const warden_iprepd_t *c, int known,
                          int reputation, int record,
                          warden_iprepd_out_t *out);

typedef struct warden_crawlers warden_crawlers_t;
int warden_crawler_check(const warden_crawlers_t *v, const unsigned char *ip,
                         size_t ip_len, const unsigned char *ua,
                         size_t ua_len, unsigned char *key_out, size_t cap);
int warden_crawler_verdict(const warden_crawlers_t *v,
                           const unsigned char *value, size_t len);
"#;

/// The outcome codes and flag bits Lua compares results with, by name.
pub fn codes() -> Vec<(&'static str, i64)> {
    use super::{flags, policy};
    use crate::engine::code;
    use crate::net::client::Seen;
    vec![
        ("PASS", code::PASS.into()),
        ("ALLOW", code::ALLOW.into()),
        ("DENY", code::DENY.into()),
        ("BLOCK_MANUAL", code::BLOCK_MANUAL.into()),
        ("BLOCK_AUTO", code::BLOCK_AUTO.into()),
        ("CHALLENGE", code::CHALLENGE.into()),
        ("SYNC", code::SYNC.into()),
        ("TRIP", code::TRIP.into()),
        ("BAD_ADDRESS", code::BAD_ADDRESS.into()),
        ("INTERNAL", code::INTERNAL.into()),
        ("NO_SYNC", flags::NO_SYNC.into()),
        ("OBSERVE", flags::OBSERVE.into()),
        ("POLICY_SHIFT", flags::POLICY_SHIFT.into()),
        ("BAD_FORWARDED", flags::BAD_FORWARDED.into()),
        ("SEEN_UNOBSERVED", Seen::UNOBSERVED.into()),
        ("SEEN_REFUSED", Seen::REFUSED.into()),
        ("DECIDE_PASS", policy::DECIDE_PASS.into()),
        ("DECIDE_SKIP", policy::DECIDE_SKIP.into()),
        ("DECIDE_BLOCKED", policy::DECIDE_BLOCKED.into()),
        ("DECIDE_FORBIDDEN_IP", policy::DECIDE_FORBIDDEN_IP.into()),
        ("DECIDE_BLOCKED_PATH", policy::DECIDE_BLOCKED_PATH.into()),
        ("DECIDE_UNAUTHORIZED", policy::DECIDE_UNAUTHORIZED.into()),
        ("DECIDE_RATE", policy::DECIDE_RATE.into()),
        ("DECIDE_CHALLENGE", policy::DECIDE_CHALLENGE.into()),
        ("CRAWLER_VERIFIED", super::crawlers::CRAWLER_VERIFIED.into()),
        ("CRAWLER_NONE", super::crawlers::CRAWLER_NONE.into()),
        ("CRAWLER_KEY_MAX", super::crawlers::CRAWLER_KEY_MAX as i64),
    ]
}

/// The size of each struct Lua declares, and each field's offset, as Rust
/// lays them out: `(struct, field or "", bytes)`.
pub fn layout() -> Vec<(&'static str, &'static str, usize)> {
    use super::iprepd::WardenIprepdOut as I;
    use super::policy::WardenDecision as P;
    use super::request::WardenClient as C;
    use std::mem::{offset_of, size_of};
    vec![
        ("warden_client_t", "", size_of::<C>()),
        ("warden_client_t", "addr", offset_of!(C, addr)),
        ("warden_client_t", "family", offset_of!(C, family)),
        (
            "warden_client_t",
            "bad_forwarded",
            offset_of!(C, bad_forwarded),
        ),
        ("warden_decision_t", "", size_of::<P>()),
        ("warden_decision_t", "why", offset_of!(P, why)),
        ("warden_decision_t", "text", offset_of!(P, text)),
        ("warden_decision_t", "text_len", offset_of!(P, text_len)),
        ("warden_iprepd_out_t", "", size_of::<I>()),
        ("warden_iprepd_out_t", "flush", offset_of!(I, flush)),
    ]
}

#[cfg(test)]
mod tests {
    //! The declarations against the Rust source: every `extern "C"`
    //! function is declared with the same parameters (names and types),
    //! every declared function exists, and every declared struct has the
    //! Rust struct's fields in the same order with the same types.

    use super::CDEF;
    use std::collections::BTreeMap;

    const SOURCES: [&str; 4] = [
        include_str!("request.rs"),
        include_str!("policy.rs"),
        include_str!("iprepd.rs"),
        include_str!("crawlers.rs"),
    ];

    /// A C type in the Rust spelling used by the FFI module.
    fn rust_type(c: &str) -> String {
        let c = c.split_whitespace().collect::<Vec<_>>().join(" ");
        let named = [
            ("warden_engine_t", "Engine"),
            ("warden_client_t", "WardenClient"),
            ("warden_decision_t", "WardenDecision"),
            ("warden_iprepd_t", "Client"),
            ("warden_iprepd_out_t", "WardenIprepdOut"),
            ("warden_crawlers_t", "Verifier"),
        ];
        let scalar = |t: &str| -> String {
            match t {
                "unsigned char" => "u8".into(),
                "size_t" => "usize".into(),
                "int" => "c_int".into(),
                "unsigned int" => "u32".into(),
                "uint64_t" => "u64".into(),
                "double" => "f64".into(),
                "void" => "c_void".into(),
                other => named
                    .iter()
                    .find(|(c, _)| *c == other)
                    .map_or_else(|| format!("?{other}"), |(_, r)| r.to_string()),
            }
        };
        if let Some(t) = c.strip_suffix(" *") {
            match t.strip_prefix("const ") {
                Some(t) => format!("*const {}", scalar(t)),
                None => format!("*mut {}", scalar(t)),
            }
        } else {
            scalar(&c)
        }
    }

    /// `type name` pairs of a C parameter or field list.
    fn c_fields(list: &str) -> Vec<(String, String)> {
        list.split([',', ';'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|p| {
                let p = p.replace('*', " * ");
                let (ty, name) = p.trim().rsplit_once(' ').unwrap();
                let (name, ty) = match name.split_once('[') {
                    Some((n, len)) => (
                        n.to_string(),
                        format!("[{}; {}]", rust_type(ty), len.trim_end_matches(']')),
                    ),
                    None => (name.to_string(), rust_type(ty)),
                };
                (name, ty)
            })
            .collect()
    }

    /// Declared functions: name -> parameters.
    fn declared_fns() -> BTreeMap<String, Vec<(String, String)>> {
        let mut out = BTreeMap::new();
        for decl in CDEF.split(';') {
            let decl = decl.trim();
            if decl.starts_with("typedef") || decl.starts_with('}') || !decl.contains('(') {
                continue;
            }
            let (head, params) = decl.split_once('(').unwrap();
            let name = head.split_whitespace().last().unwrap().to_string();
            out.insert(name, c_fields(params.trim_end_matches(')')));
        }
        out
    }

    /// `name: type` pairs of a Rust parameter or field list.
    fn rust_fields(list: &str) -> Vec<(String, String)> {
        let code: Vec<&str> = list
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("//") && !l.starts_with("#["))
            .collect();
        code.join(" ")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (name, ty) = p.trim_start_matches("pub ").split_once(':').unwrap();
                // c_uint is u32
                (name.trim().to_string(), ty.trim().replace("c_uint", "u32"))
            })
            .collect()
    }

    fn rust_fns() -> BTreeMap<String, Vec<(String, String)>> {
        let mut out = BTreeMap::new();
        for src in SOURCES {
            for part in src.split("pub unsafe extern \"C\" fn ").skip(1) {
                let (name, rest) = part.split_once('(').unwrap();
                let params = &rest[..rest.find(") ->").unwrap()];
                out.insert(name.to_string(), rust_fields(params));
            }
        }
        out
    }

    #[test]
    fn functions_match_the_declarations() {
        assert_eq!(rust_fns(), declared_fns());
    }

    #[test]
    fn structs_match_the_declarations() {
        let mut checked = 0;
        for part in CDEF.split("typedef struct {").skip(1) {
            let (body, rest) = part.split_once('}').unwrap();
            let c_name = rest.split(';').next().unwrap().trim();
            let rust_name = rust_type(c_name);
            let src = SOURCES
                .iter()
                .find(|s| s.contains(&format!("pub struct {rust_name} {{")))
                .unwrap_or_else(|| panic!("no Rust struct {rust_name} for {c_name}"));
            let def = src
                .split(&format!("pub struct {rust_name} {{"))
                .nth(1)
                .unwrap();
            let fields = rust_fields(&def[..def.find("\n}").unwrap()]);
            let at = src.find(&format!("pub struct {rust_name} {{")).unwrap();
            let attributes: Vec<&str> = src[..at]
                .lines()
                .rev()
                .take_while(|l| l.trim_start().starts_with("#["))
                .collect();
            assert!(
                attributes.iter().any(|l| l.trim() == "#[repr(C)]"),
                "{rust_name} is not #[repr(C)]"
            );
            assert_eq!(fields, c_fields(body), "{c_name}");
            checked += 1;
        }
        assert_eq!(checked, 3);
    }
}
