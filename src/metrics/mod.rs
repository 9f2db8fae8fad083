//! What warden counts ([`Stat`]) and how counts leave nginx: statsd
//! packets ([`statsd`]).

mod stat;
pub mod statsd;

pub use stat::Stat;
