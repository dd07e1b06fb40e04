//! The Ansible role and the Puppet module of `contrib/`, run for real against
//! this machine into temporary roots: the first run deploys exactly the files
//! of the manifest with their modes and runs each reload once, the second run
//! changes nothing, and after a cluster goes away a run removes the files that
//! went with it and nothing else. Reload commands are recorded by a wrapper
//! given as the command prefix; the one that changes the network,
//! `dsrgen-vips up`, really runs the deployed script, inside a network
//! namespace of the test's own (`unshare --net` around the whole run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{API_CLUSTER, TempDir, build, root, tree_files};

/// The wrapper that stands for the reload commands: it logs each command per
/// host, and runs the host's own deployed loopback script for real.
const RECORDER: &str = r#"#!/bin/sh
log=$1; host_root=$2; shift 2
echo "$*" >> "$log"
case "$*" in
"/usr/local/sbin/dsrgen-vips "*)
	# The host's /run (where the script records what it added) is a folder
	# next to its root, bound in a mount namespace of the command's own.
	mkdir -p "$host_root.run"
	exec unshare --mount sh -c 'mount --bind "$1" /run && exec "$2/usr/local/sbin/dsrgen-vips" "$3"' \
		sh "$host_root.run" "$host_root" "${*##* }" ;;
esac
"#;

struct Lab {
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
        Self {
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

    fn prefix(&self, host: &str) -> String {
        format!(
            "sh {} {} {}",
            self.tmp.join("record.sh").display(),
            self.tmp.join(format!("{host}.log")).display(),
            self.host_root(host).display()
        )
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

/// The reloads of a backend's files, in the order both integrations run them.
const RELOADS: [&str; 4] = [
    "sysctl --system",
    "systemctl daemon-reload",
    "/usr/local/sbin/dsrgen-vips up",
    "networkctl reload",
];

/// What a backend that stops serving runs: its script takes its addresses
/// down before it goes, and the other files' reloads run once more.
const RELOADS_ON_REMOVAL: [&str; 4] = [
    "/usr/local/sbin/dsrgen-vips down",
    "sysctl --system",
    "systemctl daemon-reload",
    "networkctl reload",
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
    if !crate::system::can_run("ansible role", &["ansible-playbook", "unshare"]) {
        return;
    }
    let lab = Lab::new("ansible");
    let (both, api_only) = inventories();
    let hosts: Vec<String> = ["web1", "web2"]
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
    // The README's two-line playbook, pointed at this lab's output folder.
    std::fs::write(
        lab.tmp.join("site.yml"),
        format!(
            "- hosts: all\n  roles: [{{ role: dsrgen, dsrgen_output: {} }}]\n",
            lab.out.display()
        ),
    )
    .expect("write");
    let playbook = || {
        let mut c = Command::new("unshare");
        // One host at a time: here every host's `dsrgen-vips up` runs in the
        // same namespace, and two at once would race to add the same address.
        c.args(["--net", "ansible-playbook", "--forks", "1", "-i"])
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
    let reloads = RELOADS;

    lab.build(&both);
    let first = playbook();
    for host in ["web1", "web2"] {
        assert!(recap(&first, host).contains("failed=0"), "{first}");
        lab.assert_deployed(host, &[]);
        assert_eq!(lab.log(host), reloads, "{host}: each reload once, in order");
    }

    let second = playbook();
    for host in ["web1", "web2"] {
        assert!(recap(&second, host).contains(" changed=0 "), "{second}");
        assert_eq!(
            lab.log(host).len(),
            reloads.len(),
            "{host}: reloads on a run that changed nothing"
        );
    }

    std::fs::write(lab.host_root("web2").join("etc/hand.txt"), "mine\n").expect("write");
    lab.build(&api_only);
    let third = playbook();
    assert!(recap(&third, "web2").contains("failed=0"), "{third}");
    lab.assert_deployed("web1", &[]);
    lab.assert_deployed("web2", &["etc/hand.txt"]);
    assert_eq!(lab.log("web2")[reloads.len()..], RELOADS_ON_REMOVAL);
    assert!(lab.manifest_files("web2").is_empty());
    assert_eq!(
        std::fs::read_to_string(lab.host_root("web2").join("etc/hand.txt")).expect("hand file"),
        "mine\n"
    );
}

#[test]
fn the_puppet_module_deploys_prunes_and_reloads_once() {
    if !crate::system::can_run("puppet module", &["puppet", "unshare"]) {
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

    let apply = |host: &str| {
        std::fs::create_dir_all(lab.host_root(host)).expect("mkdir");
        let class = format!(
            "class {{ 'dsrgen': output => '{}', host => '{host}', root => '{}', command_prefix => '{}' }}",
            lab.out.display(),
            lab.host_root(host).display(),
            lab.prefix(host)
        );
        let out = Command::new("unshare")
            .args([
                "--net",
                "puppet",
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
            "puppet apply for {host}: {code:?}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        code
    };
    let reloads = RELOADS;

    lab.build(&both);
    for host in ["web1", "web2"] {
        assert_eq!(apply(host), Some(2));
        lab.assert_deployed(host, &[]);
        assert_eq!(lab.log(host), reloads, "{host}: each reload once, in order");
        assert_eq!(
            apply(host),
            Some(0),
            "{host}: a second run changed something"
        );
        assert_eq!(lab.log(host).len(), reloads.len());
    }

    std::fs::write(lab.host_root("web2").join("etc/hand.txt"), "mine\n").expect("write");
    lab.build(&api_only);
    assert_eq!(apply("web2"), Some(2));
    lab.assert_deployed("web2", &["etc/hand.txt"]);
    assert_eq!(lab.log("web2")[reloads.len()..], RELOADS_ON_REMOVAL);
    assert_eq!(
        apply("web2"),
        Some(0),
        "web2: a run after the removal changed something"
    );
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
    let handlers = read("contrib/ansible/roles/dsrgen/handlers/main.yml");
    let ansible: Vec<&str> = handlers
        .lines()
        .filter_map(|l| l.strip_prefix("- name: "))
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
    assert_eq!(ansible, declared, "Ansible handlers, in order");
    assert_eq!(puppet, declared, "Puppet reload order");
}
