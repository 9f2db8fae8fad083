//! The event log (`event_log`): one JSON line per security event
//! ([`super::ecs`]), written off the request path.
//!
//! Worker 0 runs a timer (Lua) that calls [`Drain::run`] every second: it
//! reads the ring from its cursor ([`Ring::logged`], in shared memory, so
//! a reload's new worker 0 goes on where the old one stopped and restored
//! events are not written twice) up to the newest event, formats each
//! event and writes them in one `write` to the file (opened `O_APPEND`),
//! or hands them back for nginx's error log. Nothing here runs in a
//! request, and a request never waits for it.
//!
//! - Events the ring overwrote before they were written are counted
//!   (`event_log_lost`).
//! - A refused client's event ([`super::refusals`]) counts up until its
//!   minute ends; it is written then, with its final count (other events
//!   are not held back by it).
//! - The file is reopened when it is no longer the one written to (moved
//!   or removed by logrotate, or `nginx -s reopen`): its identity (device
//!   and inode) is checked before each write. A file that cannot be opened
//!   or written is logged once, counted (`event_log_errors`), and the
//!   events wait in the ring (until they are overwritten).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use super::{ecs, refusals, Entry, Ring};

/// Lines written at most per run (the rest waits for the next run).
pub const MAX_LINES: usize = 2_000;
/// Refusal events held at most, waiting for their minute to end.
const MAX_HELD: usize = 4_096;

/// Where the lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Appended to a file.
    File(PathBuf),
    /// The workers' standard error (a container's log).
    Stderr,
    /// nginx's error log (through `ngx.log`, by the caller).
    ErrorLog,
}

impl Target {
    /// `"error_log"`, `"stderr"`, or a file's path (Lua makes a relative
    /// path relative to nginx's prefix first).
    ///
    /// ```
    /// use warden_core::events::log::Target;
    /// assert_eq!(Target::parse("stderr").unwrap(), Target::Stderr);
    /// assert!(Target::parse("").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Target, String> {
        match s {
            "error_log" => Ok(Target::ErrorLog),
            "stderr" => Ok(Target::Stderr),
            p if p.trim().is_empty() || p.contains('\0') || p.ends_with('/') => Err(format!(
                "must be a file path like '/var/log/nginx/warden-events.json', 'error_log' or \
                 'stderr', got '{s}'"
            )),
            p => Ok(Target::File(PathBuf::from(p))),
        }
    }
}

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ran {
    /// Lines written (or handed back).
    pub written: u64,
    /// Events overwritten before they could be written.
    pub lost: u64,
    /// The lines for nginx's error log ([`Target::ErrorLog`] only).
    pub lines: Vec<String>,
    /// The file could not be written: why (the caller logs it when
    /// `changed`, once while it lasts).
    pub error: Option<String>,
    /// True when `error` starts a failure (or `written` ends one).
    pub changed: bool,
}

/// Worker 0's drain of the ring into the event log.
#[derive(Debug)]
pub struct Drain {
    target: Target,
    file: Option<(File, u64, u64)>,
    held: Vec<u64>,
    failing: bool,
}

impl Drain {
    /// Writes to `target`.
    pub fn new(target: Target) -> Drain {
        Drain {
            target,
            file: None,
            held: Vec::new(),
            failing: false,
        }
    }

    /// Where the lines go.
    pub fn target(&self) -> &Target {
        &self.target
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let path = match &self.target {
            Target::File(p) => p.clone(),
            Target::Stderr => {
                return std::io::stderr()
                    .write_all(bytes)
                    .map_err(|e| format!("cannot write the event log to stderr: {e}"))
            }
            Target::ErrorLog => return Ok(()),
        };
        // the file written to is the one at `path` still (logrotate)
        let same = match (&self.file, std::fs::metadata(&path)) {
            (Some((_, dev, ino)), Ok(m)) => m.dev() == *dev && m.ino() == *ino,
            _ => false,
        };
        if !same {
            self.file = None;
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .open(&path)
                .map_err(|e| format!("cannot open the event log {}: {e}", path.display()))?;
            let m = f
                .metadata()
                .map_err(|e| format!("cannot open the event log {}: {e}", path.display()))?;
            self.file = Some((f, m.dev(), m.ino()));
        }
        let Some((f, _, _)) = &mut self.file else {
            return Ok(());
        };
        f.write_all(bytes).map_err(|e| {
            self.file = None;
            format!("cannot write the event log {}: {e}", path.display())
        })
    }

    /// Writes the events from the ring's cursor on (at most
    /// [`MAX_LINES`]); `exiting`: the worker exits, so the refused
    /// clients' events still counting up are written as they are.
    pub fn run(&mut self, ring: &Ring, now_ms: u64, exiting: bool) -> Ran {
        let mut ran = Ran::default();
        let mut out: Vec<(u64, String)> = Vec::new();
        // refusal events held back earlier, first
        let held = std::mem::take(&mut self.held);
        for n in held {
            match ring.entry(n) {
                Entry::Event(e) if exiting || !refusals::open(&e, now_ms) => {
                    out.push((n, ecs::line(&e, n)))
                }
                Entry::Event(_) | Entry::Pending => self.held.push(n),
                Entry::Overwritten => ran.lost += 1,
            }
        }
        let head = ring.written();
        let mut n = ring.logged();
        let oldest = head.saturating_sub(ring.capacity() as u64);
        if n < oldest {
            ran.lost += oldest - n;
            n = oldest;
        }
        while n < head && out.len() < MAX_LINES {
            match ring.entry(n) {
                Entry::Event(e) if !exiting && refusals::open(&e, now_ms) => {
                    if self.held.len() >= MAX_HELD {
                        break;
                    }
                    self.held.push(n);
                }
                Entry::Event(e) => out.push((n, ecs::line(&e, n))),
                // a writer is finishing it: the next run
                Entry::Pending => break,
                Entry::Overwritten => ran.lost += 1,
            }
            n += 1;
        }
        if self.target == Target::ErrorLog {
            ran.written = out.len() as u64;
            ran.lines = out.into_iter().map(|(_, l)| l).collect();
            ring.set_logged(n);
            return ran;
        }
        let mut bytes = Vec::with_capacity(out.iter().map(|(_, l)| l.len() + 1).sum());
        for (_, l) in &out {
            bytes.extend_from_slice(l.as_bytes());
            bytes.push(b'\n');
        }
        let result = if bytes.is_empty() {
            Ok(())
        } else {
            self.write(&bytes)
        };
        match result {
            Ok(()) => {
                ran.written = out.len() as u64;
                ran.changed = self.failing && ran.written > 0;
                if ran.written > 0 {
                    self.failing = false;
                }
                ring.set_logged(n);
            }
            Err(e) => {
                // the events wait in the ring (the held ones too)
                for (seq, _) in out {
                    if seq < n && !self.held.contains(&seq) && self.held.len() < MAX_HELD {
                        self.held.push(seq);
                    }
                }
                ring.set_logged(n);
                ran.changed = !self.failing;
                self.failing = true;
                ran.error = Some(e);
            }
        }
        ran
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::refusals::WINDOW_MS;
    use crate::events::{Event, Kind};

    fn ev(ip: &str, kind: Kind, t: u64) -> Event {
        Event {
            time_ms: t,
            ip: ip.into(),
            kind: Some(kind),
            action: "blocked for 1h".into(),
            ..Event::default()
        }
    }

    fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn drains_in_order_reopens_and_counts_losses() {
        let dir = std::env::temp_dir().join(format!("warden-evlog-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("events.json");
        let _ = std::fs::remove_file(&path);
        let ring = Ring::new("t-evlog", 4, 0).unwrap();
        let mut d = Drain::new(Target::File(path.clone()));
        let now = 10 * WINDOW_MS;
        ring.push(&ev("192.0.2.1", Kind::BlockedIp, now));
        ring.push(&ev("192.0.2.2", Kind::Suspicious, now));
        let r = d.run(&ring, now, false);
        assert_eq!((r.written, r.lost), (2, 0));
        let got = lines(&path);
        assert_eq!(got[0]["source"]["ip"], "192.0.2.1");
        assert_eq!(got[1]["event"]["action"], "suspicious");
        assert_eq!(d.run(&ring, now, false).written, 0);
        // logrotate: moved away, a new file is made
        std::fs::rename(&path, dir.join("events.json.1")).unwrap();
        for i in 0..6 {
            ring.push(&ev(&format!("198.51.100.{i}"), Kind::AuthFailed, now));
        }
        let r = d.run(&ring, now, false);
        assert_eq!((r.written, r.lost), (4, 2));
        let got = lines(&path);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0]["source"]["ip"], "198.51.100.2");
        assert_eq!(got[3]["event"]["sequence"], 7);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refusals_wait_for_their_minute_others_do_not() {
        let ring = Ring::new("t-evlog-held", 16, 0).unwrap();
        let mut d = Drain::new(Target::ErrorLog);
        let now = 20 * WINDOW_MS + 5;
        let mut refused = ev("192.0.2.9", Kind::BlockedIp, now);
        refused.window_s = 60;
        refused.action = "refused".into();
        let seq = ring.push(&refused);
        ring.push(&ev("192.0.2.8", Kind::ScanDetected, now));
        let r = d.run(&ring, now, false);
        assert_eq!(r.lines.len(), 1);
        assert!(r.lines[0].contains("scan_detected"));
        assert!(ring.set_count(seq, 41));
        assert!(d.run(&ring, now + 1, false).lines.is_empty());
        let r = d.run(&ring, now + WINDOW_MS, false);
        assert_eq!(r.lines.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&r.lines[0]).unwrap();
        assert_eq!(v["warden"]["count"], 41);
        // at exit, an open one is written as it is
        ring.push(&refused);
        assert_eq!(d.run(&ring, now, true).lines.len(), 1);
    }

    #[test]
    fn unwritable_file_keeps_the_events() {
        let ring = Ring::new("t-evlog-err", 8, 0).unwrap();
        let mut d = Drain::new(Target::File("/nonexistent-dir/x/events.json".into()));
        ring.push(&ev("192.0.2.1", Kind::BlockedIp, 1));
        let r = d.run(&ring, 1, false);
        assert!(r
            .error
            .unwrap()
            .starts_with("cannot open the event log /nonexistent-dir"));
        assert!(r.changed);
        let r = d.run(&ring, 1, false);
        assert!(r.error.is_some() && !r.changed);
        assert_eq!(d.held.len(), 1);
        assert!(Target::parse("/var/log/").is_err());
        assert_eq!(Target::parse("error_log").unwrap(), Target::ErrorLog);
    }
}
