//! `security/blocked-ips`: list (JSON, or nginx `deny` lines), block,
//! unblock.

use serde_json::{json, Map, Value};

use super::accesslog::{civil_from_days, MONTHS};
use super::backend::Backend;
use super::exchange::{Request, Response};
use super::views;
use crate::blocks::Action;
use crate::error::{Error, Kind};
use crate::net::addr::Net;
use crate::options::{duration_arg, Scalar};

/// A target (an address or a network) named by the client, in `field`.
pub(super) fn target(text: &str, field: &str) -> Result<Net, Error> {
    Net::parse(text.trim()).map_err(|e| Error::invalid(field, e.to_string()))
}

/// `GET security/blocked-ips[?format=json|nginx]`
pub(super) fn list(b: &dyn Backend, req: &Request) -> Result<Response, Error> {
    let nginx = match req.arg("format")? {
        None | Some("json") => false,
        Some("nginx") => true,
        Some(other) => {
            return Err(Error::invalid(
                "format",
                format!("format must be 'json' or 'nginx', got '{other}'"),
            ))
        }
    };
    let list = b.blocks()?;
    let now = b.now_ms();
    if nginx {
        return Ok(Response::new(200, "text/plain", deny_lines(&list, now)));
    }
    let out: Vec<Value> = list.iter().map(|x| views::block(x, now)).collect();
    Ok(Response::json(
        200,
        &json!({ "blocked_ips": out, "total": out.len() }),
    ))
}

/// The blocks as nginx `deny` directives, after a comment line.
pub fn deny_lines(list: &[crate::blocks::Block], now_ms: u64) -> String {
    let mut out = format!(
        "# lua-resty-warden: {} blocked at {}\n",
        list.len(),
        http_date(now_ms / 1000)
    );
    for x in list {
        out.push_str("deny ");
        out.push_str(&x.net.to_string());
        out.push_str(";\n");
    }
    out
}

/// `secs` (since the epoch) as HTTP writes dates:
/// `Thu, 18 Nov 2010 11:27:35 GMT`.
pub fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[month - 1],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The fields a block takes: `ttl` is FlatRun's agent's name for
/// `duration` (seconds).
pub const BLOCK_FIELDS: &[&str] = &["ip", "duration", "ttl", "reason", "action"];

/// How long a block asked for without a duration lasts: the detector's
/// `auto_block_duration` (24 hours unless set), FlatRun's default.
/// `0` asks for a permanent block.
pub fn default_duration_ms(b: &dyn Backend) -> u64 {
    b.config().detector.auto_block_duration_ms
}

/// The action a block asks for: `"block"` (the default) or
/// `"challenge"`.
fn action(body: &Map<String, Value>) -> Result<Action, Error> {
    match body.get("action") {
        None | Some(Value::Null) => Ok(Action::Block),
        Some(Value::String(s)) => Action::parse(s).ok_or_else(|| {
            Error::invalid(
                "action",
                format!("action must be 'block' or 'challenge', got '{s}'"),
            )
        }),
        Some(v) => Err(Error::invalid(
            "action",
            format!("action must be 'block' or 'challenge', got {v}"),
        )),
    }
}

/// A block asked for in a JSON body: the target, the duration in ms (0:
/// permanent) and the reason.
fn block_request(b: &dyn Backend, body: &Map<String, Value>) -> Result<(Net, u64, String), Error> {
    super::only_fields(body, BLOCK_FIELDS)?;
    let ip = match body.get("ip") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => {
            return Err(Error::invalid(
                "ip",
                "ip is required: an IP address or a CIDR",
            ))
        }
    };
    let reason = match body.get("reason") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s,
        Some(_) => return Err(Error::invalid("reason", "reason must be a string")),
    };
    let given = |k: &'static str| body.get(k).filter(|v| !v.is_null()).map(|v| (k, v));
    let duration_ms = match (given("duration"), given("ttl")) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "ttl",
                "give duration or ttl (its alias), not both",
            ))
        }
        (None, None) => default_duration_ms(b),
        (Some((field, v)), None) | (None, Some((field, v))) => duration_arg(Scalar::of_json(v))
            .map_err(|m| {
                let m = if field == "ttl" {
                    m.replacen("duration", "ttl", 1)
                } else {
                    m
                };
                Error::invalid(field, m)
            })?,
    };
    Ok((target(ip, "ip")?, duration_ms, reason.to_string()))
}

/// Makes the block `body` asks for; its view.
fn make_block(b: &dyn Backend, body: &Map<String, Value>) -> Result<Value, Error> {
    let (net, duration_ms, reason) = block_request(b, body)?;
    let action = action(body)?;
    let now = b.now_ms();
    b.block(&net, duration_ms, &reason, action)?;
    let block = crate::blocks::Block {
        net,
        expires_ms: if duration_ms == 0 {
            0
        } else {
            now.saturating_add(duration_ms)
        },
        source: crate::blocks::Source::Manual,
        reason,
        action,
    };
    let mut view = views::block(&block, now);
    view["message"] = match action {
        Action::Block => "blocked",
        Action::Challenge => "challenged",
    }
    .into();
    if b.allowlisted(net.first()) {
        view["warning"] =
            format!("{net} is allowlisted: the block has no effect while it is").into();
    }
    Ok(view)
}

/// `POST security/blocked-ips {ip, reason?, duration? | ttl?}` (and
/// nginx-defender's `POST block`): 201 and the block.
pub(super) fn add(b: &dyn Backend, body: &Map<String, Value>) -> Result<Response, Error> {
    Ok(Response::json(201, &make_block(b, body)?))
}

/// `POST security/block-ip {ip, ttl?}` (FlatRun's agent): 200 and the
/// block, with `success: true`.
pub(super) fn add_internal(b: &dyn Backend, body: &Map<String, Value>) -> Result<Response, Error> {
    let mut view = make_block(b, body)?;
    view["success"] = true.into();
    Ok(Response::json(200, &view))
}

/// `DELETE security/blocked-ips/<target>`
pub(super) fn remove(b: &dyn Backend, text: &str) -> Result<Response, Error> {
    let net = target(text, "ip")?;
    b.unblock(&net).map_err(|e| e.or_field("ip"))?;
    Ok(Response::json(
        200,
        &json!({ "ip": text, "message": "unblocked" }),
    ))
}

/// `POST security/unblock-ip {ip}` (FlatRun's agent): as its nginx side
/// did (a delete from the dict), unblocking what is not blocked is a
/// success too; a denylist entry is still a 409.
pub(super) fn remove_internal(
    b: &dyn Backend,
    body: &Map<String, Value>,
) -> Result<Response, Error> {
    super::only_fields(body, &["ip"])?;
    let Some(Value::String(ip)) = body.get("ip").filter(|v| v.as_str() != Some("")) else {
        return Err(Error::invalid(
            "ip",
            "ip is required: an IP address or a CIDR",
        ));
    };
    let net = target(ip, "ip")?;
    let message = match b.unblock(&net) {
        Ok(()) => "unblocked".to_string(),
        Err(e) if e.kind() == Kind::NotFound => format!("{net} was not blocked"),
        Err(e) => return Err(e.or_field("ip")),
    };
    Ok(Response::json(
        200,
        &json!({ "ip": net.to_string(), "message": message, "success": true }),
    ))
}

/// `GET blocked-ips` (nginx-defender): the addresses and networks
/// blocked, denylist included, as a JSON array of strings (its
/// `jq -r '.[]'` makes `deny` lines of them).
pub(super) fn addresses(b: &dyn Backend) -> Result<Response, Error> {
    let list: Vec<String> = b.blocks()?.iter().map(|x| x.net.to_string()).collect();
    Ok(Response::json(200, &json!(list)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_290_079_655), "Thu, 18 Nov 2010 11:27:35 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT");
    }
}
