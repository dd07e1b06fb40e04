//! keepalived: `etc/keepalived/keepalived.conf`, one `virtual_server` per
//! service with `lb_kind DR`, its real servers and their health checks, and
//! with `vrrp` the instance that elects which director holds the addresses.

use serde::Serialize;

use super::{Balancing, RealServer, balancer_cidr};
use crate::kind::FileKind;
use crate::model::{Check, IfName, Name, OnFailure, Probe, Protocol, Vip, Vrrp};
use crate::plan::{Context, PlannedFile, Role};

#[derive(Clone, Debug, Serialize)]
pub struct KeepalivedContext {
    pub inventory: String,
    pub host: Name,
    /// Whether keepalived runs programs (checks, tracking, notification):
    /// they then run as root, with keepalived's script security on.
    pub scripts: bool,
    pub vrrp: Option<Box<VrrpContext>>,
    pub services: Vec<KeepalivedService>,
}

/// What every VRRP instance of the balancer shares.
#[derive(Clone, Debug, Serialize)]
pub struct VrrpContext {
    pub interface: IfName,
    pub advert_int: u8,
    pub nopreempt: bool,
    pub preempt_delay: Option<u16>,
    /// The host-only file with the `authentication` block, included.
    pub auth_file: Option<String>,
    pub track_interfaces: Vec<IfName>,
    /// `vrrp_script` blocks: (name, program).
    pub track_scripts: Vec<(String, String)>,
    pub notify_master: Option<String>,
    pub notify_backup: Option<String>,
    pub notify_fault: Option<String>,
    /// `lvs_sync_daemon`: the interface, the instance and the sync id.
    pub sync: Option<(IfName, String, u8)>,
    pub instances: Vec<Instance>,
}

/// One `vrrp_instance`.
#[derive(Clone, Debug, Serialize)]
pub struct Instance {
    pub name: String,
    pub router_id: u8,
    pub priority: u8,
    /// With unicast: this balancer's own address, and its peers'.
    pub unicast_src: Option<String>,
    pub unicast_peers: Vec<String>,
    /// `virtual_ipaddress` lines: one address family per VRRP instance.
    pub addresses: Vec<String>,
    /// `virtual_ipaddress_excluded` lines: the other family.
    pub excluded: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KeepalivedService {
    pub cluster: Name,
    /// `80/tcp`, or `80+443/tcp` for a port group.
    pub shown: String,
    /// A port group's firewall mark: `virtual_server fwmark <mark>`, and
    /// real servers without a port.
    pub mark: Option<u32>,
    pub address: String,
    pub port: u16,
    pub protocol: &'static str,
    pub lb_algo: &'static str,
    /// A scheduler flag, written after `lb_algo` or keepalived ignores it.
    pub flag: Option<&'static str>,
    pub persistence: Option<u32>,
    /// `inhibit_on_failure`: a failed backend keeps weight 0 instead of
    /// leaving the service.
    pub inhibit: bool,
    pub quorum: Option<u32>,
    pub hysteresis: u32,
    /// `sorry_server`: the address, and the port unless the service is a
    /// port group.
    pub sorry: Option<String>,
    /// The checks every real server runs; all must pass.
    pub checks: Vec<Checker>,
    pub reals: Vec<RealServer>,
}

/// One checker block of a real server. Every timing is written, since
/// keepalived's own defaults differ from checker to checker.
#[derive(Clone, Debug, Serialize)]
pub struct Checker {
    /// `TCP_CHECK`, `HTTP_GET`, `SSL_GET`, `UDP_CHECK`, `DNS_CHECK`, `MISC_CHECK`.
    pub block: &'static str,
    pub url: Option<Url>,
    pub virtualhost: Option<String>,
    /// `enable_sni`: send the `virtualhost` as the TLS server name.
    pub sni: bool,
    /// `DNS_CHECK`: the name asked for, type A.
    pub dns_name: Option<String>,
    /// `MISC_CHECK`: the program, which has no connection to time out but a
    /// run time (`misc_timeout`).
    pub misc_path: Option<String>,
    pub connect_port: Option<u16>,
    /// `connect_timeout`, or `misc_timeout` for a program.
    pub timeout: u32,
    pub retry: u32,
    pub delay_before_retry: u32,
    pub delay_loop: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct Url {
    pub path: String,
    pub status: u16,
    pub digest: Option<String>,
    /// A regular expression the body must match: the `expect` text, whose
    /// alphabet holds no regex metacharacter.
    pub regex: Option<String>,
}

/// The checker block of one check. A firewall-mark service's real servers
/// have no port: its checks connect to the group's first unless they say.
fn checker(check: &Check, group_port: Option<u16>) -> Checker {
    let mut c = Checker {
        block: "TCP_CHECK",
        url: None,
        virtualhost: None,
        sni: false,
        dns_name: None,
        misc_path: None,
        connect_port: check.port.or(group_port),
        timeout: check.timing.timeout,
        retry: check.timing.retries,
        delay_before_retry: check.timing.retry_delay,
        delay_loop: check.timing.interval,
    };
    match &check.probe {
        Probe::Tcp => {}
        Probe::Http(http) => {
            c.block = if http.tls { "SSL_GET" } else { "HTTP_GET" };
            c.url = Some(Url {
                path: http.path.as_str().to_owned(),
                status: http.status,
                digest: http.digest.clone(),
                regex: http.expect.as_ref().map(|e| e.as_str().to_owned()),
            });
            c.virtualhost = http.host.as_ref().map(|h| h.as_str().to_owned());
            c.sni = http.tls && http.host.is_some();
        }
        Probe::Udp => c.block = "UDP_CHECK",
        Probe::Dns { name } => {
            c.block = "DNS_CHECK";
            c.dns_name = Some(name.as_str().to_owned());
        }
        Probe::Script { path } => {
            c.block = "MISC_CHECK";
            c.misc_path = Some(path.as_str().to_owned());
        }
    }
    c
}

/// The VRRP instances of a balancer. One, holding every cluster address,
/// unless `active_active`: then one per order in which the peers are listed
/// by the clusters, in the order of each group's first cluster id, with router
/// ids counted up from the configured one, and priorities by position (the
/// first listed 200, then 150, 100, ...), so that each director is MASTER of
/// the clusters that list it first.
fn instances(b: &Balancing, v: &Vrrp) -> Vec<Instance> {
    let balancer = b.balancer;
    // The peers: keepalived balancers of the same instance (router id) that
    // share a cluster with this one; validation made them agree.
    let peers: Vec<&Name> = b
        .model
        .balancers
        .iter()
        .filter(|&(name, other)| {
            name != b.name
                && other
                    .vrrp
                    .as_ref()
                    .is_some_and(|o| o.router_id == v.router_id)
                && other.clusters.iter().any(|c| balancer.clusters.contains(c))
        })
        .map(|(name, _)| name)
        .collect();
    // (order of the pair's balancers, clusters listing them so), by the
    // first cluster id of each group: the vips are in id order.
    let mut groups: Vec<(Vec<&Name>, Vec<&Name>)> = Vec::new();
    // Routed addresses are dsrgen-vips's on lo, no instance's.
    for vip in balancer.vips.iter().filter(|vip| !vip.routed) {
        let order: Vec<&Name> = if v.active_active {
            b.model.clusters[&vip.cluster]
                .balancers
                .iter()
                .filter(|n| *n == b.name || peers.contains(n))
                .collect()
        } else {
            Vec::new()
        };
        match groups.iter_mut().find(|(o, _)| *o == order) {
            Some((_, clusters)) => clusters.push(&vip.cluster),
            None => groups.push((order, vec![&vip.cluster])),
        }
    }
    if groups.is_empty() {
        groups.push((Vec::new(), Vec::new()));
    }
    groups
        .iter()
        .enumerate()
        .map(|(k, (order, clusters))| {
            let router_id = v.router_id + u8::try_from(k).expect("validation bounds the instances");
            let priority = if v.active_active {
                let position = order.iter().position(|n| *n == b.name).expect("listed");
                u8::try_from(200 - 50 * position.min(3)).expect("small")
            } else {
                v.priority
            };
            let vips: Vec<&Vip> = balancer
                .vips
                .iter()
                .filter(|vip| clusters.contains(&&vip.cluster) && !vip.routed)
                .collect();
            let any_ipv4 = vips.iter().any(|vip| vip.address.is_ipv4());
            let (mut addresses, mut excluded) = (Vec::new(), Vec::new());
            for vip in &vips {
                let cidr = balancer_cidr(balancer, vip);
                let line = match &vip.label {
                    Some(label) => format!("{cidr} dev {} label {label}", vip.device),
                    None => format!("{cidr} dev {}", vip.device),
                };
                // keepalived takes one family per instance; the other goes to
                // virtual_ipaddress_excluded.
                if vip.address.is_ipv4() == any_ipv4 {
                    addresses.push(line);
                } else {
                    excluded.push(line);
                }
            }
            let own = |b: &crate::model::Balancer| {
                if any_ipv4 {
                    Some(b.address.addr().to_string())
                } else {
                    b.address6.map(|a| a.addr().to_string())
                }
            };
            Instance {
                name: format!("VI_{router_id}"),
                router_id,
                priority,
                unicast_src: v.unicast.then(|| own(balancer)).flatten(),
                unicast_peers: if v.unicast {
                    peers
                        .iter()
                        .filter_map(|p| own(&b.model.balancers[*p]))
                        .collect()
                } else {
                    Vec::new()
                },
                addresses,
                excluded,
            }
        })
        .collect()
}

pub fn file(b: &Balancing) -> (PlannedFile, Context) {
    let balancer = b.balancer;
    let interface = &balancer.interface;
    let vrrp = balancer.vrrp.as_ref().map(|v| {
        let path = |p: &Option<crate::model::ScriptPath>| p.as_ref().map(|p| p.as_str().to_owned());
        let instances = instances(b, v);
        Box::new(VrrpContext {
            interface: interface.clone(),
            advert_int: v.advert_int,
            nopreempt: !v.preempt,
            preempt_delay: Some(v.preempt_delay).filter(|&d| d > 0),
            auth_file: path(&v.auth_file),
            track_interfaces: v.track_interfaces.clone(),
            track_scripts: v
                .track_scripts
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("dsrgen_track_{}", i + 1), p.as_str().to_owned()))
                .collect(),
            notify_master: path(&v.notify.master),
            notify_backup: path(&v.notify.backup),
            notify_fault: path(&v.notify.fault),
            sync: v
                .sync
                .as_ref()
                .map(|(i, id)| (i.clone(), instances[0].name.clone(), *id)),
            instances,
        })
    });
    // keepalived refuses a virtual_server without a real_server (a port with
    // no backends, which validation warns about): leave it out.
    let services: Vec<KeepalivedService> = b
        .services
        .iter()
        .filter(|s| !s.reals.is_empty())
        .map(|s| {
            let (lb_algo, flag) = s.ipvs_scheduler();
            let mark = s.mark();
            KeepalivedService {
                cluster: s.cluster.clone(),
                shown: s.ports_shown(),
                mark,
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
                inhibit: s.port.on_failure == OnFailure::Drain,
                quorum: s.port.quorum,
                hysteresis: s.port.hysteresis,
                sorry: s.port.sorry.as_ref().and_then(|name| {
                    let address = super::backend_address(b.model, name, s.address)?;
                    Some(match mark {
                        Some(_) => address.to_string(),
                        None => format!("{address} {}", s.port.port),
                    })
                }),
                checks: s
                    .port
                    .health
                    .iter()
                    .map(|c| checker(c, mark.map(|_| s.port.port)))
                    .collect(),
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
            scripts: vrrp.as_ref().is_some_and(|v| {
                !v.track_scripts.is_empty()
                    || v.notify_master.is_some()
                    || v.notify_backup.is_some()
                    || v.notify_fault.is_some()
            }) || services
                .iter()
                .any(|s| s.checks.iter().any(|c| c.misc_path.is_some())),
            vrrp,
            services,
        }),
    )
}
