//! `warden`: the command line of lua-resty-warden's admin API.
//!
//! Every command is one or a few requests to the API that `warden:api()`
//! serves (FlatRun's endpoints, see the README's "Admin API"); nothing is
//! decided here that the API decides. Tables for people, `--json` for
//! scripts, exit codes in [`error::exit`].

mod addr;
mod args;
mod client;
mod clock;
mod cmd;
mod config;
mod duration;
mod error;
mod table;

use args::{Cli, Command};
use clap::Parser;
use error::{exit, Error};
use std::io::Write;

/// Writes `text` to stdout; a closed pipe (`warden events | head`) ends
/// the command quietly.
pub fn out(text: &str) -> Result<(), Error> {
    let mut o = std::io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(exit::OK),
        Err(e) => Err(Error::new(error::Kind::Api, format!("cannot write: {e}"))),
    }
}

/// Writes a warning for people to stderr.
pub fn warn(text: &str) {
    eprintln!("warden: warning: {text}");
}

fn run(cli: Cli) -> Result<i32, Error> {
    let env = |k: &str| std::env::var(k).ok();
    let settings = config::resolve(&cli.global.flags(), &env)?;
    for w in &settings.warnings {
        warn(w);
    }
    let api = client::Api::new(&settings);
    let json = cli.global.json;
    match cli.command {
        Command::Status => cmd::status::run(&api, json),
        Command::Blocks { source } => cmd::blocks::list_blocks(&api, source, json),
        Command::Block {
            target,
            duration,
            reason,
        } => cmd::blocks::block(&api, &target, duration.as_deref(), reason, json),
        Command::Unblock { target } => cmd::blocks::unblock(&api, &target, json),
        Command::Events {
            kind,
            ip,
            since,
            limit,
            follow,
            interval,
        } => cmd::events::run(
            &api,
            &cmd::events::Query {
                kind,
                ip,
                since,
                limit,
            },
            follow.then_some(interval.as_str()),
            json,
        ),
        Command::Why { ip } => cmd::why::run(&api, &ip, json),
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("warden: {e}");
            e.kind.exit_code()
        }
    };
    std::process::exit(code);
}
