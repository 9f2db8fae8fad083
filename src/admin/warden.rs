//! The admin API's [`Backend`] in a running warden: [`Warden`], the
//! engine with its shared dict. Every method is one of the operations
//! (`crate::ops`) or a read of the engine; nothing here decides.

use serde_json::Value;

use super::accesslog::Line;
use super::backend::Backend;
use crate::blocks::{Action, Block, Source};
use crate::config::Config;
use crate::detect::offences::Seen;
use crate::engine::{code, now_ms};
use crate::error::Error;
use crate::events::{self, Event, Filter};
use crate::metrics::{Snapshot, Stat};
use crate::net::addr::{Addr, Net};
use crate::net::client::Client;
use crate::ops::{Trip, Warden};
use crate::policy::decision::{Asked, Decision};
use crate::policy::doc::{Edit, Update};
use crate::store::Level;

impl Backend for Warden<'_> {
    fn config(&self) -> &Config {
        self.engine.config()
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn log(&self, level: Level, line: &str) {
        self.log.write(level, line);
    }

    fn blocks(&self) -> Result<Vec<Block>, Error> {
        self.sync()?;
        Ok(self.engine.list(now_ms()))
    }

    fn block(
        &self,
        target: &Net,
        duration_ms: u64,
        reason: &str,
        action: Action,
    ) -> Result<(), Error> {
        Warden::block_as(self, target, duration_ms, reason, Source::Manual, action)
    }

    fn unblock(&self, target: &Net) -> Result<(), Error> {
        Warden::unblock(self, target)
    }

    fn allowlisted(&self, a: Addr) -> bool {
        self.engine.allowlisted(a)
    }

    fn trusted(&self, a: Addr) -> bool {
        self.engine.trusted(a)
    }

    fn policy_document(&self) -> Result<Value, Error> {
        Warden::policy_document(self)
    }

    fn routes(&self) -> Result<Vec<Value>, Error> {
        self.sync()?;
        let p = self.engine.policy();
        Ok((0..p.route_count())
            .filter_map(|i| p.route(i))
            .map(|r| {
                let mut v = r.describe();
                if let Some(id) = r.id {
                    v["id"] = id.into();
                }
                v
            })
            .collect())
    }

    fn edit_policy(&self, edit: &Edit, last_try: bool) -> Result<Update, Error> {
        Warden::edit_policy(self, edit, last_try)
    }

    fn refresh(&self) -> Result<(), Error> {
        Warden::refresh(self)
    }

    fn events(&self, f: &Filter) -> Result<Vec<Event>, Error> {
        let e = self.engine;
        Ok(events::query_both(e.events(), e.captures(), f, now_ms()))
    }

    fn cleanup(&self, older_than_ms: u64) -> Result<usize, Error> {
        let e = self.engine;
        Ok(events::cleanup_both(
            e.events(),
            e.captures(),
            older_than_ms,
            now_ms(),
        ))
    }

    fn stats(&self) -> Result<Snapshot, Error> {
        Ok(self.snapshot())
    }

    fn counter(&self, s: Stat) -> Result<u64, Error> {
        Ok(self.engine.region().total(s))
    }

    fn dict_free_bytes(&self) -> Result<u64, Error> {
        Ok(self.dict_space().0.unwrap_or(0) as u64)
    }

    fn resolve_client(
        &self,
        peer: Addr,
        x_forwarded_for: Option<&str>,
        x_real_ip: Option<&str>,
    ) -> Client {
        self.engine.resolve(
            peer,
            || x_forwarded_for.map(str::as_bytes),
            || x_real_ip.map(str::as_bytes),
        )
    }

    fn threat_score(&self, a: Addr) -> Result<u8, Error> {
        self.sync()?;
        Ok(self.engine.threat_score(a).0)
    }

    fn decide(&self, client: Addr, req: &Asked<'_>) -> Result<Decision, Error> {
        self.sync()?;
        let verdict = self.engine.decide(client, || None);
        Ok(self.policy_decision(client, verdict, req))
    }

    fn observe_line(&self, client: Addr, line: &Line<'_>) -> Result<Option<Trip>, Error> {
        let req = crate::detect::Request {
            uri: line.target,
            status: line.status.min(999),
            user_agent: line.user_agent,
            ..Default::default()
        };
        if self.engine.observe(client, &req) != code::TRIP {
            return Ok(None);
        }
        let (path, ua) = (
            String::from_utf8_lossy(line.target),
            String::from_utf8_lossy(line.user_agent),
        );
        Ok(self.trip(&Seen {
            status: line.status,
            method: line.method,
            path: &path,
            user_agent: &ua,
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admin::exchange::{Reply, Request};
    use crate::admin::Admin;
    use crate::engine::Engine;
    use crate::ops::Worker;
    use crate::store::mem::{Lines, Mem};
    use crate::store::Dict;

    struct Node {
        engine: Engine,
        dict: Mem,
        lines: Lines,
        worker: Worker,
    }

    impl Node {
        fn new(opts: Value) -> Node {
            let name = opts["dict"].as_str().unwrap().to_string();
            let engine = Engine::new(Config::from_value(&opts).unwrap()).unwrap();
            Node {
                engine,
                dict: Mem::new(1 << 20),
                lines: Lines::default(),
                worker: Worker::new(&name),
            }
        }

        fn w(&self) -> Warden<'_> {
            Warden {
                engine: &self.engine,
                dict: &self.dict,
                log: &self.lines,
                worker: &self.worker,
            }
        }

        /// Serves a request (with the admin token), the body given at
        /// once; retries as Lua would.
        fn serve(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
            let (admin, _) = Admin::new(self.engine.config()).unwrap();
            let mut req = Request {
                method: method.into(),
                path: path.into(),
                peer: "127.0.0.1".into(),
                authorization: Some("Bearer t0ken-0123456789abcdef".into()),
                body: Some(body.unwrap_or("").as_bytes().to_vec()),
                ..Request::default()
            };
            loop {
                match admin.serve(&self.w(), &req) {
                    Reply::Done(res) => {
                        let v = serde_json::from_str(&res.body).unwrap_or(Value::Null);
                        return (res.status, v);
                    }
                    Reply::Retry { .. } => req.retries += 1,
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    fn opts(dict: &str) -> Value {
        json!({"dict": dict, "admin_token": "t0ken-0123456789abcdef",
               "trusted_proxies": ["127.0.0.1"]})
    }

    #[test]
    fn blocks_policies_and_stats_through_the_operations() {
        let n = Node::new(opts("t-admin-w"));
        let (status, v) = n.serve(
            "POST",
            "/api/security/blocked-ips",
            Some(r#"{"ip": "192.0.2.7", "duration": "1h", "reason": "abuse"}"#),
        );
        assert_eq!(
            (status, &v["source"], &v["remaining"]),
            (201, &json!("manual"), &json!(3600))
        );
        assert!(n
            .w()
            .is_blocked(Addr::parse("192.0.2.7").unwrap())
            .is_some());
        let (status, v) = n.serve("DELETE", "/api/security/blocked-ips/192.0.2.8", None);
        assert_eq!((status, &v["field"]), (404, &json!("ip")));
        assert_eq!(
            n.serve("DELETE", "/api/security/blocked-ips/192.0.2.7", None)
                .0,
            200
        );

        // the policy document: validated and stored by policy::doc
        let (status, v) = n.serve(
            "POST",
            "/api/security/whitelist",
            Some(r#"{"type": "ip", "value": "198.51.100.1"}"#),
        );
        assert_eq!((status, &v["id"]), (201, &json!(1)));
        let (status, v) = n.serve(
            "POST",
            "/api/security/whitelist",
            Some(r#"{"type": "ip", "value": "198.51.100.1"}"#),
        );
        assert_eq!((status, &v["field"]), (409, &json!("value")));
        assert!(n.engine.allowlisted(Addr::parse("198.51.100.1").unwrap()));
        let (status, v) = n.serve("DELETE", "/api/security/whitelist/1", None);
        assert_eq!(
            (status, v),
            (
                200,
                json!({"id": 1, "message": "whitelist entry 1 deleted"})
            )
        );
        // another worker holds the lock: retried, then given up (503)
        n.dict
            .safe_add(
                crate::policy::doc::LOCK,
                &crate::store::Value::Num(1.0),
                0.0,
            )
            .unwrap();
        let (status, _) = n.serve("DELETE", "/api/security/whitelist/2", None);
        assert_eq!(status, 503);

        let (status, v) = n.serve("GET", "/api/health", None);
        let free = v["dict_free_bytes"].as_u64().unwrap();
        assert!(status == 200 && free > 0 && free < 1 << 20, "{v}");
        let (_, v) = n.serve("GET", "/api/security/stats", None);
        assert_eq!(v["counters"]["dict"], "t-admin-w");
    }

    #[test]
    fn the_policy_decision_of_security_check() {
        let n = Node::new(json!({
            "dict": "t-admin-w2", "trusted_proxies": ["127.0.0.1"],
            "sites": {"shop": {"allowed_ips": ["192.0.2.0/24"], "rate_limit": 1}},
            "protected_routes": [{"path": "/admin", "auth_type": "basic",
                                  "credentials": ["u:p"]}],
        }));
        let w = n.w();
        // the counters are the process's: differences
        let total = |s: Stat| n.engine.region().total(s);
        let before = (total(Stat::SiteDenied), total(Stat::AuthFailed));
        let c = Addr::parse("198.51.100.1").unwrap();
        let ask = |site: &'static str, path: &'static str| Asked {
            site: site.as_bytes(),
            path: path.as_bytes(),
            method: b"GET",
            authorization: None,
            cookie: None,
        };
        assert_eq!(
            w.decide(c, &ask("shop", "/")).unwrap(),
            Decision::ForbiddenIp
        );
        let inside = Addr::parse("192.0.2.1").unwrap();
        assert_eq!(w.decide(inside, &ask("shop", "/")).unwrap(), Decision::Pass);
        assert!(matches!(
            w.decide(inside, &ask("shop", "/")).unwrap(),
            Decision::RateLimited { limit: 1, .. }
        ));
        assert!(matches!(
            w.decide(c, &ask("", "/admin/x")).unwrap(),
            Decision::Unauthorized { why: "missing", .. }
        ));
        assert_eq!(total(Stat::SiteDenied) - before.0, 1);
        assert_eq!(total(Stat::AuthFailed) - before.1, 1);
    }
}
