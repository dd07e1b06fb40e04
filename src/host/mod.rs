//! What a host holds (a device, cluster addresses on it, and the ARP settings
//! that keep the host from answering for them), and the outputs that put it in
//! place: one module per output. Backends and the balancers whose addresses
//! dsrgen's script holds are described by the same [`Holding`], so every
//! output serves both.

pub mod networkd;
pub mod script;
pub mod sysctl;

use std::net::IpAddr;

use serde::Serialize;

use crate::engine::balancer_cidr;
use crate::model::{ArpAnnounce, ArpIgnore, Backend, Balancer, IfName, Model, Name, Output, Vip};
use crate::plan::{Context, PlannedFile, Role};

/// Everything the outputs of one host are made from.
#[derive(Clone, Debug)]
pub struct Holding<'m> {
    pub host: &'m Name,
    pub role: Role,
    pub inventory: &'m str,
    /// The device that holds the addresses.
    pub device: &'m IfName,
    /// Whether dsrgen creates the device (a dummy) rather than finding it.
    pub dummy: bool,
    /// Whether the device is the host's to bring up: a backend's lo or dummy
    /// device is; a balancer's interface belongs to its network setup.
    pub owns_device: bool,
    /// The comment at the top of the script: what it holds and why.
    pub purpose: Vec<String>,
    pub addresses: Vec<HeldAddress>,
    /// ARP settings for the host's interface, when it holds IPv4 addresses
    /// that it must not answer ARP for.
    pub arp: Option<Arp<'m>>,
}

/// `arp_ignore` and `arp_announce` for `all` and for the host's interfaces.
#[derive(Clone, Debug)]
pub struct Arp<'m> {
    /// The host's interfaces (a balancer on several segments has several).
    pub interfaces: Vec<&'m IfName>,
    /// The device that holds the addresses kept quiet (scope host).
    pub device: &'m IfName,
    pub ignore: ArpIgnore,
    pub announce: ArpAnnounce,
}

impl Arp<'_> {
    /// Each setting with its value, in the order they are written.
    fn settings(&self) -> [(&'static str, &'static str); 2] {
        [
            ("arp_ignore", self.ignore.as_str()),
            ("arp_announce", self.announce.as_str()),
        ]
    }
}

/// An address the script or networkd puts on a device.
#[derive(Clone, Debug, Serialize)]
pub struct HeldAddress {
    /// `-4` or `-6`, as `ip` takes it.
    pub family: &'static str,
    pub cidr: String,
    pub scope: &'static str,
    pub label: Option<String>,
    pub cluster: Name,
    /// The device that holds it.
    pub device: IfName,
}

impl<'m> Holding<'m> {
    /// A backend: its cluster addresses on lo or a dummy device, each alone
    /// (/32, /128) and, for IPv4, with scope host.
    pub fn backend(
        model: &'m Model,
        host: &'m Name,
        backend: &'m Backend,
        inventory: &'m str,
    ) -> Self {
        let device = &backend.vip_device;
        let addresses = backend
            .vips
            .iter()
            .map(|vip| HeldAddress {
                family: family(vip.address),
                cidr: host_cidr(vip.address),
                // arp_ignore=3 hides only scope-host addresses; IPv6 has no ARP
                // and networkd takes Scope= for IPv4 only.
                scope: if vip.address.is_ipv4() {
                    "host"
                } else {
                    "global"
                },
                label: vip.label.as_ref().map(|l| l.as_str().to_owned()),
                cluster: vip.cluster.clone(),
                device: device.clone(),
            })
            .collect();
        // IPv6 needs no ARP settings: Linux answers neighbour solicitations
        // only for addresses on the receiving interface (net/ipv6/ndisc.c).
        let arp = backend.has_ipv4_vip().then(|| Arp {
            interfaces: vec![&backend.interface],
            device,
            ignore: model.defaults.arp_ignore,
            announce: model.defaults.arp_announce,
        });
        Self {
            host,
            role: Role::Backend,
            inventory,
            device,
            dummy: !device.is_loopback(),
            owns_device: true,
            purpose: vec![
                format!("The cluster addresses {host} serves, held on {device}. IPv4 ones carry"),
                "scope host, so that the ARP settings below keep this host from".to_owned(),
                "answering for them.".to_owned(),
            ],
            addresses,
            arp,
        }
    }

    /// A balancer that holds cluster addresses itself: on the interface of
    /// each address's segment, next to its own address, so that it and no
    /// backend answers ARP; and a routed address on `lo`, alone, with scope
    /// host and the ARP settings a backend gets, so that nothing answers ARP
    /// for it. `all` says whether the script holds every address (its
    /// holder is the script) or the routed ones only (VRRP holds the rest).
    pub fn balancer(
        model: &'m Model,
        host: &'m Name,
        balancer: &'m Balancer,
        inventory: &'m str,
        all: bool,
    ) -> Self {
        let interface = &balancer.interface;
        let held: Vec<&Vip> = balancer
            .vips
            .iter()
            .filter(|vip| all || vip.routed)
            .collect();
        let addresses = held
            .iter()
            .map(|vip| HeldAddress {
                family: family(vip.address),
                cidr: balancer_cidr(balancer, vip),
                scope: if vip.routed && vip.address.is_ipv4() {
                    "host"
                } else {
                    "global"
                },
                label: vip.label.as_ref().map(|l| l.as_str().to_owned()),
                cluster: vip.cluster.clone(),
                device: vip.device.clone(),
            })
            .collect();
        let routed = held.iter().find(|vip| vip.routed && vip.address.is_ipv4());
        let arp = routed.map(|vip| Arp {
            interfaces: balancer.segments.iter().map(|s| &s.interface).collect(),
            device: &vip.device,
            ignore: model.defaults.arp_ignore,
            announce: model.defaults.arp_announce,
        });
        let purpose = if held.iter().all(|vip| !vip.routed) {
            vec![
                format!("The cluster addresses {host} answers ARP for, held on {interface}"),
                "next to its own address. Backends hold them on their loopback and".to_owned(),
                "never answer ARP for them.".to_owned(),
            ]
        } else {
            vec![
                format!("The cluster addresses {host} holds itself: those routed to it on lo,"),
                "alone and with scope host, so that the ARP settings below keep every".to_owned(),
                "host of the segment from answering for them; the others, if any, on".to_owned(),
                "the interface of their segment, where it answers ARP for them.".to_owned(),
            ]
        };
        // One device for all (lo for routed ones alone), else the first
        // interface; the script then names each address's device.
        let device = match held.first() {
            Some(first) if held.iter().all(|vip| vip.device == first.device) => &first.device,
            _ => interface,
        };
        Self {
            host,
            role: Role::Balancer,
            inventory,
            device,
            dummy: false,
            owns_device: false,
            purpose,
            addresses,
            arp,
        }
    }

    /// The files of `outputs` for this host.
    pub fn files(&self, outputs: impl IntoIterator<Item = Output>) -> Vec<(PlannedFile, Context)> {
        let mut files = Vec::new();
        for output in outputs {
            match output {
                Output::Sysctl => files.extend(sysctl::file(self)),
                Output::Script => files.extend(script::files(self)),
                Output::Networkd => files.extend(networkd::files(self)),
            }
        }
        files
    }

    fn file(&self, kind: crate::kind::FileKind, path: impl Into<String>) -> PlannedFile {
        PlannedFile::new(self.host, self.role, kind, path)
    }
}

fn family(address: IpAddr) -> &'static str {
    if address.is_ipv4() { "-4" } else { "-6" }
}

/// A single address as a host route: `/32` or `/128`.
fn host_cidr(address: IpAddr) -> String {
    let bits = if address.is_ipv4() { 32 } else { 128 };
    format!("{address}/{bits}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_addresses_are_host_routes() {
        assert_eq!(host_cidr("192.0.2.1".parse().unwrap()), "192.0.2.1/32");
        assert_eq!(host_cidr("2001:db8::1".parse().unwrap()), "2001:db8::1/128");
    }
}
