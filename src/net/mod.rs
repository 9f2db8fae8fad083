//! Addresses and networks: parsing ([`addr`]), longest-prefix matching
//! ([`prefix`]), the client of a request ([`client`]), the configured allowlist, denylist and trusted proxies
//! ([`lists`]), HTTP/1 responses for the cosocket client ([`http`]),
//! Redis's protocol for the fleet agent ([`resp`]), DNS queries and
//! answers for crawler verification ([`dns`]).

pub mod addr;
pub mod client;
pub mod dns;
pub mod http;
pub mod lists;
pub mod prefix;
pub mod resp;
