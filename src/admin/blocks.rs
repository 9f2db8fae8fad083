//! `security/blocked-ips`: list (JSON, or nginx `deny` lines), block,
//! unblock.

use serde_json::{json, Map, Value};

use super::accesslog::{civil_from_days, MONTHS};
use super::backend::Backend;
use super::exchange::{Request, Response};
use super::views;
use crate::error::Error;
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

/// `POST security/blocked-ips {ip, reason?, duration?}`
pub(super) fn add(b: &dyn Backend, body: &Map<String, Value>) -> Result<Response, Error> {
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
    let duration = body.get("duration").unwrap_or(&Value::Null);
    let duration_ms =
        duration_arg(Scalar::of_json(duration)).map_err(|m| Error::invalid("duration", m))?;
    let net = target(ip, "ip")?;
    let now = b.now_ms();
    b.block(&net, duration_ms, reason)?;
    let block = crate::blocks::Block {
        net,
        expires_ms: if duration_ms == 0 {
            0
        } else {
            now.saturating_add(duration_ms)
        },
        source: crate::blocks::Source::Manual,
        reason: reason.to_string(),
    };
    let mut view = views::block(&block, now);
    view["message"] = "blocked".into();
    if b.allowlisted(net.first()) {
        view["warning"] =
            format!("{net} is allowlisted: the block has no effect while it is").into();
    }
    Ok(Response::json(201, &view))
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
