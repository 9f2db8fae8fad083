//! The command line's arguments (clap).

use crate::config::Flags;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Configuration (flags win over the environment, which wins over the file):
  WARDEN_URL         URL of the location serving warden:api()
                     (default http://127.0.0.1:8080/api)
  WARDEN_TOKEN       the admin token, or WARDEN_TOKEN_FILE: a file holding it
  WARDEN_TIMEOUT     time to wait for an answer (default 5s)
  WARDEN_CONFIG      the config file; else $XDG_CONFIG_HOME/warden/cli.toml
                     (~/.config/warden/cli.toml), else /etc/warden/cli.toml,
                     with keys url, token, token_file, timeout

Exit codes:
  0  done (why: the address is not refused)
  1  the admin API answered with an error
  2  bad usage: arguments, address, duration, configuration
  3  the admin API could not be reached
  4  the admin API refused the token (or this host)
  5  why: the address is refused (a block, the denylist, its reputation)";

/// warden: manage lua-resty-warden through its admin API.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every command.
#[derive(Debug, Args)]
pub struct Global {
    /// URL of the location serving warden:api() [env: WARDEN_URL]
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// File holding the admin token [env: WARDEN_TOKEN, WARDEN_TOKEN_FILE]
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Config file [env: WARDEN_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Time to wait for an answer, e.g. 5s [env: WARDEN_TIMEOUT]
    #[arg(long, global = true, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Print JSON for scripts instead of tables
    #[arg(long, global = true)]
    pub json: bool,
}

impl Global {
    /// The settings given as flags.
    pub fn flags(&self) -> Flags {
        Flags {
            url: self.url.clone(),
            token_file: self.token_file.clone(),
            config: self.config.clone(),
            timeout: self.timeout.clone(),
        }
    }
}

/// Who made a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// The detector.
    Auto,
    /// The API or `warden:block()`.
    Manual,
    /// The configuration's denylist.
    Denylist,
}

impl Source {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Auto => "auto",
            Source::Manual => "manual",
            Source::Denylist => "denylist",
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Version, blocks, events by type, shared memory, detector table
    Status,
    /// The blocks in force (and the denylist)
    Blocks {
        /// Only the blocks of this source
        #[arg(long, value_enum)]
        source: Option<Source>,
    },
    /// Block an IP address or a network, in every worker
    Block {
        /// An IP address or a CIDR, e.g. 192.0.2.7 or 198.51.100.0/24
        target: String,
        /// How long, e.g. 30s, 10m, 1h, 7d (default: permanently)
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// Why (kept with the block, shown by blocks and why)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Remove the block of an IP address or a network
    Unblock {
        /// The blocked address or CIDR, as `warden blocks` shows it
        target: String,
    },
    /// Security events, oldest first
    Events {
        /// Only events of this type (blocked_ip, rate_limited, auth_failed,
        /// suspicious, scan_detected, capture, challenge_issued,
        /// challenge_solved, challenge_failed)
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// Only events of this address or blocked network
        #[arg(long, value_name = "IP")]
        ip: Option<String>,
        /// Only events of the last DURATION, e.g. 10m
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// At most this many (the newest)
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10000))]
        limit: u32,
        /// Keep printing new events as they come (Ctrl-C to stop)
        #[arg(long, short)]
        follow: bool,
        /// With --follow: time between two polls
        #[arg(long, value_name = "DURATION", default_value = "2s")]
        interval: String,
    },
    /// Why an address is (or is not) blocked: by what, since and until
    /// when, its offences, events and threat score
    Why {
        /// The client's IP address
        ip: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("warden").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn commands_and_their_options() {
        let c = parse(&["block", "192.0.2.7", "--for", "1h", "--reason", "scan"]).unwrap();
        match c.command {
            Command::Block {
                target,
                duration,
                reason,
            } => {
                assert_eq!(target, "192.0.2.7");
                assert_eq!(duration.as_deref(), Some("1h"));
                assert_eq!(reason.as_deref(), Some("scan"));
            }
            other => panic!("{other:?}"),
        }
        let c = parse(&["blocks", "--source", "auto", "--json"]).unwrap();
        assert!(c.global.json);
        assert!(matches!(
            c.command,
            Command::Blocks {
                source: Some(Source::Auto)
            }
        ));
        let c = parse(&[
            "--url",
            "http://h/api",
            "events",
            "--type",
            "auth_failed",
            "--ip",
            "192.0.2.1",
            "--since",
            "10m",
            "-f",
        ])
        .unwrap();
        assert_eq!(c.global.url.as_deref(), Some("http://h/api"));
        match c.command {
            Command::Events {
                kind,
                ip,
                since,
                limit,
                follow,
                interval,
            } => {
                assert_eq!(kind.as_deref(), Some("auth_failed"));
                assert_eq!(ip.as_deref(), Some("192.0.2.1"));
                assert_eq!(since.as_deref(), Some("10m"));
                assert_eq!((limit, follow, interval.as_str()), (100, true, "2s"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["status"]).unwrap().command,
            Command::Status
        ));
        assert!(matches!(
            parse(&["why", "192.0.2.1", "--token-file", "/t"])
                .unwrap()
                .command,
            Command::Why { .. }
        ));
        assert!(matches!(
            parse(&["unblock", "10.0.0.0/8"]).unwrap().command,
            Command::Unblock { .. }
        ));
    }

    #[test]
    fn bad_usage_exits_2() {
        for args in [
            &[][..],
            &["nothing"],
            &["block"],
            &["blocks", "--source", "config"],
            &["events", "--limit", "0"],
            &["events", "--limit", "x"],
            &["why"],
            &["status", "--colour"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
        // --help and --version exit 0
        assert_eq!(parse(&["--help"]).unwrap_err().exit_code(), 0);
        assert_eq!(parse(&["--version"]).unwrap_err().exit_code(), 0);
    }

    #[test]
    fn the_help_documents_exit_codes_and_environment() {
        let help = Cli::command().render_long_help().to_string();
        for s in [
            "WARDEN_URL",
            "WARDEN_TOKEN_FILE",
            "cli.toml",
            "4  the admin API refused",
        ] {
            assert!(help.contains(s), "{s}");
        }
    }
}
