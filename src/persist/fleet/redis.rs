//! The fleet's Redis: its keys, its channel, the scripts that run there
//! and the commands the agent sends ([`super::agent`] says when).
//!
//! Keys (prefix `warden:` by default, `redis.prefix`):
//! - `<prefix>blocks`: hash, target -> `<expires_ms>|<source>|<reason>`
//!   ([`crate::blocks::Block::value`]);
//! - `<prefix>expiry`: sorted set of the timed targets by expiry (for
//!   pruning);
//! - `<prefix>epoch`: a random id, written when the set is first written;
//! - `<prefix>events`: the channel, messages `<node> <entry>`
//!   ([`super::message_for`]); `<prefix>events:<db>` when `db` is not 0,
//!   since Redis's channels are not per database: fleets in two databases
//!   of one Redis must not hear each other.

use crate::blocks::{Block, Change};
use crate::config::RedisConfig;
use crate::net::resp::{command, Reply};

/// Entries read per `HSCAN`.
pub const SCAN: usize = 1000;

/// `KEYS`: blocks, expiry. `ARGV`: channel, message, op, target, value,
/// expiry. Applies one change and announces it.
pub const CHANGE: &str = "\
if ARGV[3] == '+' then
  redis.call('HSET', KEYS[1], ARGV[4], ARGV[5])
  if ARGV[6] ~= '0' then
    redis.call('ZADD', KEYS[2], ARGV[6], ARGV[4])
  else
    redis.call('ZREM', KEYS[2], ARGV[4])
  end
else
  redis.call('HDEL', KEYS[1], ARGV[4])
  redis.call('ZREM', KEYS[2], ARGV[4])
end
return redis.call('PUBLISH', ARGV[1], ARGV[2])
";

/// `KEYS`: blocks, expiry. `ARGV`: channel, then target, value, expiry
/// and message of each block. Adds the blocks Redis lacks and announces
/// them; returns how many.
pub const SEED: &str = "\
local n = 0
for i = 2, #ARGV, 4 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    if ARGV[i + 2] ~= '0' then
      redis.call('ZADD', KEYS[2], ARGV[i + 2], ARGV[i])
    end
    redis.call('PUBLISH', ARGV[1], ARGV[i + 3])
    n = n + 1
  end
end
return n
";

/// `KEYS`: blocks, expiry. `ARGV`: now (ms). Drops expired entries (up to
/// 1000 a call); returns how many.
pub const PRUNE: &str = "\
local t = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1],
                     'LIMIT', 0, 1000)
for _, k in ipairs(t) do
  redis.call('HDEL', KEYS[1], k)
  redis.call('ZREM', KEYS[2], k)
end
return #t
";

/// The scripts, loaded on each connection and then called by hash.
pub const SCRIPTS: [&str; 3] = [CHANGE, SEED, PRUNE];

/// The fleet's key names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    /// The hash of blocks.
    pub blocks: String,
    /// The sorted set of expiries.
    pub expiry: String,
    /// The epoch.
    pub epoch: String,
    /// The channel.
    pub channel: String,
}

impl Keys {
    /// The keys of the fleet `cfg` describes.
    ///
    /// ```
    /// use warden_core::config::RedisConfig;
    /// use warden_core::persist::fleet::redis::Keys;
    /// let r = RedisConfig::from_value(&serde_json::json!({"host": "r", "db": 3})).unwrap();
    /// let k = Keys::new(&r);
    /// assert_eq!((k.blocks.as_str(), k.channel.as_str()), ("warden:blocks", "warden:events:3"));
    /// ```
    pub fn new(cfg: &RedisConfig) -> Keys {
        let p = &cfg.prefix;
        Keys {
            blocks: format!("{p}blocks"),
            expiry: format!("{p}expiry"),
            epoch: format!("{p}epoch"),
            channel: if cfg.db == 0 {
                format!("{p}events")
            } else {
                format!("{p}events:{}", cfg.db)
            },
        }
    }
}

/// Commands sent together, each with what its error is called in the
/// log (`AUTH failed: ...`).
#[derive(Debug, Default)]
pub struct Pipeline {
    /// The commands, encoded.
    pub bytes: Vec<u8>,
    /// What each command's error is prefixed with.
    pub labels: Vec<String>,
}

impl Pipeline {
    fn push<A: AsRef<[u8]>>(&mut self, args: &[A], label: impl Into<String>) {
        command(&mut self.bytes, args);
        self.labels.push(label.into());
    }

    /// Commands in the pipeline.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The first error among the replies, with its label.
    pub fn check(&self, replies: &[Reply]) -> Result<(), String> {
        for (r, label) in replies.iter().zip(&self.labels) {
            if let Reply::Error(e) = r {
                return Err(format!("{label}{e}"));
            }
        }
        Ok(())
    }
}

/// AUTH and SELECT, when configured: what every connection starts with.
fn opening(cfg: &RedisConfig) -> Pipeline {
    let mut p = Pipeline::default();
    if let Some(pw) = &cfg.password {
        p.push(&["AUTH", pw.as_str()], "AUTH failed: ");
    }
    if cfg.db != 0 {
        let db = cfg.db.to_string();
        p.push(&["SELECT", &db], format!("SELECT {db} failed: "));
    }
    p
}

/// The command connection's opening: AUTH, SELECT, then the scripts
/// loaded (their hashes are the last three replies, in [`SCRIPTS`]'s
/// order).
pub fn commands_opening(cfg: &RedisConfig) -> Pipeline {
    let mut p = opening(cfg);
    for s in SCRIPTS {
        p.push(&["SCRIPT", "LOAD", s], "SCRIPT LOAD: ");
    }
    p
}

/// The subscriber's opening: AUTH, SELECT, SUBSCRIBE.
pub fn subscriber_opening(cfg: &RedisConfig, keys: &Keys) -> Pipeline {
    let mut p = opening(cfg);
    p.push(&["SUBSCRIBE", keys.channel.as_str()], "SUBSCRIBE: ");
    p
}

/// The hashes of the loaded scripts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shas {
    change: String,
    seed: String,
    prune: String,
}

impl Shas {
    /// From the replies to [`commands_opening`] (checked).
    pub fn from_replies(replies: &[Reply]) -> Result<Shas, String> {
        let sha = |i: usize| {
            replies
                .len()
                .checked_sub(SCRIPTS.len() - i)
                .and_then(|at| replies[at].text())
                .ok_or_else(|| "SCRIPT LOAD: no hash in the reply".to_string())
        };
        Ok(Shas {
            change: sha(0)?,
            seed: sha(1)?,
            prune: sha(2)?,
        })
    }
}

/// One change sent: applied and announced (labels: `EVAL: `).
pub fn change(p: &mut Pipeline, keys: &Keys, shas: &Shas, message: &str, c: &Change) {
    let (op, target, value, expiry) = c.wire();
    p.push(
        &[
            "EVALSHA",
            &shas.change,
            "2",
            &keys.blocks,
            &keys.expiry,
            &keys.channel,
            message,
            op,
            &target,
            &value,
            &expiry.to_string(),
        ],
        "EVAL: ",
    );
}

/// Blocks Redis lacks, with the message announcing each: added unless
/// Redis has them by now.
pub fn seed(keys: &Keys, shas: &Shas, blocks: &[(&Block, String)]) -> Pipeline {
    let mut args: Vec<String> = Vec::with_capacity(6 + 4 * blocks.len());
    args.extend([
        "EVALSHA".to_string(),
        shas.seed.clone(),
        "2".to_string(),
        keys.blocks.clone(),
        keys.expiry.clone(),
        keys.channel.clone(),
    ]);
    for (b, message) in blocks {
        args.push(b.net.to_string());
        args.push(b.value());
        args.push(b.expires_ms.to_string());
        args.push(message.clone());
    }
    let mut p = Pipeline::default();
    p.push(&args, "");
    p
}

/// Expired entries dropped from Redis.
pub fn prune(keys: &Keys, shas: &Shas, now_ms: u64) -> Pipeline {
    let mut p = Pipeline::default();
    p.push(
        &[
            "EVALSHA",
            &shas.prune,
            "2",
            &keys.blocks,
            &keys.expiry,
            &now_ms.to_string(),
        ],
        "",
    );
    p
}

/// The epoch read (after `pipeline`'s commands).
pub fn get_epoch(p: &mut Pipeline, keys: &Keys) {
    p.push(&["GET", keys.epoch.as_str()], "");
}

/// A new epoch written unless there is one.
pub fn set_epoch(p: &mut Pipeline, keys: &Keys, epoch: &str) {
    p.push(&["SET", keys.epoch.as_str(), epoch, "NX"], "");
}

/// One page of the hash of blocks from `cursor`.
pub fn scan(keys: &Keys, cursor: &str) -> Pipeline {
    let mut p = Pipeline::default();
    let count = SCAN.to_string();
    p.push(
        &["HSCAN", keys.blocks.as_str(), cursor, "COUNT", &count],
        "",
    );
    p
}

/// A PING (on the subscriber: answered `pong` after what the channel
/// delivered before it).
pub fn ping() -> Pipeline {
    let mut p = Pipeline::default();
    p.push(&["PING"], "");
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::resp::parse;

    fn cfg(v: serde_json::Value) -> RedisConfig {
        RedisConfig::from_value(&v).unwrap()
    }

    /// The commands of a pipeline, as Redis reads them.
    fn commands(p: &Pipeline) -> Vec<Vec<String>> {
        let (mut out, mut at) = (Vec::new(), 0);
        while let Some((r, used)) = parse(&p.bytes[at..]).unwrap() {
            at += used;
            out.push(
                r.items()
                    .unwrap()
                    .iter()
                    .map(|a| a.text().unwrap())
                    .collect(),
            );
        }
        assert_eq!(at, p.bytes.len());
        out
    }

    #[test]
    fn keys_and_openings() {
        let c = cfg(serde_json::json!({"host": "unix:/run/r.sock", "prefix": "t:"}));
        assert_eq!(c.location(), "unix:/run/r.sock");
        let k = Keys::new(&c);
        assert_eq!(
            (
                k.blocks.as_str(),
                k.expiry.as_str(),
                k.epoch.as_str(),
                k.channel.as_str()
            ),
            ("t:blocks", "t:expiry", "t:epoch", "t:events")
        );
        let p = commands_opening(&c);
        assert_eq!(commands(&p).len(), 3, "only the scripts");
        let c = cfg(serde_json::json!({"host": "r", "password": "pw", "db": 2}));
        let p = subscriber_opening(&c, &Keys::new(&c));
        assert_eq!(
            commands(&p),
            vec![
                vec!["AUTH", "pw"],
                vec!["SELECT", "2"],
                vec!["SUBSCRIBE", "warden:events:2"]
            ]
        );
        let replies = [
            Reply::Error("WRONGPASS invalid".into()),
            Reply::Error("NOAUTH".into()),
            Reply::Error("NOAUTH".into()),
        ];
        assert_eq!(
            p.check(&replies).unwrap_err(),
            "AUTH failed: WRONGPASS invalid"
        );
        let p = commands_opening(&c);
        let replies = [
            Reply::Status("OK".into()),
            Reply::Error("ERR DB index is out of range".into()),
        ];
        assert_eq!(
            p.check(&replies).unwrap_err(),
            "SELECT 2 failed: ERR DB index is out of range"
        );
    }

    #[test]
    fn scripts_hashes_and_changes() {
        let c = cfg(serde_json::json!({"host": "r"}));
        let keys = Keys::new(&c);
        let bulk = |s: &str| Reply::Bulk(Some(s.as_bytes().to_vec()));
        assert!(Shas::from_replies(&[bulk("a"), bulk("b")]).is_err());
        let shas = Shas::from_replies(&[bulk("a"), bulk("b"), bulk("c")]).unwrap();
        let mut p = Pipeline::default();
        let ch = Change::decode("+|192.0.2.1|1700000000000|manual|x y").unwrap();
        change(
            &mut p,
            &keys,
            &shas,
            "n +|192.0.2.1|1700000000000|manual|x y",
            &ch,
        );
        change(
            &mut p,
            &keys,
            &shas,
            "n -|192.0.2.2",
            &Change::decode("-|192.0.2.2").unwrap(),
        );
        let cmds = commands(&p);
        assert_eq!(
            cmds[0],
            [
                "EVALSHA",
                "a",
                "2",
                "warden:blocks",
                "warden:expiry",
                "warden:events",
                "n +|192.0.2.1|1700000000000|manual|x y",
                "+",
                "192.0.2.1",
                "1700000000000|manual|x y",
                "1700000000000"
            ]
        );
        assert_eq!(cmds[1][7..], ["-", "192.0.2.2", "", "0"]);
        assert_eq!(
            p.check(&[Reply::Int(1), Reply::Error("NOSCRIPT x".into())])
                .unwrap_err(),
            "EVAL: NOSCRIPT x"
        );
        let Change::Add(b) = ch else { unreachable!() };
        let cmds = commands(&seed(&keys, &shas, &[(&b, "n m".to_string())]));
        assert_eq!(
            cmds[0][1..],
            [
                "b",
                "2",
                "warden:blocks",
                "warden:expiry",
                "warden:events",
                "192.0.2.1",
                "1700000000000|manual|x y",
                "1700000000000",
                "n m"
            ]
        );
        assert_eq!(commands(&prune(&keys, &shas, 42))[0][1], "c");
        assert_eq!(
            commands(&scan(&keys, "17"))[0],
            ["HSCAN", "warden:blocks", "17", "COUNT", "1000"]
        );
        let mut p = Pipeline::default();
        set_epoch(&mut p, &keys, "e");
        get_epoch(&mut p, &keys);
        assert_eq!(
            commands(&p),
            vec![
                vec!["SET", "warden:epoch", "e", "NX"],
                vec!["GET", "warden:epoch"]
            ]
        );
    }
}
