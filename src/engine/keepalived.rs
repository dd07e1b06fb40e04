//! keepalived: `etc/keepalived/keepalived.conf`, one `virtual_server` per
//! service with `lb_kind DR`, its real servers and their health checks, and
//! with `vrrp` the instance that elects which director holds the addresses.

use serde::Serialize;

use super::{Balancing, RealServer, balancer_cidr};
use crate::kind::FileKind;
use crate::model::{Health, IfName, Name, Protocol};
use crate::plan::{Context, PlannedFile, Role};

/// Seconds a health check waits for a connection. keepalived's own default is
/// 5; a dead backend should leave rotation sooner.
const CONNECT_TIMEOUT: u32 = 3;

/// Seconds between VRRP advertisements: keepalived's default, and the
/// quickest `VRRPv2` allows. A backup takes over after about three missed ones.
const ADVERT_INT: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct KeepalivedContext {
    pub inventory: String,
    pub host: Name,
    pub vrrp: Option<VrrpContext>,
    pub connect_timeout: u32,
    pub services: Vec<KeepalivedService>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VrrpContext {
    pub name: String,
    pub interface: IfName,
    pub router_id: u8,
    pub priority: u8,
    pub advert_int: u32,
    /// `virtual_ipaddress` lines: one address family per VRRP instance.
    pub addresses: Vec<String>,
    /// `virtual_ipaddress_excluded` lines: the other family.
    pub excluded: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KeepalivedService {
    pub cluster: Name,
    pub address: String,
    pub port: u16,
    pub protocol: &'static str,
    pub lb_algo: &'static str,
    /// A scheduler flag, written after `lb_algo` or keepalived ignores it.
    pub flag: Option<&'static str>,
    pub persistence: Option<u32>,
    /// `tcp`, `http`, or none.
    pub check: Option<&'static str>,
    pub path: Option<String>,
    pub status: Option<u16>,
    pub reals: Vec<RealServer>,
}

pub fn file(b: &Balancing) -> (PlannedFile, Context) {
    let balancer = b.balancer;
    let interface = &balancer.interface;
    let vrrp = balancer.vrrp.map(|v| {
        let any_ipv4 = balancer.vips.iter().any(|vip| vip.address.is_ipv4());
        let (mut addresses, mut excluded) = (Vec::new(), Vec::new());
        for vip in &balancer.vips {
            let cidr = balancer_cidr(balancer, vip.address);
            let line = match &vip.label {
                Some(label) => format!("{cidr} dev {interface} label {label}"),
                None => format!("{cidr} dev {interface}"),
            };
            // keepalived takes one family per instance; the other goes to
            // virtual_ipaddress_excluded.
            if vip.address.is_ipv4() == any_ipv4 {
                addresses.push(line);
            } else {
                excluded.push(line);
            }
        }
        VrrpContext {
            name: format!("VI_{}", v.router_id),
            interface: interface.clone(),
            router_id: v.router_id,
            priority: v.priority,
            advert_int: ADVERT_INT,
            addresses,
            excluded,
        }
    });
    let services = b
        .services
        .iter()
        .map(|s| {
            let (lb_algo, flag) = s.ipvs_scheduler();
            let (check, path, status) = match &s.port.health {
                Health::None => (None, None, None),
                Health::Tcp => (Some("tcp"), None, None),
                Health::Http { path, status } => {
                    (Some("http"), Some(path.as_str().to_owned()), Some(*status))
                }
            };
            KeepalivedService {
                cluster: s.cluster.clone(),
                address: s.address.to_string(),
                port: s.port.port,
                protocol: match s.protocol {
                    Protocol::Tcp => "TCP",
                    Protocol::Udp => "UDP",
                    Protocol::Sctp => "SCTP",
                },
                lb_algo,
                flag,
                persistence: Some(s.port.persistence).filter(|&p| p > 0),
                check,
                path,
                status,
                reals: s.real_servers(),
            }
        })
        .collect();
    (
        PlannedFile::new(
            b.name,
            Role::Balancer,
            FileKind::Keepalived,
            "etc/keepalived/keepalived.conf",
        ),
        Context::Keepalived(KeepalivedContext {
            inventory: b.inventory.to_owned(),
            host: b.name.clone(),
            vrrp,
            connect_timeout: CONNECT_TIMEOUT,
            services,
        }),
    )
}
