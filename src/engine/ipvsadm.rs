//! ipvsadm: `etc/ipvsadm.rules` in the exact line format of `ipvsadm-save -n`,
//! services and real servers in its canonical order, and
//! `usr/local/sbin/dsrgen-ipvsadm`, which applies them by reconciling the
//! live table (never a flush).

use serde::Serialize;

use super::{Balancing, endpoint};
use crate::kind::FileKind;
use crate::model::Protocol;
use crate::plan::{Context, PlannedFile, Role};

#[derive(Clone, Debug, Serialize)]
pub struct IpvsadmContext {
    pub services: Vec<IpvsadmService>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IpvsadmService {
    /// `-t 192.0.2.10:80`, `-u [2001:db8::10]:53`, `--sctp-service ...`, or
    /// for a port group `-f <mark>` (`-f <mark> -6` for IPv6).
    pub service: String,
    pub scheduler: &'static str,
    pub persistence: Option<u32>,
    pub flags: Option<&'static str>,
    pub reals: Vec<IpvsadmReal>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IpvsadmReal {
    pub endpoint: String,
    pub weight: u16,
}

/// What the apply script names: where it came from and whose it is.
#[derive(Clone, Debug, Serialize)]
pub struct IpvsadmScriptContext {
    pub inventory: String,
    pub host: String,
}

/// The rules, and the script that applies them.
pub fn files(b: &Balancing) -> Vec<(PlannedFile, Context)> {
    vec![
        rules(b),
        (
            PlannedFile::new(
                b.name,
                Role::Balancer,
                FileKind::IpvsadmScript,
                "usr/local/sbin/dsrgen-ipvsadm",
            ),
            Context::IpvsadmScript(IpvsadmScriptContext {
                inventory: b.inventory.to_owned(),
                host: b.name.to_string(),
            }),
        ),
    ]
}

fn rules(b: &Balancing) -> (PlannedFile, Context) {
    let services = b
        .services
        .iter()
        .map(|s| {
            let (scheduler, flags) = s.ipvs_scheduler();
            let service = match s.mark() {
                Some(mark) if s.address.is_ipv6() => format!("-f {mark} -6"),
                Some(mark) => format!("-f {mark}"),
                None => {
                    let flag = match s.protocol {
                        Protocol::Tcp => "-t",
                        Protocol::Udp => "-u",
                        Protocol::Sctp => "--sctp-service",
                    };
                    format!("{flag} {}", endpoint(s.address, s.port.port))
                }
            };
            // A firewall-mark service's real servers have no port.
            let real_port = if s.mark().is_some() { 0 } else { s.port.port };
            IpvsadmService {
                service,
                scheduler,
                // ipvsadm's bare -p means 360 s in the code and 300 in the
                // manual: the number is always written.
                persistence: Some(s.port.persistence).filter(|&p| p > 0),
                flags,
                reals: s
                    .reals
                    .iter()
                    .map(|&(address, weight)| IpvsadmReal {
                        endpoint: endpoint(address, real_port),
                        weight,
                    })
                    .collect(),
            }
        })
        .collect();
    (
        PlannedFile::new(
            b.name,
            Role::Balancer,
            FileKind::Ipvsadm,
            "etc/ipvsadm.rules",
        ),
        Context::Ipvsadm(IpvsadmContext { services }),
    )
}
