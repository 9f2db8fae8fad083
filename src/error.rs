//! The one error type callers branch on: a [`Kind`], the field it is
//! about, and a message that names the field and the offending value.
//!
//! Callers decide by kind, never by the text: the admin API's HTTP status
//! comes from [`Kind::status`], so rewording a message cannot change a
//! status code. Areas with errors of their own (options, policies,
//! records) convert into this type.
//!
//! ```
//! use warden_core::error::{Error, Kind};
//! let e = Error::new(Kind::NotFound, "ip", "192.0.2.1 is not blocked");
//! assert_eq!((e.kind(), e.field(), e.kind().status()), (Kind::NotFound, Some("ip"), 404));
//! assert_eq!(e.to_string(), "192.0.2.1 is not blocked");
//! ```

use std::fmt;

/// What went wrong, as a caller branches on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The input is wrong (a bad address, option, duration or body).
    Invalid,
    /// The thing named does not exist (no such block, entry or endpoint).
    NotFound,
    /// The request conflicts with what exists (a duplicate, a denylist
    /// entry that only configuration can remove).
    Conflict,
    /// The method is not allowed on this endpoint.
    MethodNotAllowed,
    /// Credentials are missing or wrong.
    Unauthorized,
    /// The caller may not do this.
    Forbidden,
    /// The request is larger than allowed.
    TooLarge,
    /// The shared dict (or a disk) has no room.
    Full,
    /// Something is busy or unreachable for now: try again.
    Unavailable,
    /// A bug or an unexpected failure.
    Internal,
}

impl Kind {
    /// Every kind with its name, in declaration order.
    pub const ALL: [(Kind, &'static str); 10] = [
        (Kind::Invalid, "invalid"),
        (Kind::NotFound, "not_found"),
        (Kind::Conflict, "conflict"),
        (Kind::MethodNotAllowed, "method_not_allowed"),
        (Kind::Unauthorized, "unauthorized"),
        (Kind::Forbidden, "forbidden"),
        (Kind::TooLarge, "too_large"),
        (Kind::Full, "full"),
        (Kind::Unavailable, "unavailable"),
        (Kind::Internal, "internal"),
    ];

    /// The kind's name (as Lua sees it).
    pub fn name(self) -> &'static str {
        Kind::ALL[self as usize].1
    }

    /// The HTTP status the admin API answers with.
    pub fn status(self) -> u16 {
        match self {
            Kind::Invalid => 400,
            Kind::Unauthorized => 401,
            Kind::Forbidden => 403,
            Kind::NotFound => 404,
            Kind::MethodNotAllowed => 405,
            Kind::Conflict => 409,
            Kind::TooLarge => 413,
            Kind::Internal => 500,
            Kind::Unavailable => 503,
            Kind::Full => 507,
        }
    }
}

/// An error with a kind, the field it is about (if any) and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: Kind,
    field: Option<String>,
    message: String,
}

impl Error {
    /// An error of `kind` about `field` ("" for none).
    pub fn new(kind: Kind, field: &str, message: impl Into<String>) -> Error {
        Error {
            kind,
            field: (!field.is_empty()).then(|| field.to_string()),
            message: message.into(),
        }
    }

    /// Bad input in `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Error {
        Error::new(Kind::Invalid, field, message)
    }

    /// A bug or unexpected failure.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(Kind::Internal, "", message)
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The field the error is about.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error about `field` (when it named none).
    pub fn or_field(mut self, field: &str) -> Error {
        if self.field.is_none() && !field.is_empty() {
            self.field = Some(field.to_string());
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<crate::options::ConfigError> for Error {
    fn from(e: crate::options::ConfigError) -> Error {
        Error::invalid(e.option(), e.to_string())
    }
}

/// What a caught panic says (the payload `catch_unwind` returns), for
/// the log line that reports it.
///
/// ```
/// let p = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
/// assert_eq!(warden_core::error::panic_message(&*p), "boom 1");
/// ```
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "unknown cause"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_statuses() {
        for (i, (k, name)) in Kind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
            assert_eq!(k.name(), *name);
            assert!((400..600).contains(&k.status()));
        }
        let e = Error::new(Kind::Full, "", "no room").or_field("ip");
        assert_eq!((e.field(), e.kind().status()), (Some("ip"), 507));
        assert_eq!(Error::invalid("", "x").field(), None);
    }
}
