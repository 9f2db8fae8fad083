//! Addresses and networks: parsing ([`addr`]), longest-prefix matching
//! ([`prefix`]), the client of a request ([`client`]), the configured allowlist, denylist and trusted proxies
//! ([`lists`]), HTTP/1 responses for the cosocket client ([`http`]), and
//! Redis's protocol for the fleet agent ([`resp`]).

pub mod addr;
pub mod client;
pub mod http;
pub mod lists;
pub mod prefix;
pub mod resp;
