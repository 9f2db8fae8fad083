//! State kept outside nginx's memory: the state file ([`state`]).

pub mod state;
