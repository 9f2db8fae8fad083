//! A challenged client's request (`check()` got `CHALLENGE`): the page,
//! a 429, or the answer verified, with the dict's part of it (replays
//! refused, unsolved challenges counted and escalated to a block).

use crate::blocks::{Action, Source};
use crate::challenge::{self, back_path, Answer, Challenge, Kind as Asked, Refusal};
use crate::detect::offences;
use crate::events::{Event, Kind as EventKind};
use crate::metrics::Stat;
use crate::net::addr::{Addr, Net};
use crate::options::human;
use crate::store::{DictError, Level, Store, Value};

use super::Warden;

/// How long unsolved challenges of a client are counted after the
/// latest one, seconds.
const UNSOLVED_MEMORY_S: f64 = 3_600.0;

/// The request of a challenged client, as nginx has it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    /// `$request_method`.
    pub method: &'a str,
    /// `$request_uri`.
    pub uri: &'a str,
    /// The `Accept` header.
    pub accept: &'a str,
    /// The `User-Agent` header.
    pub user_agent: &'a str,
    /// Served over https (the cookie is `Secure`).
    pub https: bool,
    /// The challenge's cookie, if any (`check(ip)` decides on an address
    /// alone: its caller's cookie is verified here).
    pub cookie: Option<&'a [u8]>,
    /// The body, once asked for ([`Served::NeedBody`]).
    pub body: Option<&'a [u8]>,
}

/// What to do with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Served {
    /// Let it through: its cookie is valid.
    Pass,
    /// Read the body, then ask again with it.
    NeedBody,
    /// Refuse it as a block (`block_status`): challenges are not
    /// configured, or the client was just blocked for not solving.
    Block,
    /// Answer with this.
    Reply {
        /// The status.
        status: u16,
        /// Headers.
        headers: Vec<(&'static str, String)>,
        /// The body.
        body: String,
    },
}

/// Headers every answer to a challenged client carries: never cached,
/// never indexed.
fn headers(content_type: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", content_type.to_string()),
        ("Cache-Control", "no-store".to_string()),
        ("X-Robots-Tag", "noindex, nofollow".to_string()),
        ("X-Content-Type-Options", "nosniff".to_string()),
    ]
}

impl Warden<'_> {
    /// Serves request `r` of challenged client `client` (see [`Served`]).
    pub fn challenge(&self, client: Addr, r: &Request<'_>) -> Served {
        let Some(c) = self.engine.challenge() else {
            return Served::Block;
        };
        if self.engine.challenge_passed(client, r.cookie) {
            // check(ip) counted the request as challenged
            self.engine.uncount(crate::engine::code::CHALLENGE);
            self.engine.count(Stat::Passed);
            self.engine.count(Stat::ChallengePassed);
            return Served::Pass;
        }
        let st = self.store();
        let path = r.uri.split('?').next().unwrap_or("");
        match c.kind(r.method, path.as_bytes(), r.accept) {
            Asked::Answer => match r.body {
                None => Served::NeedBody,
                Some(body) => self.answer(&st, c, client, r, body),
            },
            Asked::Page => {
                if self.unsolved(&st, c, client, r, "ignored challenges") {
                    return Served::Block;
                }
                let token = c.token(client, st.now_ms / 1000);
                self.engine.count(Stat::ChallengesIssued);
                self.engine.record_issued(client, st.now_ms, || Event {
                    time_ms: st.now_ms,
                    ip: client.to_string(),
                    kind: Some(EventKind::ChallengeIssued),
                    rule: "challenge".to_string(),
                    status: 429,
                    method: r.method.to_string(),
                    path: r.uri.to_string(),
                    user_agent: r.user_agent.to_string(),
                    action: "challenge page".to_string(),
                    ..Event::default()
                });
                let mut h = headers("text/html; charset=utf-8");
                h.push(("Content-Security-Policy", challenge::csp().to_string()));
                h.push(("X-Frame-Options", "DENY".to_string()));
                h.push(("Referrer-Policy", "same-origin".to_string()));
                Served::Reply {
                    status: 429,
                    headers: h,
                    body: c.page(&token, back_path(r.uri, &c.opts.path)),
                }
            }
            Asked::TooMany => {
                if self.unsolved(&st, c, client, r, "ignored challenges") {
                    return Served::Block;
                }
                let mut h = headers("text/plain; charset=utf-8");
                h.push(("Retry-After", c.opts.retry_after_s.to_string()));
                Served::Reply {
                    status: 429,
                    headers: h,
                    body: "429 Too Many Requests: this client must pass a browser check; \
                           open the site in a browser\n"
                        .to_string(),
                }
            }
        }
    }

    /// Verifies an answer: token, proof of work, replay; the cookie and a
    /// 303 back, or a refusal.
    fn answer(
        &self,
        st: &Store<'_>,
        c: &Challenge,
        client: Addr,
        r: &Request<'_>,
        body: &[u8],
    ) -> Served {
        let now_s = st.now_ms / 1000;
        let checked = Answer::parse(body).and_then(|a| {
            let issued = c.verify_token(client, a.token.as_bytes(), now_s)?;
            if !challenge::pow_ok(a.token.as_bytes(), a.nonce.as_bytes(), issued.difficulty) {
                return Err(Refusal::WrongAnswer);
            }
            let ttl = c.opts.page_ttl_ms as f64 / 1000.0 + 5.0;
            match st.safe_add(&Challenge::replay_key(&a.token), &Value::Num(1.0), ttl) {
                Ok(()) => Ok((a, issued)),
                Err(DictError::Exists) => Err(Refusal::Replayed),
                // a full dict: the answer is good, the replay guard is lost
                Err(e) => {
                    st.log(
                        Level::Warn,
                        &format!("cannot record a solved challenge ({e}); accepting it"),
                    );
                    Ok((a, issued))
                }
            }
        });
        let target = c.target(client);
        let (a, issued) = match checked {
            Ok(x) => x,
            Err(why) => {
                self.engine.count(Stat::ChallengesFailed);
                self.engine.record(&Event {
                    time_ms: st.now_ms,
                    ip: client.to_string(),
                    kind: Some(EventKind::ChallengeFailed),
                    rule: "challenge".to_string(),
                    status: 403,
                    method: r.method.to_string(),
                    path: r.uri.to_string(),
                    user_agent: r.user_agent.to_string(),
                    action: format!("answer refused: {why}"),
                    ..Event::default()
                });
                if self.unsolved(st, c, client, r, "failed challenges") {
                    return Served::Block;
                }
                return Served::Reply {
                    status: 403,
                    headers: headers("text/html; charset=utf-8"),
                    body: format!(
                        "<!DOCTYPE html><title>Check failed</title><p>The browser check \
                         failed ({why}). <a href=\"/\">Start again</a>.</p>\n"
                    ),
                };
            }
        };
        let solve_ms = st.now_ms.saturating_sub(issued.issued_s * 1000);
        self.engine.count(Stat::ChallengesSolved);
        self.engine
            .worker_stats()
            .add(Stat::ChallengeSolveMs, solve_ms);
        let _ = self.dict.delete(&Challenge::unsolved_key(&target));
        let ttl_s = c.opts.ttl_ms / 1000;
        self.engine.record(&Event {
            time_ms: st.now_ms,
            ip: client.to_string(),
            kind: Some(EventKind::ChallengeSolved),
            rule: "challenge".to_string(),
            status: 303,
            method: r.method.to_string(),
            path: r.uri.to_string(),
            user_agent: r.user_agent.to_string(),
            action: format!("cookie for {}", human(ttl_s as f64)),
            detail: format!("solved in {} ms", solve_ms),
            ..Event::default()
        });
        let mut h = headers("text/plain; charset=utf-8");
        h.push((
            "Set-Cookie",
            format!(
                "{}={}; Max-Age={ttl_s}; Path=/; HttpOnly; SameSite=Lax{}",
                challenge::COOKIE,
                c.cookie(client, now_s),
                if r.https { "; Secure" } else { "" }
            ),
        ));
        h.push(("Location", back_path(&a.back, &c.opts.path).to_string()));
        Served::Reply {
            status: 303,
            headers: h,
            body: String::new(),
        }
    }

    /// Counts one unsolved challenge of `client` (a page, a 429, a wrong
    /// answer); past `max_unsolved` the client is blocked through the
    /// offence schedule. True when it was.
    fn unsolved(
        &self,
        st: &Store<'_>,
        c: &Challenge,
        client: Addr,
        r: &Request<'_>,
        what: &str,
    ) -> bool {
        let max = c.opts.max_unsolved;
        if max == 0 {
            return false;
        }
        let target = c.target(client);
        let n = match st.counter(&Challenge::unsolved_key(&target), 1.0, UNSOLVED_MEMORY_S) {
            Ok(n) => n as u64,
            Err(_) => return false,
        };
        if n <= u64::from(max) {
            return false;
        }
        self.escalate(st, &target, n, r, what)
    }

    fn escalate(&self, st: &Store<'_>, target: &Net, n: u64, r: &Request<'_>, what: &str) -> bool {
        let cfg = &self.engine.config().detector;
        let offence = offences::count(st, target, cfg.repeat_offender_memory_ms);
        let duration_ms = cfg.block_duration_ms(offence);
        let reason = format!("challenge: {n} {what}");
        if let Err(e) = self.block_in(
            st,
            target,
            duration_ms,
            &reason,
            Source::Auto,
            Action::Block,
        ) {
            st.log(Level::Warn, &format!("cannot block {target}: {e}"));
            return false;
        }
        let _ = self.dict.delete(&Challenge::unsolved_key(target));
        self.engine.count(Stat::AutoBlocks);
        let duration = if duration_ms == 0 {
            "permanently".to_string()
        } else {
            format!("for {}", human(duration_ms as f64 / 1000.0))
        };
        st.log(
            Level::Warn,
            &format!("auto-blocked {target} {duration} ({reason}, offence {offence})"),
        );
        self.engine.record(&Event {
            time_ms: st.now_ms,
            ip: target.to_string(),
            kind: Some(EventKind::ChallengeFailed),
            rule: "challenge".to_string(),
            count: n.min(u64::from(u32::MAX)) as u32,
            method: r.method.to_string(),
            path: r.uri.to_string(),
            user_agent: r.user_agent.to_string(),
            action: format!("blocked {duration} (offence {offence})"),
            reason,
            ..Event::default()
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::code;
    use crate::ops::tests::Node;

    fn reply(s: &Served) -> (u16, String, String) {
        match s {
            Served::Reply {
                status,
                headers,
                body,
            } => {
                let h: Vec<String> = headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                (*status, h.join("\n"), body.clone())
            }
            other => (0, format!("{other:?}"), String::new()),
        }
    }

    #[test]
    fn page_answer_cookie_replay_and_escalation() {
        let node = Node::new(
            serde_json::json!({
                "dict": "t-ops-chal",
                "challenge": {"secret": "0123456789abcdef", "difficulty": 4, "max_unsolved": 3},
            }),
            1,
        );
        let (w, engine) = (node.w(0), &node.engines[0].0);
        let a = Addr::parse("192.0.2.7").unwrap();
        let net = Net::parse("192.0.2.7").unwrap();
        w.block_as(&net, 3_600_000, "t", Source::Manual, Action::Challenge)
            .unwrap();
        assert_eq!(engine.decide(a, || None), code::CHALLENGE);
        let get = Request {
            method: "GET",
            uri: "/x?y=1",
            accept: "text/html",
            ..Request::default()
        };
        let (status, headers, page) = reply(&w.challenge(a, &get));
        assert_eq!(status, 429);
        assert!(headers.contains("Cache-Control: no-store"));
        let token = page
            .split("name=\"token\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .to_string();
        let post = |body: &str| {
            let body = body.as_bytes().to_vec();
            let r = Request {
                method: "POST",
                uri: "/.warden/challenge",
                body: Some(&body),
                ..Request::default()
            };
            reply(&w.challenge(a, &r))
        };
        assert_eq!(
            w.challenge(
                a,
                &Request {
                    method: "POST",
                    uri: "/.warden/challenge",
                    ..Request::default()
                }
            ),
            Served::NeedBody
        );
        let nonce = (0u64..)
            .find(|n| challenge::pow_ok(token.as_bytes(), n.to_string().as_bytes(), 4))
            .unwrap();
        let body = format!("token={token}&nonce={nonce}&back=%2Fx%3Fy%3D1");
        let (status, headers, _) = post(&body);
        assert_eq!(status, 303);
        assert!(headers.contains("Location: /x?y=1"));
        let cookie = headers
            .split("warden_pass=")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .unwrap()
            .to_string();
        assert_eq!(engine.decide(a, || Some(cookie.as_bytes())), code::PASS);
        // check(ip): the cookie is verified here
        let with_cookie = Request {
            cookie: Some(cookie.as_bytes()),
            ..get
        };
        assert_eq!(w.challenge(a, &with_cookie), Served::Pass);
        // the same answer again
        assert_eq!(post(&body).0, 403);
        // API calls: 429 with Retry-After, counted; past max_unsolved, blocked
        let api = Request {
            method: "GET",
            uri: "/api",
            accept: "application/json",
            ..Request::default()
        };
        let (status, headers, _) = reply(&w.challenge(a, &api));
        assert_eq!((status, headers.contains("Retry-After: 60")), (429, true));
        // the failed replay and this call: 2 unsolved, then 3, then blocked
        assert_eq!(reply(&w.challenge(a, &api)).0, 429);
        assert_eq!(w.challenge(a, &api), Served::Block);
        assert_eq!(
            engine.decide(a, || Some(cookie.as_bytes())),
            code::BLOCK_AUTO
        );
    }

    #[test]
    fn without_opts_challenge_nothing_challenges() {
        let node = Node::new(serde_json::json!({"dict": "t-ops-nochal"}), 1);
        let w = node.w(0);
        let net = Net::parse("192.0.2.7").unwrap();
        let e = w
            .block_as(&net, 0, "t", Source::Manual, Action::Challenge)
            .unwrap_err();
        assert_eq!((e.field(), e.kind().status()), (Some("action"), 400));
        assert_eq!(w.challenge(net.first(), &Request::default()), Served::Block);
        let e = Config::from_value(&serde_json::json!({
            "detector": {"rules": {"rate": "challenge"}},
        }))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "opts.detector.rules.rate is \"challenge\", which needs opts.challenge = \
             { secret = \"...\" }"
        );
    }
}
