//! Challenges instead of bans (issue 19). This branch holds one part of
//! it: which clients are verified crawlers and are never challenged
//! ([`crawlers`]).

pub mod crawlers;
