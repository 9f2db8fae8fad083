//! Where the admin API is and its token: flags, then the environment,
//! then a config file, then the default URL.
//!
//! | setting | flag | environment | file key |
//! |---|---|---|---|
//! | URL of the location serving `warden:api()` | `--url` | `WARDEN_URL` | `url` |
//! | the token | `--token-file` | `WARDEN_TOKEN`, `WARDEN_TOKEN_FILE` | `token`, `token_file` |
//! | time to wait for an answer | `--timeout` | `WARDEN_TIMEOUT` | `timeout` |
//! | the config file itself | `--config` | `WARDEN_CONFIG` | |
//!
//! The config file is the one named, else the first found of
//! `$XDG_CONFIG_HOME/warden/cli.toml` (`~/.config/warden/cli.toml`) and
//! `/etc/warden/cli.toml`.

use crate::duration;
use crate::error::Error;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The URL used when none is given: `make run`'s demo.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/api";

/// Seconds to wait for an answer when no timeout is given.
pub const DEFAULT_TIMEOUT_SECS: u64 = 5;

/// The settings given as flags (`None`: not given).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    /// `--url`
    pub url: Option<String>,
    /// `--token-file`
    pub token_file: Option<PathBuf>,
    /// `--config`
    pub config: Option<PathBuf>,
    /// `--timeout`
    pub timeout: Option<String>,
}

/// The config file's keys (any other key is an error).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    url: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    timeout: Option<String>,
}

/// What the command uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The API's base URL, without a trailing `/`.
    pub url: String,
    /// Where the URL came from (`--url`, `WARDEN_URL`, a file, `default`).
    pub url_from: String,
    /// The bearer token, when one was given.
    pub token: Option<String>,
    /// Where the token came from.
    pub token_from: Option<String>,
    /// Seconds to wait for an answer.
    pub timeout_secs: u64,
    /// Warnings for people (a token file others may read, ...).
    pub warnings: Vec<String>,
}

/// The environment, as a function (tests give their own).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A variable of `env`, unset when empty.
fn var(env: Env<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

/// The config file to read: the one named (which must exist), else the
/// first of the default places that exists.
fn config_path(flags: &Flags, env: Env<'_>) -> Option<(PathBuf, bool)> {
    if let Some(p) = &flags.config {
        return Some((p.clone(), true));
    }
    if let Some(p) = var(env, "WARDEN_CONFIG") {
        return Some((PathBuf::from(p), true));
    }
    let user = var(env, "XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| var(env, "HOME").map(|h| Path::new(&h).join(".config")))
        .map(|d| d.join("warden").join("cli.toml"));
    user.into_iter()
        .chain(std::iter::once(PathBuf::from("/etc/warden/cli.toml")))
        .find(|p| p.is_file())
        .map(|p| (p, false))
}

fn read_file(path: &Path) -> Result<File, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::usage(format!(
            "cannot read the config file {}: {e}",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|e| {
        let msg = e.message().trim_end().to_string();
        Error::usage(format!("config file {}: {msg}", path.display()))
    })
}

/// Others may read the file at `path` (its mode gives group or world
/// any right).
#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_: &Path) -> bool {
    false
}

fn read_token(path: &Path, from: &str) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::usage(format!(
            "cannot read the token file {} (from {from}): {e}",
            path.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::usage(format!(
            "the token file {} (from {from}) is empty",
            path.display()
        )));
    }
    Ok(token.to_string())
}

/// Checks a base URL; the error names the value and where it came from.
pub fn check_url(url: &str, from: &str) -> Result<String, Error> {
    let bad = |why: &str| {
        Error::usage(format!(
            "invalid URL '{url}' (from {from}): {why}; e.g. http://127.0.0.1:8080/api, \
             the location serving warden:api()"
        ))
    };
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(r) = lower.strip_prefix("http://") {
        r
    } else if let Some(r) = lower.strip_prefix("https://") {
        if !cfg!(feature = "tls") {
            return Err(Error::usage(format!(
                "'{url}' (from {from}) is https: this warden was built without TLS \
                 (cargo install --path cli --features tls)"
            )));
        }
        r
    } else {
        return Err(bad("it must start with http:// or https://"));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad("it names no host"));
    }
    if url.contains(['?', '#']) {
        return Err(bad("it must not have a query or a fragment"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Settings from `flags`, then `env`, then the config file.
pub fn resolve(flags: &Flags, env: Env<'_>) -> Result<Settings, Error> {
    let mut warnings = Vec::new();
    let (file, file_name) = match config_path(flags, env) {
        Some((path, named)) => {
            if !named && !path.is_file() {
                (File::default(), String::new())
            } else {
                let f = read_file(&path)?;
                if f.token.is_some() && readable_by_others(&path) {
                    warnings.push(format!(
                        "the config file {} holds a token and others may read it \
                         (chmod 600 it)",
                        path.display()
                    ));
                }
                (f, path.display().to_string())
            }
        }
        None => (File::default(), String::new()),
    };

    let (url, url_from) = if let Some(u) = &flags.url {
        (u.clone(), "--url".to_string())
    } else if let Some(u) = var(env, "WARDEN_URL") {
        (u, "WARDEN_URL".to_string())
    } else if let Some(u) = &file.url {
        (u.clone(), file_name.clone())
    } else {
        (DEFAULT_URL.to_string(), "default".to_string())
    };
    let url = check_url(url.trim(), &url_from)?;

    let (token, token_from) = if let Some(p) = &flags.token_file {
        (Some(read_token(p, "--token-file")?), Some("--token-file"))
    } else if let Some(t) = var(env, "WARDEN_TOKEN") {
        (Some(t.trim().to_string()), Some("WARDEN_TOKEN"))
    } else if let Some(p) = var(env, "WARDEN_TOKEN_FILE") {
        let t = read_token(Path::new(&p), "WARDEN_TOKEN_FILE")?;
        (Some(t), Some("WARDEN_TOKEN_FILE"))
    } else if let Some(t) = &file.token {
        (Some(t.trim().to_string()), Some(file_name.as_str()))
    } else if let Some(p) = &file.token_file {
        (Some(read_token(p, &file_name)?), Some(file_name.as_str()))
    } else {
        (None, None)
    };

    let (timeout, timeout_from) = if let Some(t) = &flags.timeout {
        (Some(t.clone()), "--timeout".to_string())
    } else if let Some(t) = var(env, "WARDEN_TIMEOUT") {
        (Some(t), "WARDEN_TIMEOUT".to_string())
    } else {
        (file.timeout.clone(), file_name.clone())
    };
    let timeout_secs = match timeout {
        None => DEFAULT_TIMEOUT_SECS,
        Some(t) => match duration::parse(&t) {
            Ok(0) | Err(_) => {
                return Err(Error::usage(format!(
                    "invalid timeout '{t}' (from {timeout_from}): use a duration \
                     like 5s or 1m, more than 0"
                )))
            }
            Ok(s) => s,
        },
    };

    Ok(Settings {
        url,
        url_from,
        token,
        token_from: token_from.map(str::to_string),
        timeout_secs,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d =
                std::env::temp_dir().join(format!("warden-cli-test-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }

        fn file(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn resolve_with(flags: &Flags, vars: &[(&str, &str)]) -> Result<Settings, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // no HOME: the user's own config file is never read by tests
        let env = move |k: &str| map.get(k).cloned();
        resolve(flags, &env)
    }

    #[test]
    fn defaults() {
        if Path::new("/etc/warden/cli.toml").exists() {
            return; // this machine has a system-wide file
        }
        let s = resolve_with(&Flags::default(), &[("XDG_CONFIG_HOME", "/nonexistent")]).unwrap();
        assert_eq!(s.url, DEFAULT_URL);
        assert_eq!(s.url_from, "default");
        assert_eq!(s.timeout_secs, DEFAULT_TIMEOUT_SECS);
        assert_eq!((s.token, s.token_from), (None, None));
    }

    #[test]
    fn flags_then_environment_then_file() {
        let d = Dir::new("precedence");
        let file = d.file(
            "cli.toml",
            "url = \"http://file:1/api\"\ntoken = \"from-file\"\ntimeout = \"9s\"\n",
        );
        let tok = d.file("token", "from-token-file\n");
        let cfg = file.to_str().unwrap();
        let only_file = resolve_with(&Flags::default(), &[("WARDEN_CONFIG", cfg)]).unwrap();
        assert_eq!(
            (
                only_file.url.as_str(),
                only_file.token.as_deref(),
                only_file.timeout_secs
            ),
            ("http://file:1/api", Some("from-file"), 9)
        );
        assert_eq!(only_file.url_from, cfg);

        let env = [
            ("WARDEN_CONFIG", cfg),
            ("WARDEN_URL", "http://env:2/api/"),
            ("WARDEN_TOKEN", "from-env"),
            ("WARDEN_TIMEOUT", "3s"),
        ];
        let s = resolve_with(&Flags::default(), &env).unwrap();
        assert_eq!(
            (s.url.as_str(), s.token.as_deref(), s.timeout_secs),
            ("http://env:2/api", Some("from-env"), 3)
        );
        assert_eq!(s.token_from.as_deref(), Some("WARDEN_TOKEN"));

        let flags = Flags {
            url: Some("http://flag:3/x".into()),
            token_file: Some(tok.clone()),
            config: Some(file.clone()),
            timeout: Some("1m".into()),
        };
        let s = resolve_with(&flags, &env).unwrap();
        assert_eq!(
            (s.url.as_str(), s.token.as_deref(), s.timeout_secs),
            ("http://flag:3/x", Some("from-token-file"), 60)
        );
        assert_eq!(
            (s.url_from.as_str(), s.token_from.as_deref()),
            ("--url", Some("--token-file"))
        );

        // WARDEN_TOKEN_FILE, when WARDEN_TOKEN is not set
        let s = resolve_with(
            &Flags::default(),
            &[
                ("WARDEN_CONFIG", cfg),
                ("WARDEN_TOKEN_FILE", tok.to_str().unwrap()),
            ],
        )
        .unwrap();
        assert_eq!(s.token.as_deref(), Some("from-token-file"));
    }

    #[test]
    fn the_user_file_then_the_system_file() {
        let d = Dir::new("xdg");
        d.file("warden/cli.toml", "url = \"http://xdg:1/api\"\n");
        let s = resolve_with(
            &Flags::default(),
            &[("XDG_CONFIG_HOME", d.0.to_str().unwrap())],
        )
        .unwrap();
        assert_eq!(s.url, "http://xdg:1/api");
        let home = Dir::new("home");
        home.file(".config/warden/cli.toml", "url = \"http://home:1/api\"\n");
        let s = resolve_with(&Flags::default(), &[("HOME", home.0.to_str().unwrap())]).unwrap();
        assert_eq!(s.url, "http://home:1/api");
    }

    #[test]
    fn a_token_others_may_read_is_a_warning() {
        let d = Dir::new("mode");
        let file = d.file("cli.toml", "token = \"secret\"\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let s = resolve_with(
                &Flags::default(),
                &[("WARDEN_CONFIG", file.to_str().unwrap())],
            )
            .unwrap();
            assert_eq!(s.warnings.len(), 1);
            assert!(s.warnings[0].contains("chmod 600"));
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            let s = resolve_with(
                &Flags::default(),
                &[("WARDEN_CONFIG", file.to_str().unwrap())],
            )
            .unwrap();
            assert!(s.warnings.is_empty());
        }
    }

    #[test]
    fn errors_name_the_value_and_its_origin() {
        let d = Dir::new("errors");
        let err = |flags: &Flags, vars: &[(&str, &str)]| {
            let e = resolve_with(flags, vars).unwrap_err();
            assert_eq!(e.kind, crate::error::Kind::Usage);
            e.message
        };
        assert_eq!(
            err(&Flags::default(), &[("WARDEN_URL", "127.0.0.1:8080/api")]),
            "invalid URL '127.0.0.1:8080/api' (from WARDEN_URL): it must start with \
             http:// or https://; e.g. http://127.0.0.1:8080/api, the location serving \
             warden:api()"
        );
        let flags = Flags {
            url: Some("http:///api".into()),
            ..Flags::default()
        };
        assert!(err(&flags, &[]).contains("'http:///api' (from --url): it names no host"));
        let flags = Flags {
            url: Some("http://h/api?x=1".into()),
            ..Flags::default()
        };
        assert!(err(&flags, &[]).contains("query or a fragment"));
        let flags = Flags {
            token_file: Some(d.0.join("missing")),
            ..Flags::default()
        };
        assert!(err(&flags, &[]).starts_with("cannot read the token file "));
        let empty = d.file("empty", "\n");
        assert!(err(
            &Flags::default(),
            &[("WARDEN_TOKEN_FILE", empty.to_str().unwrap())]
        )
        .ends_with("(from WARDEN_TOKEN_FILE) is empty"));
        let flags = Flags {
            timeout: Some("0".into()),
            ..Flags::default()
        };
        assert!(err(&flags, &[]).starts_with("invalid timeout '0' (from --timeout)"));
        let bad = d.file("bad.toml", "url = \"http://h/api\"\ntokn = \"x\"\n");
        let msg = err(
            &Flags::default(),
            &[("WARDEN_CONFIG", bad.to_str().unwrap())],
        );
        assert!(msg.contains("bad.toml") && msg.contains("tokn"), "{msg}");
        assert!(err(
            &Flags::default(),
            &[("WARDEN_CONFIG", "/nonexistent/cli.toml")]
        )
        .starts_with("cannot read the config file /nonexistent/cli.toml"));
        if !cfg!(feature = "tls") {
            assert!(err(&Flags::default(), &[("WARDEN_URL", "https://h/api")])
                .contains("built without TLS"));
        }
    }
}
