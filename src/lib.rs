//! # warden_core
//!
//! The Rust core of lua-resty-warden, loaded into nginx's LuaJIT. It owns
//! every concept and every decision; the Lua side is glue for what only
//! nginx can do (phases, shared dicts, cosockets, timers, HTTP framing).
//! `ARCHITECTURE.md` lists each concept with the one module that owns it.
//!
//! Two doors lead in:
//! - `extern "C"` functions called through LuaJIT's FFI ([`ffi`]): the
//!   per-request work, compiled into LuaJIT's traces;
//! - `require("warden_core")` (mlua, `lua`): set-up and admin work.
//!
//! The modules, by domain (each depends only on those above it):
//! - [`error`]: the one error type, with a kind callers branch on;
//! - [`options`]: reading option values (numbers, durations, sizes, lists);
//! - [`net`]: addresses, prefix matching, the configured lists, HTTP/1
//!   responses;
//! - [`path`]: path globs;
//! - [`metrics`]: what warden counts, statsd packets;
//! - [`shm`]: memory shared by every worker;
//! - [`store`]: the shared dict as Rust sees it, and how it is written;
//! - [`events`]: security events in a shared ring;
//! - [`blocks`]: blocks made at run time and their records;
//! - [`detect`]: the behavioural detector and its shared counters;
//! - [`policy`]: whitelist, protected routes, site policies;
//! - [`reputation`]: the iprepd reputation cache and audit line;
//! - [`config`]: the options of `new()`;
//! - [`engine`]: one warden instance, composing all of the above;
//! - [`persist`]: the state file, the fleet's records;
//! - [`ops`]: what warden does with its shared dict (block, sync, trips,
//!   policy edits...), for both doors;
//! - [`admin`]: what the admin API reads (access-log lines).

#![deny(unsafe_op_in_unsafe_fn)]

pub mod admin;
pub mod blocks;
pub mod challenge;
pub mod config;
pub mod detect;
pub mod engine;
pub mod error;
pub mod events;
pub mod ffi;
#[cfg(any(feature = "module", feature = "vendored"))]
pub mod lua;
pub mod metrics;
pub mod net;
pub mod ops;
pub mod options;
pub mod path;
pub mod persist;
pub mod policy;
pub mod reputation;
pub mod shm;
pub mod store;
