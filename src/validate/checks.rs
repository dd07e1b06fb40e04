//! A port's health: its checks (one, several, or `defaults.health`), which
//! must suit its protocol and its engines, what a balancer does with a
//! backend that fails them (`on_failure`, `quorum`), and its sorry server.
//! One check alone is `health.rs`'s.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::Reported;
use super::cluster::{ClusterPass, Role};
use super::port::CheckedMember;
use crate::inventory as raw;
use crate::model::{Check, Engine, OnFailure, Probe, Protocol};
use crate::source::Span;

impl ClusterPass<'_, '_> {
    /// The port's checks: its own (one, or a list that must all pass), else
    /// `defaults.health` on a TCP port, else none.
    pub(super) fn port_health(
        &mut self,
        raw: &raw::Port,
        ctx: &str,
        number: Option<u16>,
        protocol: Option<Protocol>,
        engines: &BTreeSet<Engine>,
    ) -> Option<Vec<Check>> {
        let Some(h) = &raw.health else {
            if protocol != Some(Protocol::Tcp) {
                return Some(Vec::new());
            }
            let checks = self.defaults.health.clone();
            let plain_http = checks
                .iter()
                .any(|c| matches!(&c.probe, Probe::Http(http) if !http.tls));
            if number == Some(443)
                && plain_http
                && let Some(port) = &raw.port
            {
                self.v
                    .warning(
                        format!("{ctx}: `defaults.health` gives this port a plain HTTP check, which a TLS service fails"),
                        port.span,
                    )
                    .help = Some(
                    "give the port its own `health`, such as `{ kind: https }` or `{ kind: tcp }`"
                        .to_owned(),
                );
            }
            return Some(checks);
        };
        let timing = self.defaults.timing;
        let checks: Vec<(Check, Span)> = match &h.value {
            raw::Checks::One(one) => {
                let check = self.v.check(one, h.span, ctx, timing).ok()?;
                check.map(|c| (c, h.span)).into_iter().collect()
            }
            raw::Checks::All(list) => {
                let mut checks = Vec::new();
                let mut ok = true;
                for item in &list.0 {
                    match self.v.check(&item.value, item.span, ctx, timing) {
                        Ok(Some(check)) => checks.push((check, item.span)),
                        Ok(None) => {
                            ok = false;
                            self.v.error(
                                format!("{ctx}: `kind: none` cannot be one of several checks; leave the others out instead"),
                                item.span,
                            );
                        }
                        Err(Reported) => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                checks
            }
        };

        let mut ok = true;
        for (check, span) in &checks {
            if let Some(proto) = protocol
                && let Some(problem) = protocol_problem(&check.probe, proto)
            {
                ok = false;
                self.v.error(format!("{ctx}: {problem}"), *span);
            }
        }
        if !ok {
            return None;
        }
        let checking: Vec<Engine> = engines
            .iter()
            .copied()
            .filter(|e| e.checks_health())
            .collect();
        if !checks.is_empty() && !engines.is_empty() && checking.is_empty() {
            let unchecked: Vec<&str> = Engine::ALL
                .iter()
                .filter(|e| !e.checks_health())
                .map(|e| e.as_str())
                .collect();
            self.v.warning(
                format!(
                    "{ctx}: {} do not check health; this `health` has no effect",
                    unchecked.join(" and ")
                ),
                h.span,
            );
        }
        for (check, span) in &checks {
            for engine in &checking {
                if !engine.runs(&check.probe) {
                    ok = false;
                    self.v.error(
                        format!(
                            "{ctx}: {engine} balancers cannot run `kind: {}` checks",
                            check.probe.kind()
                        ),
                        *span,
                    );
                } else if let Some(caveat) = engine.check_caveat(check) {
                    self.v.warning(format!("{ctx}: {caveat}"), *span);
                }
            }
        }
        ok.then(|| checks.into_iter().map(|(c, _)| c).collect())
    }

    /// What a balancer does with a backend whose checks fail, and the least
    /// total weight of healthy backends for the service to be up.
    pub(super) fn failure_policy(
        &mut self,
        raw: &raw::Port,
        ctx: &str,
        engines: &BTreeSet<Engine>,
    ) -> Option<FailurePolicy> {
        let on_failure = match &raw.on_failure {
            None => Some(self.defaults.on_failure),
            Some(v) => self
                .v
                .keyword(v, "on_failure", ctx, OnFailure::ALL, OnFailure::as_str),
        };
        let quorum = match &raw.quorum {
            None => Ok(None),
            Some(v) => self
                .v
                .int(v, "quorum", ctx, 1..=i128::from(u32::MAX))
                .map(|q| Some(u32::try_from(q).expect("range checked")))
                .ok_or(Reported),
        };
        let hysteresis = match (&raw.hysteresis, &quorum) {
            (None, _) => Ok(0),
            (Some(v), Ok(None)) => {
                self.v.error(
                    format!("{ctx}: `hysteresis` dampens `quorum`, and the port has none"),
                    v.span,
                );
                Err(Reported)
            }
            (Some(v), Ok(Some(q))) => {
                match self.v.int(v, "hysteresis", ctx, 0..=i128::from(*q) - 1) {
                    Some(h) => Ok(u32::try_from(h).expect("range checked")),
                    None => Err(Reported),
                }
            }
            (Some(_), Err(Reported)) => Err(Reported),
        };
        for (field, value) in [
            ("on_failure", &raw.on_failure),
            ("quorum", &raw.quorum),
            ("hysteresis", &raw.hysteresis),
        ] {
            if let Some(value) = value
                && let Some(engine) = engines.iter().find(|e| !e.honours_failure_policy())
            {
                self.v.warning(
                    format!(
                        "{ctx}: {engine} balancers do not honour `{field}`; it has no effect there"
                    ),
                    value.span,
                );
            }
        }
        Some(FailurePolicy {
            on_failure: on_failure?,
            quorum: quorum.ok()?,
            hysteresis: hysteresis.ok()?,
        })
    }

    /// The sorry server: a backend of the segment that is not already one of
    /// the port's, and an engine that honours it.
    pub(super) fn sorry(
        &mut self,
        raw: &raw::Port,
        ctx: &str,
        balancers: &[(usize, Span)],
        address: Option<(IpAddr, Span)>,
        engines: &BTreeSet<Engine>,
        members: &[CheckedMember],
    ) -> Sorry {
        let Some(item) = &raw.sorry else {
            return Sorry::None;
        };
        let Some(index) = self.reference(item, ctx, Role::Backend) else {
            return Sorry::Invalid;
        };
        if members.iter().any(|m| m.index == index) {
            self.v.error(
                format!(
                    "{ctx}: `{}` is already a backend of this port; a sorry server stands in for them all",
                    self.backends[index].name
                ),
                item.span,
            );
            return Sorry::Invalid;
        }
        if let Some((addr, _)) = address {
            self.same_segment(ctx, index, item.span, addr, balancers);
        }
        if let Some(engine) = engines.iter().find(|e| !e.honours_failure_policy()) {
            self.v.warning(
                format!("{ctx}: {engine} balancers do not honour `sorry`; it has no effect there"),
                item.span,
            );
        }
        Sorry::Backend(index)
    }
}

/// Why a check cannot probe a service of this protocol, if it cannot.
fn protocol_problem(probe: &Probe, protocol: Protocol) -> Option<String> {
    let fits = match probe {
        Probe::Tcp | Probe::Http(_) => protocol == Protocol::Tcp,
        Probe::Udp => protocol == Protocol::Udp,
        // DNS servers answer on UDP whatever else they serve.
        Probe::Dns { .. } => protocol != Protocol::Sctp,
        Probe::Script { .. } => true,
    };
    (!fits).then(|| {
        format!(
            "a `kind: {}` check cannot probe a {protocol} service; use {}",
            probe.kind(),
            match protocol {
                Protocol::Tcp => "`kind: tcp`, `http`, `https`, `dns` or `script`",
                Protocol::Udp => "`kind: udp`, `dns`, `script` or `none`",
                Protocol::Sctp => "`kind: script` or `none`",
            }
        )
    })
}

/// A port's sorry server, as far as validation got.
pub(super) enum Sorry {
    None,
    Backend(usize),
    /// Reported.
    Invalid,
}

/// What a balancer does with a backend that fails its checks.
pub(super) struct FailurePolicy {
    pub(super) on_failure: OnFailure,
    pub(super) quorum: Option<u32>,
    pub(super) hysteresis: u32,
}
