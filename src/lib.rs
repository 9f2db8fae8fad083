//! # warden_core
//!
//! The Rust core of lua-resty-warden, loaded into nginx's LuaJIT.
//!
//! Two doors lead in:
//! - `require("warden_core")` (mlua, [`lua`]): set-up and admin work —
//!   options, blocks, listings, statistics;
//! - `extern "C"` functions called through LuaJIT's FFI ([`ffi`]): the
//!   per-request check, compiled into LuaJIT's traces.
//!
//! The modules, one concept each:
//! - [`addr`]: addresses and networks (parsing, IPv4-mapped IPv6);
//! - [`agents`]: scanner user agents matched as tokens (detector);
//! - [`prefix`]: the longest-prefix-match structure;
//! - [`lists`]: the configured allowlist, denylist and trusted proxies;
//! - [`blocks`]: blocks made at run time and their shared-dict records;
//! - [`state`]: the state file (blocks and policy kept across restarts);
//! - [`config`]: options and durations;
//! - [`counters`]: per-client counters shared by every worker (detector);
//! - [`shm`]: memory shared by every worker (journal versions, counters);
//! - [`engine`]: one warden instance and the per-request decision;
//! - [`policy`]: whitelist, protected routes, site policies (by path/site);
//! - [`credentials`]: basic/bearer credentials, plain or htpasswd-hashed;
//! - [`audit`]: security events in a shared ring;
//! - [`accesslog`]: nginx `combined` log lines (`/security/analyze`);
//! - [`report`]: statsd packets and audit lines.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod accesslog;
pub mod addr;
pub mod agents;
pub mod audit;
pub mod blocks;
pub mod config;
pub mod counters;
pub mod credentials;
pub mod detector;
pub mod engine;
pub mod ffi;
pub mod glob;
pub mod http;
pub mod lists;
#[cfg(any(feature = "module", feature = "vendored"))]
pub mod lua;
pub mod policy;
pub mod prefix;
pub mod report;
pub mod reputation;
pub mod shm;
pub mod state;
