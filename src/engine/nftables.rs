//! nftables: `etc/nftables.d/dsrgen.nft`, a netdev table whose ingress chain
//! forwards each service's frames to a backend's MAC. A service is found with
//! one map lookup on (address, protocol, port); a new flow's backend comes
//! from the service's Maglev table, computed here; a flow seen within a
//! timeout stays pinned to its backend across reloads (or, with
//! `persistence`, every flow of a client). Stateless otherwise: only hash
//! schedulers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;

use super::{Balancing, Service, protocol_number};
use crate::kind::FileKind;
use crate::model::{HashScheduler, IfName, Name};
use crate::plan::{Context, PlannedFile, Role};

/// The Maglev hash seed. Fixed, so that every director built from one
/// inventory picks the same backend for a new flow.
const SEED: &str = "0x0";
/// The seed of the flow and client pins' hash, apart from the table's.
const PIN_SEED: &str = "0x1";

/// How long a flow stays pinned after its last packet, and how many pins the
/// table holds. A full map pins nothing more: new flows then follow the
/// Maglev table alone.
const FLOW_TIMEOUT: &str = "10m";
const PIN_MAP_SIZE: u32 = 262_144;

/// Maglev table sizes (primes, as the permutation fill needs), about 1.4x
/// apart. A service takes the smallest one with `ENTRIES_PER_BACKEND`
/// entries per real server (drained ones too), the largest if none has. Table entries cost
/// `nft -f` time and memory: the L benchmark's director (1,281 services of 5
/// to 50 backends, 136,025 table entries at 3 per backend) loads in 1.2 s and
/// 251 MB here (1.6 s over itself), at 4 per backend in 1.4 s (2.1 s) and 310 MB, at
/// 8 in 4 s and 615 MB, over the 2 s and 500 MB it must stay under. Fewer
/// entries per backend move more flows that are not pinned when a backend
/// leaves: 1/N plus up to 18 points of the table at 3 per backend (the table
/// test prints the share for every N).
pub const TABLE_SIZES: [u32; 11] = [61, 89, 127, 181, 251, 359, 509, 719, 1021, 1447, 2039];
pub const ENTRIES_PER_BACKEND: u32 = 3;

#[derive(Clone, Debug, Serialize)]
pub struct NftablesContext {
    pub inventory: String,
    pub host: Name,
    pub interface: IfName,
    /// Where the ingress chain hooks: `device "<if>"`, or `devices = { ... }`
    /// on a balancer on several segments.
    pub ingress: String,
    /// A balancer on several segments: each segment's backends, which leave
    /// by its interface. Empty on one segment.
    pub segments: Vec<NftSegment>,
    pub seed: &'static str,
    pub pin_seed: &'static str,
    pub flow_timeout: &'static str,
    pub pin_map_size: u32,
    /// The timeouts of the client pin maps, `persistence` in seconds.
    pub persistence: Vec<u32>,
    /// The dispatch chains, each shared by the services of one kind.
    pub chains: Vec<Chain>,
    pub services: Vec<NftService>,
    /// Backend id -> address, per family.
    pub backends4: Vec<(u32, String)>,
    pub backends6: Vec<(u32, String)>,
}

/// A chain that forwards a service's frames, or the ICMP errors about its
/// flows, to a backend: for every service of one family, hash, table size
/// and persistence.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Chain {
    pub name: String,
    /// `ip` or `ip6`.
    pub family: &'static str,
    /// `4` or `6`: the suffix of the family's maps.
    pub v: u8,
    /// An ICMP error chain: its keys are read from the header it quotes.
    pub icmp: bool,
    /// The service's key, typed as the family's `sid`/`isid` map takes it.
    pub service: String,
    /// What the Maglev hash reads: the client's address, and port for `flow`.
    pub hash: String,
    pub modulus: u32,
    /// The pin map, `flows` or `persist_<seconds>`, and what its hash reads.
    pub pin_map: String,
    pub pin: String,
    /// What sends the frame to the backend whose id is in the mark: `fwd` by
    /// the balancer's one interface, or on several segments a jump to
    /// `out4`/`out6`, which picks the interface of the backend's segment.
    pub forward: String,
}

/// The backends a balancer on several segments reaches by one interface.
#[derive(Clone, Debug, Serialize)]
pub struct NftSegment {
    pub interface: IfName,
    /// The sets of its backend ids, `seg4_<n>` and `seg6_<n>`.
    pub set4: String,
    pub set6: String,
    pub backends4: Vec<u32>,
    pub backends6: Vec<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NftService {
    pub cluster: Name,
    /// The index of the service's Maglev table in the `maglev` map.
    pub sid: u32,
    pub v: u8,
    pub address: String,
    pub protocol: &'static str,
    pub protocol_number: u8,
    pub port: u16,
    pub chain: String,
    pub icmp_chain: String,
    /// The ids of the live backends.
    pub live: Vec<u32>,
    /// The number of slots of the service's Maglev table.
    pub slots: usize,
    /// The table's elements of the `maglev` map, `sid . slot : backend id`,
    /// joined by `, `. Formatted here rather than in the template: the
    /// tables are most of the file (2039 slots for a large service), and a
    /// template loop over them was most of the time rendering took.
    pub maglev: String,
}

/// The header fields one chain reads, as nft expressions: from the frame
/// itself, or from the IP header an ICMP error quotes (the backend's reply:
/// its source is the service, its destination the client).
struct Fields {
    service: String,
    client: String,
    client_port: &'static str,
    vip: &'static str,
    protocol: &'static str,
    port: &'static str,
}

fn fields(v6: bool, icmp: bool) -> Fields {
    let (family, vip) = if v6 {
        ("ip6", "ip6 daddr")
    } else {
        ("ip", "ip daddr")
    };
    // Quoted header offsets (bits from the ICMP header): IPv4 after 8 bytes,
    // options not expected (RFC 792 quotes a plain header); IPv6 after 8,
    // without extension headers (RFC 4443).
    let (client, client_port, protocol, port) = match (icmp, v6) {
        (false, _) => (
            format!("{family} saddr"),
            "th sport",
            "meta l4proto",
            "th dport",
        ),
        (true, false) => (
            "@th,192,32".to_owned(),
            "@th,240,16",
            "@th,136,8",
            "@th,224,16",
        ),
        (true, true) => (
            "@th,256,128".to_owned(),
            "@th,400,16",
            "@th,112,8",
            "@th,384,16",
        ),
    };
    Fields {
        service: format!("{vip} . {protocol} . {port}"),
        client,
        client_port,
        vip,
        protocol,
        port,
    }
}

/// The statement that forwards a frame of family `v` to the backend whose id
/// is in the mark, by `interface`.
fn fwd(v6: bool, interface: &IfName) -> String {
    let (family, v) = if v6 { ("ip6", 6) } else { ("ip", 4) };
    format!("fwd {family} to meta mark map @be{v} device \"{interface}\"")
}

impl Chain {
    fn new(
        v6: bool,
        icmp: bool,
        kind: HashScheduler,
        modulus: u32,
        persistence: u32,
        // The only interface, or none on several segments.
        interface: Option<&IfName>,
    ) -> Self {
        let f = fields(v6, icmp);
        let hash = match kind {
            HashScheduler::Sh => f.client.clone(),
            HashScheduler::Flow => format!("{} . {}", f.client, f.client_port),
        };
        let (pin_map, pin, suffix) = if persistence == 0 {
            let pin = format!(
                "{} . {} . {} . {} . {}",
                f.client, f.client_port, f.vip, f.protocol, f.port
            );
            ("flows".to_owned(), pin, String::new())
        } else {
            let pin = format!("{} . {} . {} . {}", f.client, f.vip, f.protocol, f.port);
            (
                format!("persist_{persistence}"),
                pin,
                format!("_p{persistence}"),
            )
        };
        let v = if v6 { 6 } else { 4 };
        Chain {
            name: format!(
                "{}{kind}{v}_{modulus}{suffix}",
                if icmp { "icmp_" } else { "" }
            ),
            family: if v6 { "ip6" } else { "ip" },
            v,
            icmp,
            service: f.service,
            hash,
            modulus,
            pin_map,
            pin,
            forward: interface.map_or_else(|| format!("goto out{v}"), |i| fwd(v6, i)),
        }
    }
}

pub fn file(b: &Balancing) -> (PlannedFile, Context) {
    let ids = backend_ids(&b.services);
    let balancer = b.balancer;
    // On several segments, frames come in on every interface, and each
    // backend is reached by the interface of its segment (validation put
    // every backend on one).
    let several = balancer.segments.len() > 1;
    let one = (!several).then_some(&balancer.interface);
    let ingress = if several {
        let devices: Vec<String> = balancer
            .segments
            .iter()
            .map(|s| format!("\"{}\"", s.interface))
            .collect();
        format!("devices = {{ {} }}", devices.join(", "))
    } else {
        format!("device \"{}\"", balancer.interface)
    };
    let segments: Vec<NftSegment> = if several {
        balancer
            .segments
            .iter()
            .enumerate()
            .map(|(n, seg)| {
                let on = |v6: bool| {
                    ids.iter()
                        .filter(|(a, _)| a.is_ipv6() == v6 && seg.contains(**a))
                        .map(|(_, &id)| id)
                        .collect()
                };
                NftSegment {
                    interface: seg.interface.clone(),
                    set4: format!("seg4_{n}"),
                    set6: format!("seg6_{n}"),
                    backends4: on(false),
                    backends6: on(true),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut chains = BTreeSet::new();
    let mut persistence = BTreeSet::new();
    let mut services = Vec::new();
    for s in &b.services {
        let live: Vec<(IpAddr, u16)> = s.reals.iter().copied().filter(|r| r.1 > 0).collect();
        if live.is_empty() {
            // No frame is forwarded: it reaches the balancer, which holds
            // the address and refuses it.
            continue;
        }
        let size = table_size(s.reals.len());
        let v6 = s.address.is_ipv6();
        let kind = s.port.hash_scheduler;
        let p = s.port.persistence;
        let chain = Chain::new(v6, false, kind, size, p, one);
        let icmp = Chain::new(v6, true, kind, size, p, one);
        if p > 0 {
            persistence.insert(p);
        }
        let sid = u32::try_from(services.len()).expect("fewer services than 2^32");
        let table = lookup_table(&s.reals);
        let mut maglev = String::with_capacity(table.len() * 16);
        for (slot, backend) in table.iter().enumerate() {
            let separator = if slot == 0 { "" } else { ", " };
            let _ = write!(maglev, "{separator}{sid} . {slot} : {}", ids[backend]);
        }
        services.push(NftService {
            cluster: s.cluster.clone(),
            sid,
            v: chain.v,
            address: s.address.to_string(),
            protocol: s.protocol.as_str(),
            protocol_number: protocol_number(s.protocol),
            port: s.port.port,
            chain: chain.name.clone(),
            icmp_chain: icmp.name.clone(),
            live: live.iter().map(|r| ids[&r.0]).collect(),
            slots: table.len(),
            maglev,
        });
        chains.insert(chain);
        chains.insert(icmp);
    }
    let family = |v6: bool| {
        ids.iter()
            .filter(|(a, _)| a.is_ipv6() == v6)
            .map(|(a, &id)| (id, a.to_string()))
            .collect()
    };
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
            ingress,
            segments,
            seed: SEED,
            pin_seed: PIN_SEED,
            flow_timeout: FLOW_TIMEOUT,
            pin_map_size: PIN_MAP_SIZE,
            persistence: persistence.into_iter().collect(),
            chains: chains.into_iter().collect(),
            services,
            backends4: family(false),
            backends6: family(true),
        }),
    )
}

/// A service's Maglev table as its director holds it: the address of each
/// slot's backend, for real servers `(address, weight)`; empty when none has
/// a weight. `dsrgen impact` compares two of them, so this is the one place
/// that builds a table.
///
/// The table's size follows the number of real servers, drained ones
/// included: a drain or an undrain then never changes the size, which would
/// move almost every new flow (61 to 89 slots moves about 90% of them), but
/// only the drained backend's share.
pub fn lookup_table(reals: &[(IpAddr, u16)]) -> Vec<IpAddr> {
    let live: Vec<(IpAddr, u16)> = reals.iter().copied().filter(|r| r.1 > 0).collect();
    if live.is_empty() {
        return Vec::new();
    }
    maglev(&live, table_size(reals.len()))
        .into_iter()
        .map(|i| live[i].0)
        .collect()
}

/// The table size for a service with `backends` real servers.
pub fn table_size(backends: usize) -> u32 {
    let wanted = u64::from(ENTRIES_PER_BACKEND) * backends as u64;
    TABLE_SIZES
        .into_iter()
        .find(|&m| u64::from(m) >= wanted)
        .unwrap_or(TABLE_SIZES[TABLE_SIZES.len() - 1])
}

/// A stable 32-bit id for each backend address of the balancer, the value
/// its pins hold: an IPv4 address as its number; an IPv6 address as its low
/// 32 bits, the next free number on a clash (backends of one segment rarely
/// clash; if they do, only the later one's pins can be lost on an apply).
fn backend_ids(services: &[Service]) -> BTreeMap<IpAddr, u32> {
    let addresses: BTreeSet<IpAddr> = services
        .iter()
        .flat_map(|s| s.reals.iter().map(|r| r.0))
        .collect();
    let mut taken6 = BTreeSet::new();
    addresses
        .into_iter()
        .map(|a| {
            let id = match a {
                IpAddr::V4(v4) => u32::from(v4),
                IpAddr::V6(v6) => {
                    let low = u32::try_from(u128::from(v6) & 0xffff_ffff).expect("masked");
                    let mut id = low.max(1);
                    while !taken6.insert(id) {
                        id = id.wrapping_add(1).max(1);
                    }
                    id
                }
            };
            (a, id)
        })
        .collect()
}

/// FNV-1a, 64 bits: a hash every build computes alike.
fn fnv(salt: u8, bytes: &[u8]) -> u64 {
    std::iter::once(salt)
        .chain(bytes.iter().copied())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// The Maglev lookup table (Eisenbud et al., NSDI 2016, "Maglev: A Fast and
/// Reliable Software Network Load Balancer", section 3.4) of `size` slots
/// (a prime) for backends of non-zero weight: each backend walks its own
/// permutation of the slots, from an offset and by a skip that its address
/// alone decides, and takes the next free slot on its turn. A backend of
/// weight w gets w turns for every turn of the heaviest (credits carried
/// over, the way IPVS's `mh` does it), so that its share is its weight's.
/// Returns, for each slot, the index of its backend.
pub fn maglev(backends: &[(IpAddr, u16)], size: u32) -> Vec<usize> {
    let m = u64::from(size);
    let walks: Vec<(u64, u64)> = backends
        .iter()
        .map(|(a, _)| {
            let bytes = match a {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            (fnv(1, &bytes) % m, fnv(2, &bytes) % (m - 1) + 1)
        })
        .collect();
    let heaviest = backends.iter().map(|r| u64::from(r.1)).max().unwrap_or(0);
    let mut next = vec![0; backends.len()];
    let mut credit = vec![0; backends.len()];
    let mut table = vec![usize::MAX; size as usize];
    let mut filled = 0;
    if heaviest == 0 {
        return Vec::new();
    }
    while filled < table.len() {
        for (i, &(offset, skip)) in walks.iter().enumerate() {
            credit[i] += u64::from(backends[i].1);
            while credit[i] >= heaviest && filled < table.len() {
                credit[i] -= heaviest;
                loop {
                    let slot = usize::try_from((offset + next[i] * skip) % m).expect("below size");
                    next[i] += 1;
                    if table[slot] == usize::MAX {
                        table[slot] = i;
                        filled += 1;
                        break;
                    }
                }
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const EXTRA_BOUND: f64 = 0.18;

    fn backends(n: u8) -> Vec<(IpAddr, u16)> {
        (0..n)
            .map(|i| (IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10 + i)), 1))
            .collect()
    }

    /// The share of slots whose backend changes when one backend leaves,
    /// worst case over which one leaves, at the table size `table_size`
    /// picks. Maglev's ideal is 1/N (the leaver's own slots).
    #[test]
    fn removing_one_backend_remaps_little_more_than_its_share() {
        let mut report = Vec::new();
        let mut shares = Vec::new();
        for n in 2..=64u8 {
            let all = backends(n);
            let size = table_size(all.len());
            let before = maglev(&all, size);
            let mut worst: f64 = 0.0;
            for gone in 0..usize::from(n) {
                let rest: Vec<_> = all
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != gone)
                    .map(|(_, r)| *r)
                    .collect();
                let after = maglev(&rest, size);
                let moved = before
                    .iter()
                    .zip(&after)
                    .filter(|&(&b, &a)| all[b].0 != rest[a].0)
                    .count();
                worst =
                    worst.max(f64::from(u32::try_from(moved).expect("slots")) / f64::from(size));
            }
            let ideal = 1.0 / f64::from(n);
            report.push(format!(
                "N={n:2} size={size:4} moved {:5.1}% (1/N {:5.1}%, +{:4.1})",
                100.0 * worst,
                100.0 * ideal,
                100.0 * (worst - ideal)
            ));
            shares.push((n, worst - ideal));
        }
        println!("{}", report.join("\n"));
        for (n, extra) in shares {
            // Measured at these sizes: the leaver's slots plus at most
            // EXTRA_BOUND of the table (the NSDI paper's Figure 11 has the
            // same shape: fewer entries per backend, more churn).
            assert!(
                extra <= EXTRA_BOUND,
                "N={n}: 1/N + {:.1}% moved",
                100.0 * extra
            );
        }
    }

    /// A drain (weight 0) keeps the table's size, so that it moves what a
    /// backend that leaves moves, even where the live count crosses a size
    /// (21 backends: 89 slots; 20 live would have 61, moving about 90%).
    #[test]
    fn draining_keeps_the_table_size_and_moves_little() {
        for n in 2..=64u8 {
            let all = backends(n);
            let before = lookup_table(&all);
            assert_eq!(u32::try_from(before.len()), Ok(table_size(all.len())));
            for drained in 0..usize::from(n) {
                let mut after = all.clone();
                after[drained].1 = 0;
                let after = lookup_table(&after);
                assert_eq!(after.len(), before.len(), "N={n}: the size changed");
                let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
                let share = |k: usize| f64::from(u32::try_from(k).expect("slots"));
                let extra = share(moved) / share(before.len()) - 1.0 / f64::from(n);
                assert!(
                    extra <= EXTRA_BOUND,
                    "N={n}, backend {drained} drained: 1/N + {:.1}% moved",
                    100.0 * extra
                );
            }
        }
    }

    #[test]
    fn the_table_is_filled_in_proportion_to_weights() {
        let mut all = backends(3);
        all[0].1 = 100;
        all[1].1 = 300;
        all[2].1 = 200;
        let table = maglev(&all, 601);
        let count = |i| table.iter().filter(|&&b| b == i).count();
        // 601 slots for weights 1:3:2, each within one slot of its share.
        for (i, share) in [(0, 100), (1, 300), (2, 200)] {
            assert!(
                count(i).abs_diff(share) <= 1,
                "backend {i}: {} slots",
                count(i)
            );
        }
        // Every slot filled, each by a backend of the list.
        assert!(table.iter().all(|&b| b < 3));
    }

    #[test]
    fn table_sizes_follow_backend_counts() {
        assert_eq!(table_size(1), 61);
        assert_eq!(table_size(16), 61);
        assert_eq!(table_size(64), 251);
        assert_eq!(table_size(1000), 2039);
        assert!(TABLE_SIZES.iter().all(|&m| (2..m).all(|d| m % d != 0)));
    }
}
