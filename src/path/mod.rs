//! Request paths: globs ([`glob`]) for probe paths, ignored paths and
//! protected routes; request targets decoded and normalized ([`uri`]).

pub mod glob;
pub mod uri;
