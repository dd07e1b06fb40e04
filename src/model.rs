//! The validated model: typed addresses, resolved defaults, names whose alphabet
//! has been checked. Nothing here does I/O, and nothing after validation sees an
//! address as a string.

use crate::diagnostic::shown;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

/// A host or cluster name. It becomes a folder name and appears in generated
/// files, so its alphabet is small: `[a-z0-9][a-z0-9._-]*`, at most 63 bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub const MAX_LEN: usize = 63;

    pub fn parse(s: &str) -> Result<Self, String> {
        let Some(first) = s.chars().next() else {
            return Err("a name cannot be empty".to_owned());
        };
        if let Some(bad) = s
            .chars()
            .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)))
        {
            return Err(format!(
                "name `{}` contains {}; names use lower-case letters, digits, `.`, `_` and `-`",
                shown(s),
                describe_char(bad)
            ));
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(format!(
                "name `{}` starts with `{}`; names start with a lower-case letter or a digit",
                shown(s),
                shown(&first.to_string())
            ));
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!(
                "name `{}` is {} characters long; at most {} are allowed",
                shown(s),
                s.len(),
                Self::MAX_LEN
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A network interface or device name that Linux accepts and that is safe to
/// write into a shell script, a sysctl key and a systemd unit unquoted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct IfName(String);

impl IfName {
    /// IFNAMSIZ is 16 bytes including the terminating NUL.
    pub const MAX_LEN: usize = 15;

    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("an interface name cannot be empty".to_owned());
        }
        if s == "." || s == ".." {
            return Err(format!("`{s}` is not a valid interface name"));
        }
        // /proc/sys/net/ipv4/conf/{all,default} are the kernel's own settings:
        // a device by either name would make the sysctl keys ambiguous.
        if s == "all" || s == "default" {
            return Err(format!(
                "`{s}` cannot be an interface name: net.ipv4.conf.{s} names the kernel's own settings, not a device's"
            ));
        }
        // Linux itself refuses `/`, `:` (the label separator) and white space
        // (net/core/dev.c, dev_valid_name).
        if let Some(bad) = s
            .chars()
            .find(|&c| c == '/' || c == ':' || c.is_whitespace())
        {
            return Err(format!(
                "interface name `{}` contains {}, which Linux refuses",
                shown(s),
                describe_char(bad)
            ));
        }
        if let Some(bad) = s
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
        {
            return Err(format!(
                "interface name `{}` contains {}; dsrgen accepts ASCII letters, digits, `.`, `_` and `-`",
                shown(s),
                describe_char(bad)
            ));
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!(
                "interface name `{}` is {} bytes long; Linux allows at most {} (IFNAMSIZ)",
                shown(s),
                s.len(),
                Self::MAX_LEN
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_loopback(&self) -> bool {
        self.0 == "lo"
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IPv4 address label, `<device>:<cluster id>`. iproute2 requires a label to
/// start with `<device>:`, and the kernel caps it at 15 bytes like a device name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Label(String);

impl Label {
    pub fn new(device: &IfName, id: ClusterId) -> Result<Self, String> {
        let label = format!("{device}:{}", id.0);
        if label.len() > IfName::MAX_LEN {
            return Err(label);
        }
        Ok(Self(label))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A cluster's number, 1..=65535; it makes the labels `lo:<id>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(pub u16);

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An HTTP health-check path: it starts with `/` and uses only URI characters
/// that need no quoting in any balancer's configuration language.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct HttpPath(String);

impl HttpPath {
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!(
                "health check path `{}` must start with `/`",
                shown(s)
            ));
        }
        // keepalived reads `!` (like `#`) as the start of a comment anywhere
        // in a line: `/status!v2` would be checked as `/status`.
        if s.contains('!') {
            return Err(format!(
                "health check path `{}` contains `!`, which keepalived reads as the start of a comment; percent-encode it as `%21`",
                shown(s)
            ));
        }
        if let Some(bad) = s
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || "-._~/%?=&:@+,;*()".contains(c)))
        {
            return Err(format!(
                "health check path `{}` contains {}; percent-encode it",
                shown(s),
                describe_char(bad)
            ));
        }
        if s.len() > 1024 {
            return Err("health check path is longer than 1024 bytes".to_owned());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn describe_char(c: char) -> String {
    if c == ' ' {
        "a space".to_owned()
    } else if c.is_whitespace() || c.is_control() {
        format!("the character {}", c.escape_unicode())
    } else if c.is_ascii() {
        format!("`{c}`")
    } else {
        format!("`{c}` ({})", c.escape_unicode())
    }
}

macro_rules! keyword_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword_enum!(
    /// The program that does the balancing.
    Engine {
        Keepalived = "keepalived",
        Ipvsadm = "ipvsadm",
        Dispatcher = "dispatcher",
        Nftables = "nftables",
    }
);

keyword_enum!(
    Protocol {
        Tcp = "tcp",
        Udp = "udp",
        Sctp = "sctp",
    }
);

keyword_enum!(
    /// IPVS schedulers (ipvsadm(8)), plus `flow`: `sh` hashing the client's port too.
    Scheduler {
        Rr = "rr",
        Wrr = "wrr",
        Lc = "lc",
        Wlc = "wlc",
        Lblc = "lblc",
        Lblcr = "lblcr",
        Dh = "dh",
        Sh = "sh",
        Sed = "sed",
        Nq = "nq",
        Fo = "fo",
        Ovf = "ovf",
        Mh = "mh",
        Flow = "flow",
    }
);

impl Scheduler {
    /// The hash schedulers a stateless engine (nftables) can run.
    pub fn as_hash(self) -> Option<HashScheduler> {
        match self {
            Scheduler::Sh => Some(HashScheduler::Sh),
            Scheduler::Flow => Some(HashScheduler::Flow),
            _ => None,
        }
    }
}

keyword_enum!(
    /// Stateless schedulers: hash of the client address, or of address and port.
    HashScheduler {
        Sh = "sh",
        Flow = "flow",
    }
);

keyword_enum!(
    /// Backend artifacts that `defaults.outputs` can select.
    Output {
        Sysctl = "sysctl",
        Script = "script",
        Networkd = "networkd",
    }
);

keyword_enum!(
    /// Dispatcher's command dialects: `cluster@port@server` or `cluster:port:server`.
    Separator {
        At = "@",
        Colon = ":",
    }
);

keyword_enum!(
    ArpIgnore {
        /// Reply only for addresses on the incoming interface (LVS, kube-proxy).
        ReplyOnIncoming = "1",
        /// Never reply for scope-host addresses (IBM's recipe).
        IgnoreScopeHost = "3",
    }
);

keyword_enum!(
    ArpAnnounce {
        /// Avoid source addresses outside the target's subnet.
        AvoidForeign = "1",
        /// Always use the best local address.
        Best = "2",
    }
);

mod health;

pub use health::{Check, DnsName, Expect, HttpProbe, OnFailure, Probe, ScriptPath, Timing};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub arp_ignore: ArpIgnore,
    pub arp_announce: ArpAnnounce,
    pub outputs: BTreeSet<Output>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vrrp {
    pub router_id: u8,
    pub priority: u8,
    /// Seconds between advertisements.
    pub advert_int: u8,
    /// One instance per order in which the peers are listed by the clusters,
    /// each director MASTER of the clusters that list it first.
    pub active_active: bool,
    /// Whether a higher priority takes the addresses back (after
    /// `preempt_delay` seconds); keepalived's `nopreempt` when not.
    pub preempt: bool,
    pub preempt_delay: u16,
    /// A file on the host, never in the inventory or the tree, holding the
    /// instance's `authentication` block: keepalived includes it.
    pub auth_file: Option<ScriptPath>,
    /// Advertise to the peers' own addresses instead of multicast.
    pub unicast: bool,
    /// Interfaces whose failure puts the instance in FAULT.
    pub track_interfaces: Vec<IfName>,
    /// Programs run every 2 s; two failures in a row put the instance in
    /// FAULT, two successes take it out.
    pub track_scripts: Vec<ScriptPath>,
    pub notify: Notify,
    /// IPVS connection sync between the peers: the interface its multicast
    /// goes out of, and the sync id that keeps pairs apart.
    pub sync: Option<(IfName, u8)>,
}

/// Programs keepalived runs when the instance changes state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    pub master: Option<ScriptPath>,
    pub backup: Option<ScriptPath>,
    pub fault: Option<ScriptPath>,
}

/// One layer-2 segment a balancer is on: its interface there and its own
/// address(es) with the segment's prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub interface: IfName,
    pub address: Ipv4Net,
    pub address6: Option<Ipv6Net>,
}

impl Segment {
    /// Whether `address` is inside this segment's subnet of its family.
    pub fn contains(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(a) => self.address.trunc().contains(&a),
            IpAddr::V6(a) => self.address6.is_some_and(|n| n.trunc().contains(&a)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Balancer {
    pub engine: Engine,
    /// The first segment's interface and addresses: VRRP advertises there,
    /// and Dispatcher's `executor set nfa` names it.
    pub interface: IfName,
    pub address: Ipv4Net,
    pub address6: Option<Ipv6Net>,
    /// Every segment, the first one first: one for `interface`, several for
    /// `interfaces`.
    pub segments: Vec<Segment>,
    pub vrrp: Option<Vrrp>,
    /// Dispatcher only; `@` elsewhere, where it is never used.
    pub separator: Separator,
    /// The clusters this balancer serves, in name order.
    pub clusters: Vec<Name>,
    /// Their addresses, in cluster id order, labelled `<device>:<id>` where
    /// the balancer's holder labels them (see `engine::Holder`): on the
    /// interface of the segment whose subnet holds them (the first one's if
    /// none does), or on `lo` when routed.
    pub vips: Vec<Vip>,
}

impl Balancer {
    /// The segment whose subnet holds `address`, if any.
    pub fn segment_of(&self, address: IpAddr) -> Option<&Segment> {
        self.segments.iter().find(|s| s.contains(address))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub interface: IfName,
    pub address: Ipv4Net,
    pub address6: Option<Ipv6Net>,
    /// `lo`, or a dummy device that dsrgen creates.
    pub vip_device: IfName,
    /// The cluster addresses this backend holds on `vip_device`, by cluster id.
    pub vips: Vec<Vip>,
}

impl Backend {
    pub fn has_ipv4_vip(&self) -> bool {
        self.vips.iter().any(|v| v.address.is_ipv4())
    }
}

/// One cluster address held by a host: on a backend's VIP device, always as
/// /32 or /128 with scope host; on a balancer's interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vip {
    pub cluster: Name,
    pub id: ClusterId,
    pub address: IpAddr,
    /// The device that holds it.
    pub device: IfName,
    /// Routed to the host rather than answered for by ARP: a balancer holds
    /// it on `lo` as a single address with scope host, like a backend.
    pub routed: bool,
    /// `<device>:<id>`; IPv4 only, as the kernel has no IPv6 labels.
    pub label: Option<Label>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub id: ClusterId,
    pub address: IpAddr,
    /// The address is routed to the balancers (no host answers ARP for it).
    pub routed: bool,
    pub balancers: Vec<Name>,
    pub ports: Vec<Port>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// The port, or the first of a group.
    pub port: u16,
    /// Every port of a group (`ports: [80, 443]`): one service over all of
    /// them, a firewall-mark service on IPVS. Empty for a single port.
    pub group: Vec<u16>,
    pub protocol: Protocol,
    /// The scheduler IPVS engines use: the port's own or `defaults.scheduler`.
    pub ipvs_scheduler: Scheduler,
    /// The scheduler nftables uses: the port's own if it hashes, else `flow`.
    pub hash_scheduler: HashScheduler,
    pub persistence: u32,
    /// Every check a backend must pass; none when empty.
    pub health: Vec<Check>,
    pub on_failure: OnFailure,
    /// The least total weight of healthy backends for the service to be up.
    pub quorum: Option<u32>,
    /// How far the healthy weight may swing around `quorum` before the
    /// service goes up or down: a flap dampener.
    pub hysteresis: u32,
    /// The backend that takes the service's traffic when too few others are
    /// healthy; it holds the cluster address like any backend.
    pub sorry: Option<Name>,
    pub backends: Vec<Member>,
}

/// A backend serving a port, with its weight (0 = drained).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub backend: Name,
    pub weight: u16,
}

/// A valid inventory. Maps are sorted by name, so every walk is deterministic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    pub defaults: Defaults,
    pub balancers: BTreeMap<Name, Balancer>,
    pub backends: BTreeMap<Name, Backend>,
    pub clusters: BTreeMap<Name, Cluster>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(Name::parse("web-1.dc_2").is_ok());
        assert!(Name::parse("0web").is_ok());
        assert!(Name::parse("").is_err());
        assert!(Name::parse("Web").is_err());
        assert!(Name::parse("-web").is_err());
        assert!(Name::parse(".").is_err());
        assert!(Name::parse("..").is_err());
        assert!(Name::parse("a/b").is_err());
        assert!(Name::parse(&"a".repeat(63)).is_ok());
        assert!(Name::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(IfName::parse("eth0.100").is_ok());
        assert!(IfName::parse("enp0s31f6").is_ok());
        assert!(IfName::parse(&"e".repeat(15)).is_ok());
        assert!(IfName::parse(&"e".repeat(16)).is_err());
        for bad in [
            "", ".", "..", "all", "default", "eth0:1", "a/b", "a b", "a\n", "é0", "a$b",
        ] {
            assert!(IfName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels_are_at_most_fifteen_bytes() {
        let dev = IfName::parse("enp0s31f6").unwrap();
        assert_eq!(
            Label::new(&dev, ClusterId(12345)).unwrap().as_str(),
            "enp0s31f6:12345"
        );
        let dev = IfName::parse("enp0s31f6x").unwrap();
        assert_eq!(
            Label::new(&dev, ClusterId(12345)).unwrap_err(),
            "enp0s31f6x:12345"
        );
    }

    #[test]
    fn http_paths_are_checked() {
        assert!(HttpPath::parse("/healthz?full=1").is_ok());
        assert!(HttpPath::parse("healthz").is_err());
        assert!(HttpPath::parse("/a b").is_err());
        assert!(HttpPath::parse("/a\"b").is_err());
        assert!(HttpPath::parse("/status!v2").is_err());
        assert!(HttpPath::parse("/status%21v2").is_ok());
    }
}
