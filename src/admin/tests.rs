//! The admin API against a backend in memory: routing, authorization,
//! bodies, validation messages, views, statuses from error kinds.

use serde_json::{json, Value};

use super::exchange::{Arg, Reply, Request, Response};
use super::fake::Fake;
use super::Admin;
use crate::blocks::Source;
use crate::error::{Error, Kind};
use crate::events::{Event, Kind as EventKind};
use crate::policy::credentials::Scheme;
use crate::policy::decision::Decision;

const TOKEN: &str = "t0ken-0123456789abcdef";

fn fake() -> Fake {
    Fake::new(json!({
        "dict": "warden",
        "admin_token": TOKEN,
        "admin_max_body": "4k",
        "trusted_proxies": ["127.0.0.1"],
        "denylist": ["203.0.113.0/24"],
        "allowlist": ["10.9.0.0/16"],
    }))
}

fn admin(b: &Fake) -> Admin {
    Admin::new(&b.cfg).unwrap().0
}

fn request(method: &str, path: &str) -> Request {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    Request {
        method: method.into(),
        path: path.into(),
        peer: "127.0.0.1".into(),
        authorization: Some(format!("Bearer {TOKEN}")),
        args: query
            .split('&')
            .filter(|q| !q.is_empty())
            .map(|q| match q.split_once('=') {
                Some((k, v)) => (k.to_string(), Arg::Text(v.to_string())),
                None => (q.to_string(), Arg::Flag),
            })
            .collect(),
        ..Request::default()
    }
}

/// Serves `req`, giving the body when asked for.
fn serve_with(b: &Fake, mut req: Request, body: Option<&str>) -> Response {
    let a = admin(b);
    for _ in 0..3 {
        match a.serve(b, &req) {
            Reply::Done(res) => return res,
            Reply::NeedBody { max } => {
                let body = body.unwrap_or("").as_bytes();
                req.body = Some(body[..body.len().min(max + 1)].to_vec());
            }
            Reply::NeedReputation { ip } => panic!("reputation of {ip} asked for"),
            Reply::Retry { .. } => panic!("retry"),
        }
    }
    panic!("no answer");
}

fn call(b: &Fake, method: &str, path: &str, body: Option<Value>) -> Response {
    let text = body.map(|v| v.to_string());
    serve_with(b, request(method, path), text.as_deref())
}

/// "<status> <body>" as the t/ tests show responses.
fn shown(r: &Response) -> String {
    format!("{} {}", r.status, r.body.trim_end())
}

fn api(b: &Fake, method: &str, path: &str, body: Option<Value>) -> String {
    shown(&call(b, method, path, body))
}

#[test]
fn every_endpoint_is_routed_under_any_prefix() {
    let b = fake();
    b.blocks.borrow_mut().push(crate::blocks::Block {
        net: crate::net::addr::Net::parse("192.0.2.7").unwrap(),
        expires_ms: 0,
        source: Source::Manual,
        reason: String::new(),
        action: crate::blocks::Action::Block,
    });
    for prefix in ["/api", "/admin/warden", ""] {
        let cases: &[(&str, &str, Option<Value>, u16)] = &[
            ("GET", "/security/blocked-ips", None, 200),
            (
                "POST",
                "/security/blocked-ips",
                Some(json!({"ip": "192.0.2.1"})),
                201,
            ),
            ("DELETE", "/security/blocked-ips/192.0.2.1", None, 200),
            ("GET", "/security/whitelist", None, 200),
            (
                "POST",
                "/security/whitelist",
                Some(json!({"type": "ip", "value": "192.0.2.2"})),
                201,
            ),
            ("DELETE", "/security/whitelist/999", None, 404),
            ("GET", "/security/protected-routes", None, 200),
            ("DELETE", "/security/protected-routes/999", None, 404),
            ("GET", "/security/events", None, 200),
            (
                "POST",
                "/security/cleanup",
                Some(json!({"older_than": "7d"})),
                200,
            ),
            ("GET", "/security/stats", None, 200),
            ("GET", "/security/realtime-capture", None, 200),
            (
                "PUT",
                "/security/realtime-capture",
                Some(json!({"enabled": false})),
                200,
            ),
            ("POST", "/security/refresh", None, 200),
            ("GET", "/security/check", None, 200),
            ("POST", "/security/check", None, 200),
            ("POST", "/security/analyze", None, 200),
            ("PUT", "/deployments/shop/security", Some(json!({})), 200),
            ("GET", "/deployments/shop/security", None, 200),
            ("DELETE", "/deployments/shop/security", None, 200),
            ("GET", "/metrics", None, 200),
            ("GET", "/health", None, 200),
        ];
        for (method, path, body, status) in cases {
            let path = format!("{prefix}{path}");
            let r = call(&b, method, &path, body.clone());
            assert_eq!(r.status, *status, "{method} {path}: {}", r.body);
        }
        b.doc.replace(json!({}));
    }
}

#[test]
fn unknown_endpoints_and_methods() {
    let b = fake();
    assert_eq!(
        api(&b, "GET", "/api/security/nothing", None),
        r#"404 {"error":"no such endpoint: /api/security/nothing","field":null}"#
    );
    assert_eq!(
        api(&b, "GET", "/api/nothing/at/all/", None),
        r#"404 {"error":"no such endpoint: /api/nothing/at/all","field":null}"#
    );
    let r = call(&b, "PATCH", "/api/security/blocked-ips", None);
    assert_eq!(
        shown(&r),
        r#"405 {"error":"PATCH is not allowed here (allowed: GET, POST)","field":null}"#
    );
    assert_eq!(r.header("Allow"), Some("GET, POST"));
    assert_eq!(
        api(&b, "DELETE", "/api/security/stats", None),
        r#"405 {"error":"DELETE is not allowed here (allowed: GET)","field":null}"#
    );
    let mut req = request("POST", "/api/health");
    req.authorization = None;
    let r = serve_with(&b, req, None);
    assert_eq!(
        shown(&r),
        r#"405 {"error":"POST is not allowed here (allowed: GET)","field":null}"#
    );
    // HEAD is served as GET
    assert_eq!(call(&b, "HEAD", "/api/health", None).status, 200);
    // not found before not allowed before unauthorized
    let mut req = request("PATCH", "/api/nothing");
    req.authorization = None;
    assert_eq!(serve_with(&b, req, None).status, 404);
}

#[test]
fn authorization() {
    let b = fake();
    let with = |auth: Option<&str>| {
        let mut req = request("POST", "/api/security/blocked-ips");
        req.authorization = auth.map(str::to_string);
        serve_with(&b, req, Some(r#"{"ip": "192.0.2.50"}"#))
    };
    for (auth, msg) in [
        (None, "missing Authorization: Bearer <token>"),
        (Some("Bearer wrong"), "invalid token"),
        (
            Some("Basic t0ken-0123456789abcdef"),
            "Authorization must be Bearer <token>",
        ),
    ] {
        let r = with(auth);
        assert_eq!(
            shown(&r),
            format!(r#"401 {{"error":"{msg}","field":"Authorization"}}"#)
        );
        assert_eq!(
            r.header("WWW-Authenticate"),
            Some("Bearer realm=\"warden\"")
        );
    }
    assert_eq!(b.blocks.borrow().len(), 1, "nothing was blocked");
    // the body is not asked for before the caller is known
    let mut req = request("POST", "/api/security/blocked-ips");
    req.authorization = None;
    assert!(matches!(admin(&b).serve(&b, &req), Reply::Done(r) if r.status == 401));
    // public endpoints
    for path in ["/api/health", "/api/security/check"] {
        let mut req = request("GET", path);
        req.authorization = None;
        assert_eq!(serve_with(&b, req, None).status, 200, "{path}");
    }
    // without a token the API is off
    let off = Fake::new(json!({}));
    let r = call(&off, "GET", "/api/security/stats", None);
    assert_eq!(r.status, 401);
    assert!(r
        .body
        .contains("the admin API is off: set admin_token or admin_token_file"));
}

#[test]
fn bodies() {
    let b = fake();
    // asked for only when the endpoint takes one
    let a = admin(&b);
    assert_eq!(
        a.serve(&b, &request("POST", "/api/security/blocked-ips")),
        Reply::NeedBody { max: 4096 }
    );
    assert!(matches!(
        a.serve(&b, &request("GET", "/api/security/blocked-ips")),
        Reply::Done(_)
    ));
    // a declared length over the limit is refused before reading
    let mut req = request("POST", "/api/security/blocked-ips");
    req.content_length = Some("5031".into());
    assert_eq!(
        serve_with(&b, req, None).body.trim_end(),
        r#"{"error":"request body of 5031 bytes is over the limit of 4096 (opts.admin_max_body)","field":"body"}"#
    );
    let big = format!(r#"{{"ip": "1.2.3.4", "reason": "{}"}}"#, "x".repeat(5000));
    let r = serve_with(&b, request("POST", "/api/security/blocked-ips"), Some(&big));
    assert_eq!(
        shown(&r),
        r#"413 {"error":"request body is over the limit of 4096 bytes (opts.admin_max_body)","field":"body"}"#
    );
    let post = |text: &str| {
        shown(&serve_with(
            &b,
            request("POST", "/api/security/blocked-ips"),
            Some(text),
        ))
    };
    assert_eq!(
        post(r#"{"ip": "1.2.3.4""#),
        r#"400 {"error":"invalid JSON: EOF while parsing an object at line 1 column 16","field":"body"}"#
    );
    assert_eq!(
        post(r#"["1.2.3.4"]"#),
        r#"400 {"error":"the body must be a JSON object","field":"body"}"#
    );
    assert_eq!(
        post(" \n"),
        r#"400 {"error":"a JSON object is required","field":"body"}"#
    );
    // /security/check's body is optional
    let r = serve_with(&b, request("POST", "/api/security/check"), Some(""));
    assert_eq!(r.status, 200);
}

#[test]
fn blocked_ips() {
    let b = fake();
    let r = api(
        &b,
        "POST",
        "/api/security/blocked-ips",
        Some(json!({"ip": "198.51.100.0/24", "reason": "scan", "duration": "1h"})),
    );
    let expires = b.now / 1000 + 3600;
    assert_eq!(
        r,
        format!(
            r#"201 {{"expires":{expires},"ip":"198.51.100.0/24","message":"blocked","permanent":false,"reason":"scan","remaining":3600,"source":"manual"}}"#
        )
    );
    let r = api(
        &b,
        "POST",
        "/api/security/blocked-ips",
        Some(json!({"ip": "10.9.1.1", "duration": 0})),
    );
    assert!(r.contains(r#""permanent":true"#), "{r}");
    assert!(
        r.contains(r#""warning":"10.9.1.1 is allowlisted: the block has no effect while it is""#),
        "{r}"
    );
    let list = api(&b, "GET", "/api/security/blocked-ips", None);
    assert!(list.starts_with(r#"200 {"blocked_ips":[{"expires":null,"ip":"203.0.113.0/24","permanent":true,"reason":"denylist","remaining":null,"source":"denylist"},"#), "{list}");
    assert!(list.ends_with(r#""total":3}"#), "{list}");
    let r = call(&b, "GET", "/api/security/blocked-ips?format=nginx", None);
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(
        r.body,
        "# lua-resty-warden: 3 blocked at Fri, 21 Nov 2025 04:40:00 GMT\n\
         deny 203.0.113.0/24;\ndeny 198.51.100.0/24;\ndeny 10.9.1.1;\n"
    );
    assert_eq!(
        api(&b, "GET", "/api/security/blocked-ips?format=xml", None),
        r#"400 {"error":"format must be 'json' or 'nginx', got 'xml'","field":"format"}"#
    );
    assert_eq!(
        api(
            &b,
            "DELETE",
            "/api/security/blocked-ips/198.51.100.0/24",
            None
        ),
        r#"200 {"ip":"198.51.100.0/24","message":"unblocked"}"#
    );
    for (path, expected) in [
        (
            "198.51.100.0/24",
            r#"404 {"error":"198.51.100.0/24 is not blocked","field":"ip"}"#,
        ),
        (
            "203.0.113.0/24",
            r#"409 {"error":"203.0.113.0/24 is in the denylist (configuration), not a block","field":"ip"}"#,
        ),
        (
            "not-an-ip",
            r#"400 {"error":"invalid IP address or CIDR 'not-an-ip'","field":"ip"}"#,
        ),
    ] {
        let p = format!("/api/security/blocked-ips/{path}");
        assert_eq!(api(&b, "DELETE", &p, None), expected);
    }
    let post = |body: Value| api(&b, "POST", "/api/security/blocked-ips", Some(body));
    assert_eq!(
        post(json!({"ip": "1.2.3.256"})),
        r#"400 {"error":"invalid IP address or CIDR '1.2.3.256'","field":"ip"}"#
    );
    assert_eq!(
        post(json!({"reason": "x"})),
        r#"400 {"error":"ip is required: an IP address or a CIDR","field":"ip"}"#
    );
    assert_eq!(
        post(json!({"ip": "1.2.3.4", "duration": -5})),
        r#"400 {"error":"duration must be a number of seconds >= 0 or a string like '90s', '15m', '24h', '7d', got -5","field":"duration"}"#
    );
    assert_eq!(
        post(json!({"ip": "1.2.3.4", "reason": 5})),
        r#"400 {"error":"reason must be a string","field":"reason"}"#
    );
    // a full dict: 507, whatever the message says
    b.full.set(true);
    let r = post(json!({"ip": "1.2.3.4"}));
    assert!(
        r.starts_with(r#"507 {"error":"shared dict 'warden' is full"#),
        "{r}"
    );
    assert!(r.ends_with(r#""field":null}"#), "{r}");
}

#[test]
fn statuses_come_from_error_kinds() {
    for (kind, status) in [
        (Kind::Invalid, 400),
        (Kind::Unauthorized, 401),
        (Kind::Forbidden, 403),
        (Kind::NotFound, 404),
        (Kind::MethodNotAllowed, 405),
        (Kind::Conflict, 409),
        (Kind::TooLarge, 413),
        (Kind::Internal, 500),
        (Kind::Unavailable, 503),
        (Kind::Full, 507),
    ] {
        // a message that names another status changes nothing
        let e = Error::new(kind, "f", "shared dict is not blocked: 404");
        let r = Response::error(&e);
        assert_eq!(r.status, status, "{kind:?}");
        assert_eq!(
            r.body,
            "{\"error\":\"shared dict is not blocked: 404\",\"field\":\"f\"}\n"
        );
    }
}

#[test]
fn whitelist_routes_sites_capture() {
    let b = fake();
    let add = |v: Value| {
        api(&b, "POST", "/api/security/whitelist", Some(v))
            .replace(&format!("\"created\":{}", b.now / 1000), "\"created\":T")
    };
    assert_eq!(
        add(json!({"type": "ip", "value": "192.0.2.9", "description": "ops"})),
        r#"201 {"created":T,"description":"ops","id":1,"type":"ip","value":"192.0.2.9"}"#
    );
    assert_eq!(
        add(json!({"type": "ip", "value": "192.0.2.9"})),
        r#"409 {"error":"192.0.2.9 is already in the whitelist (id 1)","field":"value"}"#
    );
    for (body, expected) in [
        (
            json!({"type": "host", "value": "a"}),
            r#"400 {"error":"type: must be 'ip', 'cidr' or 'path', got 'host'","field":"type"}"#,
        ),
        (
            json!({"type": "path", "value": "health"}),
            r#"400 {"error":"value: path glob 'health' must start with '/' or '*'","field":"value"}"#,
        ),
        (
            json!({"type": "ip", "value": "10.0.0.1", "color": "red"}),
            r#"400 {"error":"color: is not a known field (known: type, value, description)","field":"color"}"#,
        ),
    ] {
        assert_eq!(add(body), expected);
    }
    let list = api(&b, "GET", "/api/security/whitelist", None);
    assert!(
        list.contains(r#""source":"api""#) && list.contains(r#""total":1,"#),
        "{list}"
    );
    assert_eq!(
        api(&b, "DELETE", "/api/security/whitelist/1", None),
        r#"200 {"id":1,"message":"whitelist entry 1 deleted"}"#
    );
    assert_eq!(
        api(&b, "DELETE", "/api/security/whitelist/1", None),
        r#"404 {"error":"no whitelist entry with id 1","field":"id"}"#
    );
    for bad in ["x", "0", "1.5", "-2"] {
        assert_eq!(
            api(
                &b,
                "DELETE",
                &format!("/api/security/whitelist/{bad}"),
                None
            ),
            format!(r#"400 {{"error":"id must be a positive integer, got '{bad}'","field":"id"}}"#)
        );
    }

    // protected routes
    let r = api(
        &b,
        "POST",
        "/api/security/protected-routes",
        Some(json!({"path": "/admin", "auth_type": "basic", "credentials": "u:p"})),
    );
    assert!(
        r.starts_with("201 {\"auth_type\":\"basic\",\"created\":"),
        "{r}"
    );
    assert!(
        r.contains(r#""id":2,"#) && r.contains(r#""source":"api""#),
        "{r}"
    );
    assert_eq!(
        api(
            &b,
            "POST",
            "/api/security/protected-routes",
            Some(json!({"path": "/x", "auth_type": "digest", "credentials": "a:b"}))
        ),
        r#"400 {"error":"auth_type: 'digest' is not 'basic' or 'bearer'","field":"auth_type"}"#
    );
    let list = api(&b, "GET", "/api/security/protected-routes", None);
    assert!(
        list.contains(r#""created":"#) && list.ends_with(r#""total":1}"#),
        "{list}"
    );
    assert_eq!(
        api(&b, "DELETE", "/api/security/protected-routes/2", None),
        r#"200 {"id":2,"message":"protected route 2 deleted"}"#
    );

    // sites
    assert_eq!(
        api(
            &b,
            "PUT",
            "/api/deployments/shop/security",
            Some(json!({"allowed_ips": ["10.0.0.0/8"], "blocked_paths": ["/shop/wp-admin"]}))
        ),
        r#"200 {"allowed_ips":["10.0.0.0/8"],"blocked_paths":["/shop/wp-admin"],"deployment":"shop","enabled":true,"rate_limit":0,"source":"api"}"#
    );
    assert_eq!(
        api(
            &b,
            "PUT",
            "/api/deployments/shop/security",
            Some(json!({"rate_limit": "fast"}))
        ),
        r#"400 {"error":"rate_limit: must be a number of requests per second or a string like '10r/s' or '600r/m', got 'fast'","field":"rate_limit"}"#
    );
    let long = "a".repeat(65);
    let r = api(
        &b,
        "PUT",
        &format!("/api/deployments/{long}/security"),
        Some(json!({})),
    );
    assert!(
        r.starts_with("400 {\"error\":\"name: must be 1 to 64"),
        "{r}"
    );
    assert!(r.ends_with(r#""field":"deployment"}"#), "{r}");
    assert_eq!(
        api(&b, "DELETE", "/api/deployments/shop/security", None),
        r#"200 {"deployment":"shop","message":"deleted"}"#
    );
    assert_eq!(
        api(&b, "DELETE", "/api/deployments/shop/security", None),
        r#"404 {"error":"no security policy for deployment 'shop' set through the API","field":"deployment"}"#
    );
    assert_eq!(
        api(&b, "GET", "/api/deployments/nope/security", None),
        r#"404 {"error":"no security policy for deployment 'nope'","field":"deployment"}"#
    );

    // capture
    assert_eq!(
        api(&b, "GET", "/api/security/realtime-capture", None),
        r#"200 {"captured":0,"enabled":false,"max_captures":1000,"since":null}"#
    );
    let r = api(
        &b,
        "PUT",
        "/api/security/realtime-capture",
        Some(json!({"enabled": true})),
    );
    assert_eq!(
        r,
        format!(
            r#"200 {{"captured":0,"enabled":true,"max_captures":1000,"since":{}}}"#,
            b.now / 1000
        )
    );
    assert_eq!(
        b.logs.borrow().last().unwrap(),
        "Warn warden: real-time capture on (admin API)"
    );
    for (v, got) in [
        (json!("yes"), "yes"),
        (json!(1), "1"),
        (Value::Null, "null"),
    ] {
        assert_eq!(
            api(
                &b,
                "PUT",
                "/api/security/realtime-capture",
                Some(json!({"enabled": v}))
            ),
            format!(
                r#"400 {{"error":"enabled must be true or false, got {got}","field":"enabled"}}"#
            )
        );
    }
    assert_eq!(
        api(&b, "PUT", "/api/security/realtime-capture", Some(json!({}))),
        r#"400 {"error":"enabled must be true or false, got nothing","field":"enabled"}"#
    );
    // a policy change the dict has no room for
    b.full.set(true);
    assert_eq!(
        api(&b, "DELETE", "/api/deployments/x/security", None),
        r#"507 {"error":"shared dict 'warden' is full (no memory)","field":null}"#
    );
}

#[test]
fn configured_policy_is_shown_as_config() {
    let b = Fake::new(json!({
        "admin_token": TOKEN,
        "whitelist": [{"type": "cidr", "value": "10.0.0.0/8"}],
        "sites": {"shop": {"rate_limit": "5r/m"}},
        "realtime_capture": true,
    }));
    assert_eq!(
        api(&b, "GET", "/api/security/whitelist", None),
        r#"200 {"total":1,"whitelist":[{"description":"","id":null,"source":"config","type":"cidr","value":"10.0.0.0/8"}]}"#
    );
    assert_eq!(
        api(&b, "GET", "/api/deployments/shop/security", None),
        r#"200 {"allowed_ips":[],"blocked_paths":[],"deployment":"shop","enabled":true,"rate_limit":"5r/m","source":"config"}"#
    );
    assert!(api(&b, "GET", "/api/security/realtime-capture", None).contains(r#""enabled":true"#));
    // a stored document that cannot be read: 500 with the reason
    b.doc.replace(json!("broken"));
    assert_eq!(
        api(&b, "GET", "/api/security/whitelist", None),
        r#"500 {"error":"stored policy document: invalid JSON","field":null}"#
    );
}

#[test]
fn events_cleanup_stats() {
    let mut b = fake();
    let ev = |t: u64, ip: &str, kind: EventKind| Event {
        time_ms: b.now - t,
        ip: ip.into(),
        kind: Some(kind),
        ..Event::default()
    };
    b.events = vec![
        ev(1_000, "192.0.2.78", EventKind::BlockedIp),
        ev(2_000, "192.0.2.77", EventKind::BlockedIp),
        ev(3_000, "192.0.2.5", EventKind::Capture),
    ];
    let r = api(
        &b,
        "GET",
        "/api/security/events?limit=1&type=blocked_ip",
        None,
    );
    assert!(
        r.starts_with("200 {\"events\":[{") && r.ends_with(r#""total":1}"#),
        "{r}"
    );
    assert!(r.contains(r#""ip":"192.0.2.78""#), "{r}");
    for (query, expected) in [
        (
            "limit=abc",
            r#"{"error":"limit must be a positive integer, got 'abc'","field":"limit"}"#,
        ),
        (
            "since=-1",
            r#"{"error":"since must be a time in seconds since the epoch, got -1","field":"since"}"#,
        ),
        (
            "ip=nope",
            r#"{"error":"ip: invalid IP address or CIDR 'nope'","field":"ip"}"#,
        ),
        (
            "limit",
            r#"{"error":"limit must be given once, with a value","field":"limit"}"#,
        ),
    ] {
        let r = call(&b, "GET", &format!("/api/security/events?{query}"), None);
        assert_eq!((r.status, r.body.trim_end()), (400, expected), "{query}");
    }
    let r = api(&b, "GET", "/api/security/events?type=bogus", None);
    assert!(
        r.starts_with("400 {\"error\":\"type must be one of blocked_ip, rate_limited"),
        "{r}"
    );

    assert_eq!(
        api(&b, "POST", "/api/security/cleanup", Some(json!({}))),
        r#"400 {"error":"older_than is required: seconds, or a duration like '7d'","field":"older_than"}"#
    );
    assert_eq!(
        api(
            &b,
            "POST",
            "/api/security/cleanup",
            Some(json!({"older_than": "soon"}))
        ),
        r#"400 {"error":"older_than: duration must be a duration like '90s', '15m', '24h' or '7d', got 'soon'","field":"older_than"}"#
    );
    assert_eq!(
        api(
            &b,
            "POST",
            "/api/security/cleanup",
            Some(json!({"older_than": 1.5}))
        ),
        r#"200 {"older_than":1.5,"removed":2}"#
    );

    let r = call(&b, "GET", "/api/security/stats", None);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["blocked_ips"], 1);
    assert_eq!(
        v["top_offenders"].to_string(),
        r#"[{"events":1,"ip":"192.0.2.77"},{"events":1,"ip":"192.0.2.78"}]"#
    );
    assert_eq!(v["counters"]["dict"], "warden");
    assert_eq!(v["events_by_type"]["blocked_ip"], 2);

    let r = call(&b, "GET", "/api/metrics", None);
    assert_eq!(r.header("Content-Type"), Some("text/plain; version=0.0.4"));
    assert!(r
        .body
        .contains("warden_shm_free_bytes{dict=\"warden\"} 4096\n"));
    assert_eq!(
        api(&b, "GET", "/api/health", None),
        r#"200 {"blocks":1,"dict_free_bytes":4096,"status":"ok","version":"9.9.9"}"#
    );
    assert_eq!(
        api(&b, "POST", "/api/security/refresh", None),
        r#"200 {"blocks":1,"message":"refreshed","protected_routes":0}"#
    );
}

fn check(
    b: &Fake,
    mut req: Request,
    body: Option<Value>,
    reputation: Option<Option<f64>>,
) -> Response {
    let a = admin(b);
    req.body = body.map(|v| v.to_string().into_bytes());
    if req.body.is_none() && req.method == "POST" {
        req.body = Some(Vec::new());
    }
    match a.serve(b, &req) {
        Reply::Done(res) => res,
        Reply::NeedReputation { ip } => {
            req.reputation = Some(reputation.unwrap_or_else(|| panic!("{ip}")));
            match a.serve(b, &req) {
                Reply::Done(res) => res,
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn security_check() {
    let b = fake();
    let post = |peer: &str, body: Value| {
        let mut req = request("POST", "/api/security/check");
        req.peer = peer.into();
        check(&b, req, Some(body), None)
    };
    b.decision.replace(Decision::Blocked(Source::Manual));
    b.blocks.borrow_mut().push(crate::blocks::Block {
        net: crate::net::addr::Net::parse("192.0.2.61").unwrap(),
        expires_ms: 0,
        source: Source::Manual,
        reason: "test".into(),
        action: crate::blocks::Action::Block,
    });
    let r = post("127.0.0.1", json!({"ip": "192.0.2.61"}));
    assert_eq!(
        shown(&r),
        r#"403 {"allowed":false,"ip":"192.0.2.61","reason":"blocked: manual","should_block":true,"threat_score":100}"#
    );
    assert_eq!(r.header("X-Threat-Score"), Some("100"));
    assert_eq!(r.header("X-Warden-Reason"), Some("blocked: manual"));
    assert_eq!(
        shown(&post("127.0.0.1", json!({"ip": "nope"}))),
        r#"400 {"error":"invalid IP address 'nope'","field":"ip"}"#
    );
    assert_eq!(
        shown(&post("127.0.0.1", json!({"ip": 5}))),
        r#"400 {"error":"ip must be a string","field":"ip"}"#
    );
    // only a trusted proxy may name the ip, in the body or the query
    let decided = b.decided.get();
    assert_eq!(
        shown(&post("192.0.2.1", json!({"ip": "192.0.2.61"}))),
        r#"403 {"error":"only a trusted caller may name the ip","field":"ip"}"#
    );
    let mut req = request("GET", "/api/security/check?ip=192.0.2.61");
    req.peer = "192.0.2.1".into();
    assert_eq!(check(&b, req, None, None).status, 403);
    assert_eq!(b.decided.get(), decided, "nothing decided");

    // the client from X-Real-IP behind a trusted proxy, as auth_request sends
    b.decision.replace(Decision::Pass);
    let mut req = request("GET", "/api/security/check");
    req.authorization = None;
    req.x_real_ip = Some("192.0.2.60".into());
    let r = check(&b, req.clone(), None, None);
    assert_eq!(
        shown(&r),
        r#"200 {"allowed":true,"ip":"192.0.2.60","reason":"allowed","should_block":false,"threat_score":0}"#
    );
    let mut untrusted = req.clone();
    untrusted.peer = "192.0.2.9".into();
    assert!(check(&b, untrusted, None, None)
        .body
        .contains(r#""ip":"192.0.2.9""#));
    let mut junk = req.clone();
    junk.x_real_ip = Some("junk".into());
    assert_eq!(
        shown(&check(&b, junk.clone(), None, None)),
        r#"400 {"error":"invalid IP address 'junk'","field":"ip"}"#
    );
    junk.peer = "unix:".into();
    assert_eq!(
        shown(&check(&b, junk, None, None)),
        r#"400 {"error":"invalid IP address 'unix:'","field":"ip"}"#
    );

    // decisions
    for (d, status, reason, header) in [
        (Decision::ForbiddenIp, 403, "site: not in allowed_ips", None),
        (Decision::BlockedPath, 403, "site: blocked path", None),
        (
            Decision::RateLimited {
                limit: 5,
                retry_after_s: 12.2,
            },
            403,
            "site: rate limited",
            Some(("Retry-After", "13")),
        ),
        (
            Decision::RateLimited {
                limit: 5,
                retry_after_s: 0.1,
            },
            403,
            "site: rate limited",
            Some(("Retry-After", "1")),
        ),
        (
            Decision::Unauthorized {
                why: "missing",
                scheme: Scheme::Basic,
                realm: "warden".into(),
            },
            401,
            "credentials missing",
            Some((
                "WWW-Authenticate",
                "Basic realm=\"warden\", charset=\"UTF-8\"",
            )),
        ),
        (
            Decision::Unauthorized {
                why: "denied",
                scheme: Scheme::Bearer,
                realm: "api".into(),
            },
            401,
            "credentials denied",
            Some(("WWW-Authenticate", "Bearer realm=\"api\"")),
        ),
        (Decision::Skip, 200, "allowed", None),
        (Decision::Allow, 200, "allowed", None),
    ] {
        b.decision.replace(d.clone());
        let r = check(&b, req.clone(), None, None);
        assert_eq!(r.status, status, "{d:?}");
        assert_eq!(r.header("X-Warden-Reason"), Some(reason), "{d:?}");
        if let Some((k, v)) = header {
            assert_eq!(r.header(k), Some(v), "{d:?}");
        }
        assert_eq!(r.body.contains("\"allowed\":true"), status == 200);
        assert_eq!(r.body.contains("\"should_block\":true"), status == 403);
    }

    // monitoring only: a refusal is let through, and said so
    let m = Fake::new(json!({"trusted_proxies": ["127.0.0.1"], "blocking_mode": 0}));
    m.decision.replace(Decision::BlockedPath);
    let r = check(&m, req.clone(), None, None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Warden-Would-Block"), Some("site: blocked path"));
    assert_eq!(
        r.header("X-Warden-Reason"),
        Some("allowed (blocking_mode 0)")
    );
}

#[test]
fn security_check_asks_for_reputation() {
    let mut b = fake();
    b.score = 50;
    let mut req = request("GET", "/api/security/check");
    req.x_real_ip = Some("192.0.2.63".into());
    req.reputation_threshold = Some(20.0);
    // asked for before anything is decided (and counted)
    assert_eq!(
        admin(&b).serve(&b, &req),
        Reply::NeedReputation {
            ip: "192.0.2.63".into()
        }
    );
    assert_eq!(b.decided.get(), 0);
    let r = check(&b, req.clone(), None, Some(Some(10.0)));
    assert_eq!(r.status, 403);
    assert_eq!(r.header("X-Warden-Reason"), Some("reputation 10"));
    assert_eq!(r.header("X-Threat-Score"), Some("90"));
    let r = check(&b, req.clone(), None, Some(Some(80.0)));
    assert_eq!((r.status, r.header("X-Threat-Score")), (200, Some("50")));
    // the lookup failed: fail open
    let r = check(&b, req.clone(), None, Some(None));
    assert_eq!((r.status, r.header("X-Threat-Score")), (200, Some("50")));
    // not asked for an allowlisted client
    req.x_real_ip = Some("10.9.0.1".into());
    assert!(matches!(admin(&b).serve(&b, &req), Reply::Done(r) if r.status == 200));
}

#[test]
fn analyze() {
    let b = fake();
    let line = |ip: &str, path: &str| {
        format!(
            r#"{ip} - - [21/Nov/2026:10:15:31 +0000] "GET {path} HTTP/1.1" 404 153 "-" "Mozilla/5.0""#
        )
    };
    let text = format!(
        "{}\r\n\n  \n{}\n",
        line("198.51.100.9", "/a"),
        line("198.51.100.9", "/trip")
    );
    let r = serve_with(&b, request("POST", "/api/security/analyze"), Some(&text));
    assert_eq!(
        shown(&r),
        r#"200 {"analyzed":2,"errors":[],"rejected":0,"tripped":[{"action":"blocked for 1d","ip":"198.51.100.9","rule":"not_found"}]}"#
    );
    assert_eq!(
        *b.observed.borrow(),
        ["198.51.100.9 /a", "198.51.100.9 /trip"]
    );
    let json_form = json!({"ip": "x", "log_entry": line("198.51.100.10", "/")}).to_string();
    let r = serve_with(
        &b,
        request("POST", "/api/security/analyze"),
        Some(&json_form),
    );
    assert!(r.body.starts_with(r#"{"analyzed":1,"#), "{}", r.body);
    let mixed = format!("not a log line\n{}", line("198.51.100.11", "/"));
    let r = serve_with(&b, request("POST", "/api/security/analyze"), Some(&mixed));
    assert_eq!(
        shown(&r),
        r#"200 {"analyzed":1,"errors":[{"error":"line: expected '- ' after the address, got 'a log line'","field":"line","line":1}],"rejected":1,"tripped":[]}"#
    );
    let r = serve_with(
        &b,
        request("POST", "/api/security/analyze"),
        Some("garbage"),
    );
    assert_eq!(
        shown(&r),
        r#"400 {"error":"line 1: line: expected '- ' after the address, got ''","field":"line"}"#
    );
    let bad_addr = line("300.1.1.1", "/");
    let r = serve_with(
        &b,
        request("POST", "/api/security/analyze"),
        Some(&bad_addr),
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains(r#""field":"remote_addr""#), "{}", r.body);
    let r = serve_with(
        &b,
        request("POST", "/api/security/analyze"),
        Some(r#"{"lines": [1]}"#),
    );
    assert_eq!(
        shown(&r),
        r#"400 {"error":"log lines must be strings","field":"log_entry"}"#
    );
}

#[test]
fn too_many_lines() {
    let mut b = fake();
    b.cfg.admin_max_body = 1 << 20;
    let text = "x\n".repeat(super::analyze::MAX_LINES + 1);
    let r = serve_with(&b, request("POST", "/api/security/analyze"), Some(&text));
    assert_eq!(
        shown(&r),
        r#"413 {"error":"more than 100000 lines","field":"body"}"#
    );
}

#[test]
fn a_panic_is_a_500() {
    let b = fake();
    b.panic.set(true);
    let r = call(&b, "GET", "/api/security/blocked-ips", None);
    assert_eq!(
        shown(&r),
        r#"500 {"error":"internal error (see the error log)","field":null}"#
    );
    assert_eq!(
        b.logs.borrow().last().unwrap(),
        "Err warden: api: GET /api/security/blocked-ips: the fake panics"
    );
}

proptest::proptest! {
    /// Whatever the method, path, headers and body: an answer with a
    /// status the API documents, never a panic or a 500.
    #[test]
    fn any_request_gets_a_documented_status(
        method in "(GET|POST|PUT|DELETE|HEAD|PATCH|[A-Z]{1,7})",
        path in "(/api|/x/y)?(/(security|deployments|blocked-ips|whitelist|protected-routes|check|analyze|metrics|health|stats|events|[a-z0-9.:%_/-]{0,12})){0,4}/?",
        query in proptest::collection::vec(("(limit|since|type|ip|format|site|[a-z]{1,5})", "[ -~]{0,8}"), 0..4),
        auth in proptest::option::of("(Bearer t0ken-0123456789abcdef|Bearer x|[ -~]{0,20})"),
        body in proptest::option::of("(\\{\"ip\":\"192.0.2.[0-9]{1,3}\"\\}|\\{[ -~]{0,30}|[ -~\n]{0,60})"),
        peer in "(127.0.0.1|192.0.2.1|unix:|::1)",
    ) {
        let b = fake();
        let mut req = request(&method, &path);
        req.peer = peer;
        req.authorization = auth;
        req.args = query.into_iter().map(|(k, v)| (k, Arg::Text(v))).collect();
        let a = admin(&b);
        let mut res = None;
        for _ in 0..3 {
            match a.serve(&b, &req) {
                Reply::Done(r) => {
                    res = Some(r);
                    break;
                }
                Reply::NeedBody { max } => {
                    let text = body.clone().unwrap_or_default().into_bytes();
                    req.body = Some(text[..text.len().min(max + 1)].to_vec());
                }
                Reply::NeedReputation { .. } => req.reputation = Some(None),
                Reply::Retry { .. } => req.retries += 1,
            }
        }
        let r = res.expect("an answer within three calls");
        proptest::prop_assert!(
            [200, 201, 400, 401, 403, 404, 405, 409, 413, 507].contains(&r.status),
            "{} {} -> {} {}", method, path, r.status, r.body
        );
        proptest::prop_assert!(r.header("Content-Type").is_some());
        if r.header("Content-Type") == Some("application/json") {
            proptest::prop_assert!(serde_json::from_str::<Value>(&r.body).is_ok());
        }
    }
}

#[test]
fn a_busy_policy_is_retried_then_given_up() {
    let b = fake();
    let a = admin(&b);
    let mut req = request("PUT", "/api/security/realtime-capture");
    req.body = Some(br#"{"enabled": true}"#.to_vec());
    b.busy.set(2);
    assert_eq!(a.serve(&b, &req), Reply::Retry { after_ms: 5 });
    req.retries += 1;
    assert_eq!(a.serve(&b, &req), Reply::Retry { after_ms: 5 });
    req.retries += 1;
    assert!(matches!(a.serve(&b, &req), Reply::Done(r) if r.status == 200));
    // on the last try the lock is an error
    let refused = |req: &Request| match a.serve(&b, req) {
        Reply::Done(r) => assert_eq!(
            shown(&r),
            r#"503 {"error":"cannot change the policy: another change holds the lock","field":null}"#
        ),
        other => panic!("{other:?}"),
    };
    b.busy.set(1);
    req.retries = super::exchange::MAX_RETRIES;
    refused(&req);
    // time ends the waiting, not the count: a loaded machine sleeps longer
    // than asked
    req.retries = 3;
    req.started_ms = super::backend::Backend::now_ms(&b) - super::exchange::WAIT_MS + 1;
    b.busy.set(1);
    assert_eq!(a.serve(&b, &req), Reply::Retry { after_ms: 5 });
    req.started_ms -= 1;
    b.busy.set(1);
    refused(&req);
}

/// FlatRun's agent (its PR): `POST /_internal/security/block-ip
/// {"ip","ttl"}`, `unblock-ip {"ip"}`, `refresh-blocked-ips`, as its Go
/// code sends them (json.Marshal of a map: keys sorted, no token).
#[test]
fn flatrun_agents_internal_api() {
    let b = fake();
    let a = admin(&b);
    let internal = |method: &str, path: &str, body: Option<&str>| {
        let mut req = request(method, path);
        req.authorization = None;
        req.token_required = false;
        loop {
            match a.serve(&b, &req) {
                Reply::Done(r) => return shown(&r),
                Reply::NeedBody { .. } => req.body = Some(body.unwrap_or("").as_bytes().to_vec()),
                other => panic!("{other:?}"),
            }
        }
    };
    let expires = b.now / 1000 + 60;
    assert_eq!(
        internal(
            "POST",
            "/_internal/security/block-ip",
            Some(r#"{"ip":"192.0.2.9","ttl":60}"#)
        ),
        format!(
            r#"200 {{"expires":{expires},"ip":"192.0.2.9","message":"blocked","permanent":false,"reason":"","remaining":60,"source":"manual","success":true}}"#
        )
    );
    // no ttl: auto_block_duration (24 hours by default); 0: permanent
    let r = internal(
        "POST",
        "/_internal/security/block-ip",
        Some(r#"{"ip":"192.0.2.10"}"#),
    );
    assert!(r.contains(r#""remaining":86400,"#), "{r}");
    let r = internal(
        "POST",
        "/_internal/security/block-ip",
        Some(r#"{"ip":"192.0.2.11","ttl":0}"#),
    );
    assert!(r.contains(r#""permanent":true"#), "{r}");
    // the agent sends 1 year for its "permanent" blocks
    let r = internal(
        "POST",
        "/_internal/security/block-ip",
        Some(r#"{"ip":"192.0.2.12","ttl":31536000}"#),
    );
    assert!(r.contains(r#""remaining":31536000,"#), "{r}");
    assert_eq!(
        internal(
            "POST",
            "/_internal/security/block-ip",
            Some(r#"{"ip":"192.0.2.9","ttl":-1}"#)
        ),
        r#"400 {"error":"ttl must be a number of seconds >= 0 or a string like '90s', '15m', '24h', '7d', got -1","field":"ttl"}"#
    );
    assert_eq!(
        internal(
            "POST",
            "/_internal/security/block-ip",
            Some(r#"{"ip":"192.0.2.9","ttl":60,"duration":60}"#)
        ),
        r#"400 {"error":"give duration or ttl (its alias), not both","field":"ttl"}"#
    );
    assert_eq!(
        internal(
            "POST",
            "/_internal/security/unblock-ip",
            Some(r#"{"ip":"192.0.2.9"}"#)
        ),
        r#"200 {"ip":"192.0.2.9","message":"unblocked","success":true}"#
    );
    // unblocking what is not blocked is a success, as the PR's delete was
    assert_eq!(
        internal(
            "POST",
            "/_internal/security/unblock-ip",
            Some(r#"{"ip":"192.0.2.9"}"#)
        ),
        r#"200 {"ip":"192.0.2.9","message":"192.0.2.9 was not blocked","success":true}"#
    );
    assert_eq!(
        internal(
            "POST",
            "/_internal/security/unblock-ip",
            Some(r#"{"ip":"203.0.113.0/24"}"#)
        ),
        r#"409 {"error":"203.0.113.0/24 is in the denylist (configuration), not a block","field":"ip"}"#
    );
    assert_eq!(
        internal(
            "POST",
            "/_internal/security/unblock-ip",
            Some(r#"{"ip":"192.0.2.9","ttl":5}"#)
        ),
        r#"400 {"error":"ttl: is not a known field (known: ip)","field":"ttl"}"#
    );
    let r = internal("POST", "/_internal/security/refresh-blocked-ips", None);
    assert!(
        r.starts_with("200 {") && r.contains(r#""success":true"#),
        "{r}"
    );
    // the same paths need the token where the location does not waive it
    let r = call(&b, "POST", "/_internal/security/refresh-blocked-ips", None);
    assert_eq!(r.status, 200);
    let mut req = request("POST", "/_internal/security/refresh-blocked-ips");
    req.authorization = None;
    assert_eq!(serve_with(&b, req, None).status, 401);
    // and without any admin token configured, token = false still serves
    let off = Fake::new(json!({}));
    let mut req = request("POST", "/_internal/security/block-ip");
    req.authorization = None;
    req.token_required = false;
    let r = serve_with(&off, req, Some(r#"{"ip":"192.0.2.30","ttl":60}"#));
    assert_eq!(r.status, 200, "{}", r.body);
}

/// `ttl` on FlatRun's documented endpoint, and no field silently ignored
/// in any JSON body.
#[test]
fn unknown_fields_are_refused() {
    let b = Fake::new(json!({
        "dict": "warden", "admin_token": TOKEN, "trusted_proxies": ["127.0.0.1"],
        "detector": {"auto_block_duration": "2h"},
    }));
    let r = api(
        &b,
        "POST",
        "/api/security/blocked-ips",
        Some(json!({"ip": "192.0.2.1", "ttl": 60})),
    );
    assert!(
        r.starts_with("201 ") && r.contains(r#""remaining":60,"#),
        "{r}"
    );
    let r = api(
        &b,
        "POST",
        "/api/security/blocked-ips",
        Some(json!({"ip": "192.0.2.2"})),
    );
    assert!(r.contains(r#""remaining":7200,"#), "{r}");
    for (method, path, body, field, known) in [
        (
            "POST",
            "/api/security/blocked-ips",
            json!({"ip": "192.0.2.1", "tll": 60}),
            "tll",
            "ip, duration, ttl, reason, action",
        ),
        (
            "POST",
            "/api/block",
            json!({"ip": "192.0.2.1", "expire": "1h"}),
            "expire",
            "ip, duration, ttl, reason, action",
        ),
        (
            "POST",
            "/api/security/cleanup",
            json!({"older_than": 5, "type": "x"}),
            "type",
            "older_than",
        ),
        (
            "PUT",
            "/api/security/realtime-capture",
            json!({"enabled": true, "for": "1h"}),
            "for",
            "enabled",
        ),
        (
            "POST",
            "/api/security/check",
            json!({"ip": "192.0.2.1", "path": "/x"}),
            "path",
            "ip, uri, method, site",
        ),
        (
            "POST",
            "/api/analyze",
            json!({"log_entry": "x", "source": "y"}),
            "source",
            "log_entry, ip, line, lines, log_entries",
        ),
    ] {
        assert_eq!(
            api(&b, method, path, Some(body)),
            format!(
                r#"400 {{"error":"{field}: is not a known field (known: {known})","field":"{field}"}}"#
            ),
            "{path}"
        );
    }
    assert_eq!(b.blocks.borrow().len(), 2, "nothing else was blocked");
}

/// nginx-defender's paths under `location /api/`: `/api/check`,
/// `/api/block`, `/api/analyze`, `/api/blocked-ips` (an array).
#[test]
fn nginx_defenders_paths() {
    let b = fake();
    let r = api(
        &b,
        "POST",
        "/api/block",
        Some(
            json!({"ip": "192.0.2.5", "duration": "3600s", "reason": "nginx-defender auto-block"}),
        ),
    );
    assert!(
        r.starts_with("201 ") && r.contains(r#""remaining":3600,"#),
        "{r}"
    );
    assert_eq!(
        api(&b, "GET", "/api/blocked-ips", None),
        r#"200 ["203.0.113.0/24","192.0.2.5"]"#
    );
    b.decision.replace(Decision::Blocked(Source::Manual));
    let mut req = request("GET", "/api/check");
    req.authorization = None;
    let r = serve_with(&b, req, None);
    assert_eq!(
        (r.status, r.header("X-Warden-Reason")),
        (403, Some("blocked: manual"))
    );
    assert!(r.header("X-Threat-Score").is_some());
    b.decision.replace(Decision::Pass);
    // Laravel's Http::post('/api/check', ['ip' => $ip])
    let r = call(&b, "POST", "/api/check", Some(json!({"ip": "192.0.2.6"})));
    assert_eq!(
        shown(&r),
        r#"200 {"allowed":true,"ip":"192.0.2.6","reason":"allowed","should_block":false,"threat_score":0}"#
    );
    // its log-shipping script's body, quotes unescaped
    let line =
        r#"192.0.2.8 - - [21/Nov/2025:04:40:00 +0000] "GET /x HTTP/1.1" 404 153 "-" "curl/8.5.0""#;
    let body = format!(r#"{{"log_entry":"{line}","ip":"192.0.2.8"}}"#);
    let r = serve_with(&b, request("POST", "/api/analyze"), Some(&body));
    assert_eq!(
        shown(&r),
        r#"200 {"analyzed":1,"errors":[],"rejected":0,"tripped":[]}"#
    );
    assert_eq!(b.observed.borrow().last().unwrap(), "192.0.2.8 /x");
}
