//! The admin API (FlatRun's endpoints and nginx-defender's), served by
//! nginx itself:
//!
//! ```nginx
//! location /api/ {
//!     allow 127.0.0.1; deny all;
//!     content_by_lua_block { warden:api() }
//! }
//! ```
//!
//! Everything but the HTTP framing is here: the routes ([`route`]), who
//! may call ([`auth`]), the validation of arguments and bodies, the views
//! ([`views`]), the errors (the status is the [`crate::error::Kind`]'s,
//! never guessed from a message), `/security/stats`'s aggregation,
//! `/security/analyze`'s lines ([`accesslog`]), the nginx `deny` export
//! and the Prometheus text ([`crate::metrics::prometheus`]).
//!
//! The Lua side (`lua/resty/warden/api.lua`) reads the request's
//! variables and arguments ([`exchange::Request`]), calls
//! [`Admin::serve`] and sends the [`exchange::Response`] it gets. When
//! the answer needs what only Lua can get, `serve` says so
//! ([`exchange::Reply`]): the body (reading it may yield) or an address's
//! reputation from iprepd (a cosocket); Lua gets it and calls again.
//!
//! Every endpoint but `/health`, `/security/check` and the dashboard's
//! page (`/ui/`, [`ui`]) needs `Authorization: Bearer <admin_token>`.
//! JSON in and out; errors are `{"error": "...", "field": "..." | null}`.

pub mod accesslog;
mod analyze;
pub mod auth;
pub mod backend;
pub mod blocks;
mod check;
mod events;
pub mod exchange;
mod policy;
pub mod route;
pub mod timeline;
pub mod ui;
pub mod views;
mod warden;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::error::{Error, Kind};
use crate::metrics::prometheus;

pub use backend::Backend;
pub use events::stats_view;
pub use exchange::{Reply, Request, Response};
use route::Endpoint;

/// The admin API of one warden instance.
#[derive(Debug)]
pub struct Admin {
    token: Option<auth::Token>,
}

/// What a handler is given of the body.
enum Body {
    None,
    Json(Map<String, Value>),
    Raw(Vec<u8>),
}

/// How an endpoint and method take a body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Takes {
    Nothing,
    Json,
    OptionalJson,
    Raw,
}

fn takes(e: Endpoint, method: &str) -> Takes {
    use Endpoint::*;
    match (e, method) {
        (BlockedIps | Whitelist | Routes | Cleanup | BlockIp | UnblockIp | Block, "POST")
        | (Capture | Site, "PUT") => Takes::Json,
        (Analyze, "POST") => Takes::Raw,
        (Check, "POST") => Takes::OptionalJson,
        _ => Takes::Nothing,
    }
}

fn too_large(msg: String) -> Error {
    Error::new(Kind::TooLarge, "body", msg)
}

/// White space as Lua's `%s` sees it.
fn blank(b: &[u8]) -> bool {
    b.iter()
        .all(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r'))
}

/// Refuses a body with a field not in `known`: 400 naming the field
/// (a typo such as `tll` must never be silently ignored).
fn only_fields(body: &Map<String, Value>, known: &[&str]) -> Result<(), Error> {
    crate::policy::only_fields(body, known, &[])
        .map_err(|e| Error::invalid(e.field(), e.to_string()))
}

/// The body as a JSON object (`{}` for an empty optional one).
fn json_object(text: &[u8], optional: bool) -> Result<Map<String, Value>, Error> {
    if blank(text) {
        if optional {
            return Ok(Map::new());
        }
        return Err(Error::invalid("body", "a JSON object is required"));
    }
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::invalid("body", "the body must be a JSON object")),
        Err(e) => Err(Error::invalid("body", format!("invalid JSON: {e}"))),
    }
}

/// `POST security/refresh` (and FlatRun's agent's
/// `security/refresh-blocked-ips`, whose health check greps the answer
/// for `success`).
fn refresh(b: &dyn Backend, success: bool) -> Result<Response, Error> {
    b.refresh()?;
    let mut v = json!({
        "message": "refreshed",
        "blocks": b.blocks()?.len(),
        "protected_routes": b.routes()?.len(),
    });
    if success {
        v["success"] = true.into();
    }
    Ok(Response::json(200, &v))
}

impl Admin {
    /// The admin API of `new()`'s options, and a warning to log about
    /// them, if any. Reads `admin_token_file`.
    pub fn new(cfg: &Config) -> Result<(Admin, Option<&'static str>), Error> {
        let token = auth::Token::from_config(cfg)?;
        let warning = token.as_ref().and_then(auth::Token::warning);
        Ok((Admin { token }, warning))
    }

    /// Answers one request.
    pub fn serve(&self, b: &dyn Backend, req: &Request) -> Reply {
        let mut reply = self.answer(b, req);
        if let Reply::Done(res) = &mut reply {
            // a verdict on another request, not on this one's client
            res.unobserved = route::find(req.path.trim_end_matches('/')).map(|f| f.endpoint)
                == Some(Endpoint::Check);
        }
        reply
    }

    fn answer(&self, b: &dyn Backend, req: &Request) -> Reply {
        match catch_unwind(AssertUnwindSafe(|| self.dispatch(b, req))) {
            Ok(Ok(reply)) => reply,
            Ok(Err((e, headers))) => {
                let mut res = Response::error(&e);
                res.headers.extend(headers);
                Reply::Done(res)
            }
            Err(panic) => {
                let why = crate::error::panic_message(&*panic);
                b.log(
                    crate::store::Level::Err,
                    &format!("warden: api: {} {}: {why}", req.method, req.path),
                );
                Reply::Done(Response::error(&Error::internal(
                    "internal error (see the error log)",
                )))
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn dispatch(
        &self,
        b: &dyn Backend,
        req: &Request,
    ) -> Result<Reply, (Error, Vec<(&'static str, String)>)> {
        let plain = |e: Error| (e, Vec::new());
        let path = req.path.trim_end_matches('/');
        let Some(found) = route::find(path) else {
            return Err(plain(Error::new(
                Kind::NotFound,
                "",
                format!("no such endpoint: {path}"),
            )));
        };
        let Some(method) = found.method(&req.method) else {
            let allowed = found.allowed();
            return Err((
                Error::new(
                    Kind::MethodNotAllowed,
                    "",
                    format!("{} is not allowed here (allowed: {allowed})", req.method),
                ),
                vec![("Allow", allowed)],
            ));
        };
        if !found.public && req.token_required {
            auth::authorize(self.token.as_ref(), req.authorization.as_deref()).map_err(|e| {
                let (name, value) = auth::CHALLENGE;
                (e, vec![(name, value.to_string())])
            })?;
        }
        let takes = takes(found.endpoint, method);
        let body = if takes == Takes::Nothing {
            Body::None
        } else {
            let max = b.config().admin_max_body;
            let declared = req
                .content_length
                .as_deref()
                .and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(n) = declared.filter(|n| *n > max as u64) {
                return Err(plain(too_large(format!(
                    "request body of {n} bytes is over the limit of {max} (opts.admin_max_body)"
                ))));
            }
            let Some(raw) = &req.body else {
                return Ok(Reply::NeedBody { max });
            };
            if raw.len() > max {
                return Err(plain(too_large(format!(
                    "request body is over the limit of {max} bytes (opts.admin_max_body)"
                ))));
            }
            match takes {
                Takes::Raw => Body::Raw(raw.clone()),
                t => Body::Json(json_object(raw, t == Takes::OptionalJson).map_err(plain)?),
            }
        };
        self.endpoint(b, req, found.endpoint, method, found.capture, &body)
            .map_err(plain)
    }

    fn endpoint(
        &self,
        b: &dyn Backend,
        req: &Request,
        endpoint: Endpoint,
        method: &str,
        capture: Option<&str>,
        body: &Body,
    ) -> Result<Reply, Error> {
        use Endpoint::*;
        let capture = capture.unwrap_or("");
        let empty = Map::new();
        let (json, raw): (&Map<String, Value>, &[u8]) = match body {
            Body::Json(m) => (m, &[]),
            Body::Raw(r) => (&empty, r),
            Body::None => (&empty, &[]),
        };
        let res = match (endpoint, method) {
            (BlockedIps, "GET") => blocks::list(b, req)?,
            (BlockedIps, _) | (Block, _) => blocks::add(b, json)?,
            (BlockIp, _) => blocks::add_internal(b, json)?,
            (UnblockIp, _) => blocks::remove_internal(b, json)?,
            (BlockedList, _) => blocks::addresses(b)?,
            (BlockedIp, _) => blocks::remove(b, capture)?,
            (Whitelist, "GET") => policy::whitelist(b)?,
            (Whitelist, _) => return policy::add_whitelist(b, req, json),
            (WhitelistEntry, _) => return policy::remove(b, req, capture, false),
            (Routes, "GET") => policy::routes(b)?,
            (Routes, _) => return policy::add_route(b, req, json),
            (Route, _) => return policy::remove(b, req, capture, true),
            (Events, _) => events::list(b, req)?,
            (Cleanup, _) => events::cleanup(b, json)?,
            (Stats, _) => events::stats(b)?,
            (Capture, "GET") => policy::capture(b)?,
            (Capture, _) => return policy::put_capture(b, req, json),
            (Refresh, _) => refresh(b, false)?,
            (RefreshBlockedIps, _) => refresh(b, true)?,
            (Check, _) => {
                let body = matches!(body, Body::Json(_)).then_some(json);
                return check::check(b, req, body);
            }
            (Analyze, _) => analyze::analyze(b, raw)?,
            (Site, "GET") => policy::get_site(b, capture)?,
            (Site, "PUT") => return policy::put_site(b, req, capture, json),
            (Site, _) => return policy::delete_site(b, req, capture),
            (Metrics, _) => Response::new(
                200,
                prometheus::CONTENT_TYPE,
                prometheus::render(&b.stats()?),
            ),
            (Timeline, _) => timeline::timeline(b, req)?,
            (Ui, _) => ui::page(req),
            (Health, _) => Response::json(
                200,
                &json!({
                    "status": "ok",
                    "version": b.version(),
                    "blocks": b.blocks()?.len(),
                    "dict_free_bytes": b.dict_free_bytes()?,
                }),
            ),
        };
        Ok(Reply::Done(res))
    }
}
