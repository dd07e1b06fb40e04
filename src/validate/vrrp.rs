//! The rules of VRRP peers: keepalived balancers of one instance must serve
//! the same clusters and speak alike, and instances on one segment must not
//! share a router id.

use super::CheckedBalancer;
use super::cluster::ClusterPass;

impl ClusterPass<'_, '_> {
    /// VRRP peers elect one holder for the addresses of their instance: peers
    /// that share a cluster must run the same instance (router id) over the
    /// same cluster addresses.
    pub(super) fn vrrp_peers(&mut self) {
        let peers: Vec<usize> = (0..self.balancers.len())
            .filter(|&i| self.balancers[i].vrrp.is_some())
            .collect();
        for (n, &a) in peers.iter().enumerate() {
            for &b in &peers[n + 1..] {
                let (ca, cb) = (&self.served.balancers[a], &self.served.balancers[b]);
                let (ba, bb) = (&self.balancers[a], &self.balancers[b]);
                let (va, vb) = (
                    ba.vrrp.as_ref().expect("peer"),
                    bb.vrrp.as_ref().expect("peer"),
                );
                // Unrelated instances: `vrrp_router_ids` keeps their router
                // ids apart on a segment.
                if !ca.iter().any(|c| cb.contains(c)) {
                    continue;
                }
                if va.value.router_id != vb.value.router_id {
                    self.v
                        .error(
                            format!(
                                "balancer `{}`: VRRP peer `{}` shares a cluster but uses router_id {}, not {}; both would hold the addresses",
                                bb.name, ba.name, va.value.router_id, vb.value.router_id
                            ),
                            vb.span,
                        )
                        .notes
                        .push((format!("`{}`'s vrrp is here", ba.name), va.span));
                } else if ca.len() != cb.len() || ca.iter().any(|c| !cb.contains(c)) {
                    let mut only: Vec<&str> = ca
                        .iter()
                        .filter(|c| !cb.contains(c))
                        .chain(cb.iter().filter(|c| !ca.contains(c)))
                        .map(|&c| self.served.clusters[c].1.as_str())
                        .collect();
                    only.sort_unstable();
                    self.v
                        .error(
                            format!(
                                "balancer `{}`: VRRP peers `{}` and `{}` must serve the same clusters, but only one serves {}",
                                bb.name,
                                ba.name,
                                bb.name,
                                only.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                            ),
                            vb.span,
                        )
                        .notes
                        .push((format!("`{}`'s vrrp is here", ba.name), va.span));
                } else {
                    self.vrrp_peers_agree(a, b);
                }
            }
        }
    }

    /// Peers of one instance must speak alike: an advertisement at another
    /// interval, by another route or without the password is not heard, and
    /// both would hold the addresses.
    fn vrrp_peers_agree(&mut self, a: usize, b: usize) {
        let (ba, bb) = (&self.balancers[a], &self.balancers[b]);
        let (va, vb) = (
            ba.vrrp.as_ref().expect("peer"),
            bb.vrrp.as_ref().expect("peer"),
        );
        let show = |v: &crate::model::Vrrp| {
            [
                ("advert_int", v.advert_int.to_string()),
                ("unicast", v.unicast.to_string()),
                (
                    "auth_file",
                    if v.auth_file.is_some() {
                        "given"
                    } else {
                        "not given"
                    }
                    .to_owned(),
                ),
                ("active_active", v.active_active.to_string()),
                (
                    "sync_id",
                    v.sync
                        .as_ref()
                        .map_or_else(|| "no sync".to_owned(), |(_, id)| id.to_string()),
                ),
            ]
        };
        for ((what, mine), (_, theirs)) in show(&vb.value).into_iter().zip(show(&va.value)) {
            if mine != theirs {
                self.v
                    .error(
                        format!(
                            "balancer `{}`: VRRP peers `{}` and `{}` must agree on `{what}` ({theirs} and {mine}); they would not hear each other",
                            bb.name, ba.name, bb.name
                        ),
                        vb.span,
                    )
                    .notes
                    .push((format!("`{}`'s vrrp is here", ba.name), va.span));
            }
        }
    }

    /// The VRRP peers of balancer `a`: VRRP balancers of its router id that
    /// share a cluster with it.
    fn vrrp_peers_of(&self, a: usize) -> Vec<usize> {
        let Some(va) = &self.balancers[a].vrrp else {
            return Vec::new();
        };
        (0..self.balancers.len())
            .filter(|&b| {
                b != a
                    && self.balancers[b]
                        .vrrp
                        .as_ref()
                        .is_some_and(|vb| vb.value.router_id == va.value.router_id)
                    && self.served.balancers[a]
                        .iter()
                        .any(|c| self.served.balancers[b].contains(c))
            })
            .collect()
    }

    /// The router ids a VRRP balancer's instances use: its own, and with
    /// `active_active` one more per further order in which its clusters list
    /// it and its peers (as `engine/keepalived.rs` lays them out).
    pub(super) fn vrrp_router_ids(&mut self) {
        let mut used: Vec<(usize, std::ops::RangeInclusive<u16>)> = Vec::new();
        for a in 0..self.balancers.len() {
            let Some(v) = &self.balancers[a].vrrp else {
                continue;
            };
            // keepalived warns of an instance without an address ("No VIP
            // specified"), and routed addresses are held on lo, not by VRRP.
            let served = &self.served.balancers[a];
            if !served.is_empty() && served.iter().all(|&c| self.served.clusters[c].3) {
                self.v
                    .error(
                        format!(
                            "balancer `{}`: every cluster it serves is routed, so its VRRP instance would hold no address",
                            self.balancers[a].name
                        ),
                        v.span,
                    )
                    .help = Some(
                    "remove `vrrp`: dsrgen-vips then holds the routed addresses on lo, and the routers choose the director"
                        .to_owned(),
                );
            }
            let first = u16::from(v.value.router_id);
            let mut count = 1;
            if v.value.active_active {
                let mut pair = self.vrrp_peers_of(a);
                pair.push(a);
                let mut orders: Vec<Vec<usize>> = Vec::new();
                // Routed addresses are held on lo, in no instance.
                for &c in self.served.balancers[a]
                    .iter()
                    .filter(|&&c| !self.served.clusters[c].3)
                {
                    let order: Vec<usize> = self.served.orders[c]
                        .iter()
                        .copied()
                        .filter(|i| pair.contains(i))
                        .collect();
                    if !orders.contains(&order) {
                        orders.push(order);
                    }
                }
                count = u16::try_from(orders.len().max(1)).unwrap_or(u16::MAX);
            }
            let last = first.saturating_add(count - 1);
            if last > 255 {
                let b = &self.balancers[a];
                self.v.error(
                    format!(
                        "balancer `{}`: `active_active` makes {count} VRRP instances, router ids {first} to {last}; VRRP's go up to 255",
                        b.name
                    ),
                    v.span,
                );
            }
            used.push((a, first..=last));
        }
        // Two instances on one segment (the subnets of the balancers'
        // interfaces) may not share a router id, unless they are the same
        // instance on two peers.
        for (n, (a, ids_a)) in used.iter().enumerate() {
            let peers = self.vrrp_peers_of(*a);
            for (b, ids_b) in &used[n + 1..] {
                if peers.contains(b) {
                    continue;
                }
                let (ba, bb) = (&self.balancers[*a], &self.balancers[*b]);
                // VRRP (RFC 5798) tells instances on a segment apart by router
                // id alone.
                let shared = ids_a.clone().find(|id| ids_b.contains(id));
                if one_segment(ba, bb)
                    && let Some(id) = shared
                {
                    let (va, vb) = (
                        ba.vrrp.as_ref().expect("vrrp"),
                        bb.vrrp.as_ref().expect("vrrp"),
                    );
                    self.v
                        .error(
                            format!(
                                "balancer `{}`: its VRRP instance and unrelated balancer `{}`'s both use router id {id} on one segment; VRRP tells instances apart by it",
                                bb.name, ba.name
                            ),
                            vb.span,
                        )
                        .notes
                        .push((format!("`{}`'s vrrp is here", ba.name), va.span));
                }
            }
        }
    }
}

/// Whether two balancers' IPv4 subnets meet: then they share a segment.
fn one_segment(a: &CheckedBalancer, b: &CheckedBalancer) -> bool {
    match (&a.addrs.v4, &b.addrs.v4) {
        (Some(a), Some(b)) => {
            a.value.trunc().contains(&b.value.addr()) || b.value.trunc().contains(&a.value.addr())
        }
        _ => false,
    }
}
