//! What the admin API needs from the rest of warden: the [`Backend`]
//! trait. The endpoints are written against it, so that routing,
//! validation, views and errors are tested with a fake; the real one is
//! [`crate::ops::Warden`] (see `admin/warden.rs`): the engine and the
//! shared dict.
//!
//! Methods return the [`Error`] of their area; its kind gives the HTTP
//! status (an `Internal` one is a 500 with its message).

use serde_json::Value;

use crate::admin::accesslog::Line;
use crate::blocks::{Action, Block};
use crate::config::Config;
use crate::error::Error;
use crate::events::{Event, Filter};
use crate::metrics::{Snapshot, Stat};
use crate::net::addr::{Addr, Net};
use crate::net::client::Client;
use crate::ops::Trip;
use crate::policy::decision::{Asked, Decision};
use crate::policy::doc::{Edit, Update};
use crate::store::Level;

/// The admin API's view of warden.
pub trait Backend {
    /// `new()`'s options.
    fn config(&self) -> &Config;
    /// lua-resty-warden's version.
    fn version(&self) -> &str;
    /// Now, in ms since the epoch (the clock of expiries and views).
    fn now_ms(&self) -> u64;
    /// Writes a line to nginx's error log, as it is.
    fn log(&self, level: Level, line: &str);

    /// Every block in force (this worker up to date), denylist first.
    fn blocks(&self) -> Result<Vec<Block>, Error>;
    /// Blocks (or, with [`Action::Challenge`], challenges) `target` for
    /// `duration_ms` (0: permanently), as the admin API does (source
    /// `manual`, an event recorded).
    fn block(
        &self,
        target: &Net,
        duration_ms: u64,
        reason: &str,
        action: Action,
    ) -> Result<(), Error>;
    /// Removes the block of exactly `target`: `NotFound` when there is
    /// none, `Conflict` when it is a denylist entry.
    fn unblock(&self, target: &Net) -> Result<(), Error>;
    /// True when the allowlist or the whitelist covers `a`.
    fn allowlisted(&self, a: Addr) -> bool;
    /// True when `a` is one of `trusted_proxies`.
    fn trusted(&self, a: Addr) -> bool;

    /// The admin API's policy document (`{}` when none is stored).
    fn policy_document(&self) -> Result<Value, Error>;
    /// The protected routes in force, in matching order, as
    /// [`crate::policy::Route::describe`] shows them, with `id` for those
    /// of the API.
    fn routes(&self) -> Result<Vec<Value>, Error>;
    /// Makes a change of the admin API's policy document (see
    /// [`crate::policy::doc::update`]). `last_try`: the caller will not
    /// try again, so a change another worker is making is an error
    /// (`Unavailable`) instead of [`Update::Busy`]. Errors: `NotFound` (no
    /// such id or site), `Conflict` (a duplicate whitelist entry),
    /// `Invalid` (a document that does not compile), `Full`.
    fn edit_policy(&self, edit: &Edit, last_try: bool) -> Result<Update, Error>;
    /// Has every worker re-read the blocks and the policy.
    fn refresh(&self) -> Result<(), Error>;

    /// Events matching `f`, newest first.
    fn events(&self, f: &Filter) -> Result<Vec<Event>, Error>;
    /// Forgets events older than `older_than_ms`; returns how many.
    fn cleanup(&self, older_than_ms: u64) -> Result<usize, Error>;
    /// Counters and gauges now.
    fn stats(&self) -> Result<Snapshot, Error>;
    /// One counter, summed over every worker.
    fn counter(&self, s: Stat) -> Result<u64, Error>;
    /// Free bytes of the shared dict.
    fn dict_free_bytes(&self) -> Result<u64, Error>;

    /// The client of a request from `peer` with these headers: the peer,
    /// or, when the peer is a trusted proxy, the one its headers name
    /// (`bad_forwarded` when they name none that parses).
    fn resolve_client(
        &self,
        peer: Addr,
        x_forwarded_for: Option<&str>,
        x_real_ip: Option<&str>,
    ) -> Client;
    /// A threat score from 0 to 100 from the lists, blocks and detector
    /// (reputation aside), uncounted.
    fn threat_score(&self, a: Addr) -> Result<u8, Error>;
    /// What `check()` decides on a request from `client` (the lists and
    /// blocks, then [`crate::ops::Warden::policy_decision`]; counted, as
    /// `check()` counts), before reputation.
    fn decide(&self, client: Addr, req: &Asked<'_>) -> Result<Decision, Error>;
    /// Feeds an access-log line of `client` to the detector and acts on a
    /// rule it trips (block, event); the trip's iprepd report is for the
    /// caller to send.
    fn observe_line(&self, client: Addr, line: &Line<'_>) -> Result<Option<Trip>, Error>;
}
