//! State kept outside nginx's memory: the state file ([`state`], kept by
//! [`keep`]) and the fleet's records in the shared dict ([`fleet`]).

pub mod fleet;
pub mod keep;
pub mod state;
