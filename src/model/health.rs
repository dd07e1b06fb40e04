//! Health checks in the validated model: what a check probes, with its
//! timing, and what a balancer does with a backend that fails.

use std::fmt;

use serde::Serialize;

use super::{HttpPath, describe_char};
use crate::diagnostic::shown;

/// One health check of a port's backends; a backend is healthy when every
/// check of its port passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub probe: Probe,
    /// The port probed, when it is not the service's own.
    pub port: Option<u16>,
    pub timing: Timing,
}

/// What a check does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connection.
    Tcp,
    /// An HTTP request, over TLS with `tls`.
    Http(HttpProbe),
    /// A UDP datagram; the check fails on an ICMP port unreachable.
    Udp,
    /// A DNS query for `name` (type A) over UDP.
    Dns { name: DnsName },
    /// A program on the balancer; the backend is healthy when it exits 0.
    Script { path: ScriptPath },
}

impl Probe {
    /// The `kind` that names this probe in the inventory.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Tcp => "tcp",
            Probe::Http(http) if http.tls => "https",
            Probe::Http(_) => "http",
            Probe::Udp => "udp",
            Probe::Dns { .. } => "dns",
            Probe::Script { .. } => "script",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpProbe {
    pub tls: bool,
    pub path: HttpPath,
    pub status: u16,
    /// The `Host` header (and TLS server name), when not the backend's address.
    pub host: Option<DnsName>,
    /// Text the response body must contain.
    pub expect: Option<Expect>,
    /// The MD5 digest (lower-case hex) the response body must have.
    pub digest: Option<String>,
}

/// Text a response body must contain, of characters that need no escaping in
/// a regular expression or a configuration file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Expect(String);

impl Expect {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 256 {
            return Err("`expect` must be 1 to 256 characters long".to_owned());
        }
        if let Some(bad) = s
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || " -_:,=/@%".contains(c)))
        {
            return Err(format!(
                "`expect` text `{}` contains {}; use letters, digits, spaces and `-_:,=/@%`",
                shown(s),
                describe_char(bad)
            ));
        }
        if s.starts_with(' ') || s.ends_with(' ') {
            return Err("`expect` text cannot start or end with a space".to_owned());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A DNS name: the `Host` of an HTTP check, or the name a DNS check asks for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct DnsName(String);

impl DnsName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let labels_ok = !s.is_empty()
            && s.len() <= 253
            && s.trim_end_matches('.').split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !labels_ok {
            return Err(format!(
                "`{}` is not a DNS name: labels of letters, digits and `-`, separated by dots",
                shown(s)
            ));
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The absolute path of a check program, safe to write unquoted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ScriptPath(String);

impl ScriptPath {
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("program `{}` must be an absolute path", shown(s)));
        }
        if let Some(bad) = s
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || "/._-+".contains(c)))
        {
            return Err(format!(
                "program `{}` contains {}; use letters, digits and `/._-+`",
                shown(s),
                describe_char(bad)
            ));
        }
        if s.split('/').any(|c| c == "..") || s.len() > 1024 {
            return Err(format!(
                "program `{}` is not a plain absolute path",
                shown(s)
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// When and how long a check runs, in seconds. A dead backend leaves
/// rotation within `interval + (retries + 1) * timeout + retries * retry_delay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub interval: u32,
    pub timeout: u32,
    pub retries: u32,
    pub retry_delay: u32,
}

impl Timing {
    /// Real DR configurations check every 1 to 15 s, most often 6; keepalived's
    /// own default, 60 s, leaves a dead backend in rotation for a minute.
    pub const DEFAULT: Timing = Timing {
        interval: 6,
        timeout: 3,
        retries: 1,
        retry_delay: 1,
    };
}

keyword_enum!(
    /// What a balancer does with a backend whose checks fail.
    OnFailure {
        /// Take it out of the service.
        Remove = "remove",
        /// Keep it with weight 0: no new connections, open ones go on.
        Drain = "drain",
    }
);
