use super::*;
use proptest::prelude::*;

fn ch() -> Challenge {
    let o = Options::from_value(&serde_json::json!({
        "secret": "0123456789abcdef0123456789abcdef", "difficulty": 8,
        "exempt_paths": ["/api/**", "/feed.xml"],
    }))
    .unwrap();
    Challenge::new(o, 64)
}

fn ip(s: &str) -> Addr {
    Addr::parse(s).unwrap()
}

/// A nonce for `token` found the slow way.
fn solve(token: &str, d: u8) -> String {
    (0u64..)
        .map(|n| n.to_string())
        .find(|n| pow_ok(token.as_bytes(), n.as_bytes(), d))
        .unwrap()
}

#[test]
fn tokens_are_bound_to_the_client_and_expire() {
    let c = ch();
    let a = ip("192.0.2.7");
    let t = c.token(a, 10_000);
    let ok = c.verify_token(a, t.as_bytes(), 10_100).unwrap();
    assert_eq!(
        ok,
        Issued {
            issued_s: 10_000,
            difficulty: 8
        }
    );
    assert_eq!(
        c.verify_token(ip("192.0.2.8"), t.as_bytes(), 10_100),
        Err(Refusal::Forged)
    );
    // page_ttl: 5 minutes
    assert_eq!(
        c.verify_token(a, t.as_bytes(), 10_301),
        Err(Refusal::Expired)
    );
    assert_eq!(
        c.verify_token(a, t.as_bytes(), 9_000),
        Err(Refusal::Expired)
    );
    // another difficulty in the text: the MAC no longer matches
    let lowered = t.replacen(".8.", ".0.", 1);
    assert_eq!(
        c.verify_token(a, lowered.as_bytes(), 10_100),
        Err(Refusal::Forged)
    );
    assert_eq!(c.verify_token(a, b"1.2", 10_100), Err(Refusal::Malformed));
}

#[test]
fn cookies_refuse_other_addresses_expiry_and_forgery() {
    let c = ch();
    let a = ip("2001:db8:1:2::7");
    let k = c.cookie(a, 1_000);
    assert!(c.cookie_ok(a, k.as_bytes(), 1_000));
    // the same /64: the same client, as the detector counts it
    assert!(c.cookie_ok(ip("2001:db8:1:2::99"), k.as_bytes(), 1_000));
    assert!(!c.cookie_ok(ip("2001:db8:1:3::7"), k.as_bytes(), 1_000));
    // 24 hours
    assert!(c.cookie_ok(a, k.as_bytes(), 1_000 + 86_399));
    assert!(!c.cookie_ok(a, k.as_bytes(), 1_000 + 86_400));
    // forged: a later expiry with the old MAC
    let (_, rest) = k.split_once('.').unwrap();
    assert!(!c.cookie_ok(a, format!("99999999.{rest}").as_bytes(), 1_000));
    // another secret's cookie
    let other = Challenge::new(
        Options::from_value(&serde_json::json!({"secret": "another secret of 16+"})).unwrap(),
        64,
    );
    assert!(!c.cookie_ok(a, other.cookie(a, 1_000).as_bytes(), 1_000));
    // a token is not a cookie
    assert!(!c.cookie_ok(a, c.token(a, 90_000).as_bytes(), 1_000));
    for junk in [&b""[..], b"...", b"1.8.", b"1.8.\xff", &[b'9'; 200]] {
        assert!(!c.cookie_ok(a, junk, 1_000));
    }
}

#[test]
fn the_proof_of_work() {
    let c = ch();
    let t = c.token(ip("192.0.2.7"), 5);
    let n = solve(&t, 8);
    assert!(pow_ok(t.as_bytes(), n.as_bytes(), 8));
    let h = Sha256::digest(format!("{t}{n}").as_bytes());
    assert!(zero_bits(&h) >= 8);
    assert_eq!(zero_bits(&[0, 0, 0x10]), 19);
    assert_eq!(zero_bits(&[0xff]), 0);
    assert!(!pow_ok(t.as_bytes(), b"", 0));
    assert!(!pow_ok(t.as_bytes(), b"123456789012345678901", 0));
}

#[test]
fn kinds_of_requests() {
    let c = ch();
    let html = "text/html,application/xhtml+xml,*/*;q=0.8";
    assert_eq!(c.kind("GET", b"/a", html), Kind::Page);
    assert_eq!(c.kind("HEAD", b"/a", "TEXT/HTML"), Kind::Page);
    assert_eq!(c.kind("GET", b"/a", "application/json"), Kind::TooMany);
    assert_eq!(c.kind("GET", b"/a", ""), Kind::TooMany);
    assert_eq!(c.kind("POST", b"/a", html), Kind::TooMany);
    assert_eq!(c.kind("GET", b"/api/v1/x", html), Kind::TooMany);
    assert_eq!(c.kind("GET", b"/feed.xml", html), Kind::TooMany);
    assert_eq!(c.kind("POST", b"/.warden/challenge", ""), Kind::Answer);
    assert_eq!(c.kind("GET", b"/.warden/challenge", html), Kind::Page);
}

#[test]
fn the_page_is_self_contained_and_escaped() {
    let c = ch();
    let p = c.page("1.8.abc", "/x?a=1&b=\"<2>\"");
    assert!(p.contains("value=\"1.8.abc\""));
    assert!(p.contains("value=\"/x?a=1&amp;b=&quot;&lt;2&gt;&quot;\""));
    assert!(p.contains("<noscript>"));
    assert!(!p.contains("{{"));
    for outside in ["http://", "https://", "src=", "href="] {
        assert!(!p.contains(outside), "the page loads {outside}");
    }
    assert_eq!(crate::net::http::inline(PAGE, "script").len(), 1);
    assert!(csp().contains("worker-src blob:"));
    assert!(csp().contains("script-src 'sha256-"));
}

#[test]
fn answers_and_replay_keys() {
    assert_eq!(Answer::parse(b"token=a&nonce="), Err(Refusal::Malformed));
    assert_eq!(
        Answer::parse(b"token=a&nonce=1&back=%zz"),
        Err(Refusal::Malformed)
    );
    assert_eq!(
        Answer::parse(b"token=a&nonce=1&back=%2"),
        Err(Refusal::Malformed)
    );
    assert_eq!(
        Answer::parse(br#"{"token":"a","nonce":7}"#).unwrap().nonce,
        "7"
    );
    assert_eq!(
        Answer::parse(br#"{"token":[1],"nonce":7}"#),
        Err(Refusal::Malformed)
    );
    assert_eq!(
        Answer::parse(&[b'a'; MAX_BODY + 1]),
        Err(Refusal::Malformed)
    );
    assert_eq!(Challenge::replay_key("1.8.MAC"), "a|MAC");
    let c = ch();
    assert_eq!(
        c.target(ip("2001:db8:1:2::7")).to_string(),
        "2001:db8:1:2::/64"
    );
    assert_eq!(
        Challenge::unsolved_key(&c.target(ip("192.0.2.1"))),
        "u|192.0.2.1"
    );
}

/// A naive reference of the cookie check: split on dots, compare the
/// MAC as text.
fn naive_ok(c: &Challenge, a: Addr, s: &str, now: u64) -> bool {
    let parts: Vec<&str> = s.splitn(3, '.').collect();
    if parts.len() != 3 || s.len() > 64 {
        return false;
    }
    let num = |x: &str| {
        (!x.is_empty() && x.len() <= 19 && x.bytes().all(|b| b.is_ascii_digit()))
            .then(|| x.parse::<u64>().ok())
            .flatten()
    };
    let (Some(exp), Some(d)) = (num(parts[0]), num(parts[1])) else {
        return false;
    };
    if d > 24 || exp <= now || exp > now + 86_400 + 60 || d < 8 {
        return false;
    }
    c.text(&c.cookie_key, a, exp, d as u8) == s
}

proptest! {
    #[test]
    fn cookie_check_matches_naive(s in "[0-9.A-Za-z_-]{0,70}", now in 0u64..3_000_000) {
        let c = ch();
        let a = ip("198.51.100.4");
        prop_assert_eq!(c.cookie_ok(a, s.as_bytes(), now), naive_ok(&c, a, &s, now));
    }

    #[test]
    fn made_cookies_verify(v4 in any::<u32>(), now in 0u64..4_000_000_000) {
        let c = ch();
        let a = Addr::V4(v4);
        let k = c.cookie(a, now);
        prop_assert!(c.cookie_ok(a, k.as_bytes(), now));
        prop_assert!(naive_ok(&c, a, &k, now));
        prop_assert!(!c.cookie_ok(Addr::V4(v4 ^ 1), k.as_bytes(), now));
    }

    #[test]
    fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let c = ch();
        let a = ip("192.0.2.1");
        let _ = c.cookie_ok(a, &b, 1);
        let _ = c.verify_token(a, &b, 1);
        let _ = Answer::parse(&b);
        let _ = pow_ok(&b, &b, 3);
        let s = String::from_utf8_lossy(&b);
        let back = back_path(&s, "/.warden/challenge");
        prop_assert!(back == "/" || (back.starts_with('/') && !back.starts_with("//")));
    }

    #[test]
    fn form_round_trip(token in "[0-9.A-Za-z_-]{1,40}", nonce in "[0-9]{1,20}",
                       back in "/[ -~]{0,60}") {
        let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
        let body = format!("token={}&nonce={nonce}&back={}", enc(&token), enc(&back));
        let a = Answer::parse(body.as_bytes()).unwrap();
        prop_assert_eq!((a.token, a.nonce, a.back), (token, nonce, back));
    }
}
