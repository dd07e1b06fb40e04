//! nftables: `etc/nftables.d/dsrgen.nft`, a netdev table whose ingress chain
//! forwards each service's frames to a backend's MAC, picked by a hash of the
//! flow. Stateless: only hash schedulers.

use serde::Serialize;

use super::Balancing;
use crate::kind::FileKind;
use crate::model::{HashScheduler, IfName, Name};
use crate::plan::{Context, PlannedFile, Role};
use std::net::IpAddr;

/// The hash seed. Fixed, so that every director built from one inventory
/// picks the same backend for a flow.
const SEED: &str = "0x0";

#[derive(Clone, Debug, Serialize)]
pub struct NftablesContext {
    pub inventory: String,
    pub host: Name,
    pub interface: IfName,
    pub seed: &'static str,
    pub rules: Vec<NftablesRule>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NftablesRule {
    pub cluster: Name,
    /// `ip` or `ip6`.
    pub family: &'static str,
    pub address: String,
    pub protocol: &'static str,
    pub port: u16,
    /// The flow key: `ip saddr`, or `ip saddr . tcp sport`.
    pub hash: String,
    /// How many hash slots there are.
    pub modulus: u64,
    /// Each backend with its range of slots, in slot order: weights as ranges
    /// of a modulo map, the way Zevenet's nftlb does it.
    pub slots: Vec<SlotRange>,
}

/// The hash slots `first..=last`, all forwarded to `address`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlotRange {
    pub first: u64,
    pub last: u64,
    pub address: String,
}

pub fn file(b: &Balancing) -> (PlannedFile, Context) {
    let rules = b
        .services
        .iter()
        .filter_map(|s| {
            let slots = weighted_slots(&s.reals);
            let modulus = slots.last()?.last + 1;
            let family = if s.address.is_ipv4() { "ip" } else { "ip6" };
            let protocol = s.protocol.as_str();
            let hash = match s.port.hash_scheduler {
                HashScheduler::Sh => format!("{family} saddr"),
                HashScheduler::Flow => format!("{family} saddr . {protocol} sport"),
            };
            Some(NftablesRule {
                cluster: s.cluster.clone(),
                family,
                address: s.address.to_string(),
                protocol,
                port: s.port.port,
                hash,
                modulus,
                slots,
            })
        })
        .collect();
    (
        PlannedFile::new(
            b.name,
            Role::Balancer,
            FileKind::Nftables,
            "etc/nftables.d/dsrgen.nft",
        ),
        Context::Nftables(NftablesContext {
            inventory: b.inventory.to_owned(),
            host: b.name.clone(),
            interface: b.balancer.interface.clone(),
            seed: SEED,
            rules,
        }),
    )
}

/// Hash slots for weighted backends: each backend gets a range of slots in
/// proportion to its weight. Weights are divided by their greatest common
/// divisor, and scaled down to at most `MAX_SLOTS` slots (a backend with weight
/// keeps one). Backends of weight 0 get none.
fn weighted_slots(reals: &[(IpAddr, u16)]) -> Vec<SlotRange> {
    const MAX_SLOTS: u64 = 256;
    let live: Vec<(IpAddr, u64)> = reals
        .iter()
        .filter(|&&(_, w)| w > 0)
        .map(|&(a, w)| (a, u64::from(w)))
        .collect();
    let divisor = live.iter().fold(0, |g, &(_, w)| gcd(g, w)).max(1);
    let total: u64 = live.iter().map(|&(_, w)| w / divisor).sum();
    let mut next = 0;
    live.iter()
        .map(|&(address, w)| {
            let w = w / divisor;
            let count = if total > MAX_SLOTS {
                (w * MAX_SLOTS / total).max(1)
            } else {
                w
            };
            let range = SlotRange {
                first: next,
                last: next + count - 1,
                address: address.to_string(),
            };
            next += count;
            range
        })
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_become_ranges_of_slots() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let range = |first, last, address: IpAddr| SlotRange {
            first,
            last,
            address: address.to_string(),
        };
        assert_eq!(
            weighted_slots(&[(a, 100), (b, 300), (c, 0)]),
            vec![range(0, 0, a), range(1, 3, b)]
        );
        assert_eq!(
            weighted_slots(&[(a, 1), (b, 1)]),
            vec![range(0, 0, a), range(1, 1, b)]
        );
        // Scaled down to 256 slots, and a backend with weight keeps one.
        let slots = weighted_slots(&[(a, 65535), (b, 1)]);
        assert_eq!(slots, vec![range(0, 254, a), range(255, 255, b)]);
        assert!(weighted_slots(&[(a, 0)]).is_empty());
    }
}
