//! `LuaCrawlers`: verified crawlers ([`crate::challenge::crawlers`]) as
//! `lua/resty/warden/crawler.lua` sees them (`w.crawlers`). The claim
//! and the cached verdict go through the FFI ([`crate::ffi::crawlers`],
//! with `w.crawlers:ptr()`); the lookups, once per crawler and address
//! and TTL, come here:
//!
//! ```lua
//! local job = w.crawlers:start(ip, user_agent)
//! local op, a, b, c, d = w.crawlers:step(job, nil)
//! -- "send", packet, host, port, timeout_ms: send, then step(job, datagram | nil)
//! -- "wait", timeout_ms: read another datagram on the same socket
//! -- "done", verified, record: stored in the dict already
//! ```

use mlua::{
    AnyUserData, LightUserData, Lua, MultiValue, Result as LuaResult, UserData, UserDataMethods,
    Value,
};

use super::engine::LuaEngine;
use super::nil_err;
use crate::challenge::crawlers::{key, Options, Record, Step, Verdict, Verification, Verifier};
use crate::engine::now_ms;
use crate::metrics::Stat;
use crate::net::addr::Addr;
use crate::store::Level;

/// The crawlers of one engine, with the engine (its dict and counters).
pub struct LuaCrawlers {
    verifier: Box<Verifier>,
    engine: AnyUserData,
}

/// What a client's address and user agent claim.
enum Claim {
    /// The address is in `crawlers.allow`.
    Allowed,
    /// Nothing to verify (no crawler claimed, an invalid address).
    None,
    /// Crawler `.0` (an index of the verifier's crawlers), from `.1`.
    Crawler(usize, Addr),
}

/// A verification under way (a job of [`LuaCrawlers`]).
pub struct LuaVerification(Verification);

impl UserData for LuaVerification {}

impl LuaCrawlers {
    /// `warden_core.crawlers(engine)` -> crawlers | false (no
    /// `opts.challenge`) | nil, err (no resolver to ask).
    pub fn open(lua: &Lua, engine: AnyUserData) -> LuaResult<MultiValue> {
        let opts: Option<Options> = engine
            .borrow::<LuaEngine>()?
            .engine()
            .config()
            .crawlers
            .clone();
        let Some(o) = opts else {
            return Ok(MultiValue::from_vec(vec![Value::Boolean(false)]));
        };
        match Verifier::new(&o) {
            Ok(verifier) => Ok(MultiValue::from_vec(vec![Value::UserData(
                lua.create_userdata(LuaCrawlers {
                    verifier: Box::new(verifier),
                    engine,
                })?,
            )])),
            Err(e) => nil_err(lua, e),
        }
    }

    /// What `ip` and `ua` (Lua values) claim.
    fn claim(&self, ip: &Value, ua: &Value) -> Claim {
        let Some(client) = (match ip {
            Value::String(s) => Addr::parse_bytes(&s.as_bytes()).ok(),
            _ => None,
        }) else {
            return Claim::None;
        };
        if self.verifier.allowed(client) {
            return Claim::Allowed;
        }
        match ua {
            Value::String(s) => self
                .verifier
                .claim(&s.as_bytes())
                .map_or(Claim::None, |c| Claim::Crawler(c, client)),
            _ => Claim::None,
        }
    }

    /// Stores and counts the end of `v`.
    fn finish(&self, v: &Verification, rec: &Record, ttl_s: u32) -> LuaResult<()> {
        let e = self.engine.borrow::<LuaEngine>()?;
        let w = e.warden();
        let c = &self.verifier.crawlers()[v.crawler()];
        let st = w.store();
        let _ = st.cache(
            &key(&c.name, v.client()),
            &rec.encode().as_str().into(),
            f64::from(ttl_s),
        );
        self.verifier
            .remember(v.crawler(), v.client(), rec.verified(), now_ms());
        match rec.verdict {
            Verdict::Verified => e.engine().count(Stat::CrawlersVerified),
            Verdict::Refused => {
                e.engine().count(Stat::CrawlersFailed);
                st.log(
                    Level::Info,
                    &format!(
                        "{} claims to be a crawler of {} and is not: {} {}",
                        v.client(),
                        c.name,
                        if rec.host.is_empty() {
                            "(no name)"
                        } else {
                            &rec.host
                        },
                        rec.why
                    ),
                );
            }
            Verdict::Failed => {
                e.engine().count(Stat::CrawlersFailed);
                e.engine().count(Stat::CrawlerLookupErrors);
                st.log(
                    Level::Info,
                    &format!(
                        "cannot verify {} as a crawler of {}: {}",
                        v.client(),
                        c.name,
                        rec.why
                    ),
                );
            }
        }
        Ok(())
    }
}

fn query_id() -> u16 {
    let mut b = [0u8; 2];
    if getrandom::fill(&mut b).is_err() {
        let n = now_ms();
        b = [(n >> 8) as u8, n as u8];
    }
    u16::from_be_bytes(b)
}

impl UserData for LuaCrawlers {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        // check(ip, user_agent) -> true (allowlisted, or verified before)
        // | false (claims no crawler, refused or failed before, bad
        // address) | job (the lookups to make: step(job, ...))
        // ptr() -> the crawlers for warden_crawler_check (src/ffi/crawlers.rs)
        m.add_method("ptr", |_, this, ()| {
            Ok(LightUserData(&*this.verifier as *const Verifier as *mut _))
        });
        // start(ip, user_agent) -> job | false: the lookups to make
        // (step(job, ...)), after check() gave a key the dict lacks
        m.add_method("start", |lua, this, (ip, ua): (Value, Value)| {
            Ok(match this.claim(&ip, &ua) {
                Claim::Crawler(c, client) => Value::UserData(lua.create_userdata(
                    LuaVerification(this.verifier.start(c, client, query_id(), now_ms())),
                )?),
                _ => Value::Boolean(false),
            })
        });
        // step(job, datagram | nil) -> "send", packet, host, port,
        // timeout_ms | "wait", timeout_ms | "done", verified, record
        m.add_method(
            "step",
            |lua, this, (job, reply): (AnyUserData, Option<mlua::LuaString>)| {
                let mut j = job.borrow_mut::<LuaVerification>()?;
                let bytes = reply.as_ref().map(|s| s.as_bytes());
                let step = this.verifier.step(&mut j.0, bytes.as_deref(), now_ms());
                let s = |t: &str| lua.create_string(t).map(Value::String);
                Ok(MultiValue::from_vec(match step {
                    Step::Send {
                        packet,
                        server,
                        timeout_ms,
                    } => vec![
                        s("send")?,
                        Value::String(lua.create_string(&packet)?),
                        s(&server.host())?,
                        Value::Integer(i64::from(server.port)),
                        Value::Integer(timeout_ms as i64),
                    ],
                    Step::Wait { timeout_ms } => {
                        vec![s("wait")?, Value::Integer(timeout_ms as i64)]
                    }
                    Step::Done(o) => {
                        this.finish(&j.0, &o.record, o.ttl_s)?;
                        vec![
                            s("done")?,
                            Value::Boolean(o.record.verified()),
                            s(&o.record.encode())?,
                        ]
                    }
                }))
            },
        );
        // crawlers() -> { { name =, agents = {...}, domains = {...} }, ... }
        m.add_method("crawlers", |lua, this, ()| {
            let t = lua.create_table()?;
            for c in this.verifier.crawlers() {
                let e = lua.create_table()?;
                e.set("name", c.name.as_str())?;
                e.set(
                    "agents",
                    lua.create_sequence_from(c.agents.iter().map(String::as_str))?,
                )?;
                e.set(
                    "domains",
                    lua.create_sequence_from(c.domains.iter().map(String::as_str))?,
                )?;
                t.push(e)?;
            }
            Ok(t)
        });
        // resolvers() -> { "127.0.0.53:53", ... }
        m.add_method("resolvers", |lua, this, ()| {
            lua.create_sequence_from(this.verifier.resolvers().iter().map(|s| s.to_string()))
        });
    }
}
