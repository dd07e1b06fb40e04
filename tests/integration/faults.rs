//! The output folder under faults: links where folders belong, manifests that
//! lie, a read-only filesystem, two builds at once, and builds killed at random
//! points. dsrgen must never write outside the folder, never leave a file half
//! written, and always converge on the next build.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dsrgen::manifest::Manifest;

use crate::support::{TempDir, build, root, tree_files};

fn minimal() -> PathBuf {
    root().join("fixtures/valid/minimal.yaml")
}

/// Every file of a tree with its bytes, temporaries left out.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    tree_files(dir)
        .into_iter()
        .filter(|p| !is_bookkeeping(p))
        .map(|p| {
            let bytes = std::fs::read(dir.join(&p)).expect("read");
            (p, bytes)
        })
        .collect()
}

fn is_bookkeeping(path: &Path) -> bool {
    let name = path.file_name().expect("named").to_string_lossy();
    name.ends_with(".dsrgen-tmp")
}

#[test]
fn an_output_folder_that_is_a_link_is_refused() {
    let tmp = TempDir::new("out-link");
    let real = tmp.join("real");
    std::fs::create_dir(&real).expect("mkdir");
    std::os::unix::fs::symlink(&real, tmp.join("out")).expect("symlink");
    build(&minimal(), &tmp.join("out"))
        .code(2)
        .stderr_has("is a symbolic link; dsrgen writes only into a real folder");
    assert!(tree_files(&real).is_empty(), "wrote through the link");
}

#[test]
fn a_host_folder_that_is_a_link_is_refused() {
    let tmp = TempDir::new("host-link");
    let out = tmp.join("out");
    let elsewhere = tmp.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    std::fs::create_dir_all(out.join("hosts")).expect("mkdir");
    std::os::unix::fs::symlink(&elsewhere, out.join("hosts/web1")).expect("symlink");
    build(&minimal(), &out)
        .code(2)
        .stderr_has("hosts/web1` is in the way: it is a symbolic link or not a folder");
    assert!(tree_files(&elsewhere).is_empty(), "wrote through the link");
    assert!(!out.join("manifest.json").exists());
}

#[test]
fn a_file_that_is_a_link_is_neither_followed_nor_replaced() {
    let tmp = TempDir::new("file-link");
    let out = tmp.join("out");
    build(&minimal(), &out).code(0);
    let outside = tmp.join("outside.conf");
    std::fs::write(&outside, "precious\n").expect("write");
    let conf = out.join("hosts/web1/etc/sysctl.d/90-dsrgen.conf");
    std::fs::remove_file(&conf).expect("rm");
    std::os::unix::fs::symlink(&outside, &conf).expect("symlink");
    build(&minimal(), &out)
        .code(2)
        .stderr_has("it is a symbolic link, and dsrgen neither follows nor replaces it");
    assert_eq!(
        std::fs::read_to_string(&outside).expect("read"),
        "precious\n"
    );
}

#[test]
fn a_manifest_listing_paths_outside_the_tree_prunes_nothing_there() {
    let tmp = TempDir::new("lying-manifest");
    let out = tmp.join("out");
    build(&minimal(), &out).code(0);
    let victim = tmp.join("victim");
    std::fs::write(&victim, "keep me\n").expect("write");
    let manifest = std::fs::read_to_string(out.join("manifest.json")).expect("read");
    let lying = manifest.replacen(
        "\"files\": [",
        "\"files\": [\n    {\"host\": \"web1\", \"role\": \"backend\", \"path\": \"../../../victim\", \"mode\": \"0644\", \"sha256\": \"x\", \"reload\": \"r\"},\n    {\"host\": \"..\", \"role\": \"backend\", \"path\": \"victim\", \"mode\": \"0644\", \"sha256\": \"x\", \"reload\": \"r\"},",
        1,
    );
    std::fs::write(out.join("manifest.json"), lying).expect("write");
    build(&minimal(), &out)
        .code(0)
        .stderr_has("which is not a path inside `hosts/<host>/`; ignoring it");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim survives"),
        "keep me\n"
    );
    // The manifest is honest again.
    assert_eq!(
        std::fs::read_to_string(out.join("manifest.json")).expect("read"),
        manifest
    );
}

/// Run a build inside a mount namespace where the output folder is read-only.
#[test]
fn a_read_only_folder_fails_cleanly() {
    if !crate::system::can_run("read-only output folder", &["unshare", "mount"]) {
        return;
    }
    let tmp = TempDir::new("read-only");
    let out = tmp.join("out");
    let inventory = tmp.join("inventory.yaml");
    let text = std::fs::read_to_string(minimal()).expect("read");
    std::fs::write(&inventory, &text).expect("write");
    build(&inventory, &out).code(0);
    let before = contents(&out);
    std::fs::write(&inventory, text.replace("192.0.2.181", "192.0.2.182")).expect("edit");
    let run = Command::new("unshare")
        .args(["--mount", "sh", "-euc"])
        .arg(format!(
            "mount --bind {out} {out}; mount -o remount,bind,ro {out}; exec {bin} build {inv} --out {out}",
            out = out.display(),
            bin = env!("CARGO_BIN_EXE_dsrgen"),
            inv = inventory.display()
        ))
        .output()
        .expect("run");
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert_eq!(contents(&out), before, "something was written");
    assert!(
        tree_files(&out)
            .iter()
            .all(|p| !p.to_string_lossy().ends_with(".dsrgen-tmp"))
    );
}

#[test]
fn two_builds_at_once_take_turns() {
    let tmp = TempDir::in_memory("concurrent");
    let inventory = tmp.join("inventory.yaml");
    std::fs::write(&inventory, big_inventory(600, 120, 1)).expect("write");
    let out = tmp.join("out");
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_dsrgen"))
            .arg("build")
            .arg(&inventory)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (
        a.wait_with_output().expect("wait"),
        b.wait_with_output().expect("wait"),
    );
    assert!(a.status.success() && b.status.success(), "{a:?}\n{b:?}");
    // One wrote everything, the other found it done.
    let summaries = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    assert!(summaries.contains(" 0 written, "), "{summaries}");
    let fresh = tmp.join("fresh");
    build(&inventory, &fresh).code(0);
    assert_eq!(contents(&out), contents(&fresh));
}

/// A synthetic inventory: `backends` backends on one /16, `clusters` clusters
/// of 10 backends each on two ports; `variant` moves weights and membership so
/// that two variants share most files but not all. Variant 2 has 20 backends
/// more, so that going from one variant to the other creates files and
/// removes others.
fn big_inventory(backends: usize, clusters: usize, variant: usize) -> String {
    let backends = if variant == 2 {
        backends + 20
    } else {
        backends
    };
    let mut text = String::from(
        "version: 1\nbalancers:\n  lb1:\n    engine: ipvsadm\n    interface: eth1\n    address: 198.18.0.1/16\nbackends:\n",
    );
    for b in 0..backends {
        let _ = write!(
            text,
            "  web{b:04}:\n    interface: eth0\n    address: 198.18.{}.{}/16\n",
            1 + b / 250,
            1 + b % 250
        );
    }
    text.push_str("clusters:\n");
    for c in 0..clusters {
        // Variant 2 drops every fifth cluster and shifts membership.
        if variant == 2 && c % 5 == 0 {
            continue;
        }
        let start = c * 5 + variant * (c % 3);
        let members: Vec<String> = (0..10)
            .map(|k| format!("web{:04}", (start + k) % backends))
            .collect();
        let _ = write!(
            text,
            "  svc{c:04}:\n    id: {}\n    address: 198.18.200.{}\n    balancers: [lb1]\n    ports:\n      - port: 80\n        backends: [{m}]\n        weights: {{ {first}: {w} }}\n      - port: 443\n        backends: [{m}]\n",
            c + 1,
            c + 1,
            m = members.join(", "),
            first = members[0],
            w = variant + 1,
        );
    }
    text
}

/// A tiny deterministic generator for kill times (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Kill builds at random moments, 100 times or more, alternating between two
/// inventories. After every kill each file holds one version or the other,
/// never a mix or a truncation; the next complete build gives exactly the tree
/// a fresh build gives.
#[test]
fn builds_killed_at_random_points_converge() {
    let tmp = TempDir::in_memory("sigkill");
    let inventories = [tmp.join("a.yaml"), tmp.join("b.yaml")];
    for (i, inventory) in inventories.iter().enumerate() {
        std::fs::write(inventory, big_inventory(200, 60, i + 1)).expect("write");
    }
    // The two complete trees, built fresh.
    let fresh: Vec<BTreeMap<PathBuf, Vec<u8>>> = inventories
        .iter()
        .enumerate()
        .map(|(i, inventory)| {
            let dir = tmp.join(format!("fresh-{i}"));
            build(inventory, &dir).code(0);
            contents(&dir)
        })
        .collect();
    // A build that creates files first writes the manifest it found with the
    // new files added (its manifest of intent), under the new inventory's
    // name and with its rollout: after kills in a row, either tree's digests
    // under either name and rollout.
    let manifests: Vec<Manifest> = fresh
        .iter()
        .map(|tree| {
            let text = std::str::from_utf8(&tree[Path::new("manifest.json")]).expect("UTF-8");
            Manifest::parse(text).expect("a manifest").0
        })
        .collect();
    let manifests = &manifests;
    let intents: Vec<Vec<u8>> = [(0, 1), (1, 0)]
        .iter()
        .flat_map(|&(new, old)| {
            let intent = manifests[new].intent(&manifests[old].files);
            manifests.iter().map(move |named| {
                let mut intent = intent.clone();
                intent.inventory.clone_from(&named.inventory);
                intent.rollout.clone_from(&named.rollout);
                intent.to_json().into_bytes()
            })
        })
        .collect();
    let out = tmp.join("out");
    let started = Instant::now();
    build(&inventories[0], &out).code(0);
    let one_build = started.elapsed();

    let seed = 0x5eed_u64 ^ u64::from(std::process::id());
    let mut rng = Rng(seed | 1);
    let window = u64::try_from(one_build.as_micros())
        .expect("short")
        .max(1_000);
    let mut interrupted = 0;
    let mut intent_seen = 0;
    // At least 100 kills, and more (up to 400) until enough of them landed
    // while files were being written: where the write is a small part of a
    // build, few kills of the first hundred do, and the test would prove
    // little or fail by chance.
    let mut rounds = 0;
    for round in 0..400 {
        if round >= 100 && interrupted >= 10 && intent_seen >= 1 {
            break;
        }
        rounds += 1;
        let target = &inventories[(round + 1) % 2];
        let mut child = Command::new(env!("CARGO_BIN_EXE_dsrgen"))
            .arg("build")
            .arg(target)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_micros(rng.below(window)));
        let _ = child.kill(); // SIGKILL
        child.wait().expect("reap");
        // A build under way gives the manifest the mode 0600.
        if std::fs::metadata(out.join("manifest.json"))
            .is_ok_and(|m| m.permissions().mode() & 0o777 == 0o600)
        {
            interrupted += 1;
        }

        for (path, bytes) in contents(&out) {
            let intent = path == Path::new("manifest.json") && intents.contains(&bytes);
            intent_seen += usize::from(intent);
            let known = intent || fresh.iter().any(|tree| tree.get(&path) == Some(&bytes));
            assert!(
                known,
                "round {round} (seed {seed:#x}): {} is neither version",
                path.display()
            );
        }
    }
    // Enough kills must land while files are being written for this to prove
    // anything.
    assert!(
        interrupted >= 10,
        "only {interrupted} of {rounds} kills interrupted a write"
    );
    assert!(
        intent_seen >= 1,
        "no kill landed while a manifest of intent stood"
    );
    println!(
        "{interrupted} of {rounds} kills interrupted a write, {intent_seen} with a manifest of intent; one build takes {one_build:?}"
    );
    // The next complete build converges on the clean result.
    build(&inventories[0], &out).code(0);
    assert_eq!(contents(&out), fresh[0], "seed {seed:#x}");
    let leftovers: Vec<PathBuf> = tree_files(&out)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".dsrgen-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let mode = std::fs::metadata(out.join("manifest.json"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
}
