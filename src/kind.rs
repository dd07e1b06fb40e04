//! Every kind of file dsrgen writes, declared once: its template, mode, the
//! command that makes a host pick it up, and where that command runs among a
//! host's reloads. A new kind is a new variant; the `match` in
//! [`FileKind::declaration`] then asks for all four, and `include_str!` for
//! the template file itself.

/// Declares the enum and its `ALL` from one list, so that a new kind is in
/// `ALL` (and so in the renderer and the reload order) by construction.
macro_rules! file_kinds {
    ($($kind:ident),+ $(,)?) => {
        /// The kinds of file, one template each.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum FileKind { $($kind),+ }

        impl FileKind {
            pub const ALL: &'static [FileKind] = &[$(FileKind::$kind),+];
        }
    };
}

file_kinds!(
    Sysctl,
    Script,
    Service,
    Network,
    Netdev,
    Marks,
    Keepalived,
    Ipvsadm,
    IpvsadmScript,
    Nftables,
    Dispatcher,
);

/// What every file of one kind shares.
#[derive(Clone, Copy, Debug)]
pub struct Declaration {
    /// The template's name: `templates/<name>.j2`.
    pub template: &'static str,
    /// The template's text, embedded in the binary.
    pub source: &'static str,
    pub mode: u32,
    /// The command that makes a host pick the file up, as the manifest says it.
    pub reload: &'static str,
    /// Where the reload runs among a host's reloads, lowest first.
    pub order: Order,
}

/// The stages of a host's reloads. ARP settings come before the addresses they
/// protect, units before what they start, addresses before the balancer
/// tables that forward to them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Order {
    ArpSettings,
    Units,
    Addresses,
    Networkd,
    /// Firewall marks, before the IPVS services that match them.
    Marks,
    Balancer,
}

/// How an ipvsadm balancer picks its rules up: a reconcile of the live table,
/// never `ipvsadm-restore` (which flushes every service first).
const IPVSADM_APPLY: &str = "/usr/local/sbin/dsrgen-ipvsadm apply";

impl FileKind {
    pub const fn declaration(self) -> Declaration {
        const fn declare(
            template: &'static str,
            source: &'static str,
            mode: u32,
            reload: &'static str,
            order: Order,
        ) -> Declaration {
            Declaration {
                template,
                source,
                mode,
                reload,
                order,
            }
        }
        match self {
            FileKind::Sysctl => declare(
                "sysctl.conf",
                include_str!("../templates/sysctl.conf.j2"),
                0o644,
                "sysctl --system",
                Order::ArpSettings,
            ),
            FileKind::Script => declare(
                "dsrgen-vips.sh",
                include_str!("../templates/dsrgen-vips.sh.j2"),
                0o755,
                "/usr/local/sbin/dsrgen-vips up",
                Order::Addresses,
            ),
            FileKind::Service => declare(
                "dsrgen-vips.service",
                include_str!("../templates/dsrgen-vips.service.j2"),
                0o644,
                "systemctl daemon-reload",
                Order::Units,
            ),
            FileKind::Network => declare(
                "vips.network",
                include_str!("../templates/vips.network.j2"),
                0o644,
                "networkctl reload",
                Order::Networkd,
            ),
            FileKind::Netdev => declare(
                "vips.netdev",
                include_str!("../templates/vips.netdev.j2"),
                0o644,
                "networkctl reload",
                Order::Networkd,
            ),
            FileKind::Marks => declare(
                "dsrgen-marks.nft",
                include_str!("../templates/dsrgen-marks.nft.j2"),
                0o644,
                "nft -f /etc/nftables.d/dsrgen-marks.nft",
                Order::Marks,
            ),
            FileKind::Keepalived => declare(
                "keepalived.conf",
                include_str!("../templates/keepalived.conf.j2"),
                0o644,
                "systemctl reload keepalived",
                Order::Balancer,
            ),
            FileKind::Ipvsadm => declare(
                "ipvsadm.rules",
                include_str!("../templates/ipvsadm.rules.j2"),
                0o644,
                IPVSADM_APPLY,
                Order::Balancer,
            ),
            // Applies the rules without a flush; it is the reload of the
            // rules and of itself.
            FileKind::IpvsadmScript => declare(
                "dsrgen-ipvsadm.sh",
                include_str!("../templates/dsrgen-ipvsadm.sh.j2"),
                0o755,
                IPVSADM_APPLY,
                Order::Balancer,
            ),
            FileKind::Dispatcher => declare(
                "dispatcher.cfg",
                include_str!("../templates/dispatcher.cfg.j2"),
                0o644,
                "dscontrol file newload dsrgen.cfg",
                Order::Balancer,
            ),
            FileKind::Nftables => declare(
                "dsrgen.nft",
                include_str!("../templates/dsrgen.nft.j2"),
                0o644,
                "nft -f /etc/nftables.d/dsrgen.nft",
                Order::Balancer,
            ),
        }
    }

    /// The command that removes what an earlier version of the file held and
    /// this one does not, run once the balancers no longer forward to it
    /// (`reload` only ever adds).
    pub const fn prune(self) -> Option<&'static str> {
        match self {
            FileKind::Script => Some("/usr/local/sbin/dsrgen-vips prune"),
            FileKind::Sysctl
            | FileKind::Service
            | FileKind::Network
            | FileKind::Netdev
            | FileKind::Marks
            | FileKind::Keepalived
            | FileKind::Ipvsadm
            | FileKind::IpvsadmScript
            | FileKind::Nftables
            | FileKind::Dispatcher => None,
        }
    }

    pub fn template(self) -> &'static str {
        self.declaration().template
    }

    pub fn mode(self) -> u32 {
        self.declaration().mode
    }

    pub fn reload(self) -> &'static str {
        self.declaration().reload
    }
}

/// Every reload command a manifest can name, each once, in the order a host
/// runs them: by stage, then as [`FileKind::ALL`] lists the kinds. The Ansible
/// role and the Puppet module carry this list; a test holds them to it.
pub fn reload_order() -> Vec<&'static str> {
    let mut kinds = FileKind::ALL.to_vec();
    kinds.sort_by_key(|k| k.declaration().order);
    let mut order: Vec<&'static str> = Vec::new();
    for kind in kinds {
        let reload = kind.reload();
        if !order.contains(&reload) {
            order.push(reload);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once() {
        let mut kinds = FileKind::ALL.to_vec();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), FileKind::ALL.len());
        let mut templates: Vec<&str> = kinds.iter().map(|k| k.template()).collect();
        templates.sort_unstable();
        templates.dedup();
        assert_eq!(templates.len(), kinds.len(), "one template a kind");
    }

    #[test]
    fn reloads_run_arp_settings_first_and_balancer_tables_last() {
        assert_eq!(
            reload_order(),
            [
                "sysctl --system",
                "systemctl daemon-reload",
                "/usr/local/sbin/dsrgen-vips up",
                "networkctl reload",
                "nft -f /etc/nftables.d/dsrgen-marks.nft",
                "systemctl reload keepalived",
                "/usr/local/sbin/dsrgen-ipvsadm apply",
                "nft -f /etc/nftables.d/dsrgen.nft",
                "dscontrol file newload dsrgen.cfg",
            ]
        );
    }
}
