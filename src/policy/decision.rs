//! What the path and site policies decide about one request: the
//! question ([`Asked`]) and the answer ([`Decision`]). The decision
//! itself is [`crate::engine::Engine::policy_decision`], with a site's
//! rate limit counted in the shared dict by its caller
//! ([`crate::ops::Warden::policy_decision`]); the access phase (`check()`,
//! one FFI call unless a rate limit must be counted) and the admin API's
//! `/security/check` both ask it, and differ only in how they answer the
//! client.
//!
//! The order, for a request from client `c` to path `p` of site `s`:
//!
//! 1. `p` whitelisted, or `s` disabled: nothing else is checked
//!    ([`Decision::Skip`]);
//! 2. the lists and blocks: a denylisted or blocked `c` is refused
//!    ([`Decision::Blocked`]);
//! 3. `s`'s `allowed_ips` and `blocked_paths`, then its `rate_limit`,
//!    unless `c` is allowlisted or whitelisted;
//! 4. the protected route covering `p`: without valid credentials the
//!    request is refused whoever `c` is (the whitelist exempts from
//!    blocking, not from authentication).

use crate::blocks::Source;
use crate::policy::credentials::{Outcome, Scheme};

/// A request as the path and site policies see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asked<'a> {
    /// The site (`check{ site = ... }`, `X-Warden-Site`); empty for none.
    pub site: &'a [u8],
    /// The normalized path (nginx's `$uri`).
    pub path: &'a [u8],
    /// The method.
    pub method: &'a [u8],
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a [u8]>,
    /// The challenge's cookie (`$cookie_warden_pass`, empty when the
    /// request has none): a site that challenges lets a client with a
    /// valid one through. None: not read yet ([`Decision::NeedCookie`]),
    /// so that requests to other sites never read it.
    pub cookie: Option<&'a [u8]>,
}

/// What the lists, blocks and policies make of a request (before iprepd's
/// reputation, which only Lua can ask for).
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Nothing refuses the client: let it through (iprepd may still).
    Pass,
    /// The client is allowlisted or whitelisted, and no route refuses it.
    Allow,
    /// A whitelisted path or a disabled site: nothing else is checked.
    Skip,
    /// The client is denylisted or blocked.
    Blocked(Source),
    /// Not in the site's `allowed_ips`.
    ForbiddenIp,
    /// The site challenges every client (`challenge = true`) and this one
    /// has no valid cookie: serve the challenge.
    Challenge,
    /// The site challenges every client: ask again with the cookie
    /// ([`Asked::cookie`]). Nothing was counted.
    NeedCookie,
    /// One of the site's `blocked_paths`.
    BlockedPath,
    /// Over the site's `rate_limit` of `limit` requests; its window ends
    /// in `retry_after_s`.
    RateLimited {
        /// The site's limit.
        limit: u32,
        /// Seconds until the window ends.
        retry_after_s: f64,
    },
    /// A protected route without valid credentials.
    Unauthorized {
        /// `missing`, `malformed` or `denied`.
        why: &'static str,
        /// The route's scheme.
        scheme: Scheme,
        /// The route's realm.
        realm: String,
    },
}

impl Decision {
    /// The word of a refused authentication (`None` when accepted).
    pub fn why(o: &Outcome) -> Option<&'static str> {
        match o {
            Outcome::Ok { .. } => None,
            Outcome::Missing => Some("missing"),
            Outcome::Malformed => Some("malformed"),
            Outcome::Denied => Some("denied"),
        }
    }

    /// What the access phase logs when it refuses (or, in monitor mode,
    /// would refuse) a request of `site` to `path` for a site policy.
    ///
    /// ```
    /// use warden_core::policy::decision::Decision;
    /// let d = Decision::RateLimited { limit: 5, retry_after_s: 1.0 };
    /// assert_eq!(d.site_reason("shop", "/"), "over the rate limit of site 'shop' (5 requests)");
    /// assert_eq!(Decision::BlockedPath.site_reason("shop", "/x"), "path /x is blocked for site 'shop'");
    /// ```
    pub fn site_reason(&self, site: &str, path: &str) -> String {
        match self {
            Decision::ForbiddenIp => format!("not in allowed_ips of site '{site}'"),
            Decision::BlockedPath => format!("path {path} is blocked for site '{site}'"),
            Decision::RateLimited { limit, .. } => {
                format!("over the rate limit of site '{site}' ({limit} requests)")
            }
            _ => String::new(),
        }
    }

    /// The `Retry-After` header of a rate-limited request: whole seconds,
    /// at least 1.
    pub fn retry_after(retry_after_s: f64) -> u64 {
        retry_after_s.ceil().max(1.0) as u64
    }
}
