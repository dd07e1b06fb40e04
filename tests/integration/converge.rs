//! Every change converges: a sequence of inventory versions, each deployed to
//! the hosts' network namespaces by running the new `dsrgen-vips` (`up`, then
//! `prune`; `down` for a host that stops serving), leaves each host holding
//! exactly what that version says (address, prefix, scope, label, and the ARP
//! settings), keeps addresses made by hand, and `status` agrees. Then a reboot
//! (a fresh namespace and an empty `/run`) and a crash in the middle of `up`.
//!
//! Each host is a namespace of its own (`unshare --net --mount`) whose `/run`
//! is a folder of the test's, as `/run` is a tmpfs of the host's own.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use dsrgen::model::Model;

use crate::support::{TempDir, build};
use crate::system::assert_success;

/// One inventory version: the clusters (name, id, address, backends,
/// drained backends) and the backends that exist.
pub(crate) struct Version {
    pub(crate) what: &'static str,
    clusters: &'static [(&'static str, u16, &'static str, &'static [&'static str])],
    drained: &'static [&'static str],
    backends: &'static [&'static str],
}

pub(crate) const VERSIONS: &[Version] = &[
    Version {
        what: "start",
        clusters: &[
            ("www", 1, "192.0.2.181", &["web1", "web2"]),
            ("api", 2, "192.0.2.182", &["web1"]),
        ],
        drained: &[],
        backends: &["web1", "web2"],
    },
    Version {
        what: "add a cluster",
        clusters: &[
            ("www", 1, "192.0.2.181", &["web1", "web2"]),
            ("api", 2, "192.0.2.182", &["web1"]),
            ("shop", 3, "192.0.2.183", &["web1", "web2"]),
        ],
        drained: &[],
        backends: &["web1", "web2"],
    },
    Version {
        what: "change a cluster's address",
        clusters: &[
            ("www", 1, "192.0.2.181", &["web1", "web2"]),
            ("api", 2, "192.0.2.182", &["web1"]),
            ("shop", 3, "192.0.2.184", &["web1", "web2"]),
        ],
        drained: &[],
        backends: &["web1", "web2"],
    },
    Version {
        what: "change a cluster's id (and so its labels)",
        clusters: &[
            ("www", 1, "192.0.2.181", &["web1", "web2"]),
            ("api", 2, "192.0.2.182", &["web1"]),
            ("shop", 5, "192.0.2.184", &["web1", "web2"]),
        ],
        drained: &[],
        backends: &["web1", "web2"],
    },
    Version {
        what: "move a backend to another cluster",
        clusters: &[
            ("www", 1, "192.0.2.181", &["web1", "web2"]),
            ("api", 2, "192.0.2.182", &["web2"]),
            ("shop", 5, "192.0.2.184", &["web1", "web2"]),
        ],
        drained: &[],
        backends: &["web1", "web2"],
    },
    Version {
        what: "drain a backend",
        clusters: &[
            ("www", 1, "192.0.2.181", &["web1", "web2"]),
            ("api", 2, "192.0.2.182", &["web2"]),
            ("shop", 5, "192.0.2.184", &["web1", "web2"]),
        ],
        drained: &["web2"],
        backends: &["web1", "web2"],
    },
    Version {
        what: "remove a cluster",
        clusters: &[
            ("www", 1, "192.0.2.181", &["web1", "web2"]),
            ("api", 2, "192.0.2.182", &["web2"]),
        ],
        drained: &["web2"],
        backends: &["web1", "web2"],
    },
    Version {
        what: "remove a host",
        clusters: &[
            ("www", 1, "192.0.2.181", &["web1"]),
            ("api", 2, "192.0.2.182", &["web1"]),
        ],
        drained: &[],
        backends: &["web1"],
    },
];

impl Version {
    /// The inventory: an nftables balancer (which holds the cluster
    /// addresses with its own `dsrgen-vips`) and the backends.
    fn inventory(&self) -> String {
        let mut text = String::from(
            "version: 1\n\nbalancers:\n  lb1:\n    engine: nftables\n    interface: eth2\n    address: 192.0.2.73/24\n\nbackends:\n",
        );
        for (n, backend) in self.backends.iter().enumerate() {
            let _ = write!(
                text,
                "  {backend}:\n    interface: eth0\n    address: 192.0.2.{}/24\n",
                11 + n
            );
        }
        text += "\nclusters:\n";
        for (name, id, address, backends) in self.clusters {
            let _ = write!(
                text,
                "  {name}:\n    id: {id}\n    address: {address}\n    balancers: [lb1]\n    ports:\n      - port: 80\n        backends: [{}]\n",
                backends.join(", ")
            );
            let drained: Vec<String> = self
                .drained
                .iter()
                .filter(|d| backends.contains(d))
                .map(|d| format!("{d}: 0"))
                .collect();
            if !drained.is_empty() {
                let _ = writeln!(text, "        weights: {{ {} }}", drained.join(", "));
            }
        }
        text
    }
}

/// Each host, with its interface (a veth in its namespace), the address the
/// host's own network setup gives it, and an address made by hand on the
/// device the script writes to.
pub(crate) const HOSTS: &[(&str, &str, Option<&str>, &str)] = &[
    ("web1", "eth0", None, "192.0.2.7/32 dev lo label lo:7"),
    ("web2", "eth0", None, "192.0.2.7/32 dev lo label lo:7"),
    (
        "lb1",
        "eth2",
        Some("192.0.2.73/24"),
        "192.0.2.8/24 dev eth2 label eth2:8",
    ),
];

/// An address as `ip -j addr` shows it: device, address, prefix, scope, label.
pub(crate) type Held = (String, String, u64, String, Option<String>);

/// Every address of every device, link-local ones left out (the kernel's).
pub(crate) fn parse_addresses(json: &str) -> BTreeSet<Held> {
    let links: serde_json::Value = serde_json::from_str(json).expect("ip -j prints JSON");
    let mut held = BTreeSet::new();
    for link in links.as_array().into_iter().flatten() {
        let device = link["ifname"].as_str().expect("ifname").to_owned();
        for a in link["addr_info"].as_array().into_iter().flatten() {
            let scope = a["scope"].as_str().expect("scope").to_owned();
            if scope == "link" {
                continue;
            }
            held.insert((
                device.clone(),
                a["local"].as_str().expect("local").to_owned(),
                a["prefixlen"].as_u64().expect("prefixlen"),
                scope,
                a["label"].as_str().map(str::to_owned),
            ));
        }
    }
    held
}

pub(crate) fn held(device: &str, cidr: &str, scope: &str, label: Option<&str>) -> Held {
    let (address, prefix) = cidr.split_once('/').expect("a cidr");
    (
        device.to_owned(),
        address.to_owned(),
        prefix.parse().expect("a prefix"),
        scope.to_owned(),
        label.map(str::to_owned),
    )
}

/// What `host` must hold under `model`: the namespace's own addresses, the
/// hand-made one, and the cluster addresses the model gives it.
pub(crate) fn expected(model: Option<&Model>, host: &str) -> BTreeSet<Held> {
    let (_, interface, own, hand) = HOSTS.iter().find(|h| h.0 == host).expect("a host");
    let mut want = BTreeSet::from([
        held("lo", "127.0.0.1/8", "host", Some("lo")),
        held("lo", "::1/128", "host", None),
    ]);
    if let Some(own) = own {
        want.insert(held(interface, own, "global", Some(interface)));
    }
    let hand: Vec<&str> = hand.split(' ').collect();
    want.insert(held(hand[2], hand[0], "global", Some(hand[4])));
    let Some(model) = model else { return want };
    if let Some((_, backend)) = model.backends.iter().find(|(n, _)| n.as_str() == host) {
        for vip in &backend.vips {
            want.insert(held(
                "lo",
                &format!("{}/32", vip.address),
                "host",
                vip.label.as_ref().map(dsrgen::model::Label::as_str),
            ));
        }
    }
    if let Some((_, balancer)) = model.balancers.iter().find(|(n, _)| n.as_str() == host) {
        for vip in &balancer.vips {
            want.insert(held(
                interface,
                &format!("{}/24", vip.address),
                "global",
                vip.label.as_ref().map(dsrgen::model::Label::as_str),
            ));
        }
    }
    want
}

fn model_of(inventory: &Path) -> Model {
    let source = dsrgen::inventory::load(inventory, "inventory.yaml").expect("load");
    dsrgen::compile(&source).model.expect("valid inventory")
}

/// The setup of a host's namespace: `/run` from `run`, lo up, its interface,
/// its own address, the hand-made one.
fn setup(host: &str, run: &Path) -> String {
    let (_, interface, own, hand) = HOSTS.iter().find(|h| h.0 == host).expect("a host");
    let own = own.map_or_else(String::new, |a| format!("ip addr add {a} dev {interface}"));
    format!(
        "mount --bind {run} /run
         ip link set lo up
         ip link add {interface} type veth peer name peer0
         ip link set {interface} up
         {own}
         ip addr add {hand}\n",
        run = run.display()
    )
}

fn in_host_namespace(script: &str) -> std::process::Output {
    Command::new("timeout")
        .args(["60", "unshare", "--net", "--mount", "sh", "-euc", script])
        .output()
        .expect("run unshare")
}

pub(crate) struct Sequence {
    pub(crate) tmp: TempDir,
    models: Vec<Model>,
}

impl Sequence {
    pub(crate) fn build() -> Self {
        let tmp = TempDir::new("converge");
        let mut models = Vec::new();
        for (n, version) in VERSIONS.iter().enumerate() {
            let dir = tmp.join(format!("v{n}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            let inventory = dir.join("inventory.yaml");
            std::fs::write(&inventory, version.inventory()).expect("write inventory");
            build(&inventory, &dir.join("out")).code(0);
            models.push(model_of(&inventory));
        }
        Self { tmp, models }
    }

    pub(crate) fn script(&self, n: usize, host: &str) -> PathBuf {
        self.tmp
            .join(format!("v{n}/out/hosts/{host}/usr/local/sbin/dsrgen-vips"))
    }

    pub(crate) fn model(&self, n: usize, host: &str) -> Option<&Model> {
        self.script(n, host).exists().then(|| &self.models[n])
    }
}

#[test]
fn every_version_of_the_inventory_lands_exactly() {
    if !crate::system::can_run("converging addresses", &["ip", "unshare", "awk"]) {
        return;
    }
    let seq = Sequence::build();
    for &(host, interface, ..) in HOSTS {
        let state = seq.tmp.join(format!("state-{host}"));
        let run = seq.tmp.join(format!("run-{host}"));
        std::fs::create_dir_all(&state).expect("mkdir");
        std::fs::create_dir_all(&run).expect("mkdir");
        let d = state.display();
        let mut script = setup(host, &run);
        // What a deployment does: the new script's `up`, then its `prune`;
        // a host whose script goes away runs the old one's `down`.
        for n in 0..VERSIONS.len() {
            let s = seq.script(n, host);
            let s = s.display();
            let _ = write!(script,
                "if [ -e {s} ]; then
                     cp {s} {d}/deployed
                     {d}/deployed up
                     if {d}/deployed status > {d}/{n}.before 2>&1; then echo ok >> {d}/{n}.before; fi
                     {d}/deployed prune
                     if {d}/deployed status > {d}/{n}.after 2>&1; then echo ok >> {d}/{n}.after; fi
                 elif [ -e {d}/deployed ]; then
                     {d}/deployed down
                     rm {d}/deployed
                 fi
                 ip -j addr show > {d}/{n}.json
                 cat /proc/sys/net/ipv4/conf/all/arp_ignore /proc/sys/net/ipv4/conf/all/arp_announce \
                     /proc/sys/net/ipv4/conf/{interface}/arp_ignore /proc/sys/net/ipv4/conf/{interface}/arp_announce > {d}/{n}.arp\n"
            );
        }
        let out = in_host_namespace(&script);
        assert_success(&format!("{host}: the sequence"), &out);

        let read = |name: String| std::fs::read_to_string(state.join(name)).unwrap_or_default();
        let mut before = expected(None, host);
        let mut ever_backend = false;
        for (n, version) in VERSIONS.iter().enumerate() {
            let model = seq.model(n, host);
            let want = expected(model, host);
            let got = parse_addresses(&read(format!("{n}.json")));
            assert_eq!(got, want, "{host} after step {n} ({})", version.what);

            let is_backend = model.is_some_and(|m| m.backends.keys().any(|b| b.as_str() == host));
            ever_backend |= is_backend;
            let arp = read(format!("{n}.arp"));
            if is_backend {
                assert_eq!(arp, "3\n2\n3\n2\n", "{host} step {n}: ARP settings");
            } else if !ever_backend {
                assert_eq!(arp, "0\n0\n0\n0\n", "{host} step {n}: ARP settings");
            }

            if model.is_some() {
                // `status` after `prune` says all is in place; before it, it
                // names each address the new version dropped as stale.
                let after = read(format!("{n}.after"));
                assert!(
                    after.ends_with("ok\n"),
                    "{host} step {n}: status before prune:\n{after}"
                );
                let unpruned = read(format!("{n}.before"));
                let dropped: Vec<&Held> = before
                    .iter()
                    .filter(|h| !want.iter().any(|w| (&w.0, &w.1, w.2) == (&h.0, &h.1, h.2)))
                    .collect();
                if dropped.is_empty() {
                    assert!(
                        unpruned.ends_with("ok\n"),
                        "{host} step {n}: status before prune:\n{unpruned}"
                    );
                } else {
                    assert!(
                        !unpruned.ends_with("ok\n"),
                        "{host} step {n}: status before prune:\n{unpruned}"
                    );
                    for (device, address, prefix, ..) in dropped {
                        assert!(
                            unpruned.contains(&format!("{address}/{prefix} is stale on {device}")),
                            "{host} step {n}: status names {address} as stale:\n{unpruned}"
                        );
                    }
                }
            }
            before = want;
        }
        assert!(
            seq.model(VERSIONS.len() - 1, "web2").is_none(),
            "the last step removes web2"
        );
    }
}

/// A reboot: the kernel holds nothing and `/run` is empty. At boot the host's
/// own setup makes addresses by hand, one of them an address an earlier
/// version of the inventory had (and dsrgen-vips added then); the boot unit's
/// `up`, then a deployment's `prune`, keep it.
#[test]
fn after_a_reboot_only_what_dsrgen_added_since_is_its_own() {
    if !crate::system::can_run("converging after a reboot", &["ip", "unshare", "awk"]) {
        return;
    }
    let seq = Sequence::build();
    let host = "web1";
    // Before the reboot: version 1 (shop at 192.0.2.183) is up.
    let run = seq.tmp.join("run-before");
    std::fs::create_dir_all(&run).expect("mkdir");
    let v1 = seq.script(1, host);
    let before = in_host_namespace(&format!(
        "{}{v1} up\n{v1} status",
        setup(host, &run),
        v1 = v1.display()
    ));
    assert_success("version 1 up before the reboot", &before);
    // After it: an empty /run, as a tmpfs is at boot.
    let run = seq.tmp.join("run-after");
    std::fs::create_dir_all(&run).expect("mkdir");
    let last = VERSIONS.len() - 1;
    let s = seq.script(last, host);
    let json = seq.tmp.join("rebooted.json");
    let after = in_host_namespace(&format!(
        "{}ip addr add 192.0.2.183/32 dev lo label lo:9
         {s} up
         {s} prune
         {s} status
         ip -j addr show > {json}",
        setup(host, &run),
        s = s.display(),
        json = json.display()
    ));
    assert_success(
        "the last version's up, prune and status after a reboot",
        &after,
    );
    let mut want = expected(seq.model(last, host), host);
    want.insert(held("lo", "192.0.2.183/32", "global", Some("lo:9")));
    let got = parse_addresses(&std::fs::read_to_string(&json).expect("read"));
    assert_eq!(got, want, "after a reboot");
}

/// A crash in the middle of `up`, just before or just after `ip addr add`:
/// either way the record covers what was added, so the next version's
/// `prune` removes it, and an address recorded but never added is passed
/// over by `prune` and `down` alike.
#[test]
fn a_crash_in_the_middle_of_up_leaves_nothing_unowned() {
    if !crate::system::can_run("converging after a crash", &["ip", "unshare", "awk"]) {
        return;
    }
    let seq = Sequence::build();
    let host = "web1";
    let ip = Command::new("sh")
        .args(["-c", "command -v ip"])
        .output()
        .expect("find ip");
    let ip = String::from_utf8_lossy(&ip.stdout).trim().to_owned();
    // An `ip` that kills the script calling it when it adds shop's address
    // (192.0.2.183): after adding it, or instead of adding it.
    for when in ["after", "instead"] {
        let bin = seq.tmp.join(format!("crash-{when}"));
        std::fs::create_dir_all(&bin).expect("mkdir");
        let add = if when == "after" {
            format!("{ip} \"$@\"")
        } else {
            String::new()
        };
        std::fs::write(
            bin.join("ip"),
            format!(
                "#!/bin/sh\ncase \"$*\" in\n*'addr add 192.0.2.183/32'*) {add}\n kill -9 $PPID; exit 1 ;;\nesac\nexec {ip} \"$@\"\n"
            ),
        )
        .expect("write");
        Command::new("chmod")
            .arg("+x")
            .arg(bin.join("ip"))
            .status()
            .expect("chmod");
        let run = seq.tmp.join(format!("run-{when}"));
        std::fs::create_dir_all(&run).expect("mkdir");
        let v1 = seq.script(1, host);
        let v2 = seq.script(2, host);
        let json = seq.tmp.join(format!("{when}.json"));
        let out = in_host_namespace(&format!(
            "{}if PATH={bin}:$PATH {v1} up; then echo 'the crash did not happen' >&2; exit 9; fi
             {v2} up
             {v2} prune
             {v2} status
             ip -j addr show > {json}
             {v2} down",
            setup(host, &run),
            bin = bin.display(),
            v1 = v1.display(),
            v2 = v2.display(),
            json = json.display()
        ));
        assert_success(&format!("a crash {when} adding an address"), &out);
        let got = parse_addresses(&std::fs::read_to_string(&json).expect("read"));
        assert_eq!(
            got,
            expected(seq.model(2, host), host),
            "after a crash {when} adding 192.0.2.183, then version 2's up and prune"
        );
        let record = std::fs::read_to_string(run.join("dsrgen-vips/owned")).expect("record");
        assert_eq!(record, "", "the record after down");
    }
}
