//! Real IPVS, VRRP and dummy devices: the scenarios of `tests/uml/`, each run
//! by `tests/uml/run.sh` in a user-mode Linux kernel on files the real dsrgen
//! built from `tests/uml/fixtures/` (what runs where: `tests/uml/README.md`).
//!
//! Like the other system tests, each prints `skipped: <why>` and passes where
//! root or a tool is missing, and fails then under `DSRGEN_SYSTEM_TESTS=require`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{TempDir, Test, root};
use crate::system::can_run;

/// What every scenario needs on the host; the guest sees the same files.
const TOOLS: &[&str] = &[
    "linux.uml",
    "/usr/lib/uml/modules",
    "modprobe",
    "cc",
    "setpriv",
    "timeout",
    "unshare",
    "pgrep",
    "ip",
    "ipvsadm",
    "keepalived",
    "curl",
    "tcpdump",
    "arping",
    "/usr/bin/python3",
];

/// Wall-clock limit of one guest, boot to halt; `run.sh` kills it after that.
const LIMIT: Duration = Duration::from_secs(80);

/// Build each `(fixture, folder)` into a scratch folder, then run the
/// scenario in user-mode Linux: the scratch folder, or `None` when this
/// machine cannot run it.
fn run(scenario: &str, trees: &[(&str, &str)]) -> Option<TempDir> {
    if !can_run(&format!("user-mode Linux {scenario}"), TOOLS) {
        return None;
    }
    let scratch = TempDir::new(&format!("uml-{scenario}"));
    for &(fixture, folder) in trees {
        Test::new()
            .args(["build", fixture, "--out"])
            .arg(scratch.join(folder))
            .run()
            .code(0);
    }
    let started = Instant::now();
    // --pdeathsig: if this test dies, the harness dies with it, and with the
    // harness the guest (run.sh says how).
    let output = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--", "sh"])
        .arg(root().join("tests/uml/run.sh"))
        .arg(scenario)
        .arg(scratch.path())
        .arg(LIMIT.as_secs().to_string())
        .output()
        .expect("run tests/uml/run.sh");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "scenario {scenario} failed ({}) after {took:?}:\n--- stdout\n{stdout}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("\nPASS\n"),
        "scenario {scenario} passed without saying PASS:\n{stdout}"
    );
    println!("user-mode Linux {scenario}: {took:?}\n{stdout}");
    Some(scratch)
}

/// A rule's identity: `-A`/`-a`, the service, and the real server for `-a`.
type RuleKey = (String, String, Option<String>);
/// A rule's options, each with its sorted values.
type Options = BTreeMap<String, Vec<String>>;

/// One line of `ipvsadm-save -n`: `-A`/`-a`, the service (`-t 192.0.2.1:80`),
/// the real server for `-a`, and every other option with its values (`-b`
/// takes a comma-separated list of flags: a set).
type Rule = (
    String,
    String,
    Option<String>,
    BTreeMap<String, Vec<String>>,
);

/// An IPVS table as a set of rules, whatever the order of lines or options.
fn ipvs_table(text: &str) -> BTreeMap<RuleKey, Options> {
    let mut table = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (kind, service, server, options) = rule(line);
        let key = (kind, service, server);
        assert!(!table.contains_key(&key), "{key:?} twice in:\n{text}");
        table.insert(key, options);
    }
    table
}

fn rule(line: &str) -> Rule {
    let mut words = line.split_whitespace().peekable();
    let kind = words.next().expect("a command").to_owned();
    let protocol = words.next().expect("a protocol");
    let service = format!("{protocol} {}", words.next().expect("a service"));
    let mut server = None;
    let mut options = BTreeMap::new();
    while let Some(option) = words.next() {
        let mut values = Vec::new();
        while let Some(value) = words.next_if(|w| !w.starts_with('-')) {
            values.extend(value.split(',').map(str::to_owned));
        }
        values.sort();
        if option == "-r" {
            server = values.pop();
        } else {
            options.insert(option.to_owned(), values);
        }
    }
    (kind, service, server, options)
}

#[test]
fn ipvs_table_compares_rules_not_lines() {
    let generated = "-A -t 192.0.2.1:80 -s sh -b sh-port,sh-fallback -p 60\n\
                     -a -t 192.0.2.1:80 -r 192.0.2.11:80 -g -w 1\n";
    let saved = "-A -t 192.0.2.1:80 -s sh -p 60 -b sh-fallback,sh-port\n\
                 -a -t 192.0.2.1:80 -r 192.0.2.11:80 -w 1 -g\n";
    assert_eq!(ipvs_table(generated), ipvs_table(saved));
    for changed in [
        saved.replace("-p 60", "-p 61"),
        saved.replace(" -g", " -m"),
        saved.replace("-w 1", "-w 0"),
        saved.replace("sh-fallback,", ""),
        saved.replace("-s sh", "-s rr"),
        saved.replace("192.0.2.11", "192.0.2.12"),
    ] {
        assert_ne!(ipvs_table(generated), ipvs_table(&changed), "{changed}");
    }
}

/// IPVS direct routing with the generated `ipvsadm.rules`: every backend
/// answers clients itself, and the kernel's table is the generated one.
#[test]
fn ipvsadm_rules_route_directly_in_a_real_kernel() {
    let Some(scratch) = run("ipvsadm", &[("tests/uml/fixtures/ipvsadm.yaml", "ipvsadm")]) else {
        return;
    };
    let read = |path: &str| {
        std::fs::read_to_string(scratch.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let generated = read("ipvsadm/hosts/lb1/etc/ipvsadm.rules");
    let saved = read("saved");
    assert_eq!(
        ipvs_table(&generated),
        ipvs_table(&saved),
        "ipvsadm-save -n after loading the generated rules:\n{saved}\ngenerated:\n{generated}"
    );
}

/// Two keepalived directors with VRRP: the higher priority holds the VIP and
/// forwards, the other takes over when it stops, and it takes the VIP back.
#[test]
fn keepalived_vrrp_fails_over_and_back_by_priority() {
    run("vrrp", &[("tests/uml/fixtures/vrrp.yaml", "vrrp")]);
}

/// VRRP by unicast with multicast dropped, an authentication include a
/// director with the wrong password cannot get past, and no preemption.
#[test]
fn keepalived_vrrp_unicast_authentication_and_nopreempt() {
    run(
        "vrrp-options",
        &[("tests/uml/fixtures/vrrp-options.yaml", "vrrp-options")],
    );
}

/// An active-active pair: each director holds and forwards the cluster that
/// lists it first; stopping one moves its cluster to the other.
#[test]
fn keepalived_active_active_pair_splits_and_fails_over() {
    run(
        "active-active",
        &[("tests/uml/fixtures/active-active.yaml", "active-active")],
    );
}

/// IPVS connection sync: connections opened through the MASTER keep working
/// through the BACKUP after a failover.
#[test]
fn keepalived_connection_sync_keeps_connections_across_failover() {
    run("sync", &[("tests/uml/fixtures/sync.yaml", "sync")]);
}

/// keepalived's TCP checks take a dead backend out and put it back, and a
/// drained backend (weight 0, applied by a reload) gets no new connection
/// while one opened before keeps working.
#[test]
fn keepalived_health_checks_and_drain_in_a_real_kernel() {
    run(
        "health",
        &[
            ("tests/uml/fixtures/health.yaml", "health"),
            ("tests/uml/fixtures/health-drained.yaml", "health-drained"),
        ],
    );
}

/// keepalived's HTTPS checks with a Host header and an expected body take out
/// a backend whose body or TLS is wrong, or keep it at weight 0 with
/// `on_failure: drain`; a port group with persistence keeps a client on one
/// backend across its ports.
#[test]
fn keepalived_https_checks_drain_and_port_groups_in_a_real_kernel() {
    run("checks", &[("tests/uml/fixtures/checks.yaml", "checks")]);
}

/// Backends holding the VIP on a dummy device, one by the generated script,
/// one by systemd-networkd from the generated `.netdev` and `.network`; only
/// the director answers ARP for it.
#[test]
fn a_dummy_vip_device_holds_the_vip_and_keeps_quiet_on_arp() {
    run("dummy", &[("tests/uml/fixtures/dummy.yaml", "dummy")]);
}

/// The counts a `churn` loop of `reconcile.sh` left: (attempts, failures).
fn churn_counts(text: &str, name: &str) -> (u64, u64) {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} counts in:\n{text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    match words[..] {
        [_, "attempts", attempts, "failures", failures] => (
            attempts.parse().expect("a count"),
            failures.parse().expect("a count"),
        ),
        _ => panic!("unexpected counts: {line}"),
    }
}

/// ipvsadm applied by reconciling the live table: a second apply runs
/// nothing, connections held open and new ones opened during repeated
/// applies all work, a hand-made service survives, a removed one goes, and
/// the table ends as the generated rules (plus the hand-made service). The
/// old reload, `ipvsadm-restore`, refuses new connections under the same
/// loop (the scenario requires it, as its negative control).
#[test]
fn ipvsadm_applies_by_reconciling_without_refusing_connections() {
    let Some(scratch) = run(
        "reconcile",
        &[
            ("tests/uml/fixtures/reconcile.yaml", "reconcile"),
            (
                "tests/uml/fixtures/reconcile-changed.yaml",
                "reconcile-changed",
            ),
        ],
    ) else {
        return;
    };
    let read = |path: &str| {
        std::fs::read_to_string(scratch.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let churn = read("churn");
    let (attempts, failures) = churn_counts(&churn, "reconcile");
    assert!(attempts >= 20, "too few connections to tell: {churn}");
    assert_eq!(
        failures, 0,
        "new connections failed during applies: {churn}"
    );
    let (attempts, failures) = churn_counts(&churn, "flush");
    assert!(
        attempts >= 20 && failures > 0,
        "the flush, the negative control, refused nothing: {churn}"
    );
    let generated = read("reconcile-changed/hosts/lb1/etc/ipvsadm.rules");
    let hand_made =
        "-A -t 198.51.100.190:7 -s rr\n-a -t 198.51.100.190:7 -r 198.51.100.11:7 -g -w 1\n";
    let saved = read("saved");
    assert_eq!(
        ipvs_table(&saved),
        ipvs_table(&format!("{generated}{hand_made}")),
        "ipvsadm -Sn after the applies:\n{saved}\ngenerated:\n{generated}"
    );
}

/// A director on two segments forwards each segment's cluster to that
/// segment's backends, and a routed cluster address reaches the backends by
/// DR while no host answers ARP for it.
#[test]
fn a_director_on_two_segments_and_a_routed_address() {
    run(
        "segments",
        &[("tests/uml/fixtures/segments.yaml", "segments")],
    );
}
