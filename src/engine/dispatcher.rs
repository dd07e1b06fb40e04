//! IBM's Dispatcher: `dscontrol` commands that configure its executor, clusters,
//! ports, servers with their weights, the manager and one advisor per checked
//! port. It has no scheduler: its manager spreads load by the weights.

use serde::Serialize;

use super::{Balancing, RealServer};
use crate::kind::FileKind;
use crate::model::{Health, Name};
use crate::plan::{Context, PlannedFile, Role};

/// Why a Dispatcher port takes no scheduler.
pub const WEIGHTS: &str = "Dispatcher's manager spreads load by the servers' weights";

/// What `advisor start http` leaves out: it takes a cluster and port only.
pub const HTTP_ADVISOR: &str = "dispatcher's http advisor is started without a path or status";

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
    pub servers: Vec<RealServer>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Advisor {
    pub kind: &'static str,
    pub target: String,
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
                format!("{} {}", balancer.interface, balancer.address.netmask())
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
            servers: s.real_servers(),
        });
        let kind = match s.port.health {
            Health::None => None,
            Health::Tcp => Some("connect"),
            Health::Http { .. } => Some("http"),
        };
        if let Some(kind) = kind {
            advisors.push(Advisor {
                kind,
                target: format!("{address}{sep}{}", s.port.port),
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
