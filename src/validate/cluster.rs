//! Rules that relate a cluster to the hosts and to the other clusters:
//! references, ids and addresses used once, subnets, who answers ARP, VRRP
//! peers (`vrrp.rs`), labels. A port's own rules are in `port.rs`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::port::CheckedPort;
use super::{CheckedBackend, CheckedBalancer, CheckedDefaults, Names, Validator};
use crate::diagnostic::{did_you_mean, shown};
use crate::engine::Holder;
use crate::inventory::{self as raw, Scalar, Spanned, Value};
use crate::model::{Cluster, ClusterId, IfName, Label, Name, Protocol, Separator};
use crate::source::Span;

/// Checks that relate a cluster to the hosts and to the other clusters.
pub(super) struct ClusterPass<'v, 'a> {
    pub(super) v: &'v mut Validator,
    pub(super) defaults: &'a CheckedDefaults,
    pub(super) balancers: &'a [CheckedBalancer],
    pub(super) backends: &'a [CheckedBackend],
    pub(super) balancer_names: Names<'a>,
    pub(super) backend_names: Names<'a>,
    pub(super) ids: HashMap<u16, (Name, Span)>,
    pub(super) addresses: HashMap<IpAddr, (Name, Span)>,
    pub(super) host_addresses: HashMap<IpAddr, (String, Span)>,
    pub(super) served: Served,
    /// Hosts some cluster refers to, valid or not: the others serve nothing.
    pub(super) balancer_used: Vec<bool>,
    pub(super) backend_used: Vec<bool>,
    /// The cluster being checked, by the offset of its key: it tells the
    /// clusters apart in `reported`.
    pub(super) cluster: usize,
    /// Per-backend problems already reported in a cluster, so that a backend
    /// listed on several ports hears of each once: (cluster, backend, balancer
    /// or `usize::MAX` for "no address6").
    pub(super) reported: HashSet<(usize, usize, usize)>,
    /// The port groups of the cluster being checked, by their first port.
    pub(super) groups: HashMap<u16, Span>,
}

/// Which valid clusters each balancer and backend serves.
pub(super) struct Served {
    /// Clusters with a valid id, address and `routed`, which the others
    /// index: (id, name, address, routed).
    pub(super) clusters: Vec<(ClusterId, Name, IpAddr, bool)>,
    /// Per balancer and per backend (by index): indexes into `clusters`.
    pub(super) balancers: Vec<Vec<usize>>,
    pub(super) backends: Vec<Vec<usize>>,
    /// Per cluster (as `clusters`): its balancers, in the order listed.
    pub(super) orders: Vec<Vec<usize>>,
}

impl<'v, 'a> ClusterPass<'v, 'a> {
    pub(super) fn new(
        v: &'v mut Validator,
        defaults: &'a CheckedDefaults,
        balancers: &'a [CheckedBalancer],
        backends: &'a [CheckedBackend],
    ) -> Self {
        let mut host_addresses: HashMap<IpAddr, (String, Span)> = HashMap::new();
        let hosts = balancers
            .iter()
            .map(|b| ("balancer", &b.name, &b.addrs, b.segments.as_slice()))
            .chain(
                backends
                    .iter()
                    .map(|b| ("backend", &b.name, &b.addrs, &[][..])),
            );
        for (role, name, addrs, segments) in hosts {
            let owner = format!("{role} `{name}`");
            let v4 = addrs
                .v4
                .as_ref()
                .map(|a| (IpAddr::V4(a.value.addr()), a.span));
            let v6 = addrs
                .v6
                .as_ref()
                .map(|a| (IpAddr::V6(a.value.addr()), a.span));
            // The first segment's addresses are `addrs`.
            let more = segments.iter().skip(1).flat_map(|s| {
                let v4 = (IpAddr::V4(s.v4.value.addr()), s.v4.span);
                let v6 = s.v6.as_ref().map(|a| (IpAddr::V6(a.value.addr()), a.span));
                std::iter::once(v4).chain(v6)
            });
            for (addr, span) in v4.into_iter().chain(v6).chain(more) {
                // Two hosts with one address: the balancers' tables would list
                // one real server twice (keepalived refuses that config).
                if let Some((other, first)) = host_addresses.get(&addr) {
                    v.error(
                        format!("{owner}: address `{addr}` is already the address of {other}"),
                        span,
                    )
                    .notes
                    .push((format!("{other}'s address is here"), *first));
                    continue;
                }
                host_addresses.insert(addr, (owner.clone(), span));
            }
        }
        Self {
            v,
            defaults,
            balancers,
            backends,
            balancer_names: Names::new(balancers.iter().map(|b| &b.name)),
            backend_names: Names::new(backends.iter().map(|b| &b.name)),
            ids: HashMap::new(),
            addresses: HashMap::new(),
            host_addresses,
            served: Served {
                clusters: Vec::new(),
                balancers: vec![Vec::new(); balancers.len()],
                backends: vec![Vec::new(); backends.len()],
                orders: Vec::new(),
            },
            balancer_used: vec![false; balancers.len()],
            backend_used: vec![false; backends.len()],
            cluster: 0,
            reported: HashSet::new(),
            groups: HashMap::new(),
        }
    }

    /// What each host serves, each cluster once, in id order, after the rules
    /// that span clusters.
    pub(super) fn finish(mut self) -> Served {
        let clusters = &self.served.clusters;
        for list in self
            .served
            .balancers
            .iter_mut()
            .chain(self.served.backends.iter_mut())
        {
            list.sort_unstable_by_key(|&c| clusters[c].0);
            list.dedup();
        }
        self.vrrp_peers();
        self.vrrp_router_ids();
        self.served
    }

    pub(super) fn cluster(
        &mut self,
        key: &Spanned<String>,
        c: &Spanned<raw::Cluster>,
    ) -> Option<(Name, Cluster)> {
        let name = self.v.name(key, "cluster")?;
        self.cluster = key.span.start;
        self.groups.clear();
        let ctx = format!("cluster `{name}`");
        let raw = &c.value;

        let id = self
            .v
            .required(raw.id.as_ref(), "id", &ctx, key.span)
            .and_then(|id| {
                let n = self.v.int(id, "id", &ctx, 1..=65535)?;
                let n = u16::try_from(n).expect("range checked");
                if let Some((other, first)) = self.ids.get(&n) {
                    self.v
                        .error(
                            format!("{ctx}: id {n} is already used by cluster `{other}`"),
                            id.span,
                        )
                        .notes
                        .push((format!("cluster `{other}` has id {n} here"), *first));
                    return None;
                }
                self.ids.insert(n, (name.clone(), id.span));
                Some(Spanned {
                    value: ClusterId(n),
                    span: id.span,
                })
            });

        let address = self
            .v
            .required(raw.address.as_ref(), "address", &ctx, key.span)
            .and_then(|a| Some((self.v.vip(a, &ctx)?, a.span)))
            .and_then(|(addr, span)| self.unique_address(&name, &ctx, addr, span));

        let routed = match &raw.routed {
            None => Some(false),
            Some(r) => self.v.boolean(r, "routed", &ctx),
        };
        let balancers =
            self.cluster_balancers(raw, key.span, &ctx, address, routed.unwrap_or(false));

        let mut ports = Vec::new();
        if let Some(raw_ports) = self.v.required(raw.ports.as_ref(), "ports", &ctx, key.span) {
            let mut seen: HashMap<(Protocol, u16), Span> = HashMap::new();
            for p in &raw_ports.value.0 {
                ports.push(self.port(p, &ctx, &balancers, address, &mut seen));
            }
        }

        self.engine_ports(&ctx, &balancers, raw);
        if let Some((addr, addr_span)) = address
            && routed == Some(false)
        {
            self.one_arp_answer(&ctx, addr, addr_span, &balancers);
        }
        if let (Some(true), Some(r)) = (routed, &raw.routed) {
            self.routed_holders(&ctx, r.span, &balancers);
        }
        if let (Some(id), Some((addr, _)), Some(routed)) = (&id, address, routed) {
            self.labels(&ctx, id, addr, routed, &balancers, &ports);
            let ordinal = self.served.clusters.len();
            self.served
                .clusters
                .push((id.value, name.clone(), addr, routed));
            self.served
                .orders
                .push(balancers.iter().map(|&(i, _)| i).collect());
            for &(i, _) in &balancers {
                self.served.balancers[i].push(ordinal);
            }
            for m in ports.iter().flat_map(|p| &p.members) {
                self.served.backends[m.index].push(ordinal);
            }
            for &sorry in ports.iter().filter_map(|p| p.sorry.as_ref()) {
                self.served.backends[sorry].push(ordinal);
            }
        }
        Some((
            name,
            Cluster {
                id: id?.value,
                address: address?.0,
                routed: routed?,
                balancers: balancers
                    .iter()
                    .map(|&(i, _)| self.balancers[i].name.clone())
                    .collect(),
                ports: ports.into_iter().map(|p| p.port).collect::<Option<_>>()?,
            },
        ))
    }

    /// A cluster address used by no other cluster and no host.
    fn unique_address(
        &mut self,
        name: &Name,
        ctx: &str,
        addr: IpAddr,
        span: Span,
    ) -> Option<(IpAddr, Span)> {
        if let Some((other, first)) = self.addresses.get(&addr) {
            self.v
                .error(
                    format!("{ctx}: address `{addr}` is already cluster `{other}`'s"),
                    span,
                )
                .notes
                .push((format!("cluster `{other}` uses it here"), *first));
            return None;
        }
        if let Some((owner, at)) = self.host_addresses.get(&addr) {
            self.v
                .error(
                    format!("{ctx}: address `{addr}` is {owner}'s own address"),
                    span,
                )
                .notes
                .push((format!("{owner} has it here"), *at));
            return None;
        }
        self.addresses.insert(addr, (name.clone(), span));
        Some((addr, span))
    }

    /// The cluster's balancers, as (index, span of the reference), after the
    /// rules that tie a cluster address to each balancer's subnet.
    fn cluster_balancers(
        &mut self,
        raw: &raw::Cluster,
        parent: Span,
        ctx: &str,
        address: Option<(IpAddr, Span)>,
        routed: bool,
    ) -> Vec<(usize, Span)> {
        let mut out: Vec<(usize, Span)> = Vec::new();
        let Some(list) = self
            .v
            .required(raw.balancers.as_ref(), "balancers", ctx, parent)
        else {
            return out;
        };
        if list.value.0.is_empty() {
            self.v.error(
                format!("{ctx}: `balancers` is empty; a cluster needs a balancer to answer for its address"),
                list.span,
            );
        }
        for item in &list.value.0 {
            let Some(i) = self.reference(item, ctx, Role::Balancer) else {
                continue;
            };
            if let Some(&(_, first)) = out.iter().find(|&&(j, _)| j == i) {
                self.v
                    .error(
                        format!(
                            "{ctx}: balancer `{}` is listed twice",
                            self.balancers[i].name
                        ),
                        item.span,
                    )
                    .notes
                    .push(("first listed here".to_owned(), first));
                continue;
            }
            out.push((i, item.span));
            if let Some((addr, addr_span)) = address {
                self.vip_in_balancer_subnet(ctx, i, item.span, addr, addr_span, routed);
                let b = &self.balancers[i];
                // Only a dispatcher balancer has a separator other than `@`.
                if addr.is_ipv6() && b.separator == Separator::Colon {
                    self.v.error(
                        format!(
                            "{ctx}: dispatcher balancer `{}` uses the `:` separator, which cannot write the IPv6 address `{addr}`",
                            b.name
                        ),
                        item.span,
                    )
                    .help = Some("use `dispatcher: { separator: \"@\" }` (Load Balancer for IPv4 and IPv6)".to_owned());
                }
            }
        }
        out
    }

    fn vip_in_balancer_subnet(
        &mut self,
        ctx: &str,
        i: usize,
        reference: Span,
        addr: IpAddr,
        addr_span: Span,
        routed: bool,
    ) {
        let b = &self.balancers[i];
        if addr.is_ipv6() && b.addrs.v6.is_none() && b.segments.iter().all(|s| s.v6.is_none()) {
            self.v
                .error(
                    format!(
                        "{ctx}: the cluster address `{addr}` is IPv6, but balancer `{}` has no `address6`",
                        b.name
                    ),
                    reference,
                )
                .notes
                .push(("the balancer is defined here".to_owned(), b.addrs.key));
        }
        let inside = b.segment_of(addr).and_then(|s| s.net_of(addr));
        let Some((net, net_span)) = inside else {
            // The first segment's subnet, as the single form names it.
            let Some((net, net_span)) = b.segments.first().and_then(|s| s.net_of(addr)) else {
                return;
            };
            if routed {
                return;
            }
            let outside = if b.listed {
                let nets: Vec<String> = b
                    .segments
                    .iter()
                    .filter_map(|s| Some(format!("{} {}", s.interface.value, s.net_of(addr)?.0)))
                    .collect();
                format!(
                    "outside every subnet of balancer `{}` ({})",
                    b.name,
                    nets.join(", ")
                )
            } else {
                format!("outside balancer `{}`'s subnet {net}", b.name)
            };
            self.v
                .warning(
                    format!("{ctx}: `{addr}` is {outside}; it must be routed to the balancer"),
                    addr_span,
                )
                .notes
                .push(("the balancer's address is here".to_owned(), net_span));
            return;
        };
        if routed {
            // Hosts of the segment ARP for an address inside its subnet, and
            // nothing answers for a routed one.
            self.v
                .warning(
                    format!(
                        "{ctx}: `{addr}` is routed, but inside balancer `{}`'s subnet {net}: hosts on that segment ask ARP for it and get no answer",
                        b.name
                    ),
                    addr_span,
                )
                .notes
                .push(("the balancer's address is here".to_owned(), net_span));
        }
        let is_broadcast =
            matches!(net, IpNet::V4(n) if n.prefix_len() < 31 && IpAddr::V4(n.broadcast()) == addr);
        let is_network = net.network() == addr && net.prefix_len() < net.max_prefix_len() - 1;
        if is_network || is_broadcast {
            let what = if is_network { "network" } else { "broadcast" };
            self.v
                .error(
                    format!(
                        "{ctx}: `{addr}` is the {what} address of balancer `{}`'s subnet {net}",
                        b.name
                    ),
                    addr_span,
                )
                .notes
                .push(("the balancer's address is here".to_owned(), net_span));
        }
    }

    /// Protocols an engine does not balance, and one port number given for two
    /// protocols to an engine that keys ports by number alone (Dispatcher).
    fn engine_ports(&mut self, ctx: &str, balancers: &[(usize, Span)], raw: &raw::Cluster) {
        let engines: Vec<&CheckedBalancer> = balancers
            .iter()
            .map(|&(i, _)| &self.balancers[i])
            .filter(|b| b.engine.is_some())
            .collect();
        let Some(ports) = &raw.ports else { return };
        let lumps = engines.iter().find(|b| {
            !b.engine
                .is_some_and(crate::model::Engine::tells_protocols_apart)
        });
        let mut seen: HashMap<i128, Span> = HashMap::new();
        for p in &ports.value.0 {
            let Some(Scalar::Int(number)) = p.value.port.as_ref().map(|v| &v.value) else {
                continue;
            };
            let span = p.value.port.as_ref().map_or(p.span, |v| v.span);
            if let Some(proto) = &p.value.protocol
                && let Scalar::Str(text) = &proto.value
                && let Some(&protocol) = Protocol::ALL.iter().find(|p| p.as_str() == text)
                && let Some(b) = engines
                    .iter()
                    .find(|b| !b.engine.is_some_and(|e| e.balances(protocol)))
            {
                self.v.error(
                    format!(
                        "{ctx}: {} balancer `{}` does not balance {}",
                        b.engine.expect("filtered"),
                        b.name,
                        protocol.as_str().to_uppercase()
                    ),
                    proto.span,
                );
            }
            let Some(b) = lumps else { continue };
            if let Some(first) = seen.get(number) {
                self.v
                    .error(
                        format!(
                            "{ctx}: port {number} is listed for two protocols, and {} balancer `{}` cannot tell them apart",
                            b.engine.expect("filtered"),
                            b.name
                        ),
                        span,
                    )
                    .notes
                    .push(("first listed here".to_owned(), *first));
            } else {
                seen.insert(*number, span);
            }
        }
    }

    /// Only one host may answer ARP for a cluster address on its segment. Each
    /// balancer holds it on its interface, except keepalived balancers with
    /// VRRP, among which VRRP elects one.
    fn one_arp_answer(
        &mut self,
        ctx: &str,
        addr: IpAddr,
        addr_span: Span,
        balancers: &[(usize, Span)],
    ) {
        let in_subnet = |b: &CheckedBalancer| b.segment_of(addr).is_some();
        let holders: Vec<&CheckedBalancer> = balancers
            .iter()
            .map(|&(i, _)| &self.balancers[i])
            .filter(|b| in_subnet(b))
            .collect();
        // VRRP peers elect one holder among them; every other holder answers.
        let elected = |b: &CheckedBalancer| b.holder() == Some(Holder::Vrrp);
        let unmanaged = holders.iter().filter(|b| !elected(b)).count();
        let vrrp_group = usize::from(holders.iter().any(|b| elected(b)));
        if unmanaged + vrrp_group >= 2 {
            let names: Vec<String> = holders.iter().map(|b| format!("`{}`", b.name)).collect();
            self.v
                .warning(
                    format!(
                        "{ctx}: balancers {} all hold `{addr}` on one segment, so more than one answers ARP for it",
                        names.join(", ")
                    ),
                    addr_span,
                )
                .help = Some(
                "let one hold it at a time: keepalived with `vrrp` on every balancer of the cluster, or run `dsrgen-vips up` on the active one only"
                    .to_owned(),
            );
        }
    }

    /// A routed cluster address is held on each balancer's loopback; an
    /// engine that puts cluster addresses on the interface itself cannot.
    fn routed_holders(&mut self, ctx: &str, routed: Span, balancers: &[(usize, Span)]) {
        for &(i, reference) in balancers {
            let b = &self.balancers[i];
            if let Some(engine) = b.engine.filter(|e| !e.holds_routed()) {
                self.v
                    .error(
                        format!(
                            "{ctx}: {engine} balancer `{}` puts cluster addresses on its interface itself, so it cannot hold a routed one on its loopback",
                            b.name
                        ),
                        routed,
                    )
                    .notes
                    .push(("the balancer is listed here".to_owned(), reference));
            }
        }
    }

    /// Resolve a reference to a host of `role`, or report it.
    pub(super) fn reference(&mut self, item: &Value, ctx: &str, role: Role) -> Option<usize> {
        let what = role.word();
        let name = self.v.string(item, what, ctx)?;
        let (names, other_names, other_role) = match role {
            Role::Balancer => (&self.balancer_names, &self.backend_names, Role::Backend),
            Role::Backend => (&self.backend_names, &self.balancer_names, Role::Balancer),
        };
        if let Some(i) = names.get(name) {
            match role {
                Role::Balancer => self.balancer_used[i] = true,
                Role::Backend => self.backend_used[i] = true,
            }
            return Some(i);
        }
        if other_names.get(name).is_some() {
            self.v.error(
                format!("{ctx}: `{name}` is a {}, not a {what}", other_role.word()),
                item.span,
            );
            return None;
        }
        let suggestion = did_you_mean(name, names.sorted.iter().copied());
        let diagnostic = self.v.error(
            format!("{ctx}: no {what} is named `{}`", shown(name)),
            item.span,
        );
        if let Some(close) = suggestion {
            diagnostic.help = Some(format!("did you mean `{close}`?"));
        }
        None
    }

    /// IPv4 labels `<device>:<id>` must fit in 15 bytes, on every backend and on
    /// every balancer that holds the cluster address itself.
    fn labels(
        &mut self,
        ctx: &str,
        id: &Spanned<ClusterId>,
        addr: IpAddr,
        routed: bool,
        balancers: &[(usize, Span)],
        ports: &[CheckedPort],
    ) {
        if addr.is_ipv6() {
            return;
        }
        // (device, where it is named, whose it is); `lo:<id>` always fits.
        let balancer_devices = balancers.iter().filter_map(|&(i, _)| {
            let b = &self.balancers[i];
            // Dispatcher's `executor configure` aliases without a label. An
            // unknown engine is checked as if it labelled. A routed address
            // is labelled `lo:<id>`, which fits.
            let interface = b
                .device_of(addr, routed)
                .filter(|_| b.holder().is_none_or(Holder::labels))?;
            Some((interface, Role::Balancer, &b.name))
        });
        let holders = ports
            .iter()
            .flat_map(|p| p.members.iter().map(|m| m.index).chain(p.sorry));
        let backend_devices = holders.filter_map(|i| {
            let be = &self.backends[i];
            Some((be.vip_device.as_ref()?, Role::Backend, &be.name))
        });
        let mut checked: Vec<&IfName> = Vec::new();
        let mut problems = Vec::new();
        for (device, role, owner) in balancer_devices.chain(backend_devices) {
            if checked.contains(&&device.value) {
                continue;
            }
            checked.push(&device.value);
            if let Err(label) = Label::new(&device.value, id.value) {
                problems.push((label, device, format!("{} `{owner}`", role.word())));
            }
        }
        for (label, device, owner) in problems {
            self.v
                .error(
                    format!(
                        "{ctx}: the label `{label}` for {owner} is {} bytes; Linux allows at most 15",
                        label.len()
                    ),
                    id.span,
                )
                .notes
                .push((format!("the device `{}` is named here", device.value), device.span));
        }
    }

    /// Hosts that serve no cluster get no files: say so, it is rarely meant.
    pub(super) fn unused_hosts(&mut self) {
        for (i, b) in self.balancers.iter().enumerate() {
            if !self.balancer_used[i] {
                self.v.warning(
                    format!(
                        "balancer `{}` serves no cluster; dsrgen writes nothing for it",
                        b.name
                    ),
                    b.addrs.key,
                );
            }
        }
        for (i, b) in self.backends.iter().enumerate() {
            if !self.backend_used[i] {
                self.v.warning(
                    format!(
                        "backend `{}` serves no cluster; dsrgen writes nothing for it",
                        b.name
                    ),
                    b.addrs.key,
                );
            }
        }
    }
}

#[derive(Clone, Copy)]
pub(super) enum Role {
    Balancer,
    Backend,
}

impl Role {
    pub(super) fn word(self) -> &'static str {
        match self {
            Role::Balancer => "balancer",
            Role::Backend => "backend",
        }
    }
}
