//! Rules of one port of a cluster: number and protocol, scheduler, persistence,
//! health check, and its backends with their weights and segment.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use super::MAX_PERSISTENCE;
use super::checks::Sorry;
use super::cluster::{ClusterPass, Role};
use crate::diagnostic::{did_you_mean, shown};
use crate::engine::Scheduling;
use crate::inventory::{self as raw, Scalar, Spanned, Value};
use crate::model::{Engine, HashScheduler, Member, Port, Protocol, Scheduler};
use crate::source::Span;

impl ClusterPass<'_, '_> {
    pub(super) fn port(
        &mut self,
        p: &Spanned<raw::Port>,
        cluster_ctx: &str,
        balancers: &[(usize, Span)],
        address: Option<(IpAddr, Span)>,
        seen: &mut HashMap<(Protocol, u16), Span>,
    ) -> CheckedPort {
        let raw = &p.value;
        let (number, group) = self.numbers(raw, p.span, cluster_ctx);
        let protocol = match &raw.protocol {
            None => Some(Protocol::Tcp),
            Some(v) => self
                .v
                .keyword(v, "protocol", cluster_ctx, Protocol::ALL, Protocol::as_str),
        };
        let shown_ports = if group.is_empty() {
            number.map(|n| n.to_string())
        } else {
            Some(
                group
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join("+"),
            )
        };
        let ctx = match (&shown_ports, protocol) {
            (Some(n), Some(proto)) if group.is_empty() => {
                format!("{cluster_ctx}, port {n}/{proto}")
            }
            (Some(n), Some(proto)) => format!("{cluster_ctx}, ports {n}/{proto}"),
            (Some(n), None) => format!("{cluster_ctx}, port {n}"),
            _ => cluster_ctx.to_owned(),
        };
        if let Some(proto) = protocol {
            let spans: Vec<(u16, Span)> = if group.is_empty() {
                number
                    .map(|n| (n, raw.port.as_ref().map_or(p.span, |v| v.span)))
                    .into_iter()
                    .collect()
            } else {
                let list = raw.ports.as_ref().expect("a group comes from `ports`");
                group.iter().map(|&n| (n, list.span)).collect()
            };
            for (n, span) in spans {
                if let Some(first) = seen.get(&(proto, n)) {
                    let what = format!("{cluster_ctx}, port {n}/{proto}");
                    self.v
                        .error(format!("{what} is listed twice"), span)
                        .notes
                        .push(("first listed here".to_owned(), *first));
                } else {
                    seen.insert((proto, n), span);
                }
            }
        }
        if let (Some(first), Some(list)) = (group.first(), &raw.ports) {
            self.port_group(*first, list.span, &ctx, balancers);
        }

        let engines: BTreeSet<Engine> = balancers
            .iter()
            .filter_map(|&(i, _)| self.balancers[i].engine)
            .collect();
        let (ipvs_scheduler, hash_scheduler) = self.scheduler(raw, &ctx, balancers, &engines);
        let persistence = match &raw.persistence {
            None => Some(self.defaults.persistence),
            Some(v) => self
                .v
                .int(v, "persistence", &ctx, 0..=MAX_PERSISTENCE)
                .map(|p| u32::try_from(p).expect("range checked")),
        };
        let health = self.port_health(raw, &ctx, number, protocol, &engines);
        let policy = self.failure_policy(raw, &ctx, &engines);

        let members = self.members(
            raw,
            p.span,
            &ctx,
            balancers,
            address,
            &engines,
            ipvs_scheduler,
        );
        let sorry = self.sorry(raw, &ctx, balancers, address, &engines, &members);
        let port = (|| {
            Some(Port {
                port: number?,
                group,
                protocol: protocol?,
                ipvs_scheduler: ipvs_scheduler?,
                hash_scheduler: hash_scheduler?,
                persistence: persistence?,
                health: health?,
                on_failure: policy.as_ref()?.on_failure,
                quorum: policy.as_ref()?.quorum,
                hysteresis: policy.as_ref()?.hysteresis,
                sorry: match sorry {
                    Sorry::None => None,
                    Sorry::Backend(i) => Some(self.backends[i].name.clone()),
                    Sorry::Invalid => return None,
                },
                backends: members
                    .iter()
                    .map(|m| Member {
                        backend: self.backends[m.index].name.clone(),
                        weight: m.weight,
                    })
                    .collect(),
            })
        })();
        let sorry = match sorry {
            Sorry::Backend(i) => Some(i),
            Sorry::None | Sorry::Invalid => None,
        };
        CheckedPort {
            port,
            members,
            sorry,
        }
    }

    /// The entry's `port`, or its `ports` (a group of at least two): the
    /// first port, and the whole group (empty for a single port).
    fn numbers(&mut self, raw: &raw::Port, parent: Span, ctx: &str) -> (Option<u16>, Vec<u16>) {
        let number = |this: &mut Self, v: &Value, what: &str| {
            this.v
                .int(v, what, ctx, 1..=65535)
                .map(|n| u16::try_from(n).expect("range checked"))
        };
        match (&raw.port, &raw.ports) {
            (Some(_), Some(list)) => {
                self.v.error(
                    format!("{ctx}: a port entry has `port` or `ports`, not both"),
                    list.span,
                );
                (None, Vec::new())
            }
            (Some(v), None) => (number(self, v, "port"), Vec::new()),
            (None, Some(list)) => {
                let mut group: Vec<u16> = Vec::new();
                let mut ok = true;
                for item in &list.value.0 {
                    match number(self, item, "ports") {
                        Some(n) if group.contains(&n) => {
                            ok = false;
                            self.v.error(
                                format!("{ctx}: port {n} is listed twice in `ports`"),
                                item.span,
                            );
                        }
                        Some(n) => group.push(n),
                        None => ok = false,
                    }
                }
                if ok && group.len() < 2 {
                    self.v
                        .error(
                            format!("{ctx}: `ports` groups several ports into one service, but lists {}", group.len()),
                            list.span,
                        )
                        .help = Some("write one port as `port: N`".to_owned());
                    ok = false;
                }
                if ok {
                    (group.first().copied(), group)
                } else {
                    (None, Vec::new())
                }
            }
            (None, None) => {
                self.v
                    .required::<Value>(None, "port", &format!("{ctx}: a port entry"), parent);
                (None, Vec::new())
            }
        }
    }

    /// A group is one firewall-mark service on IPVS, marked by the first port
    /// and the cluster id: two groups of a cluster may not start alike, and
    /// every engine of the cluster must serve groups.
    fn port_group(&mut self, first: u16, span: Span, ctx: &str, balancers: &[(usize, Span)]) {
        if let Some(other) = self.groups.get(&first) {
            self.v
                .error(
                    format!("{ctx}: another group of this cluster starts with port {first}; their firewall marks would be the same"),
                    span,
                )
                .notes
                .push(("that group is here".to_owned(), *other));
        } else {
            self.groups.insert(first, span);
        }
        for &(i, reference) in balancers {
            let b = &self.balancers[i];
            if let Some(engine) = b.engine
                && !engine.serves_groups()
            {
                self.v
                    .error(
                        format!("{ctx}: {engine} balancer `{}` cannot serve several ports as one service", b.name),
                        span,
                    )
                    .notes
                    .push(("the balancer is listed here".to_owned(), reference));
            }
        }
    }

    /// The port's scheduler for IPVS engines and for nftables.
    fn scheduler(
        &mut self,
        raw: &raw::Port,
        ctx: &str,
        balancers: &[(usize, Span)],
        engines: &BTreeSet<Engine>,
    ) -> (Option<Scheduler>, Option<HashScheduler>) {
        let Some(value) = &raw.scheduler else {
            return (Some(self.defaults.scheduler), Some(HashScheduler::Flow));
        };
        let Some(s) = self
            .v
            .keyword(value, "scheduler", ctx, Scheduler::ALL, Scheduler::as_str)
        else {
            return (None, None);
        };
        let weighted = |e: &Engine| match e.scheduling() {
            Scheduling::Weights { why } => Some(why),
            Scheduling::Ipvs | Scheduling::Hash => None,
        };
        if let Some(first) = engines.first()
            && let Some(why) = weighted(first)
            && engines.iter().all(|e| weighted(e).is_some())
        {
            self.v
                .error(
                    format!("{ctx}: {first} balancers have no scheduler; remove `scheduler`"),
                    value.span,
                )
                .help = Some(why.to_owned());
            return (None, None);
        }
        let hash = s.as_hash();
        if hash.is_none() {
            for &(i, reference) in balancers {
                let b = &self.balancers[i];
                if let Some(engine) = b.engine
                    && engine.scheduling() == Scheduling::Hash
                {
                    // A stateless balancer cannot count connections, and per-packet
                    // spreading breaks TCP: only a flow hash keeps a connection on
                    // one backend.
                    let hashes: Vec<String> = HashScheduler::ALL
                        .iter()
                        .map(|h| format!("`{h}`"))
                        .collect();
                    self.v
                        .error(
                            format!(
                                "{ctx}: {engine} balancer `{}` cannot run scheduler `{s}`; it is stateless and only hashes ({})",
                                b.name,
                                hashes.join(" or ")
                            ),
                            value.span,
                        )
                        .notes
                        .push(("the balancer is listed here".to_owned(), reference));
                }
            }
        }
        (Some(s), Some(hash.unwrap_or(HashScheduler::Flow)))
    }

    #[allow(clippy::too_many_arguments)]
    fn members(
        &mut self,
        raw: &raw::Port,
        parent: Span,
        ctx: &str,
        balancers: &[(usize, Span)],
        address: Option<(IpAddr, Span)>,
        engines: &BTreeSet<Engine>,
        scheduler: Option<Scheduler>,
    ) -> Vec<CheckedMember> {
        let mut members: Vec<CheckedMember> = Vec::new();
        let Some(list) = self
            .v
            .required(raw.backends.as_ref(), "backends", ctx, parent)
        else {
            return members;
        };
        for item in &list.value.0 {
            let Some(index) = self.reference(item, ctx, Role::Backend) else {
                continue;
            };
            if let Some(first) = members.iter().find(|m| m.index == index) {
                let first = first.span;
                self.v
                    .error(
                        format!(
                            "{ctx}: backend `{}` is listed twice",
                            self.backends[index].name
                        ),
                        item.span,
                    )
                    .notes
                    .push(("first listed here".to_owned(), first));
                continue;
            }
            if let Some((addr, _)) = address {
                self.same_segment(ctx, index, item.span, addr, balancers);
            }
            members.push(CheckedMember {
                index,
                span: item.span,
                weight: 1,
            });
        }

        let max_weight = engines
            .iter()
            .map(|e| e.max_weight())
            .min()
            .unwrap_or(u16::MAX);
        if let Some(weights) = &raw.weights {
            for (key, value) in &weights.value.0 {
                let Some(m) = members
                    .iter_mut()
                    .find(|m| self.backends[m.index].name.as_str() == key.value)
                else {
                    let listed = members.iter().map(|m| self.backends[m.index].name.as_str());
                    let mut suggestion = did_you_mean(&key.value, listed)
                        .map(|close| format!("did you mean `{close}`?"));
                    // A backend named right here and misspelt in `backends`:
                    // the misspelling is what to fix.
                    if self.backend_names.get(&key.value).is_some() {
                        let unresolved = list.value.0.iter().filter_map(|item| match &item.value {
                            Scalar::Str(s) if self.backend_names.get(s).is_none() => {
                                Some(s.as_str())
                            }
                            _ => None,
                        });
                        if let Some(typo) = did_you_mean(&key.value, unresolved) {
                            suggestion = Some(format!(
                                "did you mean `{}` in `backends`, not `{}`?",
                                shown(&key.value),
                                shown(typo)
                            ));
                        }
                    }
                    let diagnostic = self.v.error(
                        format!(
                            "{ctx}: `{}` in `weights` is not among this port's `backends`",
                            shown(&key.value)
                        ),
                        key.span,
                    );
                    diagnostic.help = suggestion;
                    continue;
                };
                if let Scalar::Int(w) = value.value
                    && w > i128::from(max_weight)
                    && w <= i128::from(u16::MAX)
                {
                    self.v.error(
                            format!("{ctx}: weight {w} is above {max_weight}, the most a dispatcher balancer takes"),
                            value.span,
                        );
                    continue;
                }
                if let Some(w) = self.v.int(value, "weight", ctx, 0..=i128::from(max_weight)) {
                    m.weight = u16::try_from(w).expect("range checked");
                    m.span = value.span;
                }
            }
        }

        if list.value.0.is_empty() {
            self.v.warning(
                format!("{ctx}: no backends; the port serves nothing"),
                list.span,
            );
        } else if !members.is_empty() && members.iter().all(|m| m.weight == 0) {
            self.v.warning(
                format!("{ctx}: every backend is drained (weight 0); the port serves nothing"),
                list.span,
            );
        } else if scheduler == Some(Scheduler::Mh)
            && engines.iter().any(|e| e.scheduling() == Scheduling::Ipvs)
        {
            for m in members.iter().filter(|m| m.weight == 0) {
                self.v.warning(
                    format!(
                        "{ctx}: backend `{}` is drained (weight 0) on an `mh` port; its share of the Maglev table moves to the others, and a few other flows move with it",
                        self.backends[m.index].name
                    ),
                    m.span,
                );
            }
        }
        members
    }

    /// MAC forwarding rewrites only the destination MAC: the backend must sit on
    /// the balancer's layer-2 segment, which we check as "inside its subnet".
    pub(super) fn same_segment(
        &mut self,
        ctx: &str,
        backend: usize,
        reference: Span,
        addr: IpAddr,
        balancers: &[(usize, Span)],
    ) {
        let be = &self.backends[backend];
        let be_addr: Option<IpAddr> = match addr {
            IpAddr::V4(_) => be.addrs.v4.as_ref().map(|a| IpAddr::V4(a.value.addr())),
            IpAddr::V6(_) => be.addrs.v6.as_ref().map(|a| IpAddr::V6(a.value.addr())),
        };
        let Some(be_addr) = be_addr else {
            if addr.is_ipv6() && self.reported.insert((self.cluster, backend, usize::MAX)) {
                self.v
                    .error(
                        format!(
                            "{ctx}: the cluster address `{addr}` is IPv6, but backend `{}` has no `address6`",
                            be.name
                        ),
                        reference,
                    )
                    .notes
                    .push(("the backend is defined here".to_owned(), be.addrs.key));
            }
            return;
        };
        for &(i, _) in balancers {
            let b = &self.balancers[i];
            if b.segment_of(be_addr).is_some() {
                continue;
            }
            let nets: Vec<(String, IpNet, Span)> = b
                .segments
                .iter()
                .filter_map(|s| {
                    let (net, span) = s.net_of(addr)?;
                    Some((s.interface.value.to_string(), net, span))
                })
                .collect();
            let Some((_, net, net_span)) = nets.first().cloned() else {
                continue;
            };
            if !self.reported.insert((self.cluster, backend, i)) {
                continue;
            }
            if b.listed {
                // Several segments: the backend must be on one of them, and
                // the balancer forwards to it on that one's interface.
                let listed: Vec<String> = nets
                    .iter()
                    .map(|(interface, net, _)| format!("{net} on `{interface}`"))
                    .collect();
                let diagnostic = self.v.error(
                    format!(
                        "{ctx}: backend `{}` ({be_addr}) is on none of balancer `{}`'s segments ({}); MAC forwarding needs one layer-2 segment",
                        be.name,
                        b.name,
                        listed.join(", ")
                    ),
                    reference,
                );
                for (interface, _, span) in nets {
                    diagnostic.notes.push((
                        format!("the balancer's address on `{interface}` is here"),
                        span,
                    ));
                }
            } else {
                self.v
                    .error(
                        format!(
                            "{ctx}: backend `{}` ({be_addr}) is outside balancer `{}`'s subnet {net}; MAC forwarding needs one layer-2 segment",
                            be.name, b.name
                        ),
                        reference,
                    )
                    .notes
                    .push(("the balancer's address is here".to_owned(), net_span));
            }
        }
    }
}

pub(super) struct CheckedPort {
    pub(super) port: Option<Port>,
    pub(super) members: Vec<CheckedMember>,
    /// The sorry server: it holds the cluster address too.
    pub(super) sorry: Option<usize>,
}

pub(super) struct CheckedMember {
    pub(super) index: usize,
    /// The reference, or the weight once one is given.
    span: Span,
    weight: u16,
}
