//! Request paths: globs ([`glob`]) for probe paths, ignored paths and
//! protected routes.

pub mod glob;
