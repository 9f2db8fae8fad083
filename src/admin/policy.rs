//! The admin API's policy endpoints: `security/whitelist`,
//! `security/protected-routes`, `deployments/<name>/security` and
//! `security/realtime-capture`. Entries are validated here (errors name
//! the field) before the backend stores them.

use serde_json::{json, Map, Value};

use super::backend::Backend;
use super::exchange::{Reply, Request, Response, RETRY_MS};
use crate::error::Error;
use crate::metrics::Stat;
use crate::options::Scalar;
use crate::policy::doc::{Edit, List, Update};
use crate::policy::{self, PolicyError};
use crate::store::Level;

fn invalid(e: PolicyError) -> Error {
    Error::invalid(e.field(), e.to_string())
}

/// A list of the document `doc` (`whitelist`, `routes`): its objects.
fn entries<'a>(doc: &'a Value, key: &str) -> impl Iterator<Item = &'a Map<String, Value>> {
    doc.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

/// The options' policy part named `key` (`whitelist`, `sites`, ...).
fn configured<'a>(b: &'a dyn Backend, key: &str) -> Option<&'a Value> {
    b.config().policy.get(key)
}

/// Makes `e`: what the backend stored, or `None` when another worker is
/// changing the policy and the caller should try again.
fn edit(b: &dyn Backend, req: &Request, e: Edit) -> Result<Option<Value>, Error> {
    match b.edit_policy(&e, req.last_try(b.now_ms()))? {
        Update::Done(v) => Ok(Some(v)),
        Update::Busy => Ok(None),
    }
}

fn retry() -> Reply {
    Reply::Retry { after_ms: RETRY_MS }
}

/// An id in a path: a positive integer.
fn id(text: &str) -> Result<u64, Error> {
    match Scalar::of_query(text) {
        Scalar::Int(n) if n >= 1 => Ok(n as u64),
        _ => Err(Error::invalid(
            "id",
            format!("id must be a positive integer, got '{text}'"),
        )),
    }
}

/// `GET security/whitelist`: the options' entries (`source: config`,
/// `id: null`), then the API's.
pub(super) fn whitelist(b: &dyn Backend) -> Result<Response, Error> {
    let mut out = Vec::new();
    for e in configured(b, "whitelist")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Ok(mut n) = policy::whitelist_entry(e) {
            n["id"] = Value::Null;
            n["source"] = "config".into();
            out.push(n);
        }
    }
    let doc = b.policy_document()?;
    for e in entries(&doc, "whitelist") {
        let mut e = e.clone();
        e.insert("source".into(), "api".into());
        out.push(Value::Object(e));
    }
    Ok(Response::json(
        200,
        &json!({ "whitelist": out, "total": out.len() }),
    ))
}

/// `POST security/whitelist {type, value, description?}`
pub(super) fn add_whitelist(
    b: &dyn Backend,
    req: &Request,
    body: &Map<String, Value>,
) -> Result<Reply, Error> {
    let entry = policy::whitelist_entry(&Value::Object(body.clone())).map_err(invalid)?;
    let Some(stored) = edit(b, req, Edit::Add(List::Whitelist, entry))? else {
        return Ok(retry());
    };
    Ok(Reply::Done(Response::json(201, &stored)))
}

/// `DELETE security/whitelist/<id>` and `security/protected-routes/<id>`
pub(super) fn remove(
    b: &dyn Backend,
    req: &Request,
    text: &str,
    route: bool,
) -> Result<Reply, Error> {
    let n = id(text)?;
    let list = if route { List::Routes } else { List::Whitelist };
    match edit(b, req, Edit::Remove(list, n))? {
        Some(done) => Ok(Reply::Done(Response::json(200, &done))),
        None => Ok(retry()),
    }
}

/// A route in force as the API shows it: `source`, `id` (null for the
/// options'), `created` (from the document).
fn route_view(mut r: Value, doc: &Value) -> Value {
    let id = r.get("id").and_then(Value::as_u64);
    let created = id.and_then(|id| {
        entries(doc, "routes")
            .find(|e| e.get("id").and_then(Value::as_u64) == Some(id))
            .and_then(|e| e.get("created").cloned())
    });
    r["source"] = if id.is_some() { "api" } else { "config" }.into();
    r["id"] = id.map_or(Value::Null, Value::from);
    r["created"] = created.unwrap_or(Value::Null);
    r
}

/// `GET security/protected-routes`
pub(super) fn routes(b: &dyn Backend) -> Result<Response, Error> {
    let doc = b.policy_document()?;
    let out: Vec<Value> = b
        .routes()?
        .into_iter()
        .map(|r| route_view(r, &doc))
        .collect();
    Ok(Response::json(
        200,
        &json!({ "protected_routes": out, "total": out.len() }),
    ))
}

/// `POST security/protected-routes {path, method?, auth_type, credentials,
/// deployment?, realm?}`
pub(super) fn add_route(
    b: &dyn Backend,
    req: &Request,
    body: &Map<String, Value>,
) -> Result<Reply, Error> {
    let entry = policy::route_entry(&Value::Object(body.clone())).map_err(invalid)?;
    let Some(stored) = edit(b, req, Edit::Add(List::Routes, entry))? else {
        return Ok(retry());
    };
    let id = stored.get("id").and_then(Value::as_u64);
    let found = b
        .routes()?
        .into_iter()
        .find(|r| id.is_some() && r.get("id").and_then(Value::as_u64) == id);
    let view = match found {
        Some(mut r) => {
            r["created"] = stored.get("created").cloned().unwrap_or(Value::Null);
            r["source"] = "api".into();
            r
        }
        None => json!({ "id": id }),
    };
    Ok(Reply::Done(Response::json(201, &view)))
}

/// The policy of site `name` and where it comes from: the API's, else the
/// options'.
fn site(b: &dyn Backend, name: &str) -> Result<Option<(Value, &'static str)>, Error> {
    let doc = b.policy_document()?;
    if let Some(s) = doc.get("sites").and_then(|s| s.get(name)) {
        if s.is_object() {
            return Ok(Some((s.clone(), "api")));
        }
    }
    let configured = configured(b, "sites").and_then(|s| s.get(name));
    Ok(configured
        .and_then(|s| policy::site_entry(s).ok())
        .map(|s| (s, "config")))
}

/// `GET deployments/<name>/security`
pub(super) fn get_site(b: &dyn Backend, name: &str) -> Result<Response, Error> {
    let Some((mut s, source)) = site(b, name)? else {
        return Err(Error::new(
            crate::error::Kind::NotFound,
            "deployment",
            format!("no security policy for deployment '{name}'"),
        ));
    };
    s["deployment"] = name.into();
    s["source"] = source.into();
    for list in ["allowed_ips", "blocked_paths"] {
        if !s[list].is_array() {
            s[list] = json!([]);
        }
    }
    Ok(Response::json(200, &s))
}

/// `PUT deployments/<name>/security {enabled?, rate_limit?, allowed_ips?,
/// blocked_paths?}`
pub(super) fn put_site(
    b: &dyn Backend,
    req: &Request,
    name: &str,
    body: &Map<String, Value>,
) -> Result<Reply, Error> {
    policy::site_name(name, "name").map_err(|e| Error::invalid("deployment", e.to_string()))?;
    let s = policy::site_entry(&Value::Object(body.clone())).map_err(invalid)?;
    if edit(b, req, Edit::PutSite(name.to_string(), s))?.is_none() {
        return Ok(retry());
    }
    get_site(b, name).map(Reply::Done)
}

/// `DELETE deployments/<name>/security`
pub(super) fn delete_site(b: &dyn Backend, req: &Request, name: &str) -> Result<Reply, Error> {
    match edit(b, req, Edit::DeleteSite(name.to_string()))? {
        Some(done) => Ok(Reply::Done(Response::json(200, &done))),
        None => Ok(retry()),
    }
}

/// `GET security/realtime-capture`
pub(super) fn capture(b: &dyn Backend) -> Result<Response, Error> {
    let doc = b.policy_document().unwrap_or(Value::Null);
    let c = doc.get("capture").filter(|c| c.is_object());
    let enabled = match c.and_then(|c| c.get("enabled")) {
        Some(Value::Bool(on)) => *on,
        _ => configured(b, "realtime_capture") == Some(&Value::Bool(true)),
    };
    let since = c
        .and_then(|c| c.get("since"))
        .cloned()
        .unwrap_or(Value::Null);
    Ok(Response::json(
        200,
        &json!({
            "enabled": enabled,
            "since": since,
            "captured": b.counter(Stat::EventsCapture)?,
            "max_captures": b.config().max_captures,
        }),
    ))
}

/// `PUT security/realtime-capture {enabled}`
pub(super) fn put_capture(
    b: &dyn Backend,
    req: &Request,
    body: &Map<String, Value>,
) -> Result<Reply, Error> {
    super::only_fields(body, &["enabled"])?;
    let enabled = match body.get("enabled") {
        Some(Value::Bool(on)) => *on,
        other => {
            let got = match other {
                None => "nothing".to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
            };
            return Err(Error::invalid(
                "enabled",
                format!("enabled must be true or false, got {got}"),
            ));
        }
    };
    if edit(b, req, Edit::Capture(enabled))?.is_none() {
        return Ok(retry());
    }
    b.log(
        Level::Warn,
        &format!(
            "warden: real-time capture {} (admin API)",
            if enabled { "on" } else { "off" }
        ),
    );
    capture(b).map(Reply::Done)
}
