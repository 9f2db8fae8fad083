//! What the admin API reads: access-log lines ([`accesslog`]) for
//! `/security/analyze`.

pub mod accesslog;
