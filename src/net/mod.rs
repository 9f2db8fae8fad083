//! Addresses and networks: parsing ([`addr`]), longest-prefix matching
//! ([`prefix`]), the configured allowlist, denylist and trusted proxies
//! ([`lists`]), and HTTP/1 responses for the cosocket client ([`http`]).

pub mod addr;
pub mod http;
pub mod lists;
pub mod prefix;
