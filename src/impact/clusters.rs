//! Clusters and their ports, compared item by item: what was added, removed
//! or changed, each backend's weight, and what happens to the flows.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{
    Change, ClusterImpact, Index, PortImpact, Setting, Values, Weight, flows, names, percent,
};
use crate::engine::Scheduling;
use crate::model::{Check, Cluster, Engine, Model, Name, Port, Probe, Protocol, Timing};

/// One side of a cluster: its model, the cluster, and who holds what.
type At<'a> = (&'a Model, &'a Index<'a>);

pub(super) fn compare(old: At<'_>, new: At<'_>, warnings: &mut Vec<String>) -> Vec<ClusterImpact> {
    let all: BTreeSet<&Name> = old.0.clusters.keys().chain(new.0.clusters.keys()).collect();
    all.into_iter()
        .filter_map(|name| {
            cluster(
                name,
                old.0.clusters.get(name).map(|c| (old, c)),
                new.0.clusters.get(name).map(|c| (new, c)),
                warnings,
            )
        })
        .collect()
}

fn cluster(
    name: &Name,
    old: Option<(At<'_>, &Cluster)>,
    new: Option<(At<'_>, &Cluster)>,
    warnings: &mut Vec<String>,
) -> Option<ClusterImpact> {
    let labels = Values {
        before: old.map(|((_, index), _)| index.labels(name)),
        after: new.map(|((_, index), _)| index.labels(name)),
    };
    let change = match (old, new) {
        (None, None) => return None,
        (Some((_, a)), Some((_, b))) if a == b && !labels.changed() => return None,
        (Some(_), Some(_)) => Change::Changed,
        (None, Some(_)) => Change::Added,
        (Some(_), None) => Change::Removed,
    };
    let address = Values {
        before: old.map(|(_, c)| c.address.to_string()),
        after: new.map(|(_, c)| c.address.to_string()),
    };
    // Hosts that stop holding the old address, or start holding the new one.
    let dropped: Vec<String> = old.map_or_else(Vec::new, |((_, old_index), c)| {
        let still = new
            .map(|((_, i), _)| i.holders(c.address))
            .unwrap_or_default();
        names(old_index.holders(c.address).difference(&still).copied())
    });
    let added: Vec<String> = new.map_or_else(Vec::new, |((_, new_index), c)| {
        let before = old
            .map(|((_, i), _)| i.holders(c.address))
            .unwrap_or_default();
        names(new_index.holders(c.address).difference(&before).copied())
    });
    let mut notes = Vec::new();
    if let (Some((_, a)), Some((_, b))) = (old, new)
        && a.address != b.address
    {
        notes.push(format!(
            "the address moves from {} to {}: connections to {} end when its holders drop it, and clients must use the new address",
            a.address, b.address, a.address
        ));
    }
    let ports = ports(name, old, new, warnings);
    if let (Some((_, a)), Some((_, b))) = (old, new)
        && a.ports.iter().any(|p| live(p) > 0)
        && !b.ports.iter().any(|p| live(p) > 0)
    {
        warnings.push(format!(
            "cluster `{name}` ({}) is left without a live backend on any port",
            b.address
        ));
    }
    Some(ClusterImpact {
        name: name.to_string(),
        change,
        address,
        id: Values {
            before: old.map(|(_, c)| c.id.0),
            after: new.map(|(_, c)| c.id.0),
        },
        labels,
        balancers: Values {
            before: old.map(|(_, c)| names(&c.balancers)),
            after: new.map(|(_, c)| names(&c.balancers)),
        },
        address_dropped_by: dropped,
        address_added_to: added,
        ports,
        notes,
    })
}

/// The backends of a port with a weight above 0.
fn live(port: &Port) -> usize {
    port.backends.iter().filter(|m| m.weight > 0).count()
}

/// A port's key within its cluster.
fn key(port: &Port) -> (Protocol, u16) {
    (port.protocol, port.port)
}

type PortAt<'a> = (&'a Model, &'a Cluster, &'a Port);

fn ports(
    name: &Name,
    old: Option<(At<'_>, &Cluster)>,
    new: Option<(At<'_>, &Cluster)>,
    warnings: &mut Vec<String>,
) -> Vec<PortImpact> {
    let mut all: BTreeMap<(Protocol, u16), (Option<PortAt<'_>>, Option<PortAt<'_>>)> =
        BTreeMap::new();
    if let Some(((model, _), c)) = old {
        for p in &c.ports {
            all.entry(key(p)).or_default().0 = Some((model, c, p));
        }
    }
    if let Some(((model, _), c)) = new {
        for p in &c.ports {
            all.entry(key(p)).or_default().1 = Some((model, c, p));
        }
    }
    all.into_values()
        .filter_map(|(a, b)| port(name, a, b, warnings))
        .collect()
}

/// The engines that serve a cluster.
fn engines(model: &Model, cluster: &Cluster) -> BTreeSet<Engine> {
    cluster
        .balancers
        .iter()
        .map(|b| model.balancers[b].engine)
        .collect()
}

fn port(
    cluster: &Name,
    old: Option<PortAt<'_>>,
    new: Option<PortAt<'_>>,
    warnings: &mut Vec<String>,
) -> Option<PortImpact> {
    let (change, shown) = match (old, new) {
        (Some((_, _, p)), None) => (Change::Removed, p),
        (None, Some((_, _, p))) => (Change::Added, p),
        (Some(a), Some(b)) if a.2 == b.2 && !served_differently(a, b) => return None,
        (Some(_), Some((_, _, p))) => (Change::Changed, p),
        (None, None) => return None,
    };
    let service = service(shown);
    let settings = settings(old, new, change);
    let (before, after) = (weights(old), weights(new));
    let mut port = PortImpact {
        service: service.clone(),
        protocol: shown.protocol.to_string(),
        port: shown.port,
        change,
        settings,
        backends_added: Vec::new(),
        backends_removed: Vec::new(),
        drained: Vec::new(),
        undrained: Vec::new(),
        reweighted: Vec::new(),
        flows_remapped: None,
        flows: Vec::new(),
    };
    let all: BTreeSet<&Name> = before.keys().chain(after.keys()).copied().collect();
    for name in all {
        let w = Weight {
            name: name.to_string(),
            before: before.get(name).copied(),
            after: after.get(name).copied(),
        };
        let list = match (w.before, w.after) {
            (None, Some(_)) => &mut port.backends_added,
            (Some(_), None) => &mut port.backends_removed,
            (Some(a), Some(b)) if a > 0 && b == 0 => &mut port.drained,
            (Some(0), Some(b)) if b > 0 => &mut port.undrained,
            (Some(a), Some(b)) if a != b => &mut port.reweighted,
            _ => continue,
        };
        list.push(w);
    }
    if let (Some(a), Some(b)) = (old, new) {
        describe_flows(&mut port, a, b);
        if live(a.2) > 0 && live(b.2) == 0 && !b.2.backends.is_empty() {
            let last: Vec<String> = port
                .drained
                .iter()
                .map(|w| format!("`{}`", w.name))
                .collect();
            warnings.push(format!(
                "cluster `{cluster}` {service}: the last live backend is drained ({}): the port forwards to nobody",
                if last.is_empty() { "none left".to_owned() } else { last.join(", ") }
            ));
        }
        if let Some(share) = port.flows_remapped
            && share > 0.5
            && live(b.2) > 0
        {
            warnings.push(format!(
                "cluster `{cluster}` {service}: more than half of the flows change backend ({})",
                percent(share)
            ));
        }
    }
    Some(port)
}

/// Each backend's weight in a port.
fn weights(side: Option<PortAt<'_>>) -> BTreeMap<&Name, u16> {
    side.map(|(_, _, p)| p.backends.iter().map(|m| (&m.backend, m.weight)).collect())
        .unwrap_or_default()
}

/// Whether the port's real servers change though the port does not: a
/// backend's own address, or the engines that serve it.
fn served_differently((ma, ca, pa): PortAt<'_>, (mb, cb, pb): PortAt<'_>) -> bool {
    let reals = |m: &Model, c: &Cluster, p: &Port| -> Vec<_> {
        p.backends
            .iter()
            .map(|x| crate::engine::backend_address(m, &x.backend, c.address))
            .collect()
    };
    reals(ma, ca, pa) != reals(mb, cb, pb) || engines(ma, ca) != engines(mb, cb)
}

/// `80/tcp`, or `80+443/tcp`.
fn service(port: &Port) -> String {
    if port.group.is_empty() {
        format!("{}/{}", port.port, port.protocol)
    } else {
        let ports: Vec<String> = port.group.iter().map(u16::to_string).collect();
        format!("{}/{}", ports.join("+"), port.protocol)
    }
}

fn settings(old: Option<PortAt<'_>>, new: Option<PortAt<'_>>, change: Change) -> Vec<Setting> {
    type Show = fn(&Model, &Cluster, &Port) -> String;
    let all: [(&'static str, Show, bool); 7] = [
        ("scheduler", |m, c, p| scheduler(m, c, p), true),
        ("persistence", |_, _, p| persistence(p.persistence), true),
        ("health", |_, _, p| health(&p.health), true),
        ("on_failure", |_, _, p| p.on_failure.to_string(), false),
        (
            "quorum",
            |_, _, p| {
                p.quorum
                    .map_or_else(|| "none".to_owned(), |q| q.to_string())
            },
            false,
        ),
        ("hysteresis", |_, _, p| p.hysteresis.to_string(), false),
        (
            "sorry",
            |_, _, p| {
                p.sorry
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), Name::to_string)
            },
            false,
        ),
    ];
    all.into_iter()
        .filter_map(|(name, show, always)| {
            let setting = Setting {
                name,
                before: old.map(|(m, c, p)| show(m, c, p)),
                after: new.map(|(m, c, p)| show(m, c, p)),
            };
            let wanted = match change {
                Change::Changed => setting.before != setting.after,
                Change::Added | Change::Removed => always,
            };
            wanted.then_some(setting)
        })
        .collect()
}

/// The scheduler each kind of engine of the cluster runs for the port.
fn scheduler(model: &Model, cluster: &Cluster, port: &Port) -> String {
    let mut shown: Vec<String> = Vec::new();
    for engine in engines(model, cluster) {
        let s = match engine.scheduling() {
            Scheduling::Ipvs => port.ipvs_scheduler.as_str(),
            Scheduling::Hash => port.hash_scheduler.as_str(),
            Scheduling::Weights { .. } => "weights",
        };
        let s = format!("{s} ({engine})");
        if !shown.contains(&s) {
            shown.push(s);
        }
    }
    shown.join(", ")
}

fn persistence(seconds: u32) -> String {
    if seconds == 0 {
        "none".to_owned()
    } else {
        format!("{seconds} s")
    }
}

/// A port's checks in one line: `http /healthz 200 (every 6 s, timeout 3 s, 1 retry, 1 s apart)`.
pub(super) fn health(checks: &[Check]) -> String {
    if checks.is_empty() {
        return "none".to_owned();
    }
    let shown: Vec<String> = checks
        .iter()
        .map(|c| {
            let mut s = c.probe.kind().to_owned();
            match &c.probe {
                Probe::Http(h) => {
                    let _ = write!(s, " {} {}", h.path.as_str(), h.status);
                    if let Some(host) = &h.host {
                        let _ = write!(s, " host {}", host.as_str());
                    }
                    if let Some(expect) = &h.expect {
                        let _ = write!(s, " expect \"{}\"", expect.as_str());
                    }
                    if h.digest.is_some() {
                        s.push_str(" digest");
                    }
                }
                Probe::Dns { name } => {
                    let _ = write!(s, " {}", name.as_str());
                }
                Probe::Script { path } => {
                    let _ = write!(s, " {}", path.as_str());
                }
                Probe::Tcp | Probe::Udp => {}
            }
            if let Some(port) = c.port {
                let _ = write!(s, " port {port}");
            }
            format!("{s} ({})", timing(c.timing))
        })
        .collect();
    shown.join(" + ")
}

pub(super) fn timing(t: Timing) -> String {
    format!(
        "every {} s, timeout {} s, {} retr{}, {} s apart",
        t.interval,
        t.timeout,
        t.retries,
        if t.retries == 1 { "y" } else { "ies" },
        t.retry_delay
    )
}

/// What happens to the port's connections, and for nftables the share of
/// flows that change backend.
fn describe_flows(port: &mut PortImpact, old: PortAt<'_>, new: PortAt<'_>) {
    let (before, after) = (engines(old.0, old.1), engines(new.0, new.1));
    let (a, b) = (old.2, new.2);
    let members_changed = a.backends != b.backends || served_differently(old, new);
    if before.contains(&Engine::Nftables) && after.contains(&Engine::Nftables) {
        let share = flows::nftables_share(old, new);
        port.flows_remapped = Some(share);
        if a.hash_scheduler != b.hash_scheduler {
            port.flows.push(format!(
                "nftables: the hash reads the {} instead of the {}: every new flow is placed anew, {} expected to change backend; pinned flows keep theirs",
                flows::hash_input(b.hash_scheduler),
                flows::hash_input(a.hash_scheduler),
                percent(share)
            ));
        } else if live(b) == 0 {
            port.flows.push(
                "nftables: no backend is live: the director forwards none of the port's flows"
                    .to_owned(),
            );
        } else if share > 0.0 {
            let gone = !port.backends_removed.is_empty() || !port.drained.is_empty();
            port.flows.push(format!(
                "nftables: {} of the hash table changes backend: new flows there go to the new one; pinned flows stay with a backend that stays{}",
                percent(share),
                if gone {
                    ", those of a removed or drained backend move"
                } else {
                    ""
                }
            ));
        }
    }
    let ipvs: Vec<&str> = after
        .iter()
        .filter(|e| e.scheduling() == Scheduling::Ipvs)
        .map(|e| e.as_str())
        .collect();
    if !ipvs.is_empty() && (members_changed || a.ipvs_scheduler != b.ipvs_scheduler) {
        port.flows.push(format!(
            "IPVS ({}): existing connections stay on their backend; only new connections follow the new {}",
            ipvs.join(", "),
            if a.ipvs_scheduler == b.ipvs_scheduler {
                "weights".to_owned()
            } else {
                format!("scheduler ({})", b.ipvs_scheduler)
            }
        ));
    }
    if after.contains(&Engine::Dispatcher) && members_changed {
        port.flows.push(
            "Dispatcher: existing connections stay; its manager sends new ones by the new weights"
                .to_owned(),
        );
    }
    if a.persistence != b.persistence {
        port.flows
            .push(sticky(a.persistence, b.persistence, &after));
    }
}

/// What a persistence change does to sticky clients.
fn sticky(before: u32, after: u32, engines: &BTreeSet<Engine>) -> String {
    let mut s = match (before, after) {
        (0, n) => format!(
            "persistence {n} s: from now on a client's new connections stick to the backend of its first one"
        ),
        (n, 0) => format!(
            "persistence off (was {n} s): sticky clients are released; each new connection is balanced on its own"
        ),
        (a, b) => format!(
            "persistence {a} s -> {b} s: a sticky client keeps its backend until its current record expires, then sticks for {b} s"
        ),
    };
    if engines.contains(&Engine::Nftables) {
        s.push_str(
            "; nftables keeps client pins in a map per timeout, so the pins made so far are no longer read: every client is placed by the table again (the same backend where its slot did not change)",
        );
    }
    s
}
