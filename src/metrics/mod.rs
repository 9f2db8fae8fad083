//! What warden counts ([`Stat`]), a snapshot of the counters and gauges
//! ([`Snapshot`]), and how they leave nginx: the Prometheus text
//! ([`prometheus`]) and statsd packets ([`statsd`]).

pub mod prometheus;
mod snapshot;
mod stat;
pub mod statsd;

pub use snapshot::{DetectorGauges, FleetGauges, Snapshot, GAUGES};
pub use stat::Stat;
