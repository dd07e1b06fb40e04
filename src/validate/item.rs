//! Per-item rules: the defaults, each balancer and each backend alone (types,
//! ranges, addresses, names, engine settings). Rules that relate items are in
//! `cluster.rs` and `port.rs`.

use std::collections::HashMap;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{
    CheckedBackend, CheckedBalancer, CheckedDefaults, CheckedSegment, HostAddrs, MAX_PERSISTENCE,
    Validator,
};
use crate::inventory::{self as raw, Spanned, Value};
use crate::model::{
    ArpAnnounce, ArpIgnore, Engine, IfName, Name, Notify, OnFailure, Output, Scheduler, ScriptPath,
    Separator, Timing, Vrrp,
};
use crate::source::Span;

impl Validator {
    pub(super) fn defaults(&mut self, d: &raw::Defaults) -> CheckedDefaults {
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
            // networkd puts cluster addresses on lo; only sysctl and script set
            // the ARP settings that keep a backend from answering for them.
            if out.outputs.contains(&Output::Networkd)
                && !out.outputs.contains(&Output::Sysctl)
                && !out.outputs.contains(&Output::Script)
            {
                self.warning(
                    format!("{CTX}: `outputs` puts cluster addresses on backends without `sysctl` or `script`, so nothing sets arp_ignore and arp_announce: backends will answer ARP for the cluster addresses"),
                    outputs.span,
                )
                .help = Some("add `sysctl` to `outputs`, or set the ARP settings on the backends yourself".to_owned());
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
        // `defaults.health` is the check of every TCP port that names none,
        // and its timing the timing of every check that does not say its own.
        if let Some(h) = &d.health
            && let Ok(check) = self.check(&h.value, h.span, CTX, Timing::DEFAULT)
        {
            if let Some(check) = &check {
                out.timing = check.timing;
            }
            out.health = check.into_iter().collect();
        }
        if let Some(v) = &d.on_failure
            && let Some(o) = self.keyword(v, "on_failure", CTX, OnFailure::ALL, OnFailure::as_str)
        {
            out.on_failure = o;
        }
        out
    }

    pub(super) fn balancer(
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
        let (interface, v4, v6, segments) = if let Some(list) = &raw.interfaces {
            self.segments(raw, list, &ctx)
        } else {
            let interface = self
                .required(raw.interface.as_ref(), "interface", &ctx, key.span)
                .and_then(|i| self.ifname(i, "interface", &ctx));
            self.not_lo(interface.as_ref(), &ctx);
            let v4 = self
                .required(raw.address.as_ref(), "address", &ctx, key.span)
                .and_then(|a| self.host_v4(a, &ctx));
            let v6 = raw.address6.as_ref().and_then(|a| self.host_v6(a, &ctx));
            let segments = match (&interface, &v4) {
                (Some(i), Some(a)) => vec![CheckedSegment {
                    interface: i.clone(),
                    v4: a.clone(),
                    v6: v6.clone(),
                }],
                _ => Vec::new(),
            };
            (interface, v4, v6, segments)
        };

        let mut vrrp = None;
        if let Some(raw_vrrp) = &raw.vrrp {
            if engine.is_some_and(|e| !e.takes_vrrp()) {
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
            if engine.is_some_and(|e| !e.takes_dispatcher_settings()) {
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
            listed: raw.interfaces.is_some(),
            segments,
            vrrp,
            separator,
        })
    }

    /// A balancer holds cluster addresses with its subnet's prefix on its
    /// interface: on lo that makes the whole subnet local to it.
    fn not_lo(&mut self, interface: Option<&Spanned<IfName>>, ctx: &str) {
        if let Some(i) = interface.filter(|i| i.value.is_loopback()) {
            self.error(
                format!("{ctx}: `interface` cannot be `lo`: a balancer holds cluster addresses with its subnet's prefix on its interface, and on lo that makes the whole subnet local"),
                i.span,
            )
            .help = Some("name the interface that faces the clients, such as `eth0`".to_owned());
        }
    }

    /// `interfaces`: the segments of a balancer on several, each with its
    /// interface and addresses, the first one first. The single form's keys
    /// may not stand beside it: which address would be whose?
    #[allow(clippy::type_complexity)]
    fn segments(
        &mut self,
        raw: &raw::Balancer,
        list: &Spanned<raw::List<raw::Segment>>,
        ctx: &str,
    ) -> (
        Option<Spanned<IfName>>,
        Option<Spanned<Ipv4Net>>,
        Option<Spanned<Ipv6Net>>,
        Vec<CheckedSegment>,
    ) {
        for (field, value) in [
            ("interface", &raw.interface),
            ("address", &raw.address),
            ("address6", &raw.address6),
        ] {
            if let Some(value) = value {
                self.error(
                    format!("{ctx}: `{field}` and `interfaces` cannot both be given; with `interfaces`, each entry gives its `name`, `address` and `address6`"),
                    value.span,
                )
                .help = Some(format!("move `{field}` into the entry of `interfaces` it belongs to"));
            }
        }
        if list.value.0.is_empty() {
            self.error(
                format!("{ctx}: `interfaces` is empty; a balancer needs at least one interface with its address"),
                list.span,
            );
        }
        let mut first = (None, None, None);
        let mut segments: Vec<CheckedSegment> = Vec::new();
        for (n, entry) in list.value.0.iter().enumerate() {
            let e = &entry.value;
            let interface = self
                .required(
                    e.name.as_ref(),
                    "name",
                    &format!("{ctx}: `interfaces` entry"),
                    entry.span,
                )
                .and_then(|i| self.ifname(i, "name", ctx));
            self.not_lo(interface.as_ref(), ctx);
            let v4 = self
                .required(
                    e.address.as_ref(),
                    "address",
                    &format!("{ctx}: `interfaces` entry"),
                    entry.span,
                )
                .and_then(|a| self.host_v4(a, ctx));
            let v6 = e.address6.as_ref().and_then(|a| self.host_v6(a, ctx));
            if n == 0 {
                first = (interface.clone(), v4.clone(), v6.clone());
            }
            let (Some(interface), Some(v4)) = (interface, v4) else {
                continue;
            };
            if let Some(other) = segments
                .iter()
                .find(|s| s.interface.value == interface.value)
            {
                self.error(
                    format!(
                        "{ctx}: interface `{}` is listed twice in `interfaces`",
                        interface.value
                    ),
                    interface.span,
                )
                .notes
                .push(("first listed here".to_owned(), other.interface.span));
                continue;
            }
            // A backend or cluster address inside both subnets would belong to
            // two segments: which interface forwards to it?
            let overlap = segments.iter().find_map(|s| {
                let meet =
                    |a: IpNet, b: IpNet| a.contains(&b.network()) || b.contains(&a.network());
                if meet(s.v4.value.trunc().into(), v4.value.trunc().into()) {
                    return Some((s, s.v4.value.trunc().to_string(), v4.span, s.v4.span));
                }
                match (&s.v6, &v6) {
                    (Some(a), Some(b)) if meet(a.value.trunc().into(), b.value.trunc().into()) => {
                        Some((s, a.value.trunc().to_string(), b.span, a.span))
                    }
                    _ => None,
                }
            });
            if let Some((other, net, at, first_at)) = overlap {
                self.error(
                    format!(
                        "{ctx}: the subnet of interface `{}` overlaps interface `{}`'s {net}; each segment needs a subnet of its own",
                        interface.value, other.interface.value
                    ),
                    at,
                )
                .notes
                .push((format!("interface `{}`'s address is here", other.interface.value), first_at));
                continue;
            }
            segments.push(CheckedSegment { interface, v4, v6 });
        }
        let (interface, v4, v6) = first;
        (interface, v4, v6, segments)
    }

    fn vrrp(&mut self, v: &Spanned<raw::Vrrp>, ctx: &str) -> Option<Vrrp> {
        let vctx = format!("{ctx}: vrrp");
        let raw = &v.value;
        let router_id = self
            .required(raw.router_id.as_ref(), "router_id", &vctx, v.span)
            .and_then(|r| self.int(r, "router_id", ctx, 1..=255));
        let active_active = match &raw.active_active {
            None => Some(false),
            Some(a) => self.boolean(a, "active_active", &vctx),
        };
        // 255 is reserved for the router that owns the addresses; keepalived's
        // instances here always start as BACKUP.
        let priority = match &raw.priority {
            None => Some(100),
            Some(p) if active_active == Some(true) => {
                self.error(
                    format!("{vctx}: with `active_active`, priorities come from the order of each cluster's balancers; remove `priority`"),
                    p.span,
                );
                None
            }
            Some(p) => self.int(p, "priority", ctx, 1..=254),
        };
        // VRRPv2 carries the interval in 8 bits of seconds; 1 is keepalived's
        // default and the quickest: a backup takes over after about three
        // missed advertisements.
        let advert_int = match &raw.advert_int {
            None => Some(1),
            Some(a) => self.int(a, "advert_int", &vctx, 1..=255),
        };
        let preempt = match &raw.preempt {
            None => Some(true),
            Some(p) => self.boolean(p, "preempt", &vctx),
        };
        let preempt_delay = match &raw.preempt_delay {
            None => Some(0),
            Some(d) => {
                if preempt == Some(false) {
                    self.error(
                        format!("{vctx}: `preempt_delay` has no meaning with `preempt: false`"),
                        d.span,
                    );
                }
                self.int(d, "preempt_delay", &vctx, 0..=1000)
            }
        };
        let unicast = match &raw.unicast {
            None => Some(false),
            Some(u) => self.boolean(u, "unicast", &vctx),
        };
        let path = |this: &mut Self, value: &Value, what: &str| {
            let s = this.string(value, what, &vctx)?;
            ScriptPath::parse(s)
                .map_err(|e| this.error(format!("{vctx}: `{what}`: {e}"), value.span))
                .ok()
        };
        let auth_file = raw.auth_file.as_ref().map(|a| path(self, a, "auth_file"));
        let mut ok = true;
        let mut track_interfaces = Vec::new();
        for item in raw.track_interfaces.iter().flat_map(|l| &l.value.0) {
            match self.ifname(item, "track_interfaces", &vctx) {
                Some(i) => track_interfaces.push(i.value),
                None => ok = false,
            }
        }
        let mut track_scripts = Vec::new();
        for item in raw.track_scripts.iter().flat_map(|l| &l.value.0) {
            match path(self, item, "track_scripts") {
                Some(p) => track_scripts.push(p),
                None => ok = false,
            }
        }
        let mut notify = Notify::default();
        if let Some(n) = &raw.notify {
            for (what, value, slot) in [
                ("master", &n.value.master, &mut notify.master),
                ("backup", &n.value.backup, &mut notify.backup),
                ("fault", &n.value.fault, &mut notify.fault),
            ] {
                if let Some(value) = value {
                    *slot = path(self, value, what);
                    ok &= slot.is_some();
                }
            }
        }
        let sync_interface = raw
            .sync_interface
            .as_ref()
            .map(|i| self.ifname(i, "sync_interface", &vctx));
        let sync_id = match (&raw.sync_id, &raw.sync_interface) {
            (Some(v), None) => {
                self.error(
                    format!("{vctx}: `sync_id` needs `sync_interface`, where the sync daemon runs"),
                    v.span,
                );
                None
            }
            (Some(v), Some(_)) => self.int(v, "sync_id", &vctx, 0..=255),
            (None, _) => router_id,
        };
        let sync = match sync_interface {
            None => None,
            Some(i) => Some((i?.value, u8::try_from(sync_id?).expect("range checked"))),
        };
        if let (Some(true), Some(i)) = (active_active, &raw.sync_interface) {
            // keepalived ties its sync daemons to one instance's state.
            self.error(
                format!("{vctx}: connection sync follows one VRRP instance, and `active_active` makes several"),
                i.span,
            );
            ok = false;
        }
        if !ok {
            return None;
        }
        Some(Vrrp {
            router_id: u8::try_from(router_id?).expect("range checked"),
            priority: u8::try_from(priority?).expect("range checked"),
            advert_int: u8::try_from(advert_int?).expect("range checked"),
            active_active: active_active?,
            preempt: preempt?,
            preempt_delay: u16::try_from(preempt_delay?).expect("range checked"),
            auth_file: auth_file.map_or(Some(None), |a| a.map(Some))?,
            unicast: unicast?,
            track_interfaces,
            track_scripts,
            notify,
            sync,
        })
    }

    pub(super) fn backend(
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

    pub(super) fn host_names_are_distinct(
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
