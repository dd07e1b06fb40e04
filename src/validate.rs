//! Inventory -> Model, or every diagnostic. First each item alone (types,
//! ranges, addresses, names), then the rules that relate items (references,
//! subnets, duplicates, labels). Errors never stop the walk: a user fixing an
//! inventory in review wants the whole list.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::diagnostic::{self, Diagnostic, shown};
use crate::inventory::{self as raw, Scalar, Spanned, Value};
use crate::model::{
    ArpAnnounce, ArpIgnore, Backend, Balancer, Cluster, ClusterId, Defaults, Engine, HashScheduler,
    Health, HttpPath, IfName, Label, Member, Model, Name, Output, Port, Protocol, Scheduler,
    Separator, Vip, Vrrp,
};
use crate::source::Span;

/// The outcome of validation: the model when there is no error, and every
/// diagnostic (warnings too), sorted by position.
#[derive(Debug)]
pub struct Validated {
    pub model: Option<Model>,
    pub diagnostics: Vec<Diagnostic>,
}

/// The longest a persistence timeout may be: 31 days, ipvsadm's limit.
const MAX_PERSISTENCE: i128 = 2_678_400;

pub fn validate(inventory: &raw::Inventory) -> Validated {
    let mut v = Validator::default();
    let model = v.inventory(inventory);
    let mut diagnostics = v.diagnostics;
    diagnostic::sort(&mut diagnostics);
    let model = model.filter(|_| !diagnostics.iter().any(Diagnostic::is_error));
    Validated { model, diagnostics }
}

#[derive(Default)]
struct Validator {
    diagnostics: Vec<Diagnostic>,
}

/// Checked fields of a host, with the spans that cross-item rules point at.
struct HostAddrs {
    key: Span,
    v4: Option<Spanned<Ipv4Net>>,
    v6: Option<Spanned<Ipv6Net>>,
}

struct CheckedBalancer {
    name: Name,
    addrs: HostAddrs,
    engine: Option<Engine>,
    interface: Option<Spanned<IfName>>,
    vrrp: Option<Spanned<Vrrp>>,
    separator: Separator,
}

struct CheckedBackend {
    name: Name,
    addrs: HostAddrs,
    interface: Option<IfName>,
    /// The device and the node that chose it (the backend's, or defaults').
    vip_device: Option<Spanned<IfName>>,
}

struct CheckedDefaults {
    arp_ignore: ArpIgnore,
    arp_announce: ArpAnnounce,
    vip_device: Option<Spanned<IfName>>,
    outputs: BTreeSet<Output>,
    scheduler: Scheduler,
    persistence: u32,
    health: Health,
}

impl Default for CheckedDefaults {
    fn default() -> Self {
        Self {
            arp_ignore: ArpIgnore::IgnoreScopeHost,
            arp_announce: ArpAnnounce::Best,
            vip_device: None,
            outputs: Output::ALL.iter().copied().collect(),
            scheduler: Scheduler::Wlc,
            persistence: 0,
            health: Health::Tcp,
        }
    }
}

/// Name -> index, for references.
struct Names<'a> {
    index: HashMap<&'a str, usize>,
    sorted: Vec<&'a str>,
}

impl<'a> Names<'a> {
    fn new(names: impl Iterator<Item = &'a Name>) -> Self {
        let index: HashMap<&str, usize> = names.enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        let mut sorted: Vec<&str> = index.keys().copied().collect();
        sorted.sort_unstable();
        Self { index, sorted }
    }

    fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

impl Validator {
    fn error(&mut self, message: impl Into<String>, span: Span) -> &mut Diagnostic {
        self.push(Diagnostic::error(message, span))
    }

    fn warning(&mut self, message: impl Into<String>, span: Span) -> &mut Diagnostic {
        self.push(Diagnostic::warning(message, span))
    }

    fn push(&mut self, diagnostic: Diagnostic) -> &mut Diagnostic {
        self.diagnostics.push(diagnostic);
        self.diagnostics.last_mut().expect("just pushed")
    }

    // ---- leaves ----------------------------------------------------------

    /// A required field, or an error at its parent's node.
    fn required<'a, T>(
        &mut self,
        field: Option<&'a T>,
        name: &str,
        ctx: &str,
        parent: Span,
    ) -> Option<&'a T> {
        if field.is_none() {
            self.error(format!("{ctx}: missing `{name}`"), parent);
        }
        field
    }

    fn string<'a>(&mut self, value: &'a Value, what: &str, ctx: &str) -> Option<&'a str> {
        if let Scalar::Str(s) = &value.value {
            Some(s)
        } else {
            self.error(
                format!(
                    "{ctx}: `{what}` must be a string, found {}",
                    value.value.describe()
                ),
                value.span,
            );
            None
        }
    }

    fn int(
        &mut self,
        value: &Value,
        what: &str,
        ctx: &str,
        range: RangeInclusive<i128>,
    ) -> Option<i128> {
        match &value.value {
            Scalar::Int(i) if range.contains(i) => Some(*i),
            found => {
                let found = found.describe();
                let (lo, hi) = (range.start(), range.end());
                let expected = if lo == hi {
                    format!("the integer {lo}")
                } else if lo + 1 == *hi {
                    format!("{lo} or {hi}")
                } else {
                    format!("an integer from {lo} to {hi}")
                };
                let diagnostic = self.error(
                    format!("{ctx}: `{what}` must be {expected}, found {found}"),
                    value.span,
                );
                if let Scalar::Str(s) = &value.value
                    && s.parse::<i128>().is_ok()
                {
                    diagnostic.help = Some(format!("write the number without quotes: `{s}`"));
                }
                None
            }
        }
    }

    /// One of a few integers, each with its meaning.
    fn int_choice<T: Copy>(
        &mut self,
        value: &Value,
        what: &str,
        ctx: &str,
        choices: &[(i128, T)],
    ) -> Option<T> {
        if let Scalar::Int(i) = value.value
            && let Some(&(_, found)) = choices.iter().find(|&&(n, _)| n == i)
        {
            return Some(found);
        }
        let listed: Vec<String> = choices.iter().map(|(n, _)| n.to_string()).collect();
        self.error(
            format!(
                "{ctx}: `{what}` must be {}, found {}",
                listed.join(" or "),
                value.value.describe()
            ),
            value.span,
        );
        None
    }

    /// One of a fixed set of keywords, with a suggestion for a near miss.
    fn keyword<T: Copy>(
        &mut self,
        value: &Value,
        what: &str,
        ctx: &str,
        choices: &[T],
        text: impl Fn(T) -> &'static str,
    ) -> Option<T> {
        let s = self.string(value, what, ctx)?;
        if let Some(&found) = choices.iter().find(|&&c| text(c) == s) {
            return Some(found);
        }
        let words: Vec<&str> = choices.iter().map(|&c| text(c)).collect();
        let listed = words
            .iter()
            .map(|w| format!("`{w}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let diagnostic = self.error(
            format!(
                "{ctx}: unknown {what} `{}`; expected one of {listed}",
                shown(s)
            ),
            value.span,
        );
        if let Some(close) = did_you_mean(s, words.iter().copied()) {
            diagnostic.help = Some(format!("did you mean `{close}`?"));
        }
        None
    }

    fn name(&mut self, key: &Spanned<String>, kind: &str) -> Option<Name> {
        Name::parse(&key.value)
            .map_err(|e| self.error(format!("invalid {kind} name: {e}"), key.span))
            .ok()
    }

    fn ifname(&mut self, value: &Value, what: &str, ctx: &str) -> Option<Spanned<IfName>> {
        let s = self.string(value, what, ctx)?;
        match IfName::parse(s) {
            Ok(name) => Some(Spanned {
                value: name,
                span: value.span,
            }),
            Err(e) => {
                self.error(format!("{ctx}: {e}"), value.span);
                None
            }
        }
    }

    fn host_v4(&mut self, value: &Value, ctx: &str) -> Option<Spanned<Ipv4Net>> {
        let net = self.host_address(value, ctx, false)?;
        let IpNet::V4(v4) = net.value else {
            unreachable!("host_address checked the family")
        };
        Some(Spanned {
            value: v4,
            span: net.span,
        })
    }

    fn host_v6(&mut self, value: &Value, ctx: &str) -> Option<Spanned<Ipv6Net>> {
        let net = self.host_address(value, ctx, true)?;
        let IpNet::V6(v6) = net.value else {
            unreachable!("host_address checked the family")
        };
        Some(Spanned {
            value: v6,
            span: net.span,
        })
    }

    /// A host's own address with its prefix: `address` (IPv4) or `address6`.
    fn host_address(&mut self, value: &Value, ctx: &str, ipv6: bool) -> Option<Spanned<IpNet>> {
        let (field, family, other, other_family, bits, example) = if ipv6 {
            ("address6", "IPv6", "address", "IPv4", 64, "2001:db8::10/64")
        } else {
            ("address", "IPv4", "address6", "IPv6", 24, "192.0.2.10/24")
        };
        let s = self.string(value, field, ctx)?;
        let problem = match s.parse::<IpNet>() {
            Ok(net) if matches!(net, IpNet::V6(_)) != ipv6 => format!(
                "`{s}` is {other_family}; `{field}` holds the {family} address, put this one in `{other}`"
            ),
            Ok(net) if net.prefix_len() == 0 => format!(
                "`{s}` has prefix /0, which puts every address on the host's link; write its subnet"
            ),
            Ok(net) => {
                return Some(Spanned {
                    value: net,
                    span: value.span,
                });
            }
            Err(_) if s.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6() == ipv6) => format!(
                "`{s}` has no prefix length; write the host's address with its subnet, like `{s}/{bits}`"
            ),
            Err(_) => format!(
                "`{}` is not an {family} address with a prefix length, like `{example}`",
                shown(s)
            ),
        };
        self.error(format!("{ctx}: {problem}"), value.span);
        None
    }

    /// A cluster address: bare, or /32 (/128), and usable as a service address.
    fn vip(&mut self, value: &Value, ctx: &str) -> Option<IpAddr> {
        let s = self.string(value, "address", ctx)?;
        let (addr_text, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        if addr_text.contains('%') {
            self.error(
                format!(
                    "{ctx}: `{}` has a zone; a cluster address is not tied to one link, write it without `%...`",
                    shown(s)
                ),
                value.span,
            );
            return None;
        }
        let Ok(addr) = addr_text.parse::<IpAddr>() else {
            self.error(
                format!("{ctx}: `{}` is not an IPv4 or IPv6 address", shown(s)),
                value.span,
            );
            return None;
        };
        let full = if addr.is_ipv4() { "32" } else { "128" };
        if let Some(prefix) = prefix.filter(|&p| p != full) {
            // Backends hold the VIP on lo or a dummy device: a /24 there makes the
            // whole /24 local and cuts the host off from its neighbours.
            self.error(
                format!(
                    "{ctx}: a cluster address is one address, but `{}` has prefix /{}",
                    shown(s),
                    shown(prefix)
                ),
                value.span,
            )
            .help = Some(format!(
                "write `{addr}` (or `{addr}/{full}`); backends hold it with /{full} on their loopback"
            ));
            return None;
        }
        if let Some(why) = unusable_service_address(addr) {
            self.error(
                format!("{ctx}: `{addr}` cannot be a cluster address: it is {why}"),
                value.span,
            );
            return None;
        }
        Some(addr)
    }

    // ---- items -----------------------------------------------------------

    fn inventory(&mut self, inv: &raw::Inventory) -> Option<Model> {
        let top = Span::at(0);
        if let Some(version) = self.required(inv.version.as_ref(), "version", "the inventory", top)
        {
            self.int(version, "version", "the inventory", 1..=1);
        }
        let defaults = inv
            .defaults
            .as_ref()
            .map(|d| self.defaults(&d.value))
            .unwrap_or_default();

        let raw_balancers = self
            .required(inv.balancers.as_ref(), "balancers", "the inventory", top)
            .map_or(&[][..], |m| m.value.0.as_slice());
        let raw_backends = self
            .required(inv.backends.as_ref(), "backends", "the inventory", top)
            .map_or(&[][..], |m| m.value.0.as_slice());
        let raw_clusters = self
            .required(inv.clusters.as_ref(), "clusters", "the inventory", top)
            .map_or(&[][..], |m| m.value.0.as_slice());

        let balancers: Vec<CheckedBalancer> = raw_balancers
            .iter()
            .filter_map(|(key, b)| self.balancer(key, b))
            .collect();
        let backends: Vec<CheckedBackend> = raw_backends
            .iter()
            .filter_map(|(key, b)| self.backend(key, b, &defaults))
            .collect();
        self.host_names_are_distinct(&balancers, &backends);

        let mut cx = ClusterPass::new(self, &defaults, &balancers, &backends);
        let clusters: BTreeMap<Name, Cluster> = raw_clusters
            .iter()
            .filter_map(|(key, c)| cx.cluster(key, c))
            .collect();
        cx.unused_hosts();
        let served = cx.finish();

        assemble(&defaults, balancers, backends, clusters, &served)
    }

    fn defaults(&mut self, d: &raw::Defaults) -> CheckedDefaults {
        const CTX: &str = "defaults";
        let mut out = CheckedDefaults::default();
        // 2 would also drop ARP from clients outside the backend's subnet, and 8
        // would silence the backend's own address (ip-sysctl.rst).
        if let Some(v) = &d.arp_ignore {
            let choices = [
                (1, ArpIgnore::ReplyOnIncoming),
                (3, ArpIgnore::IgnoreScopeHost),
            ];
            if let Some(a) = self.int_choice(v, "arp_ignore", CTX, &choices) {
                out.arp_ignore = a;
            }
        }
        if let Some(v) = &d.arp_announce {
            let choices = [(1, ArpAnnounce::AvoidForeign), (2, ArpAnnounce::Best)];
            if let Some(a) = self.int_choice(v, "arp_announce", CTX, &choices) {
                out.arp_announce = a;
            }
        }
        if let Some(v) = &d.vip_device {
            out.vip_device = self.ifname(v, "vip_device", CTX);
        }
        if let Some(outputs) = &d.outputs {
            out.outputs.clear();
            for item in &outputs.value.0 {
                if let Some(o) = self.keyword(item, "output", CTX, Output::ALL, Output::as_str)
                    && !out.outputs.insert(o)
                {
                    self.error(format!("{CTX}: output `{o}` is listed twice"), item.span);
                }
            }
        }
        if let Some(v) = &d.scheduler
            && let Some(s) = self.keyword(v, "scheduler", CTX, Scheduler::ALL, Scheduler::as_str)
        {
            out.scheduler = s;
        }
        if let Some(v) = &d.persistence
            && let Some(p) = self.int(v, "persistence", CTX, 0..=MAX_PERSISTENCE)
        {
            out.persistence = u32::try_from(p).expect("range checked");
        }
        if let Some(h) = &d.health
            && let Some(h) = self.health(h, CTX)
        {
            out.health = h;
        }
        out
    }

    fn health(&mut self, h: &Spanned<raw::Health>, ctx: &str) -> Option<Health> {
        #[derive(Clone, Copy)]
        enum Kind {
            Tcp,
            Http,
            None,
        }
        let kind_text = |k: Kind| match k {
            Kind::Tcp => "tcp",
            Kind::Http => "http",
            Kind::None => "none",
        };
        let kind = self.required(
            h.value.kind.as_ref(),
            "kind",
            &format!("{ctx}: health"),
            h.span,
        )?;
        let kind = self.keyword(
            kind,
            "health check kind",
            ctx,
            &[Kind::Tcp, Kind::Http, Kind::None],
            kind_text,
        )?;
        if let Kind::Http = kind {
            let path = match &h.value.path {
                None => Some(HttpPath::parse("/").expect("valid")),
                Some(p) => self.string(p, "path", ctx).and_then(|s| {
                    HttpPath::parse(s)
                        .map_err(|e| self.error(format!("{ctx}: {e}"), p.span))
                        .ok()
                }),
            };
            let status = match &h.value.status {
                None => Some(200),
                Some(s) => self
                    .int(s, "status", ctx, 100..=599)
                    .map(|s| u16::try_from(s).expect("range checked")),
            };
            return Some(Health::Http {
                path: path?,
                status: status?,
            });
        }
        for (field, value) in [("path", &h.value.path), ("status", &h.value.status)] {
            if let Some(value) = value {
                self.error(
                    format!(
                        "{ctx}: `{field}` belongs to `kind: http` checks, not `kind: {}`",
                        kind_text(kind)
                    ),
                    value.span,
                );
            }
        }
        Some(match kind {
            Kind::Tcp => Health::Tcp,
            Kind::None | Kind::Http => Health::None,
        })
    }

    fn balancer(
        &mut self,
        key: &Spanned<String>,
        b: &Spanned<raw::Balancer>,
    ) -> Option<CheckedBalancer> {
        let name = self.name(key, "balancer")?;
        let ctx = format!("balancer `{name}`");
        let raw = &b.value;
        let engine = self
            .required(raw.engine.as_ref(), "engine", &ctx, key.span)
            .and_then(|e| self.keyword(e, "engine", &ctx, Engine::ALL, Engine::as_str));
        let interface = self
            .required(raw.interface.as_ref(), "interface", &ctx, key.span)
            .and_then(|i| self.ifname(i, "interface", &ctx));
        let v4 = self
            .required(raw.address.as_ref(), "address", &ctx, key.span)
            .and_then(|a| self.host_v4(a, &ctx));
        let v6 = raw.address6.as_ref().and_then(|a| self.host_v6(a, &ctx));

        let mut vrrp = None;
        if let Some(raw_vrrp) = &raw.vrrp {
            if engine.is_some_and(|e| e != Engine::Keepalived) {
                self.error(
                    format!("{ctx}: `vrrp` is for keepalived balancers only"),
                    raw_vrrp.span,
                );
            } else {
                vrrp = self.vrrp(raw_vrrp, &ctx).map(|value| Spanned {
                    value,
                    span: raw_vrrp.span,
                });
            }
        }
        let mut separator = Separator::At;
        if let Some(d) = &raw.dispatcher {
            if engine.is_some_and(|e| e != Engine::Dispatcher) {
                self.error(
                    format!("{ctx}: `dispatcher` settings are for dispatcher balancers only"),
                    d.span,
                );
            } else if let Some(s) = &d.value.separator {
                separator = self
                    .keyword(s, "separator", &ctx, Separator::ALL, Separator::as_str)
                    .unwrap_or(Separator::At);
            }
        }
        Some(CheckedBalancer {
            name,
            addrs: HostAddrs {
                key: key.span,
                v4,
                v6,
            },
            engine,
            interface,
            vrrp,
            separator,
        })
    }

    fn vrrp(&mut self, v: &Spanned<raw::Vrrp>, ctx: &str) -> Option<Vrrp> {
        let vctx = format!("{ctx}: vrrp");
        let router_id = self
            .required(v.value.router_id.as_ref(), "router_id", &vctx, v.span)
            .and_then(|r| self.int(r, "router_id", ctx, 1..=255));
        // 255 is reserved for the router that owns the addresses; keepalived's
        // instances here always start as BACKUP.
        let priority = match &v.value.priority {
            None => Some(100),
            Some(p) => self.int(p, "priority", ctx, 1..=254),
        };
        Some(Vrrp {
            router_id: u8::try_from(router_id?).expect("range checked"),
            priority: u8::try_from(priority?).expect("range checked"),
        })
    }

    fn backend(
        &mut self,
        key: &Spanned<String>,
        b: &Spanned<raw::Backend>,
        defaults: &CheckedDefaults,
    ) -> Option<CheckedBackend> {
        let name = self.name(key, "backend")?;
        let ctx = format!("backend `{name}`");
        let raw = &b.value;
        let interface = self
            .required(raw.interface.as_ref(), "interface", &ctx, key.span)
            .and_then(|i| self.ifname(i, "interface", &ctx));
        let v4 = self
            .required(raw.address.as_ref(), "address", &ctx, key.span)
            .and_then(|a| self.host_v4(a, &ctx));
        let v6 = raw.address6.as_ref().and_then(|a| self.host_v6(a, &ctx));
        let vip_device = match &raw.vip_device {
            Some(d) => self.ifname(d, "vip_device", &ctx),
            None => defaults.vip_device.clone(),
        };
        if let (Some(dev), Some(interface)) = (&vip_device, &interface)
            && dev.value == interface.value
        {
            self.error(
                    format!(
                        "{ctx}: `vip_device` is the host's own interface `{dev}`; cluster addresses there would answer ARP",
                        dev = dev.value
                    ),
                    dev.span,
                )
                .help = Some("use `lo` or a dummy device".to_owned());
        }
        Some(CheckedBackend {
            name,
            addrs: HostAddrs {
                key: key.span,
                v4,
                v6,
            },
            interface: interface.map(|i| i.value),
            vip_device,
        })
    }

    fn host_names_are_distinct(
        &mut self,
        balancers: &[CheckedBalancer],
        backends: &[CheckedBackend],
    ) {
        let by_name: HashMap<&Name, Span> =
            balancers.iter().map(|b| (&b.name, b.addrs.key)).collect();
        for backend in backends {
            if let Some(&first) = by_name.get(&backend.name) {
                self.error(
                    format!(
                        "`{}` is both a balancer and a backend; each host has one role",
                        backend.name
                    ),
                    backend.addrs.key,
                )
                .notes
                .push(("the balancer is defined here".to_owned(), first));
            }
        }
    }
}

/// Checks that relate a cluster to the hosts and to the other clusters.
struct ClusterPass<'v, 'a> {
    v: &'v mut Validator,
    defaults: &'a CheckedDefaults,
    balancers: &'a [CheckedBalancer],
    backends: &'a [CheckedBackend],
    balancer_names: Names<'a>,
    backend_names: Names<'a>,
    ids: HashMap<u16, (Name, Span)>,
    addresses: HashMap<IpAddr, (Name, Span)>,
    host_addresses: HashMap<IpAddr, (String, Span)>,
    served: Served,
    /// Hosts some cluster refers to, valid or not: the others serve nothing.
    balancer_used: Vec<bool>,
    backend_used: Vec<bool>,
    /// The cluster being checked, by the offset of its key: it tells the
    /// clusters apart in `reported`.
    cluster: usize,
    /// Per-backend problems already reported in a cluster, so that a backend
    /// listed on several ports hears of each once: (cluster, backend, balancer
    /// or `usize::MAX` for "no address6").
    reported: HashSet<(usize, usize, usize)>,
}

/// Which valid clusters each balancer and backend serves.
struct Served {
    /// Clusters with a valid id and address; the others are indexed here.
    clusters: Vec<(ClusterId, Name, IpAddr)>,
    /// Per balancer and per backend (by index): indexes into `clusters`.
    balancers: Vec<Vec<usize>>,
    backends: Vec<Vec<usize>>,
}

impl<'v, 'a> ClusterPass<'v, 'a> {
    fn new(
        v: &'v mut Validator,
        defaults: &'a CheckedDefaults,
        balancers: &'a [CheckedBalancer],
        backends: &'a [CheckedBackend],
    ) -> Self {
        let mut host_addresses = HashMap::new();
        let hosts = balancers
            .iter()
            .map(|b| ("balancer", &b.name, &b.addrs))
            .chain(backends.iter().map(|b| ("backend", &b.name, &b.addrs)));
        for (role, name, addrs) in hosts {
            let owner = format!("{role} `{name}`");
            if let Some(a) = &addrs.v4 {
                host_addresses.insert(IpAddr::V4(a.value.addr()), (owner.clone(), a.span));
            }
            if let Some(a) = &addrs.v6 {
                host_addresses.insert(IpAddr::V6(a.value.addr()), (owner, a.span));
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
            },
            balancer_used: vec![false; balancers.len()],
            backend_used: vec![false; backends.len()],
            cluster: 0,
            reported: HashSet::new(),
        }
    }

    /// What each host serves, each cluster once, in id order, after the rules
    /// that span clusters.
    fn finish(mut self) -> Served {
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
        self.served
    }

    fn cluster(
        &mut self,
        key: &Spanned<String>,
        c: &Spanned<raw::Cluster>,
    ) -> Option<(Name, Cluster)> {
        let name = self.v.name(key, "cluster")?;
        self.cluster = key.span.start;
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

        let balancers = self.cluster_balancers(raw, key.span, &ctx, address);

        let mut ports = Vec::new();
        if let Some(raw_ports) = self.v.required(raw.ports.as_ref(), "ports", &ctx, key.span) {
            let mut seen: HashMap<(Protocol, u16), Span> = HashMap::new();
            for p in &raw_ports.value.0 {
                ports.push(self.port(p, &ctx, &balancers, address, &mut seen));
            }
        }

        self.dispatcher_ports(&ctx, &balancers, raw);
        if let Some((addr, addr_span)) = address {
            self.one_arp_answer(&ctx, addr, addr_span, &balancers);
        }
        if let (Some(id), Some((addr, _))) = (&id, address) {
            self.labels(&ctx, id, addr, &balancers, &ports);
            let ordinal = self.served.clusters.len();
            self.served.clusters.push((id.value, name.clone(), addr));
            for &(i, _) in &balancers {
                self.served.balancers[i].push(ordinal);
            }
            for m in ports.iter().flat_map(|p| &p.members) {
                self.served.backends[m.index].push(ordinal);
            }
        }
        Some((
            name,
            Cluster {
                id: id?.value,
                address: address?.0,
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
                self.vip_in_balancer_subnet(ctx, i, item.span, addr, addr_span);
                let b = &self.balancers[i];
                if addr.is_ipv6()
                    && b.engine == Some(Engine::Dispatcher)
                    && b.separator == Separator::Colon
                {
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
    ) {
        let b = &self.balancers[i];
        let net: Option<(IpNet, Span)> = match addr {
            IpAddr::V4(_) => b.addrs.v4.as_ref().map(|a| (a.value.into(), a.span)),
            IpAddr::V6(_) => {
                if b.addrs.v6.is_none() {
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
                b.addrs.v6.as_ref().map(|a| (a.value.into(), a.span))
            }
        };
        let Some((net, net_span)) = net else { return };
        let net = net.trunc();
        if !net.contains(&addr) {
            self.v
                .warning(
                    format!(
                        "{ctx}: `{addr}` is outside balancer `{}`'s subnet {net}; it must be routed to the balancer",
                        b.name
                    ),
                    addr_span,
                )
                .notes
                .push(("the balancer's address is here".to_owned(), net_span));
            return;
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

    /// Dispatcher balances TCP and UDP by port number alone: no SCTP, and one
    /// port number is one port whatever its protocol.
    fn dispatcher_ports(&mut self, ctx: &str, balancers: &[(usize, Span)], raw: &raw::Cluster) {
        let Some(dispatcher) = balancers
            .iter()
            .map(|&(i, _)| &self.balancers[i])
            .find(|b| b.engine == Some(Engine::Dispatcher))
        else {
            return;
        };
        let Some(ports) = &raw.ports else { return };
        let mut seen: HashMap<i128, Span> = HashMap::new();
        for p in &ports.value.0 {
            let Some(Scalar::Int(number)) = p.value.port.as_ref().map(|v| &v.value) else {
                continue;
            };
            let span = p.value.port.as_ref().map_or(p.span, |v| v.span);
            if let Some(proto) = &p.value.protocol
                && proto.value == Scalar::Str("sctp".to_owned())
            {
                self.v.error(
                    format!(
                        "{ctx}: dispatcher balancer `{}` does not balance SCTP",
                        dispatcher.name
                    ),
                    proto.span,
                );
            }
            if let Some(first) = seen.get(number) {
                self.v
                    .error(
                        format!(
                            "{ctx}: port {number} is listed for two protocols, and dispatcher balancer `{}` cannot tell them apart",
                            dispatcher.name
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
        let in_subnet = |b: &CheckedBalancer| match addr {
            IpAddr::V4(a4) => b
                .addrs
                .v4
                .as_ref()
                .is_some_and(|a| a.value.trunc().contains(&a4)),
            IpAddr::V6(a6) => b
                .addrs
                .v6
                .as_ref()
                .is_some_and(|a| a.value.trunc().contains(&a6)),
        };
        let holders: Vec<&CheckedBalancer> = balancers
            .iter()
            .map(|&(i, _)| &self.balancers[i])
            .filter(|b| in_subnet(b))
            .collect();
        let unmanaged: Vec<&str> = holders
            .iter()
            .filter(|b| b.vrrp.is_none())
            .map(|b| b.name.as_str())
            .collect();
        let vrrp_group = usize::from(holders.iter().any(|b| b.vrrp.is_some()));
        if unmanaged.len() + vrrp_group >= 2 {
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

    /// VRRP peers elect one holder for the addresses of their instance: peers
    /// that share a cluster must run the same instance (router id) over the
    /// same cluster addresses.
    fn vrrp_peers(&mut self) {
        let peers: Vec<usize> = (0..self.balancers.len())
            .filter(|&i| self.balancers[i].vrrp.is_some())
            .collect();
        for (n, &a) in peers.iter().enumerate() {
            for &b in &peers[n + 1..] {
                let (ca, cb) = (&self.served.balancers[a], &self.served.balancers[b]);
                if !ca.iter().any(|c| cb.contains(c)) {
                    continue;
                }
                let (ba, bb) = (&self.balancers[a], &self.balancers[b]);
                let (va, vb) = (
                    ba.vrrp.as_ref().expect("peer"),
                    bb.vrrp.as_ref().expect("peer"),
                );
                if va.value.router_id != vb.value.router_id {
                    self.v
                        .error(
                            format!(
                                "balancer `{}`: VRRP peer `{}` shares a cluster but uses router_id {}, not {}; both would hold the addresses",
                                bb.name, ba.name, va.value.router_id, vb.value.router_id
                            ),
                            vb.span,
                        )
                        .notes
                        .push((format!("`{}`'s vrrp is here", ba.name), va.span));
                } else if ca.len() != cb.len() || ca.iter().any(|c| !cb.contains(c)) {
                    let mut only: Vec<&str> = ca
                        .iter()
                        .filter(|c| !cb.contains(c))
                        .chain(cb.iter().filter(|c| !ca.contains(c)))
                        .map(|&c| self.served.clusters[c].1.as_str())
                        .collect();
                    only.sort_unstable();
                    self.v
                        .error(
                            format!(
                                "balancer `{}`: VRRP peers `{}` and `{}` must serve the same clusters, but only one serves {}",
                                bb.name,
                                ba.name,
                                bb.name,
                                only.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                            ),
                            vb.span,
                        )
                        .notes
                        .push((format!("`{}`'s vrrp is here", ba.name), va.span));
                }
            }
        }
    }

    /// Resolve a reference to a host of `role`, or report it.
    fn reference(&mut self, item: &Value, ctx: &str, role: Role) -> Option<usize> {
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

    fn port(
        &mut self,
        p: &Spanned<raw::Port>,
        cluster_ctx: &str,
        balancers: &[(usize, Span)],
        address: Option<(IpAddr, Span)>,
        seen: &mut HashMap<(Protocol, u16), Span>,
    ) -> CheckedPort {
        let raw = &p.value;
        let number = self
            .v
            .required(
                raw.port.as_ref(),
                "port",
                &format!("{cluster_ctx}: a port entry"),
                p.span,
            )
            .and_then(|n| self.v.int(n, "port", cluster_ctx, 1..=65535))
            .map(|n| u16::try_from(n).expect("range checked"));
        let protocol = match &raw.protocol {
            None => Some(Protocol::Tcp),
            Some(v) => self
                .v
                .keyword(v, "protocol", cluster_ctx, Protocol::ALL, Protocol::as_str),
        };
        let ctx = match (number, protocol) {
            (Some(n), Some(proto)) => format!("{cluster_ctx}, port {n}/{proto}"),
            (Some(n), None) => format!("{cluster_ctx}, port {n}"),
            _ => cluster_ctx.to_owned(),
        };
        if let (Some(n), Some(proto)) = (number, protocol) {
            let port_span = raw.port.as_ref().map_or(p.span, |v| v.span);
            if let Some(first) = seen.get(&(proto, n)) {
                self.v
                    .error(format!("{ctx} is listed twice"), port_span)
                    .notes
                    .push(("first listed here".to_owned(), *first));
            } else {
                seen.insert((proto, n), port_span);
            }
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
        let health = self.port_health(raw, &ctx, protocol, &engines);

        let members = self.members(
            raw,
            p.span,
            &ctx,
            balancers,
            address,
            &engines,
            ipvs_scheduler,
        );
        let port = (|| {
            Some(Port {
                port: number?,
                protocol: protocol?,
                ipvs_scheduler: ipvs_scheduler?,
                hash_scheduler: hash_scheduler?,
                persistence: persistence?,
                health: health?,
                backends: members
                    .iter()
                    .map(|m| Member {
                        backend: self.backends[m.index].name.clone(),
                        weight: m.weight,
                    })
                    .collect(),
            })
        })();
        CheckedPort { port, members }
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
        if !engines.is_empty() && engines.iter().all(|&e| e == Engine::Dispatcher) {
            self.v
                .error(
                    format!("{ctx}: dispatcher balancers have no scheduler; remove `scheduler`"),
                    value.span,
                )
                .help =
                Some("Dispatcher's manager spreads load by the servers' weights".to_owned());
            return (None, None);
        }
        let hash = s.as_hash();
        if hash.is_none() {
            for &(i, reference) in balancers {
                let b = &self.balancers[i];
                if b.engine == Some(Engine::Nftables) {
                    // A stateless balancer cannot count connections, and per-packet
                    // spreading breaks TCP: only a flow hash keeps a connection on
                    // one backend.
                    self.v
                        .error(
                            format!(
                                "{ctx}: nftables balancer `{}` cannot run scheduler `{s}`; it is stateless and only hashes (`sh` or `flow`)",
                                b.name
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

    fn port_health(
        &mut self,
        raw: &raw::Port,
        ctx: &str,
        protocol: Option<Protocol>,
        engines: &BTreeSet<Engine>,
    ) -> Option<Health> {
        let Some(h) = &raw.health else {
            return Some(match protocol {
                Some(Protocol::Tcp) => self.defaults.health.clone(),
                _ => Health::None,
            });
        };
        let health = self.v.health(h, ctx)?;
        if let Some(proto @ (Protocol::Udp | Protocol::Sctp)) = protocol
            && health != Health::None
        {
            self.v.error(
                    format!("{ctx}: a TCP or HTTP health check cannot probe a {proto} service; use `kind: none`"),
                    h.span,
                );
            return None;
        }
        if !engines.is_empty() && !engines.iter().any(|e| e.checks_health()) {
            self.v.warning(
                format!(
                    "{ctx}: ipvsadm and nftables do not check health; this `health` has no effect"
                ),
                h.span,
            );
        }
        if let Health::Http { path, status } = &health
            && engines.contains(&Engine::Dispatcher)
            && (path.as_str() != "/" || *status != 200)
        {
            self.v.warning(
                format!(
                    "{ctx}: dispatcher's http advisor is started without a path or status; it does not check `{} -> {status}`",
                    path.as_str()
                ),
                h.span,
            );
        }
        Some(health)
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
                    let suggestion = did_you_mean(&key.value, listed);
                    let diagnostic = self.v.error(
                        format!(
                            "{ctx}: `{}` in `weights` is not among this port's `backends`",
                            shown(&key.value)
                        ),
                        key.span,
                    );
                    if let Some(close) = suggestion {
                        diagnostic.help = Some(format!("did you mean `{close}`?"));
                    }
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
        } else if scheduler == Some(Scheduler::Mh) && engines.iter().any(|e| e.is_ipvs()) {
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
    fn same_segment(
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
            let net: Option<(IpNet, Span)> = match addr {
                IpAddr::V4(_) => b
                    .addrs
                    .v4
                    .as_ref()
                    .map(|a| (a.value.trunc().into(), a.span)),
                IpAddr::V6(_) => b
                    .addrs
                    .v6
                    .as_ref()
                    .map(|a| (a.value.trunc().into(), a.span)),
            };
            let Some((net, net_span)) = net else { continue };
            if !net.contains(&be_addr) && self.reported.insert((self.cluster, backend, i)) {
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

    /// IPv4 labels `<device>:<id>` must fit in 15 bytes, on every backend and on
    /// every balancer that holds the cluster address itself.
    fn labels(
        &mut self,
        ctx: &str,
        id: &Spanned<ClusterId>,
        addr: IpAddr,
        balancers: &[(usize, Span)],
        ports: &[CheckedPort],
    ) {
        if addr.is_ipv6() {
            return;
        }
        // (device, where it is named, whose it is); `lo:<id>` always fits.
        let balancer_devices = balancers.iter().filter_map(|&(i, _)| {
            let b = &self.balancers[i];
            // Dispatcher's `executor configure` aliases without a label.
            let interface = b
                .interface
                .as_ref()
                .filter(|_| b.engine != Some(Engine::Dispatcher))?;
            Some((interface, Role::Balancer, &b.name))
        });
        let backend_devices = ports.iter().flat_map(|p| &p.members).filter_map(|m| {
            let be = &self.backends[m.index];
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
    fn unused_hosts(&mut self) {
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
enum Role {
    Balancer,
    Backend,
}

impl Role {
    fn word(self) -> &'static str {
        match self {
            Role::Balancer => "balancer",
            Role::Backend => "backend",
        }
    }
}

struct CheckedPort {
    port: Option<Port>,
    members: Vec<CheckedMember>,
}

struct CheckedMember {
    index: usize,
    /// The reference, or the weight once one is given.
    span: Span,
    weight: u16,
}

/// Build the model. Only called for its value when no error was reported, so
/// every `None` below has an error of its own.
fn assemble(
    defaults: &CheckedDefaults,
    balancers: Vec<CheckedBalancer>,
    backends: Vec<CheckedBackend>,
    clusters: BTreeMap<Name, Cluster>,
    served: &Served,
) -> Option<Model> {
    let balancers = balancers
        .into_iter()
        .zip(&served.balancers)
        .map(|(b, ordinals)| {
            let mut clusters: Vec<Name> = ordinals
                .iter()
                .map(|&c| served.clusters[c].1.clone())
                .collect();
            clusters.sort();
            Some((
                b.name,
                Balancer {
                    engine: b.engine?,
                    interface: b.interface?.value,
                    address: b.addrs.v4?.value,
                    address6: b.addrs.v6.map(|a| a.value),
                    vrrp: b.vrrp.map(|v| v.value),
                    separator: b.separator,
                    clusters,
                },
            ))
        })
        .collect::<Option<BTreeMap<_, _>>>()?;
    let backends = backends
        .into_iter()
        .zip(&served.backends)
        .map(|(b, ordinals)| {
            let vip_device = b
                .vip_device
                .map_or_else(|| IfName::parse("lo").expect("valid"), |d| d.value);
            let vips = ordinals
                .iter()
                .map(|&c| {
                    let (id, cluster, address) = &served.clusters[c];
                    let label = if address.is_ipv4() {
                        Some(Label::new(&vip_device, *id).ok()?)
                    } else {
                        None
                    };
                    Some(Vip {
                        cluster: cluster.clone(),
                        id: *id,
                        address: *address,
                        label,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Some((
                b.name,
                Backend {
                    interface: b.interface?,
                    address: b.addrs.v4?.value,
                    address6: b.addrs.v6.map(|a| a.value),
                    vip_device,
                    vips,
                },
            ))
        })
        .collect::<Option<BTreeMap<_, _>>>()?;
    Some(Model {
        defaults: Defaults {
            arp_ignore: defaults.arp_ignore,
            arp_announce: defaults.arp_announce,
            outputs: defaults.outputs.clone(),
        },
        balancers,
        backends,
        clusters,
    })
}

/// Why an address cannot be a service address, if it cannot.
fn unusable_service_address(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(a) => {
            if a.is_unspecified() {
                Some("unspecified")
            } else if a.is_loopback() {
                Some("a loopback address")
            } else if a.is_multicast() {
                Some("a multicast address")
            } else if a.is_link_local() {
                Some("a link-local address")
            } else if a.is_broadcast() {
                Some("the limited broadcast address")
            } else {
                None
            }
        }
        IpAddr::V6(a) => {
            if a.is_unspecified() {
                Some("unspecified")
            } else if a.is_loopback() {
                Some("the loopback address")
            } else if a.is_multicast() {
                Some("a multicast address")
            } else if a.is_unicast_link_local() {
                Some("a link-local address")
            } else if a.to_ipv4_mapped().is_some() {
                Some("an IPv4-mapped IPv6 address; write the IPv4 address itself")
            } else if a.segments()[..6] == [0; 6] {
                Some(
                    "an IPv4-compatible IPv6 address (deprecated, RFC 4291); write the IPv4 address itself",
                )
            } else {
                None
            }
        }
    }
}

/// The closest candidate within a small edit distance, for "did you mean".
fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// Edit distance where swapping two neighbours counts as one edit, the commonest
/// typo (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i-2, i-1 and i of the distance table.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_names_only() {
        let names = ["web1", "web2", "db1"];
        assert_eq!(did_you_mean("web3", names.iter().copied()), Some("web1"));
        assert_eq!(did_you_mean("wbe1", names.iter().copied()), Some("web1"));
        assert_eq!(did_you_mean("mail", names.iter().copied()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("wbe1", "web1"), 1);
        assert_eq!(edit_distance("", "ab"), 2);
    }

    #[test]
    fn service_addresses() {
        for bad in [
            "0.0.0.0",
            "127.0.0.5",
            "224.0.0.1",
            "169.254.1.1",
            "255.255.255.255",
            "::",
            "::1",
            "ff02::1",
            "fe80::1",
            "::ffff:192.0.2.1",
            "::192.0.2.1",
        ] {
            assert!(
                unusable_service_address(bad.parse().unwrap()).is_some(),
                "{bad}"
            );
        }
        for good in ["192.0.2.10", "2001:db8::10"] {
            assert!(
                unusable_service_address(good.parse().unwrap()).is_none(),
                "{good}"
            );
        }
    }
}
