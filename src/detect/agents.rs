//! Scanner user agents, matched as whole tokens.
//!
//! A pattern matches a user agent when its tokens (runs of ASCII letters
//! and digits, compared case-insensitively) appear in the user agent as
//! whole, consecutive tokens: `nikto` matches `Mozilla/5.00 (Nikto/2.1.6)`,
//! `fuzz faster u fool` matches ffuf's `Fuzz Faster U Fool v2.1.0`, and
//! `titan` does not match `Titanium`. One Aho-Corasick pass over the user
//! agent finds candidates; a candidate counts only at token boundaries.
//!
//! This is the detector's scanner-UA rule; the detector itself (counters
//! shared by every worker) is built on top of it.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// The built-in list: tools whose purpose is attacking or scanning, and
/// whose user agent says what they are. HTTP libraries (`python-httpx`,
/// `Go-http-client`, `axios`...), monitors and crawlers are not tools of
/// that kind and are never listed: a pattern here blocks at the first
/// request. ProjectDiscovery's `httpx` prober is matched by its own form
/// (`github.com/projectdiscovery/httpx`), not by the word `httpx`, which
/// Python's httpx library puts in its default user agent.
pub const DEFAULT_SCANNERS: &[&str] = &[
    "sqlmap",
    "nikto",
    "nmap",
    "nmap scripting engine",
    "masscan",
    "zgrab",
    "nuclei",
    "gobuster",
    "dirbuster",
    "dirb",
    "wfuzz",
    "ffuf",
    "fuzz faster u fool",
    "feroxbuster",
    "wpscan",
    "whatweb",
    "acunetix",
    "netsparker",
    "nessus",
    "openvas",
    "arachni",
    "skipfish",
    "w3af",
    "zmeu",
    "jorgee",
    "hydra",
    "medusa",
    "commix",
    "xsstrike",
    "joomscan",
    "droopescan",
    "wapiti",
    "qualys",
    "censysinspect",
    "masscan ng",
    "projectdiscovery httpx",
    "katana",
    "zaproxy",
    "burp collaborator",
];

/// A compiled list of scanner patterns.
pub struct Agents {
    ac: Option<AhoCorasick>,
    patterns: Vec<String>,
}

/// A pattern list that could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentsError(String);

impl std::fmt::Display for AgentsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AgentsError {}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Normalises a pattern: lower case, tokens joined by single spaces.
fn normalise(p: &str) -> String {
    p.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Agents {
    /// Compiles patterns. Each must contain at least one token.
    ///
    /// ```
    /// use warden_core::detect::agents::{Agents, DEFAULT_SCANNERS};
    /// let a = Agents::new(DEFAULT_SCANNERS).unwrap();
    /// assert_eq!(a.find("sqlmap/1.7.2#stable (https://sqlmap.org)"), Some("sqlmap"));
    /// assert_eq!(a.find("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"), None);
    /// assert!(Agents::new(&["--"]).is_err());
    /// ```
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Agents, AgentsError> {
        let mut norm = Vec::with_capacity(patterns.len());
        for p in patterns {
            let n = normalise(p.as_ref());
            if n.is_empty() {
                return Err(AgentsError(format!(
                    "user agent pattern '{}' has no letters or digits",
                    p.as_ref().chars().take(64).collect::<String>()
                )));
            }
            norm.push(n);
        }
        // The automaton looks for each pattern's first token; a candidate
        // counts when it stands at token boundaries and the pattern's other
        // tokens follow (`rest_matches`).
        let firsts: Vec<&str> = norm
            .iter()
            .map(|p| p.split(' ').next().unwrap_or(""))
            .collect();
        let ac = if firsts.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(&firsts)
                    .map_err(|e| AgentsError(format!("cannot compile user agent patterns: {e}")))?,
            )
        };
        Ok(Agents { ac, patterns: norm })
    }

    /// The first pattern that matches `ua` as whole tokens, if any.
    pub fn find(&self, ua: &str) -> Option<&str> {
        self.find_bytes(ua.as_bytes())
    }

    /// [`Agents::find`] on bytes (user agents need not be UTF-8).
    pub fn find_bytes(&self, ua: &[u8]) -> Option<&str> {
        let ac = self.ac.as_ref()?;
        for m in ac.find_overlapping_iter(ua) {
            let (s, e) = (m.start(), m.end());
            if s > 0 && is_token_byte(ua[s - 1]) {
                continue;
            }
            if e < ua.len() && is_token_byte(ua[e]) {
                continue;
            }
            let pattern = &self.patterns[m.pattern().as_usize()];
            if rest_matches(pattern, &ua[e..]) {
                return Some(pattern);
            }
        }
        None
    }

    /// The normalised patterns.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// True when the tokens after a pattern's first one follow in `rest`.
fn rest_matches(pattern: &str, mut rest: &[u8]) -> bool {
    for token in pattern.split(' ').skip(1) {
        // skip separators, then expect exactly this token
        let start = rest
            .iter()
            .position(|&b| is_token_byte(b))
            .unwrap_or(rest.len());
        if start == 0 {
            return false; // tokens must be separated
        }
        rest = &rest[start..];
        let end = rest
            .iter()
            .position(|&b| !is_token_byte(b))
            .unwrap_or(rest.len());
        if !rest[..end].eq_ignore_ascii_case(token.as_bytes()) {
            return false;
        }
        rest = &rest[end..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tokens(s: &[u8]) -> Vec<String> {
        s.split(|b| !is_token_byte(*b))
            .filter(|t| !t.is_empty())
            .map(|t| String::from_utf8_lossy(t).to_ascii_lowercase())
            .collect()
    }

    /// Reference: tokenise both and look for the pattern's tokens as a
    /// consecutive run.
    fn naive<'a>(patterns: &'a [String], ua: &[u8]) -> Option<&'a str> {
        let t = tokens(ua);
        let mut best: Option<(usize, &str)> = None;
        for p in patterns {
            let pt: Vec<&str> = p.split(' ').collect();
            for i in 0..t.len() {
                if t.len() - i >= pt.len()
                    && t[i..i + pt.len()].iter().zip(&pt).all(|(a, b)| a == b)
                {
                    if best.is_none_or(|(j, _)| i < j) {
                        best = Some((i, p));
                    }
                    break;
                }
            }
        }
        best.map(|(_, p)| p)
    }

    #[test]
    fn real_scanner_agents() {
        let a = Agents::new(DEFAULT_SCANNERS).unwrap();
        for (ua, want) in [
            ("sqlmap/1.7.2#stable (https://sqlmap.org)", "sqlmap"),
            ("Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000003)", "nikto"),
            ("Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)", "nmap"),
            ("Mozilla/5.0 zgrab/0.x", "zgrab"),
            ("Nuclei - Open-source project (github.com/projectdiscovery/nuclei)", "nuclei"),
            ("gobuster/3.6", "gobuster"),
            ("DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)", "dirbuster"),
            ("Wfuzz/3.1.0", "wfuzz"),
            ("Fuzz Faster U Fool v2.1.0-dev", "fuzz faster u fool"),
            ("WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)", "wpscan"),
            (
                "httpx - Open-source project (github.com/projectdiscovery/httpx)",
                "projectdiscovery httpx",
            ),
        ] {
            assert_eq!(a.find(ua), Some(want), "{ua}");
        }
    }

    /// HTTP libraries, monitoring probes and crawlers, as they send their
    /// user agents: none is a scanner.
    const NOT_SCANNERS: &[&str] = &[
        "python-httpx/0.27.0",
        "python-requests/2.31.0",
        "Go-http-client/1.1",
        "Go-http-client/2.0",
        "okhttp/4.12.0",
        "axios/1.6.7",
        "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "node-fetch",
        "curl/8.5.0",
        "Wget/1.21.4",
        "Java/17.0.9",
        "Apache-HttpClient/4.5.14 (Java/17.0.9)",
        "libwww-perl/6.72",
        "kube-probe/1.29",
        "ELB-HealthChecker/2.0",
        "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
        "Prometheus/2.48.0",
        "Blackbox Exporter/0.24.0",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Slackbot 1.0 (+https://api.slack.com/robots)",
    ];

    #[test]
    fn libraries_monitors_and_crawlers_are_not_scanners() {
        let a = Agents::new(DEFAULT_SCANNERS).unwrap();
        for ua in NOT_SCANNERS {
            assert_eq!(a.find(ua), None, "{ua}");
        }
    }

    #[test]
    fn browsers_and_lookalikes_do_not_match() {
        let a = Agents::new(&["titan", "nikto", "dirb", "fuzz faster u fool"]).unwrap();
        for ua in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
            "Titanium/1.0",
            "niktow",
            "dirbuster",
            "Fuzz Faster You Fool",
            "fuzzfaster u fool",
            "",
        ] {
            assert_eq!(a.find(ua), None, "{ua}");
        }
        assert_eq!(a.find("TITAN"), Some("titan"));
        assert_eq!(a.find("x titan-2"), Some("titan"));
    }

    #[test]
    fn bad_patterns() {
        assert_eq!(
            Agents::new(&["ok", " / "]).err().unwrap().to_string(),
            "user agent pattern ' / ' has no letters or digits"
        );
        assert_eq!(Agents::new::<&str>(&[]).unwrap().find("anything"), None);
        assert_eq!(
            Agents::new(&["Python-Requests"]).unwrap().patterns(),
            &["python requests"]
        );
    }

    proptest! {
        #[test]
        fn agrees_with_token_scan(
            ua in proptest::collection::vec(prop::sample::select(b"ab -/A1".to_vec()), 0..40),
            pats in proptest::collection::vec("[ab1]{1,3}( [ab1]{1,2})?", 1..4),
        ) {
            let a = Agents::new(&pats).unwrap();
            let norm: Vec<String> = pats.iter().map(|p| normalise(p)).collect();
            prop_assert_eq!(a.find_bytes(&ua).is_some(), naive(&norm, &ua).is_some());
        }
    }
}
