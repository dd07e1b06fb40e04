//! `etc/sysctl.d/90-dsrgen.conf`: the ARP settings of a host that holds IPv4
//! cluster addresses it must never answer ARP for.

use serde::Serialize;

use super::Holding;
use crate::kind::FileKind;
use crate::model::{IfName, Name};
use crate::plan::{Context, PlannedFile};

#[derive(Clone, Debug, Serialize)]
pub struct SysctlContext {
    pub inventory: String,
    pub host: Name,
    pub device: IfName,
    pub settings: Vec<SysctlSetting>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SysctlSetting {
    /// In sysctl.d syntax: dotted, or slashed when the interface has a dot.
    pub key: String,
    pub value: &'static str,
}

/// The fragment, when the host has ARP settings to make.
pub fn file(h: &Holding) -> Option<(PlannedFile, Context)> {
    let arp = h.arp.as_ref()?;
    // The kernel uses the larger of conf/all and the receiving interface.
    let settings = std::iter::once("all")
        .chain(arp.interfaces.iter().map(|i| i.as_str()))
        .flat_map(|conf| {
            arp.settings()
                .into_iter()
                .map(move |(setting, value)| SysctlSetting {
                    key: sysctl_key(conf, setting),
                    value,
                })
        })
        .collect();
    Some((
        // After systemd's 50-default.conf, which sets rp_filter on `all`.
        h.file(FileKind::Sysctl, "etc/sysctl.d/90-dsrgen.conf"),
        Context::Sysctl(SysctlContext {
            inventory: h.inventory.to_owned(),
            host: h.host.clone(),
            device: arp.device.clone(),
            settings,
        }),
    ))
}

/// A sysctl.d key for `net.ipv4.conf.<conf>.<setting>`. sysctl.d(5): when the
/// first separator is a slash, dots are literal, so a VLAN interface such as
/// `eth0.100` must be written `net/ipv4/conf/eth0.100/arp_ignore`.
fn sysctl_key(conf: &str, setting: &str) -> String {
    if conf.contains('.') {
        format!("net/ipv4/conf/{conf}/{setting}")
    } else {
        format!("net.ipv4.conf.{conf}.{setting}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_interfaces_use_the_slash_form() {
        assert_eq!(
            sysctl_key("all", "arp_ignore"),
            "net.ipv4.conf.all.arp_ignore"
        );
        assert_eq!(
            sysctl_key("eth0", "arp_ignore"),
            "net.ipv4.conf.eth0.arp_ignore"
        );
        assert_eq!(
            sysctl_key("eth0.100", "arp_announce"),
            "net/ipv4/conf/eth0.100/arp_announce"
        );
    }
}
