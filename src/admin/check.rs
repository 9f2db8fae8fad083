//! `security/check`: what `check()` would do with a request, for nginx's
//! `auth_request` (nginx-defender's integration) and for callers that ask
//! about an address (`POST {"ip": ...}`).
//!
//! The client is resolved the one way every request's client is: the
//! peer, or, when the peer is one of `trusted_proxies`, the address its
//! `X-Forwarded-For` (or, without one, `X-Real-IP`) names. An `ip` named
//! in the body or the query is honoured only from a trusted proxy.
//!
//! `auth_request` knows only 2xx, 401 and 403: a refusal is 403 (401 for
//! a protected route), with the reason in `X-Warden-Reason` and the
//! threat score in `X-Threat-Score`. With `blocking_mode = 0` a refusal
//! becomes 200 with `X-Warden-Would-Block`.

use serde_json::{json, Map, Value};

use super::backend::Backend;
use super::exchange::{Reply, Request, Response};
use crate::error::{Error, Kind};
use crate::net::addr::Addr;
use crate::policy::decision::{Asked, Decision};

/// The fields a `POST security/check` body takes.
pub const CHECK_FIELDS: &[&str] = &["ip", "uri", "method", "site"];

fn text<'a>(body: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a str> {
    body.and_then(|m| m.get(key)).and_then(Value::as_str)
}

/// The address to decide on, as given (text) and parsed.
fn client(
    b: &dyn Backend,
    req: &Request,
    body: Option<&Map<String, Value>>,
) -> Result<(String, Addr), Error> {
    let named = match body.and_then(|m| m.get("ip")) {
        Some(v) => Some(v.clone()),
        None => req.arg("ip")?.map(|s| Value::String(s.to_string())),
    };
    if let Some(v) = named {
        let trusted = Addr::parse(&req.peer).is_ok_and(|p| b.trusted(p));
        if !trusted {
            return Err(Error::new(
                Kind::Forbidden,
                "ip",
                "only a trusted caller may name the ip",
            ));
        }
        let Value::String(ip) = v else {
            return Err(Error::invalid("ip", "ip must be a string"));
        };
        let a = Addr::parse(&ip)
            .map_err(|_| Error::invalid("ip", format!("invalid IP address '{ip}'")))?;
        return Ok((ip, a));
    }
    let bad = |s: &str| Error::invalid("ip", format!("invalid IP address '{s}'"));
    let peer = Addr::parse(&req.peer).map_err(|_| bad(&req.peer))?;
    let (xff, real_ip) = (req.x_forwarded_for.as_deref(), req.x_real_ip.as_deref());
    let c = b.resolve_client(peer, xff, real_ip);
    if c.bad_forwarded {
        let named = xff.filter(|v| !v.is_empty()).or(real_ip);
        return Err(bad(named.unwrap_or("")));
    }
    Ok((c.addr.to_string(), c.addr))
}

/// `GET|POST security/check`
pub(super) fn check(
    b: &dyn Backend,
    req: &Request,
    body: Option<&Map<String, Value>>,
) -> Result<Reply, Error> {
    if let Some(m) = body {
        super::only_fields(m, CHECK_FIELDS)?;
    }
    let (ip, addr) = client(b, req, body)?;
    let score = b.threat_score(addr)?;
    // a client that nothing refuses by address gets its reputation asked
    // for, before anything is counted
    let reputation = match (req.reputation_threshold, req.reputation) {
        (Some(_), None) if score < 100 && !b.allowlisted(addr) => {
            return Ok(Reply::NeedReputation { ip });
        }
        (Some(threshold), Some(r)) => r.map(|r| (r, threshold)),
        _ => None,
    };
    let target = text(body, "uri")
        .or(req.x_original_uri.as_deref())
        .unwrap_or("/");
    let method = text(body, "method")
        .or(req.x_original_method.as_deref())
        .unwrap_or("GET");
    let site = match text(body, "site") {
        Some(s) => Some(s),
        None => req.arg("site")?.or(req.x_warden_site.as_deref()),
    }
    .filter(|s| !s.is_empty());
    let path = crate::policy::normalize_path(target.as_bytes());
    let decision = b.decide(
        addr,
        &Asked {
            site: site.unwrap_or("").as_bytes(),
            path: &path,
            method: method.as_bytes(),
            authorization: req.authorization.as_deref().map(str::as_bytes),
            cookie: Some(b""),
        },
    )?;
    let mut status = 200;
    let mut reason = "allowed".to_string();
    let mut headers: Vec<(&'static str, String)> = Vec::new();
    match decision {
        Decision::Blocked(source) => {
            status = 403;
            reason = format!("blocked: {}", source.as_str());
        }
        Decision::ForbiddenIp => {
            status = 403;
            reason = "site: not in allowed_ips".into();
        }
        Decision::Challenge | Decision::NeedCookie => {
            // auth_request cannot serve the page: refused, as a 429 would be
            status = 403;
            reason = "site: challenge".into();
        }
        Decision::BlockedPath => {
            status = 403;
            reason = "site: blocked path".into();
        }
        Decision::RateLimited { retry_after_s, .. } => {
            // auth_request knows only 2xx, 401 and 403
            status = 403;
            reason = "site: rate limited".into();
            headers.push((
                "Retry-After",
                Decision::retry_after(retry_after_s).to_string(),
            ));
        }
        Decision::Unauthorized { why, scheme, realm } => {
            status = 401;
            reason = format!("credentials {why}");
            headers.push(("WWW-Authenticate", scheme.challenge(&realm)));
        }
        Decision::Pass => {
            if let Some((r, threshold)) = reputation {
                if r <= threshold {
                    status = 403;
                    reason = format!("reputation {r}");
                }
            }
        }
        Decision::Allow | Decision::Skip => {}
    }
    if status == 403 && !b.config().blocking_mode {
        headers.push(("X-Warden-Would-Block", reason));
        status = 200;
        reason = "allowed (blocking_mode 0)".into();
    }
    let (score, _) = crate::reputation::threat_score(score, reputation.map(|(r, _)| r));
    let body = json!({
        "ip": ip,
        "allowed": status == 200,
        "should_block": status == 403,
        "threat_score": score,
        "reason": reason,
    });
    let mut res = Response::json(status, &body);
    res.headers.extend(headers);
    res.headers.push(("X-Threat-Score", score.to_string()));
    res.headers.push(("X-Warden-Reason", reason));
    Ok(Reply::Done(res))
}
