//! IBM's Dispatcher: `dscontrol` commands that configure its executor, clusters,
//! ports, servers with their weights, the manager and one advisor per checked
//! port. It has no scheduler: its manager spreads load by the weights.

use serde::Serialize;

use super::{Balancing, RealServer};
use crate::kind::FileKind;
use crate::model::{Check, Name, Probe};
use crate::plan::{Context, PlannedFile, Role};

/// Why a Dispatcher port takes no scheduler.
pub const WEIGHTS: &str = "Dispatcher's manager spreads load by the servers' weights";

/// The advisor that runs a check, if Dispatcher has one.
pub fn advisor(probe: &Probe) -> Option<&'static str> {
    match probe {
        Probe::Tcp => Some("connect"),
        Probe::Http(http) if http.tls => Some("https"),
        Probe::Http(_) => Some("http"),
        Probe::Dns { .. } => Some("dns"),
        Probe::Udp | Probe::Script { .. } => None,
    }
}

/// What an advisor leaves out of a check: advisors take a cluster and port
/// only, and probe the service's own port.
pub fn caveat(check: &Check) -> Option<String> {
    if let Probe::Http(http) = &check.probe {
        if http.path.as_str() != "/" || http.status != 200 {
            return Some(format!(
                "dispatcher's {} advisor is started without a path or status; it does not check `{} -> {}`",
                if http.tls { "https" } else { "http" },
                http.path.as_str(),
                http.status
            ));
        }
        if http.host.is_some() || http.expect.is_some() || http.digest.is_some() {
            return Some(
                "dispatcher's advisors take no `host`, `expect` or `digest`; this check does not test them"
                    .to_owned(),
            );
        }
    }
    if let Probe::Dns { name } = &check.probe {
        return Some(format!(
            "dispatcher's dns advisor asks its own query, not for `{}`",
            name.as_str()
        ));
    }
    check.port.map(|port| {
        format!("dispatcher's advisors probe the service's own port; `port: {port}` has no effect")
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct DispatcherContext {
    pub inventory: String,
    pub host: Name,
    /// The balancer's own (non-forwarding) address.
    pub nfa: String,
    pub sep: &'static str,
    pub clusters: Vec<DispatcherCluster>,
    pub advisors: Vec<Advisor>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DispatcherCluster {
    pub cluster: Name,
    pub address: String,
    /// `<interface> <netmask>` for `executor configure`, empty for IPv6.
    pub configure: String,
    pub ports: Vec<DispatcherPort>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DispatcherPort {
    pub port: u16,
    /// Seconds a client sticks to its server (the port's persistence).
    pub stickytime: Option<u32>,
    pub servers: Vec<RealServer>,
}

/// One advisor on one port, with the timing of its check.
#[derive(Clone, Debug, Serialize)]
pub struct Advisor {
    pub kind: &'static str,
    pub target: String,
    pub interval: u32,
    /// Both the connect and the receive timeout.
    pub timeout: u32,
    pub retries: u32,
}

pub fn file(b: &Balancing) -> (PlannedFile, Context) {
    let balancer = b.balancer;
    let sep = balancer.separator.as_str();
    let mut clusters: Vec<DispatcherCluster> = Vec::new();
    let mut advisors = Vec::new();
    for s in &b.services {
        let address = s.address.to_string();
        if clusters.last().is_none_or(|c| c.address != address) {
            let configure = if s.address.is_ipv4() {
                // On the segment whose subnet holds the address (the first
                // one when none does).
                let segment = balancer
                    .segment_of(s.address)
                    .unwrap_or(&balancer.segments[0]);
                format!("{} {}", segment.interface, segment.address.netmask())
            } else {
                String::new()
            };
            clusters.push(DispatcherCluster {
                cluster: s.cluster.clone(),
                address: address.clone(),
                configure,
                ports: Vec::new(),
            });
        }
        let cluster = clusters.last_mut().expect("just pushed");
        cluster.ports.push(DispatcherPort {
            port: s.port.port,
            stickytime: Some(s.port.persistence).filter(|&p| p > 0),
            servers: s.real_servers(),
        });
        // One advisor of a kind per port: Dispatcher starts each once.
        let first = advisors.len();
        for check in &s.port.health {
            let kind = advisor(&check.probe).expect("validation refused the others");
            if advisors[first..].iter().any(|a: &Advisor| a.kind == kind) {
                continue;
            }
            advisors.push(Advisor {
                kind,
                target: format!("{address}{sep}{}", s.port.port),
                interval: check.timing.interval,
                timeout: check.timing.timeout,
                retries: check.timing.retries,
            });
        }
    }
    (
        PlannedFile::new(
            b.name,
            Role::Balancer,
            FileKind::Dispatcher,
            "opt/ibm/edge/lb/servers/configurations/dispatcher/dsrgen.cfg",
        ),
        Context::Dispatcher(DispatcherContext {
            inventory: b.inventory.to_owned(),
            host: b.name.clone(),
            nfa: balancer.address.addr().to_string(),
            sep,
            clusters,
            advisors,
        }),
    )
}
