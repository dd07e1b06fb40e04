//! `dsrgen impact`: what a change of the inventory does to the fleet, in
//! operator terms. It works on the two validated models and the two trees
//! [`crate::generate`] builds from them, never on the YAML: clusters and
//! their ports compared item by item (`clusters`), the share of flows that
//! change backend (`flows`, from the Maglev tables the nftables director
//! holds), each host's changed files and the steps of the manifest's
//! rollout they call for (`hosts`), and the report in three forms
//! (`render`: text, Markdown; JSON is the serde form of [`Impact`]).
//!
//! The JSON form is an interface: its fields are documented in the README
//! and change only with [`FORMAT`].

mod clusters;
pub mod flows;
mod hosts;
pub mod render;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde::Serialize;

use crate::Tree;
use crate::model::{Model, Name};

/// The version of the JSON report's layout.
pub const FORMAT: u32 = 1;

/// One side of the comparison.
#[derive(Clone, Copy, Debug)]
pub struct Side<'a> {
    /// How the report names it: a file, or `REV:path`.
    pub label: &'a str,
    pub model: &'a Model,
    pub tree: &'a Tree,
}

/// What a change does, ready to print or serialise.
#[derive(Clone, Debug, Serialize)]
pub struct Impact {
    pub format: u32,
    pub old: String,
    pub new: String,
    /// Nothing changes: no cluster and no generated file.
    pub unchanged: bool,
    pub clusters: Vec<ClusterImpact>,
    pub hosts: Vec<HostImpact>,
    pub rollout: Vec<RolloutPhase>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// A value before and after the change; `None` where the item does not exist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Values<T> {
    pub before: Option<T>,
    pub after: Option<T>,
}

impl<T: PartialEq> Values<T> {
    pub fn changed(&self) -> bool {
        self.before != self.after
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ClusterImpact {
    pub name: String,
    pub change: Change,
    pub address: Values<String>,
    pub id: Values<u16>,
    /// The address labels hosts give it (`lo:1`, `eth1:1`).
    pub labels: Values<Vec<String>>,
    pub balancers: Values<Vec<String>>,
    /// Hosts that stop holding the cluster's old address.
    pub address_dropped_by: Vec<String>,
    /// Hosts that start holding the cluster's new address.
    pub address_added_to: Vec<String>,
    /// Only the ports that change.
    pub ports: Vec<PortImpact>,
    /// What happens to clients, in words.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PortImpact {
    /// `80/tcp`, or `80+443/tcp` for a port group.
    pub service: String,
    pub protocol: String,
    /// The port, or the first of a group.
    pub port: u16,
    pub change: Change,
    /// Settings that differ (for an added or removed port: its scheduler,
    /// persistence and health check).
    pub settings: Vec<Setting>,
    pub backends_added: Vec<Weight>,
    pub backends_removed: Vec<Weight>,
    /// Weight from above 0 to 0.
    pub drained: Vec<Weight>,
    /// Weight from 0 to above 0.
    pub undrained: Vec<Weight>,
    /// Weight from one value above 0 to another.
    pub reweighted: Vec<Weight>,
    /// nftables services only: the share (0 to 1) of new flows whose backend
    /// changes; `null` elsewhere, and for a port added or removed.
    pub flows_remapped: Option<f64>,
    /// What happens to existing and new connections, in words.
    pub flows: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub name: &'static str,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A backend's weight in a port before and after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Weight {
    pub name: String,
    pub before: Option<u16>,
    pub after: Option<u16>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HostImpact {
    pub name: String,
    /// `backend` or `balancer`.
    pub role: String,
    pub files: Vec<FileChange>,
    pub reloads: Vec<Reload>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FileChange {
    pub path: String,
    pub change: Change,
}

/// A step of the rollout on one host, with what it does to traffic.
#[derive(Clone, Debug, Serialize)]
pub struct Reload {
    pub phase: crate::manifest::Phase,
    /// The command, as the manifest names it.
    pub run: String,
    /// Whether it can cut or move established connections.
    pub disruptive: bool,
    /// keepalived only: the change needs `systemctl restart keepalived`,
    /// which its reload does not do.
    pub restart: bool,
    pub effect: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RolloutPhase {
    pub phase: crate::manifest::Phase,
    pub hosts: Vec<String>,
}

/// Compare two sides.
pub fn impact(old: Side<'_>, new: Side<'_>) -> Impact {
    let (old_index, new_index) = (Index::new(old.model), Index::new(new.model));
    let mut warnings = Vec::new();
    let clusters = clusters::compare(
        (old.model, &old_index),
        (new.model, &new_index),
        &mut warnings,
    );
    let (hosts, rollout) = hosts::compare(old, new, &mut warnings);
    warnings.extend(hosts::networkd_drops(
        old.model, new.model, &old_index, &new_index, &hosts,
    ));
    Impact {
        format: FORMAT,
        old: old.label.to_owned(),
        new: new.label.to_owned(),
        unchanged: clusters.is_empty() && hosts.is_empty(),
        clusters,
        hosts,
        rollout,
        warnings,
    }
}

/// Who holds each cluster address, and the labels each cluster's address
/// gets, from the hosts' lists in the model: computed once per side.
#[derive(Debug)]
struct Index<'m> {
    holders: HashMap<IpAddr, BTreeSet<&'m Name>>,
    labels: HashMap<&'m Name, BTreeSet<&'m str>>,
}

impl<'m> Index<'m> {
    fn new(model: &'m Model) -> Self {
        let mut holders: HashMap<IpAddr, BTreeSet<&Name>> = HashMap::new();
        let mut labels: HashMap<&Name, BTreeSet<&str>> = HashMap::new();
        let hosts = model
            .backends
            .iter()
            .map(|(n, b)| (n, &b.vips))
            .chain(model.balancers.iter().map(|(n, b)| (n, &b.vips)));
        for (host, vips) in hosts {
            for vip in vips {
                holders.entry(vip.address).or_default().insert(host);
                if let Some(label) = &vip.label {
                    labels
                        .entry(&vip.cluster)
                        .or_default()
                        .insert(label.as_str());
                }
            }
        }
        Self { holders, labels }
    }

    fn holders(&self, address: IpAddr) -> BTreeSet<&'m Name> {
        self.holders.get(&address).cloned().unwrap_or_default()
    }

    fn labels(&self, cluster: &Name) -> Vec<String> {
        self.labels
            .get(cluster)
            .map(|l| l.iter().map(|s| (*s).to_owned()).collect())
            .unwrap_or_default()
    }
}

/// A share as a percentage with one decimal: `24.6%`.
pub fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// Names as strings, in order.
fn names<'a>(names: impl IntoIterator<Item = &'a Name>) -> Vec<String> {
    names.into_iter().map(Name::to_string).collect()
}

/// Group items by a key, keeping their order within each group.
fn group<K: Ord, V>(items: impl IntoIterator<Item = (K, V)>) -> BTreeMap<K, Vec<V>> {
    let mut groups: BTreeMap<K, Vec<V>> = BTreeMap::new();
    for (k, v) in items {
        groups.entry(k).or_default().push(v);
    }
    groups
}
