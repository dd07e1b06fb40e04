//! How many of a service's flows change backend: for nftables, the exact
//! share of the hash space whose Maglev slot names another backend after the
//! change; for the IPVS engines and Dispatcher, what happens in words.
//!
//! The director picks a slot with `jhash(...) mod N`, which the kernel
//! computes as `reciprocal_scale(hash, N)` = `(hash * N) >> 32`
//! (`net/netfilter/nft_hash.c`): slot `i` of a table of `N` slots takes the
//! hashes from `ceil(i * 2^32 / N)` up to the next slot's start. Two tables
//! of different sizes are compared range by range over the 2^32 hashes,
//! so the figure is exact for a uniform hash.

use std::net::IpAddr;

use crate::engine::nftables;
use crate::model::{Cluster, HashScheduler, Model, Port};

const HASHES: u64 = 1 << 32;

/// `part / whole`; both are at most 2^32, exact in an `f64`.
#[allow(clippy::cast_precision_loss)]
pub fn ratio(part: u64, whole: u64) -> f64 {
    part as f64 / whole as f64
}

/// The first hash that lands in slot `i` of a table of `n` slots.
fn slot_start(i: u64, n: u64) -> u64 {
    (i << 32).div_ceil(n)
}

/// The share of the hash space whose backend differs between two tables
/// (each slot's backend address), both read with the same hash. An empty
/// table forwards nothing: every flow of the other one changes.
pub fn remapped(old: &[IpAddr], new: &[IpAddr]) -> f64 {
    if old.is_empty() || new.is_empty() {
        return if old.is_empty() && new.is_empty() {
            0.0
        } else {
            1.0
        };
    }
    let (no, nn) = (old.len() as u64, new.len() as u64);
    let (mut i, mut j, mut at, mut moved) = (0u64, 0u64, 0u64, 0u64);
    while at < HASHES {
        let (end_i, end_j) = (slot_start(i + 1, no), slot_start(j + 1, nn));
        let end = end_i.min(end_j);
        if old[usize::try_from(i).expect("slot")] != new[usize::try_from(j).expect("slot")] {
            moved += end - at;
        }
        at = end;
        if end == end_i {
            i += 1;
        }
        if end == end_j {
            j += 1;
        }
    }
    ratio(moved, HASHES)
}

/// The expected share of flows that change backend when the hash input
/// changes (`sh` to `flow` or back): a flow's old and new slots are then
/// unrelated, so it stays only when both happen to name the same backend.
pub fn remapped_rehashed(old: &[IpAddr], new: &[IpAddr]) -> f64 {
    if old.is_empty() || new.is_empty() {
        return remapped(old, new);
    }
    let share = |table: &[IpAddr], a: &IpAddr| {
        ratio(
            table.iter().filter(|b| *b == a).count() as u64,
            table.len() as u64,
        )
    };
    let mut backends: Vec<&IpAddr> = old.iter().collect();
    backends.sort_unstable();
    backends.dedup();
    1.0 - backends
        .into_iter()
        .map(|a| share(old, a) * share(new, a))
        .sum::<f64>()
}

/// The Maglev table a director holds for one port of a cluster, as
/// `engine::nftables` builds it (one function builds both).
pub fn table(model: &Model, cluster: &Cluster, port: &Port) -> Vec<IpAddr> {
    let reals: Vec<(IpAddr, u16)> = port
        .backends
        .iter()
        .filter_map(|m| {
            crate::engine::backend_address(model, &m.backend, cluster.address)
                .map(|a| (a, m.weight))
        })
        .collect();
    nftables::lookup_table(&reals)
}

/// The share of an nftables service's flows that change backend.
pub fn nftables_share(
    (old_model, old_cluster, old_port): (&Model, &Cluster, &Port),
    (new_model, new_cluster, new_port): (&Model, &Cluster, &Port),
) -> f64 {
    let old = table(old_model, old_cluster, old_port);
    let new = table(new_model, new_cluster, new_port);
    if old_port.hash_scheduler == new_port.hash_scheduler {
        remapped(&old, &new)
    } else {
        remapped_rehashed(&old, &new)
    }
}

/// What the hash reads, in words.
pub fn hash_input(kind: HashScheduler) -> &'static str {
    match kind {
        HashScheduler::Sh => "client address",
        HashScheduler::Flow => "client address and port",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn a(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }

    #[test]
    fn equal_tables_move_nothing_and_disjoint_ones_everything() {
        let t = vec![a(1), a(2), a(3), a(1), a(2)];
        assert!(remapped(&t, &t).abs() < f64::EPSILON);
        let other = vec![a(9); 7];
        assert!((remapped(&t, &other) - 1.0).abs() < f64::EPSILON);
        assert!((remapped(&t, &[]) - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn one_slot_of_many_is_its_width() {
        let old = vec![a(1); 61];
        let mut new = old.clone();
        new[30] = a(2);
        let width = ratio(slot_start(31, 61) - slot_start(30, 61), HASHES);
        assert!((remapped(&old, &new) - width).abs() < 1e-12);
        assert!((width - 1.0 / 61.0).abs() < 1e-9);
    }

    #[test]
    fn tables_of_different_sizes_compare_by_hash_range() {
        // [x | y] against [x | x | y]: the hashes from 1/2 to 2/3 were y's
        // and are x's, the rest keep their backend.
        let moved = remapped(&[a(1), a(2)], &[a(1), a(1), a(2)]);
        assert!((moved - 1.0 / 6.0).abs() < 1e-9, "{moved}");
    }

    #[test]
    fn a_new_hash_keeps_only_chance_agreements() {
        let t = vec![a(1), a(2)];
        assert!((remapped_rehashed(&t, &t) - 0.5).abs() < 1e-12);
    }
}
