//! Inventory -> Model, or every diagnostic. First each item alone (types,
//! ranges, addresses, names: `item.rs`), then the rules that relate items
//! (references, subnets, duplicates, labels: `cluster.rs`, and a cluster's
//! ports: `port.rs`). This file holds the entry point, the leaf checks every
//! rule uses, and the assembly of the model. Errors never stop the walk: a
//! user fixing an inventory in review wants the whole list.

mod checks;
mod cluster;
mod health;
mod item;
mod port;
mod vrrp;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use self::cluster::{ClusterPass, Served};
use crate::diagnostic::{self, Diagnostic, did_you_mean, shown};
use crate::engine::Holder;
use crate::inventory::{self as raw, Scalar, Spanned, Value};
use crate::model::{
    ArpAnnounce, ArpIgnore, Backend, Balancer, Check, Cluster, ClusterId, Defaults, Engine, IfName,
    Label, Model, Name, OnFailure, Output, Probe, Scheduler, Segment, Separator, Timing, Vip, Vrrp,
};
use crate::source::Span;

/// The outcome of validation: the model when there is no error, and every
/// diagnostic (warnings too), sorted by position.
#[derive(Debug)]
pub struct Validated {
    pub model: Option<Model>,
    pub diagnostics: Vec<Diagnostic>,
}

/// A value that was invalid, its error already reported.
#[derive(Debug)]
struct Reported;

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

/// One segment of a balancer, checked: its interface and addresses.
struct CheckedSegment {
    interface: Spanned<IfName>,
    v4: Spanned<Ipv4Net>,
    v6: Option<Spanned<Ipv6Net>>,
}

impl CheckedSegment {
    /// The segment's subnet of `addr`'s family, with the node of its address.
    fn net_of(&self, addr: IpAddr) -> Option<(IpNet, Span)> {
        match addr {
            IpAddr::V4(_) => Some((self.v4.value.trunc().into(), self.v4.span)),
            IpAddr::V6(_) => self.v6.as_ref().map(|a| (a.value.trunc().into(), a.span)),
        }
    }

    fn contains(&self, addr: IpAddr) -> bool {
        self.net_of(addr)
            .is_some_and(|(net, _)| net.contains(&addr))
    }
}

struct CheckedBalancer {
    name: Name,
    /// The first segment's addresses (the only one's, with `interface`).
    addrs: HostAddrs,
    engine: Option<Engine>,
    /// The first segment's interface.
    interface: Option<Spanned<IfName>>,
    /// Every segment whose interface and IPv4 address are valid, first one
    /// first; `interfaces` when given.
    segments: Vec<CheckedSegment>,
    /// Whether the balancer was given as `interfaces` (several segments).
    listed: bool,
    vrrp: Option<Spanned<Vrrp>>,
    separator: Separator,
}

impl CheckedBalancer {
    /// Who holds the balancer's cluster addresses, once its engine is known.
    fn holder(&self) -> Option<Holder> {
        self.engine.map(|e| e.holder(self.vrrp.is_some()))
    }

    /// The segment whose subnet holds `addr`.
    fn segment_of(&self, addr: IpAddr) -> Option<&CheckedSegment> {
        self.segments.iter().find(|s| s.contains(addr))
    }

    /// The device that holds a cluster address: `lo` when it is routed, else
    /// the interface of the segment whose subnet holds it, else the first.
    fn device_of(&self, addr: IpAddr, routed: bool) -> Option<&Spanned<IfName>> {
        if routed {
            return None;
        }
        self.segment_of(addr)
            .map(|s| &s.interface)
            .or(self.interface.as_ref())
    }
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
    health: Vec<Check>,
    timing: Timing,
    on_failure: OnFailure,
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
            health: vec![Check {
                probe: Probe::Tcp,
                port: None,
                timing: Timing::DEFAULT,
            }],
            timing: Timing::DEFAULT,
            on_failure: OnFailure::Remove,
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
                if let Scalar::Str(s) = &value.value
                    && let Some(digits) = leading_zero_digits(s)
                {
                    let decimal = digits.trim_start_matches('0');
                    let decimal = if decimal.is_empty() { "0" } else { decimal };
                    self.error(
                        format!("{ctx}: `{what}` is `{s}`, which is ambiguous: YAML 1.1 reads a leading zero as octal, YAML 1.2 as decimal; dsrgen refuses it"),
                        value.span,
                    )
                    .help = Some(format!("write `{decimal}`, or `0o{decimal}` if octal was meant"));
                    return None;
                }
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

    /// `true` or `false`: YAML 1.1's `yes` and `on` are strings here.
    fn boolean(&mut self, value: &Value, what: &str, ctx: &str) -> Option<bool> {
        if let Scalar::Bool(b) = value.value {
            return Some(b);
        }
        self.error(
            format!(
                "{ctx}: `{what}` must be `true` or `false`, found {}",
                value.value.describe()
            ),
            value.span,
        );
        None
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
            let holder = b.holder()?;
            let interface = b.interface.as_ref()?.value.clone();
            let mut clusters: Vec<Name> = ordinals
                .iter()
                .map(|&c| served.clusters[c].1.clone())
                .collect();
            clusters.sort();
            let labels = holder.labels();
            let lo = IfName::parse("lo").expect("valid");
            let vips = vips(&served.clusters, ordinals, labels, |address, routed| {
                b.device_of(address, routed)
                    .map_or_else(|| lo.clone(), |d| d.value.clone())
            })?;
            let segments = b
                .segments
                .into_iter()
                .map(|s| Segment {
                    interface: s.interface.value,
                    address: s.v4.value,
                    address6: s.v6.map(|a| a.value),
                })
                .collect();
            Some((
                b.name,
                Balancer {
                    engine: b.engine?,
                    interface,
                    address: b.addrs.v4?.value,
                    address6: b.addrs.v6.map(|a| a.value),
                    segments,
                    vrrp: b.vrrp.map(|v| v.value),
                    separator: b.separator,
                    clusters,
                    vips,
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
            let vips = vips(&served.clusters, ordinals, true, |_, _| vip_device.clone())?;
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

/// The cluster addresses a host holds, in cluster id order, each on the
/// device `device` gives for (address, routed), labelled `<device>:<id>` when
/// `labels` (IPv4 only: the kernel has no IPv6 labels). `None` when a label
/// is too long, which `labels` in `cluster.rs` reported.
fn vips(
    clusters: &[(ClusterId, Name, IpAddr, bool)],
    ordinals: &[usize],
    labels: bool,
    device: impl Fn(IpAddr, bool) -> IfName,
) -> Option<Vec<Vip>> {
    ordinals
        .iter()
        .map(|&c| {
            let (id, cluster, address, routed) = &clusters[c];
            let device = device(*address, *routed);
            let label = if labels && address.is_ipv4() {
                Some(Label::new(&device, *id).ok()?)
            } else {
                None
            };
            Some(Vip {
                cluster: cluster.clone(),
                id: *id,
                address: *address,
                device,
                routed: *routed,
                label,
            })
        })
        .collect()
}

/// The digits of a decimal integer written with a leading zero (`0120`,
/// `-007`), which YAML 1.1 reads as octal.
fn leading_zero_digits(s: &str) -> Option<&str> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    (digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(digits)
}

/// Why an address cannot be a service address, if it cannot.
fn unusable_service_address(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(a) => {
            if a.is_unspecified() {
                Some("unspecified")
            } else if a.octets()[0] == 0 {
                // RFC 1122 3.2.1.3: a source only, never a destination.
                Some("in 0.0.0.0/8, \"this network\", which is never a destination")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_addresses() {
        for bad in [
            "0.0.0.0",
            "0.0.0.181",
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
