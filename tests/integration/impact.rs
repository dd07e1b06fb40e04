//! `dsrgen impact`: golden reports in every format for sequences of changes
//! to the shipped examples, the unchanged case, `--against` with git, and
//! the share of remapped flows against brute force: flows hashed the way
//! the generated nftables rules hash them, through the tables dsrgen wrote.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{TempDir, Test, assert_no_failures, golden, root, stale_goldens, yaml_files};

/// Each folder of `fixtures/impact/` is a sequence of changes to the
/// example of its name: step N is compared with step N-1 (step 1 with the
/// example itself), and the report in each format is a golden file.
#[test]
fn impact_reports_match_their_golden_files() {
    let mut failures = Vec::new();
    let mut sequences: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures/impact"))
        .expect("fixtures/impact exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    sequences.sort();
    assert!(!sequences.is_empty());
    for dir in sequences {
        let name = dir
            .file_name()
            .expect("named")
            .to_string_lossy()
            .into_owned();
        let mut previous = PathBuf::from(format!("examples/{name}.yaml"));
        let golden_dir = Path::new("golden/impact").join(&name);
        let mut wanted = Vec::new();
        for step in yaml_files(&format!("fixtures/impact/{name}")) {
            let stem = step
                .file_stem()
                .expect("named")
                .to_string_lossy()
                .into_owned();
            for (format, extension) in [("text", "txt"), ("markdown", "md"), ("json", "json")] {
                let out = Test::new()
                    .arg("impact")
                    .arg(&previous)
                    .arg(&step)
                    .args(["--format", format])
                    .run();
                if out.code != Some(0) {
                    failures.push(format!("{}: expected exit code 0:\n{out}", step.display()));
                }
                let path = golden_dir.join(format!("{stem}.{extension}"));
                golden(&path, &out.stdout, &mut failures);
                wanted.push(path);
            }
            previous = step;
        }
        stale_goldens(&golden_dir, &wanted, &mut failures);
    }
    assert_no_failures(&failures);
}

/// The JSON report's documented fields, read back: a rename breaks tools.
#[test]
fn impact_json_has_its_documented_fields() {
    let out = Test::new()
        .args([
            "impact",
            "fixtures/impact/nftables-edge/01-add-backend.yaml",
            "fixtures/impact/nftables-edge/02-drain.yaml",
            "--format",
            "json",
        ])
        .run();
    out.code(0);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(report["format"], 1);
    assert_eq!(report["unchanged"], false);
    let cluster = &report["clusters"][0];
    assert_eq!(cluster["name"], "static");
    assert_eq!(cluster["change"], "changed");
    assert_eq!(cluster["address"]["before"], "192.0.2.100");
    assert_eq!(cluster["address"]["after"], "192.0.2.100");
    let port = &cluster["ports"][0];
    assert_eq!(port["service"], "80/tcp");
    assert_eq!(port["drained"][0]["name"], "cache1");
    assert!(port["backends_added"].as_array().is_some_and(Vec::is_empty));
    assert!(
        port["backends_removed"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    let share = port["flows_remapped"].as_f64().expect("a fraction");
    assert!(share > 0.0 && share < 1.0, "{share}");
    let host = &report["hosts"][0];
    assert_eq!(host["name"], "edge1");
    assert_eq!(host["role"], "balancer");
    assert_eq!(host["files"][0]["path"], "etc/nftables.d/dsrgen.nft");
    assert_eq!(
        host["reloads"][0]["run"],
        "nft -f /etc/nftables.d/dsrgen.nft"
    );
    assert_eq!(host["reloads"][0]["disruptive"], false);
    assert_eq!(report["rollout"][0]["phase"], "reload");
    assert_eq!(report["rollout"][0]["hosts"][0], "edge1");
    assert!(report["warnings"].is_array());
}

#[test]
fn impact_of_no_change_is_one_line() {
    for format in ["text", "markdown"] {
        let out = Test::new()
            .args([
                "impact",
                "examples/seed.yaml",
                "examples/seed.yaml",
                "--format",
                format,
            ])
            .run();
        out.code(0)
            .stdout_has("no change: examples/seed.yaml and examples/seed.yaml");
        assert_eq!(out.stdout.lines().count(), 1, "{out}");
    }
    let out = Test::new()
        .args([
            "impact",
            "examples/seed.yaml",
            "examples/seed.yaml",
            "--format",
            "json",
        ])
        .run();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(report["unchanged"], true);
    assert!(report["hosts"].as_array().is_some_and(Vec::is_empty));
    // A change of no cluster that still changes files is a change.
    let tmp = TempDir::new("impact-arp");
    let changed = tmp.join("nftables-edge.yaml");
    let text = std::fs::read_to_string(root().join("examples/nftables-edge.yaml")).expect("read");
    std::fs::write(
        &changed,
        text.replace("defaults:\n", "defaults:\n  arp_announce: 1\n"),
    )
    .expect("write");
    let out = Test::new()
        .args(["impact", "examples/nftables-edge.yaml"])
        .arg(&changed)
        .run();
    out.code(0)
        .stdout_has("no cluster changed; 3 hosts")
        .stdout_has("changed  etc/sysctl.d/90-dsrgen.conf");
}

#[test]
fn impact_needs_both_inventories_valid_and_says_why() {
    let out = Test::new()
        .args([
            "impact",
            "fixtures/invalid/seed-typo.yaml",
            "fixtures/invalid/seed-typo.yaml",
        ])
        .run();
    out.code(2).stderr_has("is not an IPv4 or IPv6 address");
    assert!(out.stdout.is_empty(), "{out}");
    Test::new()
        .args(["impact", "examples/seed.yaml"])
        .run()
        .code(2)
        .stderr_has("give OLD and NEW, or NEW with `--against REV`");
    Test::new()
        .args([
            "impact",
            "examples/seed.yaml",
            "examples/seed.yaml",
            "--against",
            "HEAD",
        ])
        .run()
        .code(2)
        .stderr_has("give NEW alone");
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=dsrgen",
            "-c",
            "user.email=dsrgen@example.org",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(status.status.success(), "git {args:?}: {status:?}");
}

fn has_git() -> bool {
    Command::new("git").arg("--version").output().is_ok()
}

/// `--against REV` reads NEW's file from git, from a subfolder of the
/// checkout too; outside a checkout and for an unknown revision it fails
/// clearly with exit code 2.
#[test]
fn impact_against_a_git_revision() {
    if !has_git() {
        eprintln!("skipped: git is not installed");
        return;
    }
    let tmp = TempDir::new("impact-git");
    let repo = tmp.join("repo");
    let sub = repo.join("dc1");
    std::fs::create_dir_all(&sub).expect("create checkout");
    let inventory = sub.join("inventory.yaml");
    let base = root().join("examples/nftables-edge.yaml");
    std::fs::copy(&base, &inventory).expect("copy");
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "base"]);
    std::fs::copy(
        root().join("fixtures/impact/nftables-edge/02-drain.yaml"),
        &inventory,
    )
    .expect("copy");
    let ceiling = ("GIT_CEILING_DIRECTORIES", tmp.path().as_os_str().to_owned());

    let out = Test::new()
        .arg("impact")
        .arg(&inventory)
        .args(["--against", "HEAD"])
        .env(ceiling.0, &ceiling.1)
        .run();
    out.code(0)
        .stdout_has("impact of HEAD:dc1/inventory.yaml -> ")
        .stdout_has("drained cache1 1 -> 0");

    Test::new()
        .arg("impact")
        .arg(&inventory)
        .args(["--against", "no-such-branch"])
        .env(ceiling.0, &ceiling.1)
        .run()
        .code(2)
        .stderr_has("`--against no-such-branch`: no such revision");

    let outside = tmp.join("outside");
    std::fs::create_dir_all(&outside).expect("create folder");
    let lonely = outside.join("inventory.yaml");
    std::fs::copy(&base, &lonely).expect("copy");
    Test::new()
        .arg("impact")
        .arg(&lonely)
        .args(["--against", "HEAD"])
        .env(ceiling.0, &ceiling.1)
        .run()
        .code(2)
        .stderr_has("is not in a git checkout");

    // A file the revision does not have.
    let other = sub.join("other.yaml");
    std::fs::copy(&base, &other).expect("copy");
    Test::new()
        .arg("impact")
        .arg(&other)
        .args(["--against", "HEAD"])
        .env(ceiling.0, &ceiling.1)
        .run()
        .code(2)
        .stderr_has("revision `HEAD` has no `dc1/other.yaml`");
}

// ---------------------------------------------------------------------------
// Brute force: flows through the generated tables.

/// Linux's jhash (include/linux/jhash.h) for keys of at most 12 bytes,
/// which is all the Maglev hash reads: the last block's bytes are added
/// little-end first, then the final mix.
fn jhash(key: &[u8], seed: u32) -> u32 {
    assert!(!key.is_empty() && key.len() <= 12);
    let init = 0xdead_beef_u32
        .wrapping_add(u32::try_from(key.len()).expect("short"))
        .wrapping_add(seed);
    let mut abc = [init; 3];
    for (i, &byte) in key.iter().enumerate() {
        abc[i / 4] = abc[i / 4].wrapping_add(u32::from(byte) << (8 * (i % 4)));
    }
    let [mut a, mut b, mut c] = abc;
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c.wrapping_sub(b.rotate_left(24))
}

/// nft's `jhash ... mod N`: the kernel scales the hash, it does not take
/// the remainder (`reciprocal_scale`, `net/netfilter/nft_hash.c`).
fn slot(hash: u32, n: usize) -> usize {
    usize::try_from((u64::from(hash) * n as u64) >> 32).expect("below n")
}

/// One service of a generated nftables file: its hash (`sh` or `flow`) and
/// its table of backend addresses.
#[derive(Debug)]
struct NftService {
    flow: bool,
    table: Vec<IpAddr>,
}

/// The services of a generated `dsrgen.nft`, by `address . protocol . port`,
/// read from its element lines: `svc4` (the chain, which names the hash),
/// `sid4` (the table's index), `maglev` (slot -> backend id), `be4`.
fn parse_nft(text: &str) -> HashMap<String, NftService> {
    let elements = |line: &str, map: &str| -> Option<Vec<(String, String)>> {
        let rest = line.strip_prefix(&format!("add element netdev dsrgen {map} {{ "))?;
        let body = rest.strip_suffix(" }")?;
        Some(
            body.split(", ")
                .map(|e| {
                    let (k, v) = e.split_once(" : ").expect("key : value");
                    (k.to_owned(), v.to_owned())
                })
                .collect(),
        )
    };
    let (mut chains, mut sids, mut slots, mut backends) = (
        HashMap::new(),
        HashMap::new(),
        HashMap::new(),
        HashMap::new(),
    );
    for line in text.lines() {
        for (k, v) in elements(line, "svc4").unwrap_or_default() {
            chains.insert(k, v.trim_start_matches("goto ").to_owned());
        }
        for (k, v) in elements(line, "sid4").unwrap_or_default() {
            sids.insert(k, v);
        }
        for (k, v) in elements(line, "maglev").unwrap_or_default() {
            let (sid, index) = k.split_once(" . ").expect("sid . slot");
            let entry: &mut Vec<(usize, String)> = slots.entry(sid.to_owned()).or_default();
            entry.push((index.parse().expect("slot"), v));
        }
        for (k, v) in elements(line, "be4").unwrap_or_default() {
            backends.insert(k, v.parse::<IpAddr>().expect("address"));
        }
    }
    sids.into_iter()
        .map(|(service, sid)| {
            let mut table = slots.remove(&sid).expect("a table per service");
            table.sort_unstable();
            assert!(table.iter().enumerate().all(|(i, (s, _))| i == *s));
            let chain = &chains[&service];
            let service_key = service.clone();
            (
                service_key,
                NftService {
                    flow: chain.starts_with("flow"),
                    table: table.into_iter().map(|(_, id)| backends[&id]).collect(),
                },
            )
        })
        .collect()
}

/// A tiny deterministic generator (splitmix64) for synthetic clients.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The key nft hashes for a flow: `ip saddr`, and for `flow` `th sport`
/// in the next 32-bit register (network order, zero padded).
fn key(client: [u8; 4], port: u16, flow: bool) -> Vec<u8> {
    let mut key = client.to_vec();
    if flow {
        key.extend(port.to_be_bytes());
        key.extend([0, 0]);
    }
    key
}

const FLOWS: usize = 100_000;

/// The share of `FLOWS` synthetic flows whose backend differs between two
/// services' tables, each flow hashed as that side's chain hashes it.
fn brute_force(old: &NftService, new: &NftService, seed: u64) -> f64 {
    let mut rng = Rng(seed);
    let mut moved = 0usize;
    for _ in 0..FLOWS {
        let r = rng.next();
        let client = u32::try_from(r >> 32).expect("32 bits").to_be_bytes();
        let port = u16::try_from(r & 0xffff).expect("16 bits");
        let pick =
            |s: &NftService| s.table[slot(jhash(&key(client, port, s.flow), 0), s.table.len())];
        if pick(old) != pick(new) {
            moved += 1;
        }
    }
    dsrgen::impact::flows::ratio(moved as u64, FLOWS as u64)
}

fn compile(path: &str, text: &str) -> (dsrgen::model::Model, dsrgen::Tree) {
    let source = dsrgen::source::Source::new(path, text);
    let model = dsrgen::compile(&source).model.expect("a valid inventory");
    let tree = dsrgen::generate(&model, "inventory.yaml").expect("generates");
    (model, tree)
}

fn nft_file(tree: &dsrgen::Tree) -> String {
    let file = tree
        .files
        .iter()
        .find(|f| f.tree_path.ends_with("etc/nftables.d/dsrgen.nft"))
        .expect("an nftables director");
    String::from_utf8(file.content.clone()).expect("text")
}

/// An nftables director with `n` backends on port 80, the first `drained`
/// at weight 0.
fn director(n: usize, drained: usize) -> String {
    let mut s = String::from(
        "version: 1\nbalancers:\n  edge1: { engine: nftables, interface: eth1, address: 10.0.0.2/16 }\nbackends:\n",
    );
    for i in 0..n {
        let _ = writeln!(
            s,
            "  b{i}: {{ interface: eth0, address: 10.0.{}.{}/16 }}",
            1 + i / 200,
            10 + i % 200
        );
    }
    let names: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    let weights: Vec<String> = (0..drained).map(|i| format!("b{i}: 0")).collect();
    let _ = write!(
        s,
        "clusters:\n  web:\n    id: 1\n    address: 10.0.0.100\n    balancers: [edge1]\n    ports:\n      - port: 80\n        backends: [{}]\n        weights: {{ {} }}\n",
        names.join(", "),
        weights.join(", ")
    );
    s
}

/// `flows_remapped` for every nftables service agrees with 100,000 flows
/// hashed through the old and new tables as the generated rules hash them:
/// the example's steps (a backend added, drained, undrained, reweighted,
/// the hash changed from `flow` to `sh`), and tables that change size.
#[test]
fn impact_flows_remapped_agrees_with_brute_force() {
    let read = |p: &str| std::fs::read_to_string(root().join(p)).expect("read fixture");
    let mut pairs: Vec<(String, String, String)> = Vec::new();
    let mut previous = (
        "examples/nftables-edge.yaml".to_owned(),
        read("examples/nftables-edge.yaml"),
    );
    for step in yaml_files("fixtures/impact/nftables-edge") {
        let name = step.display().to_string();
        let text = read(&name);
        pairs.push((
            format!("{} -> {name}", previous.0),
            previous.1.clone(),
            text.clone(),
        ));
        previous = (name, text);
    }
    for (label, old, new) in [
        (
            "20 -> 21 backends (61 -> 89 slots)",
            director(20, 0),
            director(21, 0),
        ),
        (
            "21 -> 20 live of 21 (89 slots, drained one kept in the count)",
            director(21, 0),
            director(21, 1),
        ),
        ("30 -> 24 live of 30", director(30, 0), director(30, 6)),
        ("100 -> 101 backends", director(100, 0), director(101, 0)),
    ] {
        pairs.push((label.to_owned(), old, new));
    }
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (n, (label, old_text, new_text)) in pairs.iter().enumerate() {
        let (old_model, old_tree) = compile("old.yaml", old_text);
        let (new_model, new_tree) = compile("new.yaml", new_text);
        let impact = dsrgen::impact::impact(
            dsrgen::impact::Side {
                label: "old",
                model: &old_model,
                tree: &old_tree,
            },
            dsrgen::impact::Side {
                label: "new",
                model: &new_model,
                tree: &new_tree,
            },
        );
        let (old_nft, new_nft) = (
            parse_nft(&nft_file(&old_tree)),
            parse_nft(&nft_file(&new_tree)),
        );
        for cluster in &impact.clusters {
            for port in &cluster.ports {
                let Some(computed) = port.flows_remapped else {
                    continue;
                };
                let key = format!(
                    "{} . {} . {}",
                    cluster.address.after.as_deref().expect("present"),
                    port.protocol,
                    port.port
                );
                let (Some(old), Some(new)) = (old_nft.get(&key), new_nft.get(&key)) else {
                    // A service whose table is empty is not in the file.
                    continue;
                };
                let measured = brute_force(old, new, 0x5eed + n as u64);
                // Four standard deviations of a binomial share of FLOWS.
                let sigma =
                    (computed * (1.0 - computed) * dsrgen::impact::flows::ratio(1, FLOWS as u64))
                        .sqrt();
                let bound = (4.0 * sigma).max(0.002);
                report.push(format!(
                    "{label}, {key}: computed {:.4}, brute force {measured:.4} ({} -> {} slots)",
                    computed,
                    old.table.len(),
                    new.table.len()
                ));
                if (measured - computed).abs() > bound {
                    failures.push(format!(
                        "{label}, {key}: computed {computed:.4}, brute force {measured:.4}, off by more than {bound:.4}"
                    ));
                }
            }
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        report.len() >= 8,
        "too few services compared:\n{}",
        report.join("\n")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
