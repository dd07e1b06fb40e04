//! Firewall marks for port groups (`ports: [80, 443]`) on IPVS balancers: an
//! nftables table marks a group's packets before IPVS sees them, so that one
//! firewall-mark service (`-f <mark>`) serves every port of the group and its
//! persistence keeps a client on one backend across them.

use serde::Serialize;

use super::Balancing;
use crate::kind::FileKind;
use crate::model::{Name, Protocol};
use crate::plan::{Context, PlannedFile, Role};

#[derive(Clone, Debug, Serialize)]
pub struct MarksContext {
    pub inventory: String,
    pub host: Name,
    pub rules: Vec<MarkRule>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MarkRule {
    pub cluster: Name,
    /// `80+443/tcp`.
    pub shown: String,
    /// `ip` or `ip6`.
    pub family: &'static str,
    pub address: String,
    pub protocol: &'static str,
    /// `80, 443`.
    pub ports: String,
    pub mark: u32,
}

/// The marks file, when the balancer serves a port group.
pub fn file(b: &Balancing) -> Option<(PlannedFile, Context)> {
    let rules: Vec<MarkRule> = b
        .services
        .iter()
        .filter_map(|s| {
            let mark = s.mark()?;
            let ports: Vec<String> = s.port.group.iter().map(u16::to_string).collect();
            Some(MarkRule {
                cluster: s.cluster.clone(),
                shown: s.ports_shown(),
                family: if s.address.is_ipv4() { "ip" } else { "ip6" },
                address: s.address.to_string(),
                protocol: match s.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                    Protocol::Sctp => "sctp",
                },
                ports: ports.join(", "),
                mark,
            })
        })
        .collect();
    if rules.is_empty() {
        return None;
    }
    Some((
        PlannedFile::new(
            b.name,
            Role::Balancer,
            FileKind::Marks,
            "etc/nftables.d/dsrgen-marks.nft",
        ),
        Context::Marks(MarksContext {
            inventory: b.inventory.to_owned(),
            host: b.name.clone(),
            rules,
        }),
    ))
}
