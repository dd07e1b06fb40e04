//! One health check alone: its kind, the fields that kind takes, and its
//! timing. Which engine runs which check, and which check suits which
//! protocol, are rules of the port (`port.rs`).

use super::{Reported, Validator};
use crate::inventory::{self as raw, Value};
use crate::model::{Check, DnsName, Expect, HttpPath, HttpProbe, Probe, ScriptPath, Timing};
use crate::source::Span;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Http,
    Https,
    Udp,
    Dns,
    Script,
    None,
}

impl Kind {
    const ALL: &'static [Kind] = &[
        Kind::Tcp,
        Kind::Http,
        Kind::Https,
        Kind::Udp,
        Kind::Dns,
        Kind::Script,
        Kind::None,
    ];

    fn text(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::Udp => "udp",
            Kind::Dns => "dns",
            Kind::Script => "script",
            Kind::None => "none",
        }
    }

    /// The checks a field belongs to, as the error about a misplaced one says.
    fn owners(field: &str) -> &'static str {
        match field {
            "path" | "status" | "host" | "expect" | "digest" => {
                "`kind: http` or `kind: https` checks"
            }
            "name" => "`kind: dns` checks",
            "script" => "`kind: script` checks",
            "port" => "checks that connect to the backend",
            _ => "checks that run",
        }
    }
}

impl Validator {
    /// One health check, with `timing` for what it does not say; `Ok(None)`
    /// for `kind: none`.
    pub(super) fn check(
        &mut self,
        raw: &raw::Health,
        span: Span,
        ctx: &str,
        timing: Timing,
    ) -> Result<Option<Check>, Reported> {
        let kind = self
            .required(raw.kind.as_ref(), "kind", &format!("{ctx}: health"), span)
            .and_then(|k| self.keyword(k, "health check kind", ctx, Kind::ALL, Kind::text))
            .ok_or(Reported)?;

        // Every field, and whether this kind takes it.
        let probing = kind != Kind::None;
        let http = matches!(kind, Kind::Http | Kind::Https);
        let fields: [(&str, &Option<Value>, bool); 12] = [
            ("path", &raw.path, http),
            ("status", &raw.status, http),
            ("host", &raw.host, http),
            ("expect", &raw.expect, http),
            ("digest", &raw.digest, http),
            ("name", &raw.name, kind == Kind::Dns),
            ("script", &raw.script, kind == Kind::Script),
            ("port", &raw.port, probing && kind != Kind::Script),
            ("interval", &raw.interval, probing),
            ("timeout", &raw.timeout, probing),
            ("retries", &raw.retries, probing),
            ("retry_delay", &raw.retry_delay, probing),
        ];
        let mut misplaced = false;
        for (field, value, takes) in fields {
            if let Some(value) = value
                && !takes
            {
                misplaced = true;
                self.error(
                    format!(
                        "{ctx}: `{field}` belongs to {}, not `kind: {}`",
                        Kind::owners(field),
                        kind.text()
                    ),
                    value.span,
                );
            }
        }

        let timing = self.timing(raw, ctx, timing);
        let port = match &raw.port {
            Some(p) if probing => self
                .int(p, "port", ctx, 1..=65535)
                .map(|n| Some(u16::try_from(n).expect("range checked")))
                .ok_or(Reported),
            _ => Ok(None),
        };
        let probe = match kind {
            Kind::None if misplaced => return Err(Reported),
            Kind::None => return Ok(None),
            Kind::Tcp => Some(Probe::Tcp),
            Kind::Udp => Some(Probe::Udp),
            Kind::Http | Kind::Https => self.http(raw, ctx, kind == Kind::Https).map(Probe::Http),
            Kind::Dns => self
                .required(raw.name.as_ref(), "name", &format!("{ctx}: health"), span)
                .and_then(|n| self.parsed(n, "name", ctx, DnsName::parse))
                .map(|name| Probe::Dns { name }),
            Kind::Script => self
                .required(
                    raw.script.as_ref(),
                    "script",
                    &format!("{ctx}: health"),
                    span,
                )
                .and_then(|p| self.parsed(p, "script", ctx, ScriptPath::parse))
                .map(|path| Probe::Script { path }),
        };
        match (probe, port, timing) {
            (Some(probe), Ok(port), Some(timing)) if !misplaced => Ok(Some(Check {
                probe,
                port,
                timing,
            })),
            _ => Err(Reported),
        }
    }

    /// The timing fields of a check (or of `defaults.health`), each over
    /// what `timing` says.
    pub(super) fn timing(
        &mut self,
        raw: &raw::Health,
        ctx: &str,
        timing: Timing,
    ) -> Option<Timing> {
        let mut out = timing;
        let mut ok = true;
        for (field, value, slot, range) in [
            ("interval", &raw.interval, &mut out.interval, 1..=3600),
            ("timeout", &raw.timeout, &mut out.timeout, 1..=3600),
            ("retries", &raw.retries, &mut out.retries, 0..=100),
            (
                "retry_delay",
                &raw.retry_delay,
                &mut out.retry_delay,
                1..=3600,
            ),
        ] {
            if let Some(value) = value {
                match self.int(value, field, ctx, range) {
                    Some(n) => *slot = u32::try_from(n).expect("range checked"),
                    None => ok = false,
                }
            }
        }
        ok.then_some(out)
    }

    fn http(&mut self, raw: &raw::Health, ctx: &str, tls: bool) -> Option<HttpProbe> {
        let path = match &raw.path {
            None => Some(HttpPath::parse("/").expect("valid")),
            Some(p) => self.parsed(p, "path", ctx, HttpPath::parse),
        };
        let status = match &raw.status {
            None => Some(200),
            Some(s) => self
                .int(s, "status", ctx, 100..=599)
                .map(|s| u16::try_from(s).expect("range checked")),
        };
        let host = raw
            .host
            .as_ref()
            .map(|h| self.parsed(h, "host", ctx, DnsName::parse));
        let expect = raw
            .expect
            .as_ref()
            .map(|e| self.parsed(e, "expect", ctx, Expect::parse));
        let digest = raw.digest.as_ref().map(|d| {
            let s = self.string(d, "digest", ctx)?;
            if s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit()) {
                Some(s.to_ascii_lowercase())
            } else {
                self.error(
                    format!(
                        "{ctx}: `digest` must be the MD5 digest of the response body, 32 hexadecimal digits, found `{}`",
                        crate::diagnostic::shown(s)
                    ),
                    d.span,
                )
                .help = Some("keepalived's `genhash` prints it".to_owned());
                None
            }
        });
        Some(HttpProbe {
            tls,
            path: path?,
            status: status?,
            host: host.map_or(Some(None), |h| h.map(Some))?,
            expect: expect.map_or(Some(None), |e| e.map(Some))?,
            digest: digest.map_or(Some(None), |d| d.map(Some))?,
        })
    }

    /// A string field parsed by `parse`, or an error at its node.
    fn parsed<T>(
        &mut self,
        value: &Value,
        what: &str,
        ctx: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.string(value, what, ctx)?;
        parse(s)
            .map_err(|e| self.error(format!("{ctx}: {e}"), value.span))
            .ok()
    }
}
