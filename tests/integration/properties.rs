//! Property test: random valid inventories compile, and what they compile to is
//! safe: every generated script parses with `sh -n`, no generated line holds a
//! control character, and every path stays inside `hosts/<name>/`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use proptest::prelude::*;

use dsrgen::source::Source;

const ENGINES: [&str; 4] = ["keepalived", "ipvsadm", "nftables", "dispatcher"];

#[derive(Debug, Clone)]
struct Shape {
    name_stem: String,
    interfaces: Vec<String>,
    vip_device: Option<String>,
    engines: Vec<usize>,
    backends: usize,
    clusters: Vec<ClusterShape>,
    outputs: Vec<bool>,
    arp_ignore: u8,
}

/// A port: number, UDP or not, (backend, weight) members, scheduler, persistence.
type PortShape = (u16, bool, Vec<(usize, u16)>, Option<&'static str>, u32);

#[derive(Debug, Clone)]
struct ClusterShape {
    ipv6: bool,
    balancers: Vec<usize>,
    ports: Vec<PortShape>,
}

/// Interface-name alphabet: what `IfName` accepts, less names it refuses.
fn interface() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,9}".prop_filter("reserved", |s| {
        !matches!(s.as_str(), "." | ".." | "all" | "default" | "lo")
    })
}

fn cluster(balancers: usize, backends: usize) -> impl Strategy<Value = ClusterShape> {
    (
        any::<bool>(),
        proptest::sample::subsequence((0..balancers).collect::<Vec<_>>(), 1..=balancers),
        proptest::collection::vec(
            (
                1u16..=65535,
                any::<bool>(),
                proptest::collection::vec((0..backends, 0u16..=100), 0..5),
                proptest::option::of(prop_oneof![Just("sh"), Just("flow")]),
                0u32..=3600,
            ),
            1..4,
        ),
    )
        .prop_map(|(ipv6, balancers, ports)| ClusterShape {
            ipv6,
            balancers,
            ports,
        })
}

fn shape() -> impl Strategy<Value = Shape> {
    (1usize..4, 1usize..7).prop_flat_map(|(balancers, backends)| {
        (
            "[a-z0-9][a-z0-9._-]{0,12}",
            proptest::collection::vec(interface(), 2),
            proptest::option::of(interface()),
            proptest::collection::vec(0usize..4, balancers),
            Just(backends),
            proptest::collection::vec(cluster(balancers, backends), 1..5),
            proptest::collection::vec(any::<bool>(), 3),
            prop_oneof![Just(1u8), Just(3u8)],
        )
            .prop_map(
                |(
                    name_stem,
                    interfaces,
                    vip_device,
                    engines,
                    backends,
                    clusters,
                    outputs,
                    arp_ignore,
                )| {
                    Shape {
                        name_stem,
                        interfaces,
                        vip_device,
                        engines,
                        backends,
                        clusters,
                        outputs,
                        arp_ignore,
                    }
                },
            )
    })
}

/// Write a valid inventory for the shape: everything on 198.51.100.0/24 and
/// `2001:db8::/64`, names made unique by role and index, interface names quoted
/// (`0` or `null` would otherwise be a number or nothing).
fn inventory(shape: &Shape) -> String {
    let stem = &shape.name_stem;
    let (lb_if, be_if) = (&shape.interfaces[0], &shape.interfaces[1]);
    let mut out = String::from("version: 1\ndefaults:\n");
    let _ = writeln!(out, "  arp_ignore: {}", shape.arp_ignore);
    let outputs: Vec<&str> = ["sysctl", "script", "networkd"]
        .iter()
        .zip(&shape.outputs)
        .filter(|(_, on)| **on)
        .map(|(o, _)| *o)
        .collect();
    let _ = writeln!(out, "  outputs: [{}]", outputs.join(", "));
    if let Some(dev) = &shape.vip_device
        && dev != be_if
        && dev.len() <= 9
    {
        let _ = writeln!(out, "  vip_device: \"{dev}\"");
    }
    out.push_str("balancers:\n");
    for (i, engine) in shape.engines.iter().enumerate() {
        let iface = if lb_if.len() <= 9 {
            lb_if.as_str()
        } else {
            "eth1"
        };
        let _ = writeln!(
            out,
            "  {stem}-l{i}:\n    engine: {}\n    interface: \"{iface}\"\n    address: 198.51.100.{}/24\n    address6: 2001:db8::{:x}/64",
            ENGINES[*engine],
            2 + i,
            2 + i
        );
    }
    out.push_str("backends:\n");
    for i in 0..shape.backends {
        let _ = writeln!(
            out,
            "  {stem}-b{i}:\n    interface: \"{be_if}\"\n    address: 198.51.100.{}/24\n    address6: 2001:db8::1:{i:x}/64",
            10 + i
        );
    }
    out.push_str("clusters:\n");
    for (c, cluster) in shape.clusters.iter().enumerate() {
        let address = if cluster.ipv6 {
            format!("2001:db8::f:{c:x}")
        } else {
            format!("198.51.100.{}", 100 + c)
        };
        let balancers: Vec<String> = cluster
            .balancers
            .iter()
            .map(|b| format!("{stem}-l{b}"))
            .collect();
        let dispatcher = cluster
            .balancers
            .iter()
            .any(|&b| ENGINES[shape.engines[b]] == "dispatcher");
        let _ = writeln!(
            out,
            "  {stem}-c{c}:\n    id: {}\n    address: {address}\n    balancers: [{}]\n    ports:",
            c + 1,
            balancers.join(", ")
        );
        let mut seen = std::collections::BTreeSet::new();
        for (port, udp, members, scheduler, persistence) in &cluster.ports {
            // One port number once: Dispatcher cannot tell protocols apart.
            if !seen.insert(*port) {
                continue;
            }
            let mut names = Vec::new();
            let mut weights = Vec::new();
            for &(b, w) in members {
                let name = format!("{stem}-b{b}");
                if !names.contains(&name) {
                    weights.push(format!("{name}: {w}"));
                    names.push(name);
                }
            }
            let _ = writeln!(
                out,
                "      - port: {port}\n        protocol: {}\n        persistence: {persistence}\n        backends: [{}]\n        weights: {{ {} }}",
                if *udp { "udp" } else { "tcp" },
                names.join(", "),
                weights.join(", ")
            );
            if *udp {
                out.push_str("        health: { kind: none }\n");
            }
            if let (Some(s), false) = (scheduler, dispatcher) {
                let _ = writeln!(out, "        scheduler: {s}");
            }
        }
    }
    out
}

fn sh_parses(script: &str) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_valid_inventories_compile_to_safe_files(shape in shape()) {
        let text = inventory(&shape);
        let source = Source::new("random.yaml", text.clone());
        let compiled = dsrgen::compile(&source);
        let errors: Vec<String> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.render(&source))
            .collect();
        prop_assert!(errors.is_empty(), "{text}\n{}", errors.join("\n"));
        let model = compiled.model.expect("no errors, so a model");
        let tree = dsrgen::generate(&model, "random.yaml").map_err(TestCaseError::fail)?;
        prop_assert!(!tree.files.is_empty());
        prop_assert_eq!(tree.files.len(), tree.manifest.files.len());
        for (file, entry) in tree.files.iter().zip(&tree.manifest.files) {
            let path = &file.tree_path;
            let content = std::str::from_utf8(&file.content).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let prefix = format!("hosts/{}/", entry.host);
            prop_assert!(path.starts_with(&prefix), "{path}");
            prop_assert!(
                path.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
                "{path}"
            );
            for line in content.lines() {
                prop_assert!(
                    !line.chars().any(|c| c.is_control() && c != '\t'),
                    "{path}: control character in {line:?}"
                );
            }
            if entry.path.starts_with("usr/local/sbin/") {
                sh_parses(content).map_err(|e| TestCaseError::fail(format!("{path}: {e}")))?;
            }
        }
    }
}
