//! Who may call the admin API: `Authorization: Bearer <admin_token>`,
//! compared in constant time.

use crate::config::Config;
use crate::error::{Error, Kind};
use crate::policy::credentials::ct_eq;

/// The header a refusal carries.
pub const CHALLENGE: (&str, &str) = ("WWW-Authenticate", "Bearer realm=\"warden\"");

/// Tokens shorter than this get a warning at start-up.
pub const SHORT: usize = 16;

/// The admin token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// The token of `new()`'s options: `admin_token`, or the one in the
    /// file `admin_token_file` (read, and its mode checked, by
    /// [`Config`]). `None` when neither is set: the API is off.
    pub fn from_config(cfg: &Config) -> Result<Option<Token>, Error> {
        Ok(cfg.admin_token.clone().map(Token))
    }

    /// A warning to log at start-up about the token, if any.
    pub fn warning(&self) -> Option<&'static str> {
        (self.0.len() < SHORT).then_some(
            "the admin token is shorter than 16 characters; use a long random \
             one (e.g. openssl rand -hex 32)",
        )
    }
}

/// White space as Lua's `%s` sees it.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Decides on a request's `Authorization` header: `Ok` for the right
/// bearer token, else an `Unauthorized` error about `Authorization`.
pub fn authorize(token: Option<&Token>, header: Option<&str>) -> Result<(), Error> {
    let refuse = |msg: &str| Err(Error::new(Kind::Unauthorized, "Authorization", msg));
    let Some(token) = token else {
        return refuse("the admin API is off: set admin_token or admin_token_file in warden.new()");
    };
    let Some(h) = header else {
        return refuse("missing Authorization: Bearer <token>");
    };
    let mut words = h.split(is_space).filter(|w| !w.is_empty());
    match (words.next(), words.next(), words.next()) {
        (Some(scheme), Some(given), None) if scheme.eq_ignore_ascii_case("bearer") => {
            if ct_eq(given.as_bytes(), token.0.as_bytes()) {
                Ok(())
            } else {
                refuse("invalid token")
            }
        }
        _ => refuse("Authorization must be Bearer <token>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(t: &str) -> Token {
        Token(t.to_string())
    }

    #[test]
    fn decisions() {
        let t = token("t0ken-0123456789abcdef");
        assert!(authorize(Some(&t), Some("Bearer t0ken-0123456789abcdef")).is_ok());
        assert!(authorize(Some(&t), Some(" bearer\tt0ken-0123456789abcdef \r")).is_ok());
        for (header, msg) in [
            (None, "missing Authorization: Bearer <token>"),
            (Some("Bearer wrong"), "invalid token"),
            (Some("Bearer t0ken-0123456789abcde"), "invalid token"),
            (
                Some("Basic t0ken-0123456789abcdef"),
                "Authorization must be Bearer <token>",
            ),
            (Some("Bearer"), "Authorization must be Bearer <token>"),
            (Some("Bearer a b"), "Authorization must be Bearer <token>"),
            (Some(""), "Authorization must be Bearer <token>"),
        ] {
            let e = authorize(Some(&t), header).unwrap_err();
            assert_eq!(
                (e.message(), e.field(), e.kind().status()),
                (msg, Some("Authorization"), 401),
                "{header:?}"
            );
        }
        let e = authorize(None, Some("Bearer x")).unwrap_err();
        assert!(e.message().starts_with("the admin API is off"));
    }

    #[test]
    fn from_options() {
        let cfg = |v: serde_json::Value| Config::from_value(&v).unwrap();
        assert_eq!(
            Token::from_config(&cfg(serde_json::json!({}))).unwrap(),
            None
        );
        let t = Token::from_config(&cfg(serde_json::json!({"admin_token": "short"})))
            .unwrap()
            .unwrap();
        assert!(t.warning().is_some());
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");

        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("warden-auth-token-{}", std::process::id()));
        std::fs::write(&dir, "\n  0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p = dir.to_str().unwrap();
        let t = Token::from_config(&cfg(serde_json::json!({"admin_token_file": p})))
            .unwrap()
            .unwrap();
        assert_eq!(t, token("0123456789abcdef0123"));
        assert_eq!(t.warning(), None);
        std::fs::remove_file(&dir).unwrap();
    }
}
