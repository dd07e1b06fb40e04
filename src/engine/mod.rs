//! Every question about a balancer engine, answered here once as an exhaustive
//! `match`: which schedulers it runs, the weights it takes, whether it checks
//! health, what it balances, who holds the cluster addresses. Validation and
//! plan both ask here, so they cannot disagree, and a new engine makes the
//! compiler name each answer it owes. Each engine's own file (its template
//! context and what goes into it) lives in `engine/<engine>.rs`.

pub mod dispatcher;
pub mod fwmark;
pub mod ipvsadm;
pub mod keepalived;
pub mod nftables;

use std::net::IpAddr;

use serde::Serialize;

use crate::model::{
    Balancer, Check, ClusterId, Engine, Model, Name, Port, Probe, Protocol, Scheduler, Vip,
};
use crate::plan::{Context, PlannedFile};

/// How an engine picks a backend for a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduling {
    /// Every IPVS scheduler of ipvsadm(8), and `flow`.
    Ipvs,
    /// A stateless hash of the flow only: `sh` or `flow`. A per-packet or
    /// connection-counting scheduler would break TCP or needs state.
    Hash,
    /// No scheduler: load follows the servers' weights. `why` says who sets them.
    Weights { why: &'static str },
}

/// Who puts a balancer's cluster addresses on its interface, so that exactly
/// one host of the segment answers ARP for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// keepalived's VRRP instance: the peers elect one holder.
    Vrrp,
    /// The engine itself (Dispatcher's `executor configure`), without a label.
    Engine,
    /// dsrgen's `dsrgen-vips` script, with the label `<interface>:<id>`.
    Script,
}

impl Holder {
    /// Whether IPv4 cluster addresses carry the label `<interface>:<id>`.
    pub fn labels(self) -> bool {
        match self {
            Holder::Vrrp | Holder::Script => true,
            Holder::Engine => false,
        }
    }
}

impl Engine {
    pub fn scheduling(self) -> Scheduling {
        match self {
            Engine::Keepalived | Engine::Ipvsadm => Scheduling::Ipvs,
            Engine::Nftables => Scheduling::Hash,
            Engine::Dispatcher => Scheduling::Weights {
                why: dispatcher::WEIGHTS,
            },
        }
    }

    /// The largest weight a server may have. Dispatcher's manager works in
    /// percentages; IPVS and our nftables maps take 16 bits.
    pub fn max_weight(self) -> u16 {
        match self {
            Engine::Dispatcher => 100,
            Engine::Keepalived | Engine::Ipvsadm | Engine::Nftables => u16::MAX,
        }
    }

    /// Whether the engine runs the port's health check.
    pub fn checks_health(self) -> bool {
        match self {
            Engine::Keepalived | Engine::Dispatcher => true,
            Engine::Ipvsadm | Engine::Nftables => false,
        }
    }

    /// Whether the engine can run a check of this kind.
    pub fn runs(self, probe: &Probe) -> bool {
        match self {
            Engine::Keepalived => true,
            Engine::Dispatcher => dispatcher::advisor(probe).is_some(),
            Engine::Ipvsadm | Engine::Nftables => false,
        }
    }

    /// What the engine leaves out of a check it runs, if anything, in words
    /// for a warning.
    pub fn check_caveat(self, check: &Check) -> Option<String> {
        match self {
            Engine::Keepalived | Engine::Ipvsadm | Engine::Nftables => None,
            Engine::Dispatcher => dispatcher::caveat(check),
        }
    }

    /// Whether `on_failure` and `quorum` take effect: the engine decides
    /// itself what a failed server gets, or checks nothing.
    pub fn honours_failure_policy(self) -> bool {
        match self {
            Engine::Keepalived => true,
            Engine::Dispatcher | Engine::Ipvsadm | Engine::Nftables => false,
        }
    }

    pub fn balances(self, protocol: Protocol) -> bool {
        match self {
            Engine::Keepalived | Engine::Ipvsadm | Engine::Nftables => true,
            Engine::Dispatcher => protocol != Protocol::Sctp,
        }
    }

    /// Whether several ports can be one service (`ports: [80, 443]`):
    /// IPVS does it with a firewall mark.
    pub fn serves_groups(self) -> bool {
        match self {
            Engine::Keepalived | Engine::Ipvsadm => true,
            Engine::Dispatcher | Engine::Nftables => false,
        }
    }

    /// Whether one port number may be two services, one per protocol.
    /// Dispatcher keys a port by its number alone.
    pub fn tells_protocols_apart(self) -> bool {
        match self {
            Engine::Keepalived | Engine::Ipvsadm | Engine::Nftables => true,
            Engine::Dispatcher => false,
        }
    }

    /// Whether a balancer of this engine takes a `vrrp` section.
    pub fn takes_vrrp(self) -> bool {
        match self {
            Engine::Keepalived => true,
            Engine::Ipvsadm | Engine::Dispatcher | Engine::Nftables => false,
        }
    }

    /// Whether a balancer of this engine takes a `dispatcher` section.
    pub fn takes_dispatcher_settings(self) -> bool {
        match self {
            Engine::Dispatcher => true,
            Engine::Keepalived | Engine::Ipvsadm | Engine::Nftables => false,
        }
    }

    /// Who holds the cluster addresses of a balancer of this engine, with or
    /// without a `vrrp` section.
    pub fn holder(self, vrrp: bool) -> Holder {
        match self {
            Engine::Keepalived if vrrp => Holder::Vrrp,
            Engine::Dispatcher => Holder::Engine,
            Engine::Keepalived | Engine::Ipvsadm | Engine::Nftables => Holder::Script,
        }
    }
}

impl Engine {
    /// Whether a balancer of this engine can hold a routed cluster address
    /// on its loopback (dsrgen's script does, beside VRRP or for the
    /// script's holders); Dispatcher configures addresses on its interface.
    pub fn holds_routed(self) -> bool {
        match self {
            Engine::Keepalived | Engine::Ipvsadm | Engine::Nftables => true,
            Engine::Dispatcher => false,
        }
    }
}

impl Balancer {
    pub fn holder(&self) -> Holder {
        self.engine.holder(self.vrrp.is_some())
    }
}

/// What an engine's file is made from: the balancer and its services.
#[derive(Debug)]
pub struct Balancing<'m> {
    pub model: &'m Model,
    pub name: &'m Name,
    pub balancer: &'m Balancer,
    pub inventory: &'m str,
    pub services: Vec<Service<'m>>,
}

/// The balancer's table, configuration or ruleset (with ipvsadm, and the
/// script that applies it), and the firewall marks its port groups need.
pub fn files(
    model: &Model,
    name: &Name,
    balancer: &Balancer,
    inventory: &str,
) -> Vec<(PlannedFile, Context)> {
    let b = Balancing {
        model,
        name,
        balancer,
        inventory,
        services: services(model, balancer),
    };
    let mut files = match balancer.engine {
        Engine::Keepalived => vec![keepalived::file(&b)],
        Engine::Ipvsadm => ipvsadm::files(&b),
        Engine::Dispatcher => vec![dispatcher::file(&b)],
        Engine::Nftables => vec![nftables::file(&b)],
    };
    files.extend(fwmark::file(&b));
    files
}

/// One (cluster, protocol, port) a balancer serves, with its real servers in
/// address order.
#[derive(Debug)]
pub struct Service<'m> {
    pub cluster: &'m Name,
    pub id: ClusterId,
    pub address: IpAddr,
    pub protocol: Protocol,
    pub port: &'m Port,
    /// (address, weight), sorted by address.
    pub reals: Vec<(IpAddr, u16)>,
}

impl Service<'_> {
    /// The firewall mark of a port group: the cluster id and the group's
    /// first port, so that it is stable and unique on every balancer.
    pub fn mark(&self) -> Option<u32> {
        (!self.port.group.is_empty())
            .then(|| (u32::from(self.id.0) << 16) | u32::from(self.port.port))
    }

    /// `80/tcp`, or `80+443/tcp` for a group, as comments name a service.
    pub fn ports_shown(&self) -> String {
        let ports = if self.port.group.is_empty() {
            self.port.port.to_string()
        } else {
            let ports: Vec<String> = self.port.group.iter().map(u16::to_string).collect();
            ports.join("+")
        };
        format!("{ports}/{}", self.protocol)
    }

    /// The real servers as keepalived and Dispatcher list them.
    pub fn real_servers(&self) -> Vec<RealServer> {
        self.reals
            .iter()
            .map(|&(address, weight)| RealServer {
                address: address.to_string(),
                weight,
            })
            .collect()
    }

    /// The IPVS scheduler and its flag: `flow` is `sh` hashing the client's
    /// port too (`sh-port`).
    pub fn ipvs_scheduler(&self) -> (&'static str, Option<&'static str>) {
        match self.port.ipvs_scheduler {
            Scheduler::Flow => ("sh", Some("sh-port")),
            other => (other.as_str(), None),
        }
    }
}

/// The services of a balancer in ipvsadm's canonical order: IPv4 before IPv6,
/// then protocol number, address and port (libipvs, `ipvs_cmp_services`).
fn services<'m>(model: &'m Model, balancer: &'m Balancer) -> Vec<Service<'m>> {
    let mut rows = Vec::new();
    for name in &balancer.clusters {
        let cluster = &model.clusters[name];
        for port in &cluster.ports {
            let mut reals: Vec<(IpAddr, u16)> = port
                .backends
                .iter()
                .filter_map(|m| {
                    let address = backend_address(model, &m.backend, cluster.address)?;
                    Some((address, m.weight))
                })
                .collect();
            reals.sort_unstable();
            rows.push(Service {
                cluster: name,
                id: cluster.id,
                address: cluster.address,
                protocol: port.protocol,
                port,
                reals,
            });
        }
    }
    // Firewall-mark services after the others, by mark.
    rows.sort_by_key(|r| {
        (
            r.mark(),
            r.address.is_ipv6(),
            protocol_number(r.protocol),
            r.address,
            r.port.port,
        )
    });
    rows
}

fn protocol_number(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// A backend's own address of the cluster address's family.
pub fn backend_address(model: &Model, backend: &Name, cluster: IpAddr) -> Option<IpAddr> {
    let b = &model.backends[backend];
    if cluster.is_ipv4() {
        Some(IpAddr::V4(b.address.addr()))
    } else {
        Some(IpAddr::V6(b.address6?.addr()))
    }
}

/// The address a balancer holds for a cluster: on the interface of the
/// segment whose subnet holds it, with the subnet's prefix (as any secondary
/// address); else, and on `lo` when routed, as a single address.
pub fn balancer_cidr(balancer: &Balancer, vip: &Vip) -> String {
    let address = vip.address;
    let segment = balancer.segment_of(address).filter(|_| !vip.routed);
    let prefix = match (address, segment) {
        (IpAddr::V4(_), Some(s)) => s.address.prefix_len(),
        (IpAddr::V6(_), Some(s)) => s.address6.expect("contains checked").prefix_len(),
        (IpAddr::V4(_), None) => 32,
        (IpAddr::V6(_), None) => 128,
    };
    format!("{address}/{prefix}")
}

/// A real server with its weight, as keepalived and Dispatcher list them.
#[derive(Clone, Debug, Serialize)]
pub struct RealServer {
    pub address: String,
    pub weight: u16,
}

/// `192.0.2.10:80`, or `[2001:db8::10]:80`.
fn endpoint(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}
