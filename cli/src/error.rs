//! The command's one error type, and the exit codes scripts rely on.

use std::fmt;

/// Exit codes (documented in `warden --help` and the README).
pub mod exit {
    /// Done; `why`: the address is not refused.
    pub const OK: i32 = 0;
    /// The admin API answered with an error (bad value, not found, ...).
    pub const API: i32 = 1;
    /// Bad usage: arguments, addresses, durations, configuration.
    pub const USAGE: i32 = 2;
    /// The admin API could not be reached (refused, timeout, no such host).
    pub const UNREACHABLE: i32 = 3;
    /// The admin API refused the token (or this host).
    pub const AUTH: i32 = 4;
    /// `why`: the address is refused (a block, the denylist, its
    /// reputation).
    pub const BLOCKED: i32 = 5;
}

/// What went wrong, which decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The API answered with an error status.
    Api,
    /// Bad arguments or configuration.
    Usage,
    /// No answer from the API.
    Unreachable,
    /// 401 (or a 403 from nginx's `allow`/`deny`).
    Auth,
}

impl Kind {
    /// The process's exit code for this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Api => exit::API,
            Kind::Usage => exit::USAGE,
            Kind::Unreachable => exit::UNREACHABLE,
            Kind::Auth => exit::AUTH,
        }
    }
}

/// An error: its kind, the HTTP status when the API answered, and a
/// message for people (lowercase, naming the value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// What went wrong.
    pub kind: Kind,
    /// The API's status, when it answered.
    pub status: Option<u16>,
    /// What to print.
    pub message: String,
}

impl Error {
    /// An error of `kind`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            status: None,
            message: message.into(),
        }
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(Kind::Usage, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_distinct_exit_codes() {
        let codes: Vec<i32> = [Kind::Api, Kind::Usage, Kind::Unreachable, Kind::Auth]
            .iter()
            .map(|k| k.exit_code())
            .collect();
        assert_eq!(codes, [1, 2, 3, 4]);
        assert!(!codes.contains(&exit::OK) && !codes.contains(&exit::BLOCKED));
    }
}
