//! The dashboard: one page, `ui.html` (its script and style inline, no
//! outside resource), served at `<api location>/ui/` by the admin API
//! itself.
//!
//! The page holds no data, so it is served without the token; everything
//! it shows comes from the API's endpoints, called with the token the
//! operator types in. Its headers lock it down: a Content-Security-Policy
//! that allows its own inline script and style (by their SHA-256) and
//! connections to its own origin only, `X-Frame-Options: DENY`, no
//! sniffing, no referrer. It is revalidated on each load (`ETag`, 304).

use std::sync::OnceLock;

use crate::net::http::{inline_hashes, sha256_b64 as sha256};

use super::exchange::{Request, Response};

/// The page.
pub const PAGE: &str = include_str!("ui.html");

/// What the headers say of the page, computed once.
struct Headers {
    csp: String,
    etag: String,
}

/// The Content-Security-Policy of `page`: nothing but its own inline
/// scripts and styles (by hash) and requests to its own origin.
pub fn csp(page: &str) -> String {
    let hashes = |tag| inline_hashes(page, tag);
    format!(
        "default-src 'none'; script-src{}; style-src{}; connect-src 'self'; \
         img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hashes("script"),
        hashes("style"),
    )
}

fn headers() -> &'static Headers {
    static H: OnceLock<Headers> = OnceLock::new();
    H.get_or_init(|| Headers {
        csp: csp(PAGE),
        etag: format!("\"{}\"", &sha256(PAGE)[..16]),
    })
}

/// `GET <api location>/ui/`: the page, or 304 when the client has it.
pub(super) fn page(req: &Request) -> Response {
    let h = headers();
    let fresh = req
        .if_none_match
        .as_deref()
        .is_some_and(|v| v.split(',').any(|t| t.trim() == h.etag || t.trim() == "*"));
    let mut res = if fresh {
        Response::new(304, "text/html; charset=utf-8", String::new())
    } else {
        Response::new(200, "text/html; charset=utf-8", PAGE.to_string())
    };
    res.headers.retain(|(k, _)| *k != "Cache-Control");
    res.with("Cache-Control", "no-cache")
        .with("ETag", h.etag.clone())
        .with("Content-Security-Policy", h.csp.clone())
        .with("X-Frame-Options", "DENY")
        .with("X-Content-Type-Options", "nosniff")
        .with("Referrer-Policy", "no-referrer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::http::inline;

    #[test]
    fn the_page_is_self_contained() {
        // one script, one style, both inline; nothing loaded from elsewhere
        assert_eq!(inline(PAGE, "script").len(), 1);
        assert_eq!(inline(PAGE, "style").len(), 1);
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        for banned in [
            "src=",
            "href=\"http",
            "@import",
            "url(",
            " style=\"",
            "<link rel=\"style",
        ] {
            assert!(!PAGE.contains(banned), "ui.html contains {banned}");
        }
        // data is shown as text, never parsed as HTML
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!PAGE.contains(banned), "ui.html uses {banned}");
        }
    }

    #[test]
    fn policy_hashes() {
        let page = "<style>a{}</style><p><script>go()</script><script>x</script>";
        assert_eq!(inline(page, "script"), ["go()", "x"]);
        assert_eq!(
            csp(page),
            format!(
                "default-src 'none'; script-src 'sha256-{}' 'sha256-{}'; style-src 'sha256-{}'; \
                 connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                 frame-ancestors 'none'",
                // sha256("go()"), sha256("x"), sha256("a{}") as openssl prints them
                "5KYv+PUboo5h+0+YAtGRPbwv5d/QxzHslP4YGnUaxRw=",
                "LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE=",
                "X1RutGBrXCt9KkSaXMK7tHftWiRscFHOhxsS8tv8hBk=",
            )
        );
        assert!(csp(PAGE).contains("script-src 'sha256-"));
    }

    #[test]
    fn headers_and_revalidation() {
        let mut req = Request {
            method: "GET".into(),
            path: "/api/ui/".into(),
            ..Request::default()
        };
        let r = page(&req);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, PAGE);
        assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.header("Cache-Control"), Some("no-cache"));
        assert_eq!(
            r.headers
                .iter()
                .filter(|(k, _)| *k == "Cache-Control")
                .count(),
            1
        );
        assert_eq!(r.header("X-Frame-Options"), Some("DENY"));
        assert_eq!(
            r.header("Content-Security-Policy"),
            Some(csp(PAGE).as_str())
        );
        let etag = r.header("ETag").unwrap().to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 18);
        req.if_none_match = Some(format!("\"other\", {etag}"));
        let r = page(&req);
        assert_eq!((r.status, r.body.as_str()), (304, ""));
        assert_eq!(r.header("ETag"), Some(etag.as_str()));
        req.if_none_match = Some("\"other\"".into());
        assert_eq!(page(&req).status, 200);
    }
}
