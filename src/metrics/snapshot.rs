//! What `warden:stats()` reports at one moment: every counter summed over
//! the workers, and the gauges (memory, tables, the fleet). One snapshot
//! feeds the three reports: `/security/stats`'s `counters` object
//! ([`Snapshot::to_json`]), the Prometheus text
//! ([`crate::metrics::prometheus`]) and the gauges pushed to statsd
//! ([`Snapshot::gauges`]).

use serde_json::{Map, Value};

use super::Stat;

/// The detector's table, when the detector is on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetectorGauges {
    /// Clients tracked now.
    pub tracked: u64,
    /// Clients the table holds at most.
    pub capacity: u64,
    /// Bytes the table maps.
    pub memory_bytes: u64,
    /// Bytes per client.
    pub bytes_per_client: u64,
}

/// This node's fleet agent, when `redis` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetGauges {
    /// The node's name.
    pub node: String,
    /// Where Redis is (`host:port` or a socket).
    pub redis: String,
    /// True while the agent is connected.
    pub connected: bool,
    /// Local changes not sent yet.
    pub queued: i64,
}

/// Counters and gauges at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// lua-resty-warden's version.
    pub version: String,
    /// The `lua_shared_dict`'s name.
    pub dict: String,
    /// Every counter, summed over every worker, indexed by [`Stat`].
    pub counters: [u64; Stat::COUNT],
    /// Blocks in this worker's replica.
    pub blocks: u64,
    /// Heap bytes of the compiled lists.
    pub lists_memory: u64,
    /// Bytes of the shared region of counters.
    pub shm_bytes: u64,
    /// Entries of the denylist.
    pub denylist: u64,
    /// The detector's table (`None` when the detector is off).
    pub detector: Option<DetectorGauges>,
    /// Events ever written to the ring.
    pub events_recorded: u64,
    /// Events the ring holds at most.
    pub events_capacity: u64,
    /// Bytes the ring maps.
    pub events_memory_bytes: u64,
    /// Free bytes of the shared dict.
    pub dict_free_bytes: u64,
    /// Size of the shared dict.
    pub dict_capacity_bytes: u64,
    /// The state file (`None` without one).
    pub state_file: Option<String>,
    /// The fleet agent (`None` without `redis`).
    pub fleet: Option<FleetGauges>,
    /// Challenges are configured (`opts.challenge`): reports show their
    /// counters and event types (without, they look as they always did).
    pub challenge: bool,
}

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot {
            version: String::new(),
            dict: String::new(),
            counters: [0; Stat::COUNT],
            blocks: 0,
            lists_memory: 0,
            shm_bytes: 0,
            denylist: 0,
            detector: None,
            events_recorded: 0,
            events_capacity: 0,
            events_memory_bytes: 0,
            dict_free_bytes: 0,
            dict_capacity_bytes: 0,
            state_file: None,
            fleet: None,
            challenge: false,
        }
    }
}

/// The gauges of a snapshot by name, without the counters: what a
/// reader sets with [`Snapshot::set`] besides the counters.
pub const GAUGES: &[&str] = &[
    "version",
    "dict",
    "blocks",
    "lists_memory",
    "shm_bytes",
    "denylist",
    "detector_tracked",
    "detector_capacity",
    "detector_memory_bytes",
    "detector_bytes_per_client",
    "events_recorded",
    "events_capacity",
    "events_memory_bytes",
    "dict_free_bytes",
    "dict_capacity_bytes",
    "state_file",
    "fleet_node",
    "fleet_redis",
    "fleet_connected",
    "fleet_queued",
];

impl Snapshot {
    /// A counter.
    pub fn get(&self, s: Stat) -> u64 {
        self.counters[s as usize]
    }

    /// Sets the value named `name` (a [`Stat`] name or one of [`GAUGES`])
    /// from a JSON value (a number, a string, a boolean); unknown names
    /// and values of the wrong type are ignored. This is how a snapshot
    /// is read back from `warden:stats()`'s table.
    pub fn set(&mut self, name: &str, v: &Value) {
        if let Some((s, _)) = Stat::ALL.iter().find(|(_, n)| *n == name) {
            self.counters[*s as usize] = number(v);
            return;
        }
        let text = || v.as_str().map(str::to_string);
        match name {
            "version" => self.version = text().unwrap_or_default(),
            "dict" => self.dict = text().unwrap_or_default(),
            "blocks" => self.blocks = number(v),
            "lists_memory" => self.lists_memory = number(v),
            "shm_bytes" => self.shm_bytes = number(v),
            "denylist" => self.denylist = number(v),
            "detector_tracked" => self.detector_mut().tracked = number(v),
            "detector_capacity" => self.detector_mut().capacity = number(v),
            "detector_memory_bytes" => self.detector_mut().memory_bytes = number(v),
            "detector_bytes_per_client" => self.detector_mut().bytes_per_client = number(v),
            "events_recorded" => self.events_recorded = number(v),
            "events_capacity" => self.events_capacity = number(v),
            "events_memory_bytes" => self.events_memory_bytes = number(v),
            "dict_free_bytes" => self.dict_free_bytes = number(v),
            "dict_capacity_bytes" => self.dict_capacity_bytes = number(v),
            "state_file" => self.state_file = text(),
            "fleet_node" => self.fleet_mut().node = text().unwrap_or_default(),
            "fleet_redis" => self.fleet_mut().redis = text().unwrap_or_default(),
            "fleet_connected" => self.fleet_mut().connected = v.as_bool().unwrap_or(false),
            "fleet_queued" => self.fleet_mut().queued = v.as_f64().unwrap_or(0.0) as i64,
            "challenge" => self.challenge = v.as_bool().unwrap_or(false),
            _ => {}
        }
    }

    fn detector_mut(&mut self) -> &mut DetectorGauges {
        self.detector.get_or_insert_with(DetectorGauges::default)
    }

    fn fleet_mut(&mut self) -> &mut FleetGauges {
        self.fleet.get_or_insert_with(FleetGauges::default)
    }

    /// The snapshot as `warden:stats()` has always shown it: one object of
    /// counters and gauges by name (the admin API's `counters`).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (s, name) in Stat::ALL {
            m.insert(name.to_string(), self.get(s).into());
        }
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        put("version", self.version.clone().into());
        put("dict", self.dict.clone().into());
        put("blocks", self.blocks.into());
        put("lists_memory", self.lists_memory.into());
        put("shm_bytes", self.shm_bytes.into());
        put("denylist", self.denylist.into());
        if let Some(d) = &self.detector {
            put("detector_tracked", d.tracked.into());
            put("detector_capacity", d.capacity.into());
            put("detector_memory_bytes", d.memory_bytes.into());
            put("detector_bytes_per_client", d.bytes_per_client.into());
        }
        put("events_recorded", self.events_recorded.into());
        put("events_capacity", self.events_capacity.into());
        put("events_memory_bytes", self.events_memory_bytes.into());
        put("dict_free_bytes", self.dict_free_bytes.into());
        put("dict_capacity_bytes", self.dict_capacity_bytes.into());
        if let Some(f) = &self.state_file {
            put("state_file", f.clone().into());
        }
        if self.challenge {
            put("challenge", true.into());
        }
        if let Some(f) = &self.fleet {
            put("fleet_node", f.node.clone().into());
            put("fleet_redis", f.redis.clone().into());
            put("fleet_connected", f.connected.into());
            put("fleet_queued", f.queued.into());
        }
        Value::Object(m)
    }

    /// The gauges pushed to statsd next to the counters (which go as
    /// deltas), by name, in name order.
    pub fn gauges(&self) -> Vec<(&'static str, u64)> {
        let mut g = vec![
            ("blocked_addresses", self.blocks + self.denylist),
            ("shm_free_bytes", self.dict_free_bytes),
        ];
        if let Some(d) = &self.detector {
            g.push(("detector_tracked_clients", d.tracked));
        }
        g.sort_unstable();
        g
    }
}

fn number(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_f64().map(|f| f.max(0.0) as u64))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn read_back_by_name_and_shown_with_the_same_names() {
        let mut s = Snapshot::default();
        s.set("passed", &json!(7));
        s.set("events_capture", &json!(2.0));
        s.set("dict", &json!("warden"));
        s.set("detector_tracked", &json!(3));
        s.set("fleet_connected", &json!(true));
        s.set("nonsense", &json!(1));
        assert_eq!(s.get(Stat::Passed), 7);
        assert_eq!(s.get(Stat::EventsCapture), 2);
        let j = s.to_json();
        assert_eq!(j["passed"], 7);
        assert_eq!(j["dict"], "warden");
        assert_eq!(j["detector_tracked"], 3);
        assert_eq!(j["detector_capacity"], 0);
        assert_eq!(j["fleet_connected"], true);
        assert!(j.get("state_file").is_none());
        assert!(j.get("nonsense").is_none());
        // every name `set` knows is shown again by `to_json`
        for name in GAUGES {
            assert!(j.get(*name).is_some() || *name == "state_file", "{name}");
        }
        for (_, name) in Stat::ALL {
            assert!(j.get(name).is_some(), "{name}");
        }
    }

    #[test]
    fn statsd_gauges() {
        let mut s = Snapshot {
            blocks: 2,
            denylist: 1,
            dict_free_bytes: 4096,
            ..Snapshot::default()
        };
        assert_eq!(
            s.gauges(),
            [("blocked_addresses", 3), ("shm_free_bytes", 4096)]
        );
        s.set("detector_tracked", &json!(5));
        assert_eq!(s.gauges()[0], ("blocked_addresses", 3));
        assert_eq!(s.gauges()[1], ("detector_tracked_clients", 5));
    }
}
