//! The Ansible role and the Puppet module of `contrib/`, run for real against
//! this machine into temporary roots, for a fleet of a balancer and two
//! backends rolled out phase by phase: the first rollout deploys exactly the
//! files of the manifest with their modes and runs each reload once, the
//! second changes nothing, and after a cluster goes away a rollout removes
//! the files that went with it and nothing else, runs the backends' `prune`
//! (and `down`) only after the balancer reloaded, and leaves no host holding
//! the removed address. Reload commands are recorded by a wrapper given as
//! the command prefix; the ones that change the network, `dsrgen-vips up`,
//! `prune` and `down`, really run the deployed script, in the host's own
//! network namespace (held by a process of the test's).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{API_CLUSTER, TempDir, build, root, tree_files};

/// The wrapper that stands for the reload commands: it logs each command per
/// host and in one log for the fleet, and runs the host's own deployed
/// loopback script for real, in the host's namespaces (see [`Holder`]).
const RECORDER: &str = r#"#!/bin/sh
log=$1; host_root=$2; pid=$3; shift 3
echo "$*" >> "$log"
echo "${host_root##*/} $*" >> "${log%/*}/fleet.log"
case "$*" in
"/usr/local/sbin/dsrgen-vips "*)
	exec nsenter -t "$pid" -n -m "$host_root/usr/local/sbin/dsrgen-vips" "${*##* }" ;;
esac
"#;

/// A host's network namespace, and a mount namespace in which its /run (where
/// `dsrgen-vips` records what it added) is a folder of the test's: held by a
/// process of the test's own, killed by its id when the test ends.
struct Holder {
    child: std::process::Child,
}

impl Holder {
    fn new(run: &Path, ready: &Path) -> Self {
        std::fs::create_dir_all(run).expect("mkdir");
        let child = Command::new("unshare")
            .args(["--net", "--mount", "sh", "-euc"])
            .arg(format!(
                "mount --bind {run} /run
                 ip link set lo up
                 ip link add eth0 type veth peer name peer0
                 ip link add eth2 type veth peer name peer2
                 ip link set eth2 up
                 ip addr add 192.0.2.73/24 dev eth2
                 touch {ready}
                 exec sleep 600",
                run = run.display(),
                ready = ready.display()
            ))
            .spawn()
            .expect("start a namespace holder");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ready.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the namespace holder did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Self { child }
    }

    /// The addresses the host holds, as `ip -o addr` prints them.
    fn addresses(&self) -> String {
        let out = Command::new("nsenter")
            .args(["-t", &self.child.id().to_string(), "-n", "ip", "-o", "addr"])
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Lab {
    holders: BTreeMap<&'static str, Holder>,
    tmp: TempDir,
    inventory: PathBuf,
    out: PathBuf,
}

impl Lab {
    fn new(name: &str) -> Self {
        let tmp = TempDir::new(name);
        std::fs::write(tmp.join("record.sh"), RECORDER).expect("write recorder");
        let inventory = tmp.join("inventory.yaml");
        let out = tmp.join("out");
        let holders = HOSTS
            .iter()
            .map(|h| {
                let holder = Holder::new(
                    &tmp.join(format!("run-{h}")),
                    &tmp.join(format!("{h}.ready")),
                );
                (*h, holder)
            })
            .collect();
        Self {
            holders,
            tmp,
            inventory,
            out,
        }
    }

    /// Write the inventory (always under one name: it is in every header) and
    /// build it.
    fn build(&self, text: &str) {
        std::fs::write(&self.inventory, text).expect("write inventory");
        build(&self.inventory, &self.out).code(0);
    }

    fn host_root(&self, host: &str) -> PathBuf {
        self.tmp.join(format!("root/{host}"))
    }

    fn log(&self, host: &str) -> Vec<String> {
        std::fs::read_to_string(self.tmp.join(format!("{host}.log")))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The commands of the whole fleet, as `<host> <command>`, in the order
    /// they ran.
    fn fleet_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.tmp.join("fleet.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn prefix(&self, host: &str) -> String {
        format!(
            "sh {} {} {} {}",
            self.tmp.join("record.sh").display(),
            self.tmp.join(format!("{host}.log")).display(),
            self.host_root(host).display(),
            self.holders[host].child.id()
        )
    }

    /// After the change that removes `www` (192.0.2.181, id 1): the fleet ran
    /// the backends' `up` before the balancer's reload, and their `prune` and
    /// `down` after it; no host holds the removed address any more, and the
    /// cluster that stays is in place.
    fn assert_removal_converged(&self, since: usize) {
        let log = &self.fleet_log()[since..];
        let at = |line: &str| {
            log.iter()
                .position(|l| l == line)
                .unwrap_or_else(|| panic!("`{line}` did not run:\n{}", log.join("\n")))
        };
        let reload = at("lb1 systemctl reload keepalived");
        assert!(
            at("web1 /usr/local/sbin/dsrgen-vips up") < reload,
            "{log:#?}"
        );
        assert!(
            at("lb1 /usr/local/sbin/dsrgen-vips prune") > reload,
            "{log:#?}"
        );
        assert!(
            at("web1 /usr/local/sbin/dsrgen-vips prune") > reload,
            "{log:#?}"
        );
        assert!(
            at("web2 /usr/local/sbin/dsrgen-vips down") > reload,
            "{log:#?}"
        );
        for host in HOSTS {
            let held = self.holders[host].addresses();
            assert!(
                !held.contains(" 192.0.2.181/"),
                "{host} still holds the removed address:\n{held}"
            );
        }
        assert!(
            self.holders["web1"]
                .addresses()
                .contains("inet 192.0.2.182/32 scope host lo:2")
        );
        assert!(
            self.holders["lb1"]
                .addresses()
                .contains("inet 192.0.2.182/24 scope global secondary eth2:2")
        );
        assert!(!self.holders["web2"].addresses().contains("lo:"));
    }

    /// The files the manifest lists for `host`, with their modes.
    fn manifest_files(&self, host: &str) -> BTreeMap<PathBuf, String> {
        let text = std::fs::read_to_string(self.out.join("manifest.json")).expect("manifest");
        let (manifest, _) = dsrgen::manifest::Manifest::parse(&text).expect("parse");
        manifest
            .files
            .into_iter()
            .filter(|f| f.host == host)
            .map(|f| (PathBuf::from(f.path), f.mode))
            .collect()
    }

    /// The deployed tree must be exactly the manifest's files, each with the
    /// mode and bytes of the output folder, plus the role's state file and
    /// whatever `extra` names.
    fn assert_deployed(&self, host: &str, extra: &[&str]) {
        let want = self.manifest_files(host);
        let host_root = self.host_root(host);
        let mut got = tree_files(&host_root);
        got.retain(|p| {
            p != Path::new("var/lib/dsrgen/deployed.json")
                && p != Path::new("var/lib/dsrgen/pending.json")
                && !extra.contains(&&*p.to_string_lossy())
        });
        let want_paths: Vec<&PathBuf> = want.keys().collect();
        assert_eq!(
            got.iter().collect::<Vec<_>>(),
            want_paths,
            "{host}: deployed files"
        );
        for (path, mode) in &want {
            let deployed = host_root.join(path);
            let meta = std::fs::metadata(&deployed).expect("stat");
            let actual = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
            assert_eq!(
                format!("{actual:04o}"),
                *mode,
                "{host}: mode of {}",
                path.display()
            );
            assert_eq!(
                std::fs::read(&deployed).expect("read"),
                std::fs::read(self.out.join(format!("hosts/{host}")).join(path)).expect("read"),
                "{host}: {}",
                path.display()
            );
        }
    }
}

const WWW: &str = "  www:
    id: 1
    address: 192.0.2.181
    balancers: [lb1]
    ports:
      - port: 80
        backends: [web1, web2]
";

/// The hosts of the lab: the balancer and the backends of `minimal.yaml`.
const HOSTS: [&str; 3] = ["lb1", "web1", "web2"];

/// The reloads of a backend's files, in the order both integrations run them:
/// phase `up`, then phase `prune`.
const RELOADS: [&str; 5] = [
    "sysctl --system",
    "systemctl daemon-reload",
    "/usr/local/sbin/dsrgen-vips up",
    "networkctl reload",
    "/usr/local/sbin/dsrgen-vips prune",
];

/// The balancer's, all in phase `reload`: its addresses up, its tables, then
/// what went pruned.
const BALANCER_RELOADS: [&str; 4] = [
    "systemctl daemon-reload",
    "/usr/local/sbin/dsrgen-vips up",
    "systemctl reload keepalived",
    "/usr/local/sbin/dsrgen-vips prune",
];

fn reloads(host: &str) -> &'static [&'static str] {
    if host == "lb1" {
        &BALANCER_RELOADS
    } else {
        &RELOADS
    }
}

/// What a backend that stops serving runs: the reloads of its files that went
/// away in phase `up`, and its script's `down` (before the script goes) in
/// phase `prune`, once the balancers no longer forward to it.
const RELOADS_ON_REMOVAL: [&str; 4] = [
    "sysctl --system",
    "systemctl daemon-reload",
    "networkctl reload",
    "/usr/local/sbin/dsrgen-vips down",
];

fn inventories() -> (String, String) {
    let minimal =
        std::fs::read_to_string(root().join("fixtures/valid/minimal.yaml")).expect("read");
    let both = format!("{minimal}{API_CLUSTER}");
    // Without `www`, web2 serves nothing: all its files go.
    let api_only = both.replace(WWW, "");
    assert_ne!(both, api_only);
    (both, api_only)
}

fn run(mut command: Command) -> String {
    let out = command.output().expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() || out.status.code() == Some(2),
        "{out:?}\n{text}"
    );
    text
}

#[test]
fn the_ansible_role_deploys_prunes_and_reloads_once() {
    if !crate::system::can_run("ansible role", &["ansible-playbook", "unshare", "nsenter"]) {
        return;
    }
    let lab = Lab::new("ansible");
    let (both, api_only) = inventories();
    let hosts: Vec<String> = HOSTS
        .iter()
        .map(|h| {
            format!(
                "{h} ansible_connection=local ansible_python_interpreter=/usr/bin/python3 dsrgen_root={} dsrgen_command_prefix=\"{}\"",
                lab.host_root(h).display(),
                lab.prefix(h)
            )
        })
        .collect();
    let hosts = hosts.join("\n") + "\n";
    std::fs::write(lab.tmp.join("hosts.ini"), hosts).expect("write");
    // The fleet playbook of contrib/, pointed at this lab's output folder.
    let site = std::fs::read_to_string(root().join("contrib/ansible/site.yml")).expect("read");
    let site = site.replace(
        "\"{{ playbook_dir }}/../../out\"",
        &lab.out.display().to_string(),
    );
    assert_eq!(site.matches(&*lab.out.display().to_string()).count(), 3);
    std::fs::write(lab.tmp.join("site.yml"), site).expect("write");
    let playbook = || {
        let mut c = Command::new("ansible-playbook");
        c.args(["--forks", "1", "-i"])
            .arg(lab.tmp.join("hosts.ini"))
            .arg(lab.tmp.join("site.yml"))
            .env("ANSIBLE_ROLES_PATH", root().join("contrib/ansible/roles"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_LOCAL_TEMP", lab.tmp.join("ansible-tmp"));
        run(c)
    };
    let recap = |text: &str, host: &str| {
        text.lines()
            .find(|l| l.starts_with(host) && l.contains("changed="))
            .unwrap_or_else(|| panic!("no recap for {host} in:\n{text}"))
            .to_owned()
    };

    lab.build(&both);
    let first = playbook();
    for host in HOSTS {
        assert!(recap(&first, host).contains("failed=0"), "{first}");
        lab.assert_deployed(host, &[]);
        assert_eq!(
            lab.log(host),
            reloads(host),
            "{host}: each reload once, in order"
        );
    }

    let second = playbook();
    for host in HOSTS {
        assert!(recap(&second, host).contains(" changed=0 "), "{second}");
        assert_eq!(
            lab.log(host).len(),
            reloads(host).len(),
            "{host}: reloads on a run that changed nothing"
        );
    }

    std::fs::write(lab.host_root("web2").join("etc/hand.txt"), "mine\n").expect("write");
    lab.build(&api_only);
    let since = lab.fleet_log().len();
    let third = playbook();
    assert!(recap(&third, "web2").contains("failed=0"), "{third}");
    lab.assert_deployed("web1", &[]);
    lab.assert_deployed("web2", &["etc/hand.txt"]);
    assert_eq!(lab.log("web2")[RELOADS.len()..], RELOADS_ON_REMOVAL);
    assert!(lab.manifest_files("web2").is_empty());
    assert_eq!(
        std::fs::read_to_string(lab.host_root("web2").join("etc/hand.txt")).expect("hand file"),
        "mine\n"
    );
    lab.assert_removal_converged(since);
}

#[test]
fn the_puppet_module_deploys_prunes_and_reloads_once() {
    if !crate::system::can_run("puppet module", &["puppet", "unshare", "nsenter"]) {
        return;
    }
    let lab = Lab::new("puppet");
    let (both, api_only) = inventories();
    let modules = root().join("contrib/puppet");
    let validate = Command::new("puppet")
        .args(["parser", "validate", "--modulepath"])
        .arg(&modules)
        .arg(modules.join("dsrgen/manifests/init.pp"))
        .output()
        .expect("run puppet parser validate");
    assert!(validate.status.success(), "{validate:?}");

    let apply = |host: &str, phase: &str| {
        std::fs::create_dir_all(lab.host_root(host)).expect("mkdir");
        let class = format!(
            "class {{ 'dsrgen': output => '{}', phase => '{phase}', host => '{host}', root => '{}', command_prefix => '{}' }}",
            lab.out.display(),
            lab.host_root(host).display(),
            lab.prefix(host)
        );
        let out = Command::new("puppet")
            .args([
                "apply",
                "--detailed-exitcodes",
                "--color=false",
                "--modulepath",
            ])
            .arg(&modules)
            .args(["-e", &class])
            .output()
            .expect("run puppet apply");
        // 0: nothing to do, 2: changes made; 4 and 6 mean failures.
        let code = out.status.code();
        assert!(
            matches!(code, Some(0 | 2)),
            "puppet apply for {host}, phase {phase}: {code:?}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        code
    };
    // A fleet's rollout: each phase on every host before the next.
    let rollout = || {
        let mut codes = BTreeMap::new();
        for phase in ["up", "reload", "prune"] {
            for host in HOSTS {
                let code = apply(host, phase);
                let seen = codes.entry(host).or_insert(Some(0));
                if code == Some(2) {
                    *seen = code;
                }
            }
        }
        codes
    };

    lab.build(&both);
    let first = rollout();
    for host in HOSTS {
        assert_eq!(first[host], Some(2), "{host}: the first rollout");
        lab.assert_deployed(host, &[]);
        assert_eq!(
            lab.log(host),
            reloads(host),
            "{host}: each reload once, in order"
        );
    }
    let second = rollout();
    for host in HOSTS {
        assert_eq!(
            second[host],
            Some(0),
            "{host}: a second rollout changed something"
        );
        assert_eq!(lab.log(host).len(), reloads(host).len());
    }

    std::fs::write(lab.host_root("web2").join("etc/hand.txt"), "mine\n").expect("write");
    lab.build(&api_only);
    let since = lab.fleet_log().len();
    assert_eq!(rollout()["web2"], Some(2));
    lab.assert_deployed("web1", &[]);
    lab.assert_deployed("web2", &["etc/hand.txt"]);
    assert_eq!(lab.log("web2")[RELOADS.len()..], RELOADS_ON_REMOVAL);
    lab.assert_removal_converged(since);
    assert_eq!(
        rollout()["web2"],
        Some(0),
        "web2: a rollout after the removal changed something"
    );
    // A single host deploys in one go with the default phase, `all`.
    assert_eq!(apply("web1", "all"), Some(0));
    assert_eq!(
        std::fs::read_to_string(lab.host_root("web2").join("etc/hand.txt")).expect("hand file"),
        "mine\n"
    );
}

/// Both integrations list every reload command a manifest can name, in the
/// order dsrgen declares (`dsrgen::kind::reload_order`): a new kind of file
/// with a new reload, or a reordered stage, fails here until they follow.
#[test]
fn the_integrations_run_every_reload_in_the_declared_order() {
    let read = |path: &str| std::fs::read_to_string(root().join(path)).expect("read");
    let vars = read("contrib/ansible/roles/dsrgen/vars/main.yml");
    let ansible: Vec<&str> = vars
        .lines()
        .filter_map(|l| l.strip_prefix("  - "))
        .collect();
    let init = read("contrib/puppet/dsrgen/manifests/init.pp");
    let list = init
        .split_once("$order = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .expect("init.pp has an $order list")
        .0;
    let puppet: Vec<&str> = list
        .lines()
        .filter_map(|l| l.trim().strip_prefix('\'')?.strip_suffix("',"))
        .collect();
    let declared = dsrgen::kind::reload_order();
    assert_eq!(ansible, declared, "Ansible reload order");
    assert_eq!(puppet, declared, "Puppet reload order");
}
