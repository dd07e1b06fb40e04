//! Each host's changed files, the steps of the rollout they call for (as
//! [`crate::manifest::Manifest::owed`] works them out from the two
//! manifests), and what each step does to traffic.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Change, FileChange, HostImpact, Index, Reload, RolloutPhase, Side, clusters, group};
use crate::kind::FileKind;
use crate::manifest::{Entry, Phase, SCRIPT_DOWN, Step};
use crate::model::{Engine, Model, Name, Port, Protocol};

pub(super) fn compare(
    old: Side<'_>,
    new: Side<'_>,
    warnings: &mut Vec<String>,
) -> (Vec<HostImpact>, Vec<RolloutPhase>) {
    let before: HashMap<(&str, &str), &Entry> = old
        .tree
        .manifest
        .files
        .iter()
        .map(|e| ((e.host.as_str(), e.path.as_str()), e))
        .collect();
    let now: HashMap<(&str, &str), &Entry> = new
        .tree
        .manifest
        .files
        .iter()
        .map(|e| ((e.host.as_str(), e.path.as_str()), e))
        .collect();
    let mut files: BTreeMap<String, (String, Vec<FileChange>)> = BTreeMap::new();
    let mut note = |e: &Entry, change: Change| {
        files
            .entry(e.host.clone())
            .or_insert_with(|| (e.role.clone(), Vec::new()))
            .1
            .push(FileChange {
                path: e.path.clone(),
                change,
            });
    };
    for e in &new.tree.manifest.files {
        match before.get(&(e.host.as_str(), e.path.as_str())) {
            None => note(e, Change::Added),
            Some(o) if o.sha256 != e.sha256 || o.mode != e.mode => note(e, Change::Changed),
            Some(_) => {}
        }
    }
    for e in &old.tree.manifest.files {
        if !now.contains_key(&(e.host.as_str(), e.path.as_str())) {
            note(e, Change::Removed);
        }
    }
    let steps = new.tree.manifest.owed(&old.tree.manifest);
    let restarts = keepalived_restarts(old.model, new.model);
    let mut reloads = group(
        steps
            .iter()
            .map(|s| (s.host.as_str(), reload(s, &restarts))),
    );
    let hosts = files
        .into_iter()
        .map(|(host, (role, mut files))| {
            files.sort_by(|a, b| a.path.cmp(&b.path));
            let reloads = reloads.remove(host.as_str()).unwrap_or_default();
            HostImpact {
                name: host,
                role,
                files,
                reloads,
            }
        })
        .collect();
    let restarting = group(
        restarts
            .iter()
            .filter(|(host, _)| {
                steps
                    .iter()
                    .any(|s| s.host == host.as_str() && s.run == FileKind::Keepalived.reload())
            })
            .map(|(host, why)| (why.join("; "), format!("`{host}`"))),
    );
    for (why, hosts) in restarting {
        warnings.push(format!(
            "{} must restart keepalived, not reload it: {why}",
            hosts.join(", ")
        ));
    }
    (hosts, rollout(&steps))
}

/// The phases in order, each with the hosts that run a step in it.
fn rollout(steps: &[Step]) -> Vec<RolloutPhase> {
    let phases = group(steps.iter().map(|s| (s.phase, s.host.clone())));
    phases
        .into_iter()
        .map(|(phase, mut hosts)| {
            hosts.dedup();
            RolloutPhase { phase, hosts }
        })
        .collect()
}

fn reload(step: &Step, restarts: &BTreeMap<Name, Vec<String>>) -> Reload {
    let kind = FileKind::ALL
        .iter()
        .copied()
        .find(|k| k.reload() == step.run);
    let restart =
        kind == Some(FileKind::Keepalived) && restarts.keys().any(|h| h.as_str() == step.host);
    let (disruptive, effect) = if restart {
        (
            true,
            "keepalived's reload keeps the check timing it started with: `systemctl restart keepalived` applies it, re-creating its IPVS services (open connections drop) and its VRRP state",
        )
    } else {
        match kind {
            Some(kind) => effect(kind),
            None if step.run == SCRIPT_DOWN => (
                false,
                "removes every address the old script added, once the balancers stopped forwarding to them",
            ),
            None => (
                false,
                "removes the addresses the new script no longer lists, once the balancers stopped forwarding to them",
            ),
        }
    };
    Reload {
        phase: step.phase,
        run: step.run.clone(),
        disruptive,
        restart,
        effect: effect.to_owned(),
    }
}

/// Whether picking up a file of this kind can cut or move established
/// connections, and what it does. Decided per kind of file, not per
/// command, so that a change of a command (ipvsadm's apply becoming a
/// reconcile) does not change the answer by accident.
pub fn effect(kind: FileKind) -> (bool, &'static str) {
    match kind {
        FileKind::Sysctl => (false, "ARP settings, applied in place"),
        FileKind::Service => (false, "systemd rereads the unit; nothing restarts"),
        FileKind::Script => (false, "adds what is missing; removes nothing"),
        FileKind::Network | FileKind::Netdev => (
            false,
            "networkd reconfigures the device: adds addresses; removes those no longer listed from a dummy device, never from lo (prune does)",
        ),
        FileKind::Marks => (
            false,
            "atomic `nft -f`: the firewall marks change in one transaction",
        ),
        FileKind::Keepalived => (
            false,
            "keepalived reload: adds, changes and removes only what differs; open connections stay",
        ),
        FileKind::Ipvsadm | FileKind::IpvsadmScript => (
            false,
            "reconciles the IPVS table: adds, edits and deletes only what differs; open connections stay",
        ),
        FileKind::Nftables => (
            false,
            "atomic `nft -f`: one transaction; pinned flows stay with a backend that stays",
        ),
        FileKind::Dispatcher => (
            false,
            "the running executor loads the configuration; open connections stay",
        ),
    }
}

/// The keepalived balancers whose change needs a restart, with why: a
/// health check's timing changed on a service it serves before and after
/// (keepalived's reload keeps the checkers' old timing).
fn keepalived_restarts(old: &Model, new: &Model) -> BTreeMap<Name, Vec<String>> {
    let mut restarts = BTreeMap::new();
    for (name, balancer) in &new.balancers {
        let Some(before) = old.balancers.get(name) else {
            continue;
        };
        if balancer.engine != Engine::Keepalived || before.engine != Engine::Keepalived {
            continue;
        }
        let mut why = Vec::new();
        for cluster in balancer
            .clusters
            .iter()
            .filter(|c| before.clusters.contains(c))
        {
            let (a, b) = (ports(old, cluster), ports(new, cluster));
            let mut keys: Vec<&(Protocol, u16)> = b.keys().collect();
            keys.sort();
            for key in keys {
                let (Some(pa), Some(pb)) = (a.get(key), b.get(key)) else {
                    continue;
                };
                let timings = |p: &Port| p.health.iter().map(|c| c.timing).collect::<Vec<_>>();
                if timings(pa) != timings(pb) && !pa.health.is_empty() && !pb.health.is_empty() {
                    why.push(format!(
                        "the checks of `{cluster}` {}/{} change timing ({} -> {})",
                        key.1,
                        key.0,
                        clusters::timing(pa.health[0].timing),
                        clusters::timing(pb.health[0].timing)
                    ));
                }
            }
        }
        if !why.is_empty() {
            restarts.insert(name.clone(), why);
        }
    }
    restarts
}

/// A cluster's ports by protocol and port.
fn ports<'m>(model: &'m Model, cluster: &Name) -> HashMap<(Protocol, u16), &'m Port> {
    model.clusters[cluster]
        .ports
        .iter()
        .map(|p| ((p.protocol, p.port), p))
        .collect()
}

/// Backends whose networkd unit drops a cluster address: `networkctl
/// reload` runs in phase `up`, before the balancers that still forward the
/// address to them reload. Only on a dummy `vip_device`: networkd never
/// takes an address off lo (`tests/integration/networkd.rs`), where the
/// removal is `dsrgen-vips prune`'s, in phase prune.
pub(super) fn networkd_drops(
    old: &Model,
    new: &Model,
    old_index: &Index<'_>,
    new_index: &Index<'_>,
    hosts: &[HostImpact],
) -> Vec<String> {
    let reloaded: BTreeSet<&str> = hosts
        .iter()
        .filter(|h| {
            h.reloads
                .iter()
                .any(|r| r.phase == Phase::Up && r.run == FileKind::Network.reload())
        })
        .map(|h| h.name.as_str())
        .collect();
    // (cluster, address, balancers) -> the backends that drop the address.
    let mut drops: BTreeMap<(&Name, String, Vec<String>), Vec<String>> = BTreeMap::new();
    for (name, cluster) in &old.clusters {
        for host in old_index.holders(cluster.address) {
            if old
                .backends
                .get(host)
                .is_none_or(|b| b.vip_device.as_str() == "lo")
                || !reloaded.contains(host.as_str())
                || new_index.holders(cluster.address).contains(host)
            {
                continue;
            }
            // The balancers that forward this cluster to the host until
            // they reload.
            let forwarding: Vec<String> = cluster
                .balancers
                .iter()
                .filter(|_| {
                    cluster.ports.iter().any(|p| {
                        p.backends
                            .iter()
                            .any(|m| &m.backend == host && m.weight > 0)
                    })
                })
                .filter(|b| new.balancers.contains_key(*b))
                .map(|b| format!("`{b}`"))
                .collect();
            if !forwarding.is_empty() {
                drops
                    .entry((name, cluster.address.to_string(), forwarding))
                    .or_default()
                    .push(format!("`{host}`"));
            }
        }
    }
    drops
        .into_iter()
        .map(|((name, address, forwarding), hosts)| {
            format!(
                "{} drop{} {address} of cluster `{name}` in phase up (`networkctl reload` removes addresses at once), while {} still forward{} it to {} until phase reload",
                hosts.join(", "),
                if hosts.len() == 1 { "s" } else { "" },
                forwarding.join(", "),
                if forwarding.len() == 1 { "s" } else { "" },
                if hosts.len() == 1 { "it" } else { "them" },
            )
        })
        .collect()
}
