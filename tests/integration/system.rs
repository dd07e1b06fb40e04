//! System tests: the generated files consumed by the real programs (iproute2,
//! sysctl, systemd-sysctl, systemd-networkd, shellcheck, systemd-analyze), each
//! inside network namespaces the test creates with `unshare`, which vanish
//! with the process whatever happens. Only documentation addresses are used.
//!
//! Without root or a tool, a test prints `skipped: <why>` and passes; under
//! `DSRGEN_SYSTEM_TESTS=require` (CI) a skip is a failure.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use dsrgen::model::Model;

use crate::support::{TempDir, Test, root, tree_files, yaml_files};

/// Whether this machine can run a system test needing `tools`; prints why not.
pub fn can_run(test: &str, tools: &[&str]) -> bool {
    let why = missing(tools);
    let Some(why) = why else { return true };
    assert!(
        std::env::var("DSRGEN_SYSTEM_TESTS").as_deref() != Ok("require"),
        "{test}: cannot run ({why}), and DSRGEN_SYSTEM_TESTS=require"
    );
    println!("skipped: {test}: {why}");
    false
}

fn missing(tools: &[&str]) -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".to_owned());
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found && !Path::new(tool).exists() {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    let netns = Command::new("unshare").args(["--net", "true"]).status();
    if !netns.is_ok_and(|s| s.success()) {
        return Some("cannot create a network namespace".to_owned());
    }
    None
}

/// Run `script` with `sh` in a fresh network namespace (and mount namespace,
/// with `mount`), killed after 30 s.
fn in_namespace(script: &str, mount: bool) -> std::process::Output {
    let mut command = Command::new("timeout");
    command.args(["30", "unshare", "--net"]);
    if mount {
        command.arg("--mount");
    }
    command
        .args(["sh", "-euc", script])
        .output()
        .expect("run unshare")
}

#[track_caller]
pub fn assert_success(what: &str, output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Build a fixture into a temporary folder.
fn built(fixture: &str) -> TempDir {
    let out = TempDir::new("system");
    Test::new()
        .args(["build", fixture, "--out"])
        .arg(out.path())
        .run()
        .code(0);
    out
}

/// The fixture's validated model: what the generated files must put in place.
fn model(fixture: &str) -> Model {
    let path = root().join(fixture);
    let source = dsrgen::inventory::load(&path, fixture).expect("load fixture");
    dsrgen::compile(&source).model.expect("fixture is valid")
}

/// An address as `ip -j addr` shows it: address, prefix, scope, label.
type Held = (String, u64, String, Option<String>);

/// What lo holds in a fresh namespace, before anything is added.
fn loopback_defaults() -> BTreeSet<Held> {
    BTreeSet::from([
        ("127.0.0.1".into(), 8, "host".into(), Some("lo".into())),
        ("::1".into(), 128, "host".into(), None),
    ])
}

/// lo as it must be after `up` or networkd: its own addresses and the VIPs.
fn expected_on_lo(model: &Model, host: &str) -> BTreeSet<Held> {
    let backend = model
        .backends
        .iter()
        .find(|(name, _)| name.as_str() == host)
        .expect("host is a backend")
        .1;
    let mut held = loopback_defaults();
    for vip in &backend.vips {
        let (prefix, scope) = if vip.address.is_ipv4() {
            (32, "host")
        } else {
            (128, "global")
        };
        held.insert((
            vip.address.to_string(),
            prefix,
            scope.to_owned(),
            vip.label.as_ref().map(|l| l.as_str().to_owned()),
        ));
    }
    held
}

/// Parse `ip -j addr show dev lo`.
fn parse_addresses(json: &str) -> BTreeSet<Held> {
    let links: serde_json::Value = serde_json::from_str(json).expect("ip -j prints JSON");
    links
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["local"].as_str().expect("local").to_owned(),
                a["prefixlen"].as_u64().expect("prefixlen"),
                a["scope"].as_str().expect("scope").to_owned(),
                a["label"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Backends of the fixtures the namespace tests use, with the interface each
/// names (created as a veth in the namespace).
const BACKENDS: &[(&str, &str, &str)] = &[
    ("fixtures/valid/minimal.yaml", "web1", "eth0"),
    ("fixtures/valid/ipv6.yaml", "web1", "eth0"),
    ("fixtures/valid/ipv6.yaml", "web6", "eth0"),
    ("fixtures/valid/vlan.yaml", "db1", "eth0.100"),
    ("examples/seed.yaml", "web2", "eth0"),
    ("fixtures/valid/many-clusters.yaml", "web1", "eth0"),
];

#[test]
fn the_loopback_script_puts_exactly_the_inventory_in_place() {
    if !can_run("loopback script", &["ip", "unshare", "awk"]) {
        return;
    }
    for &(fixture, host, interface) in BACKENDS {
        let out = built(fixture);
        let script = out.join(format!("hosts/{host}/usr/local/sbin/dsrgen-vips"));
        let state = out.join("state");
        std::fs::create_dir(&state).expect("mkdir");
        let s = script.display();
        let d = state.display();
        // A tmpfs on /run of its own: the script's record of what it added
        // lives there, as on a host.
        let run = in_namespace(
            &format!(
                "mount -t tmpfs tmpfs /run
                 ip link add {interface} type veth peer name peer0
                 {s} up
                 {s} up
                 {s} status
                 ip -j addr show dev lo > {d}/up.json
                 cat /proc/sys/net/ipv4/conf/all/arp_ignore /proc/sys/net/ipv4/conf/all/arp_announce \
                     /proc/sys/net/ipv4/conf/{interface}/arp_ignore /proc/sys/net/ipv4/conf/{interface}/arp_announce > {d}/sysctl
                 {s} down
                 if {s} status 2> {d}/status-after-down; then exit 9; fi
                 ip -j addr show dev lo > {d}/down.json"
            ),
            true,
        );
        assert_success(
            &format!("{fixture} {host}: up, up, status, down, status"),
            &run,
        );

        let model = model(fixture);
        let read = |name: &str| std::fs::read_to_string(state.join(name)).expect("read state");
        assert_eq!(
            parse_addresses(&read("up.json")),
            expected_on_lo(&model, host),
            "{fixture} {host}: lo after `up` twice"
        );
        assert_eq!(
            parse_addresses(&read("down.json")),
            loopback_defaults(),
            "{fixture} {host}: lo after `down`"
        );
        let has_ipv4 = model
            .backends
            .iter()
            .any(|(n, b)| n.as_str() == host && b.has_ipv4_vip());
        let want = if has_ipv4 {
            "3\n2\n3\n2\n"
        } else {
            "0\n0\n0\n0\n"
        };
        assert_eq!(
            read("sysctl"),
            want,
            "{fixture} {host}: ARP settings after `up`"
        );
        assert!(read("status-after-down").contains("is missing from lo"));
    }
}

/// `up` repairs an address held with the wrong prefix or scope: `arp_ignore=3`
/// hides only scope-host addresses, so a global one would answer ARP.
#[test]
fn the_loopback_script_repairs_a_wrong_address() {
    if !can_run("loopback script repair", &["ip", "unshare", "awk"]) {
        return;
    }
    let out = built("fixtures/valid/minimal.yaml");
    let s = out.join("hosts/web1/usr/local/sbin/dsrgen-vips");
    let s = s.display();
    let state = out.join("up.json");
    let run = in_namespace(
        &format!(
            "mount -t tmpfs tmpfs /run
             ip link set lo up
             ip addr add 192.0.2.181/24 dev lo
             if {s} status; then exit 9; fi
             {s} up
             {s} status
             ip -j addr show dev lo > {}",
            state.display()
        ),
        true,
    );
    assert_success("repair", &run);
    let json = std::fs::read_to_string(&state).expect("read");
    assert_eq!(
        parse_addresses(&json),
        expected_on_lo(&model("fixtures/valid/minimal.yaml"), "web1")
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("wrong prefix, scope or label"));
}

#[test]
fn sysctl_fragments_apply_with_sysctl_and_systemd_sysctl() {
    if !can_run(
        "sysctl fragments",
        &["sysctl", "/lib/systemd/systemd-sysctl", "unshare"],
    ) {
        return;
    }
    for &(fixture, host, interface) in BACKENDS {
        let out = built(fixture);
        let fragment = out.join(format!("hosts/{host}/etc/sysctl.d/90-dsrgen.conf"));
        if !fragment.exists() {
            // IPv6-only hosts need no ARP settings; the golden tree proves the absence.
            continue;
        }
        let f = fragment.display();
        let read = format!(
            "cat /proc/sys/net/ipv4/conf/all/arp_ignore /proc/sys/net/ipv4/conf/all/arp_announce \
                 /proc/sys/net/ipv4/conf/{interface}/arp_ignore /proc/sys/net/ipv4/conf/{interface}/arp_announce"
        );
        let run = in_namespace(
            &format!(
                "ip link add {interface} type veth peer name peer0
                 sysctl -q -p {f}
                 {read}
                 for k in all {interface}; do
                     echo 0 > /proc/sys/net/ipv4/conf/$k/arp_ignore
                     echo 0 > /proc/sys/net/ipv4/conf/$k/arp_announce
                 done
                 /lib/systemd/systemd-sysctl {f}
                 {read}"
            ),
            false,
        );
        assert_success(
            &format!("{fixture} {host}: sysctl -p, systemd-sysctl"),
            &run,
        );
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            "3\n2\n3\n2\n3\n2\n3\n2\n",
            "{fixture} {host}: values read back after sysctl -p, then systemd-sysctl"
        );
        assert!(
            run.stderr.is_empty(),
            "{fixture} {host}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
}

#[test]
fn networkd_puts_the_addresses_on_lo() {
    if !can_run(
        "systemd-networkd",
        &["/lib/systemd/systemd-networkd", "unshare", "ip"],
    ) {
        return;
    }
    // The dummy-device fixture is left out: this kernel has no dummy module.
    for &(fixture, host, _) in BACKENDS {
        let out = built(fixture);
        let network = out.join(format!("hosts/{host}/etc/systemd/network"));
        let expected = expected_on_lo(&model(fixture), host);
        let vips: Vec<String> = expected
            .iter()
            .filter(|(a, ..)| a != "127.0.0.1" && a != "::1")
            .map(|(a, prefix, ..)| format!("{a}/{prefix}"))
            .collect();
        assert!(!vips.is_empty(), "{fixture} {host} has no VIP");
        let json = out.join("lo.json");
        // Read-only /sys makes networkd stop waiting for udev; tmpfs over its
        // runtime and vendor folders keeps the machine's own config out.
        let run = in_namespace(
            &format!(
                "mount -t sysfs -o ro sysfs /sys
                 mount --bind {network} /etc/systemd/network
                 mount -t tmpfs tmpfs /run/systemd
                 mount -t tmpfs tmpfs /usr/lib/systemd/network
                 timeout 10 /lib/systemd/systemd-networkd &
                 all_there() {{
                     held=$(ip -o addr show dev lo)
                     for vip in {vips}; do
                         case $held in *\" $vip \"*) ;; *) return 1 ;; esac
                     done
                 }}
                 deadline=$(( $(date +%s) + 8 ))
                 until all_there; do
                     [ $(date +%s) -lt $deadline ] || {{ echo 'networkd did not add every address in 8 s' >&2; exit 1; }}
                     sleep 0.02
                 done
                 ip -j addr show dev lo > {json}
                 kill $!",
                network = network.display(),
                json = json.display(),
                vips = vips.join(" "),
            ),
            true,
        );
        assert_success(&format!("{fixture} {host}: networkd"), &run);
        let held = parse_addresses(&std::fs::read_to_string(&json).expect("read"));
        assert_eq!(held, expected, "{fixture} {host}: lo under networkd");
    }
}

/// Every generated script (`dsrgen-vips`, `dsrgen-ipvsadm`), of every
/// fixture, passes shellcheck as POSIX sh.
#[test]
fn generated_scripts_pass_shellcheck() {
    if !can_run("shellcheck", &["shellcheck"]) {
        return;
    }
    let mut scripts = 0;
    let mut ipvsadm_scripts = 0;
    for fixture in yaml_files("fixtures/valid")
        .into_iter()
        .chain(yaml_files("examples"))
    {
        let out = built(&fixture.to_string_lossy());
        for file in tree_files(out.path()) {
            if !file
                .parent()
                .is_some_and(|folder| folder.ends_with("usr/local/sbin"))
            {
                continue;
            }
            let run = Command::new("shellcheck")
                .args(["-s", "sh"])
                .arg(out.join(&file))
                .output()
                .expect("run shellcheck");
            assert_success(
                &format!("shellcheck {} ({})", file.display(), fixture.display()),
                &run,
            );
            scripts += 1;
            ipvsadm_scripts += usize::from(file.ends_with("dsrgen-ipvsadm"));
        }
    }
    assert!(scripts >= 10, "only {scripts} scripts checked");
    assert!(
        ipvsadm_scripts >= 2,
        "only {ipvsadm_scripts} dsrgen-ipvsadm checked"
    );
}

/// `systemd-analyze verify` output lines that come from this container, not
/// from the unit: no sysinit.target here.
fn unit_problems(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.contains("Unit sysinit.target not found"))
        .collect()
}

#[test]
fn generated_units_verify() {
    if !can_run("systemd-analyze", &["systemd-analyze"]) {
        return;
    }
    let verify = |root: &Path, unit: &Path| {
        let run = Command::new("systemd-analyze")
            .arg(format!("--root={}", root.display()))
            .arg("verify")
            .arg(unit)
            .output()
            .expect("run systemd-analyze");
        String::from_utf8_lossy(&run.stderr).into_owned()
    };
    // The filter is not blind: a unit with a bad key is caught.
    let bad = TempDir::new("bad-unit");
    let bad_unit = bad.join("bad.service");
    std::fs::write(&bad_unit, "[Service]\nExecStart=/bin/true\nBogusKey=1\n").expect("write");
    assert!(!unit_problems(&verify(bad.path(), &bad_unit)).is_empty());

    let mut units = 0;
    for fixture in [
        "fixtures/valid/minimal.yaml",
        "fixtures/valid/dummy-device.yaml",
    ] {
        let out = built(fixture);
        for host in ["web1", "web2"] {
            let host_root: PathBuf = out.join(format!("hosts/{host}"));
            let unit = host_root.join("etc/systemd/system/dsrgen-vips.service");
            let stderr = verify(&host_root, &unit);
            assert!(
                unit_problems(&stderr).is_empty(),
                "{fixture} {host}: systemd-analyze verify:\n{stderr}"
            );
            units += 1;
        }
    }
    assert_eq!(units, 4);
}

/// A fixture built into a temporary folder, and the balancer files of one
/// kind in it with the interfaces each balancer names (blank-separated).
struct BalancerFiles {
    fixture: String,
    files: Vec<(String, PathBuf)>,
    _out: TempDir,
}

impl BalancerFiles {
    /// (fixture, interface, file) for every file of every fixture.
    fn flat(built: &[Self]) -> Vec<(&str, &String, &PathBuf)> {
        built
            .iter()
            .flat_map(|b| b.files.iter().map(move |(i, f)| (b.fixture.as_str(), i, f)))
            .collect()
    }
}

/// The file at `suffix` of every balancer of every fixture that has one.
fn balancer_files(suffix: &str) -> Vec<BalancerFiles> {
    yaml_files("fixtures/valid")
        .into_iter()
        .chain(yaml_files("examples"))
        .map(|fixture| {
            let fixture = fixture.to_string_lossy().into_owned();
            let out = built(&fixture);
            let files = model(&fixture)
                .balancers
                .iter()
                .map(|(name, b)| {
                    let interfaces: Vec<String> =
                        b.segments.iter().map(|s| s.interface.to_string()).collect();
                    (
                        interfaces.join(" "),
                        out.join(format!("hosts/{name}/{suffix}")),
                    )
                })
                .filter(|(_, file)| file.exists())
                .collect();
            BalancerFiles {
                fixture,
                files,
                _out: out,
            }
        })
        .filter(|b| !b.files.is_empty())
        .collect()
}

#[test]
fn keepalived_accepts_every_generated_configuration() {
    if !can_run("keepalived -t", &["keepalived", "unshare", "ip"]) {
        return;
    }
    let built = balancer_files("etc/keepalived/keepalived.conf");
    let files = BalancerFiles::flat(&built);
    assert!(
        files.len() >= 4,
        "only {} keepalived.conf files",
        files.len()
    );
    for (fixture, interfaces, file) in files {
        // A missing or empty file also gives rc 0.
        let size = std::fs::metadata(file).expect("stat").len();
        assert!(size > 0, "{}: empty", file.display());
        // What a configuration names but dsrgen does not write (an
        // authentication include, the programs keepalived runs, tracked
        // interfaces) is made here, in this mount namespace's own
        // /etc/keepalived: the fixtures keep such files there.
        let run = in_namespace(
            &format!(
                r#"for i in {interfaces}; do ip link add "$i" type veth peer name "p-$i"; done
                 mount -t tmpfs -o mode=0755 tmpfs /etc/keepalived
                 sed -n 's/^ *include //p' {f} | while read -r p; do
                     case $p in /etc/keepalived/*) ;; *) echo "include outside /etc/keepalived: $p"; exit 3 ;; esac
                     printf 'authentication {{\n    auth_type PASS\n    auth_pass secret\n}}\n' > "$p"
                 done
                 sed -n -e 's/^ *script "\(.*\)"$/\1/p' -e 's/^ *notify_[a-z]* //p' {f} | while read -r p; do
                     case $p in /etc/keepalived/*) ;; *) echo "program outside /etc/keepalived: $p"; exit 4 ;; esac
                     printf '#!/bin/sh\nexit 0\n' > "$p"
                     chmod 755 "$p"
                 done
                 awk '/track_interface {{/ {{ t = 1; next }} t && /}}/ {{ t = 0 }} t {{ print $1 }}' {f} | while read -r i; do
                     ip link show "$i" >/dev/null 2>&1 || ip link add "$i" type veth peer name "p-$i"
                 done
                 keepalived -t -f {f}"#,
                f = file.display()
            ),
            true,
        );
        assert_success(
            &format!("{fixture}: keepalived -t -f {}", file.display()),
            &run,
        );
        assert!(
            run.stdout.is_empty() && run.stderr.is_empty(),
            "{fixture}: keepalived -t said something about {}:\n{}{}",
            file.display(),
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
    }
}

#[test]
fn nft_accepts_every_generated_ruleset_and_reloads_it_atomically() {
    if !can_run("nft -c", &["nft", "unshare", "ip"]) {
        return;
    }
    let built = balancer_files("etc/nftables.d/dsrgen.nft");
    let files = BalancerFiles::flat(&built);
    assert!(files.len() >= 3, "only {} nftables files", files.len());
    for (fixture, interfaces, file) in files {
        let f = file.display();
        // Check, load, and load again over the loaded table: one transaction
        // that replaces it.
        let run = in_namespace(
            &format!(
                "for i in {interfaces}; do ip link add \"$i\" type veth peer name \"p-$i\"; done
                 nft -c -f {f}
                 nft -f {f}
                 nft -f {f}
                 nft list table netdev dsrgen > /dev/null"
            ),
            false,
        );
        assert_success(&format!("{fixture}: nft -c -f, nft -f twice: {f}"), &run);
    }
}

/// Run an end-to-end script of `tests/e2e/` with `args` in a PID, mount and
/// network namespace of its own: whatever happens, every namespace and
/// process it made dies with it. Returns its output, which ends in PASS.
fn end_to_end(script: &str, args: &[&Path]) -> String {
    let started = std::time::Instant::now();
    let run = Command::new("timeout")
        .args([
            "60",
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "--mount",
            "--net",
            "sh",
        ])
        .arg(root().join("tests/e2e").join(script))
        .args(args)
        .output()
        .expect("run the end-to-end script");
    let took = started.elapsed();
    assert_success(script, &run);
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(stdout.ends_with("PASS\n"));
    assert!(took < std::time::Duration::from_secs(30), "took {took:?}");
    println!("{script}: {took:?}\n{stdout}");
    stdout
}

/// TESTING.md's end-to-end proof, `tests/e2e/dsr.sh`.
#[test]
fn direct_server_return_works_end_to_end() {
    let tools = [
        "unshare",
        "ip",
        "nft",
        "arping",
        "curl",
        "tcpdump",
        "/usr/bin/python3",
    ];
    if !can_run("end to end", &tools) {
        return;
    }
    let out = built("fixtures/valid/nftables.yaml");
    end_to_end("dsr.sh", &[out.path()]);
}

/// An nftables director on two segments, `tests/e2e/segments.sh`: each
/// cluster's frames leave by its backends' segment (both segments for a
/// cluster with a backend on each), a routed address is served by DR and
/// answered for by ARP nowhere, and with the per-segment sets of backends
/// swapped (negative control) nothing is answered.
#[test]
fn nftables_director_on_two_segments_works_end_to_end() {
    let tools = ["unshare", "ip", "nft", "arping", "curl", "/usr/bin/python3"];
    if !can_run("segments end to end", &tools) {
        return;
    }
    let out = built("tests/e2e/segments.yaml");
    let stdout = end_to_end("segments.sh", &[out.path()]);
    assert!(
        stdout.contains("cluster mixed (203.0.113.182): flows per backend: web1 "),
        "{stdout}"
    );
}

/// Issue 17 in the lab, `tests/e2e/maglev.sh`: eight backends, thousands of
/// flows; shares follow weights, removing web5 moves web5's flows only, ICMP
/// "fragmentation needed" reaches the flow's backend, persistence keeps a
/// client on one backend.
#[test]
fn nftables_keeps_flows_and_forwards_icmp_errors_end_to_end() {
    if !can_run(
        "maglev end to end",
        &["unshare", "ip", "nft", "ss", "/usr/bin/python3"],
    ) {
        return;
    }
    let text = std::fs::read_to_string(root().join("tests/e2e/maglev.yaml"))
        .expect("read tests/e2e/maglev.yaml");
    let eight = built("tests/e2e/maglev.yaml");
    let variant = |from: &str, to: &str| {
        let changed = text.replace(from, to);
        assert_ne!(
            text, changed,
            "tests/e2e/maglev.yaml no longer has `{from}`"
        );
        let dir = TempDir::new("maglev");
        let yaml = dir.path().join("maglev.yaml");
        std::fs::write(&yaml, changed).expect("write a variant of the inventory");
        let out = TempDir::new("system");
        Test::new()
            .arg("build")
            .arg(&yaml)
            .arg("--out")
            .arg(out.path())
            .run()
            .code(0);
        out
    };
    let seven = variant("web4, web5, web6", "web4, web6");
    let drained = variant("{ web1: 2 }", "{ web1: 2, web5: 0 }");
    let persistent = variant("protocol: udp", "protocol: udp\n        persistence: 300");
    end_to_end(
        "maglev.sh",
        &[
            eight.path(),
            seven.path(),
            drained.path(),
            persistent.path(),
        ],
    );
}

/// The firewall marks of port groups: checked, loaded, and loaded again over
/// themselves, in a namespace of their own.
#[test]
fn nft_accepts_every_generated_marks_file_and_reloads_it_atomically() {
    if !can_run("nft -c", &["nft", "unshare"]) {
        return;
    }
    let built = balancer_files("etc/nftables.d/dsrgen-marks.nft");
    let files = BalancerFiles::flat(&built);
    assert!(files.len() >= 2, "only {} marks files", files.len());
    for (fixture, _, file) in files {
        let f = file.display();
        let run = in_namespace(
            &format!(
                "nft -c -f {f}
                 nft -f {f}
                 nft -f {f}
                 nft list table inet dsrgen_marks | grep -q 'meta mark set'"
            ),
            false,
        );
        assert_success(&format!("{fixture}: nft -c -f, nft -f twice: {f}"), &run);
    }
}

/// The marks file marks exactly a group's packets: in a namespace holding
/// the cluster addresses, with a counter after the marks chain for each port
/// (marked for the group's ports, unmarked for the single port 8080 of the
/// same cluster), a connection attempt to each port counts where it must.
#[test]
fn the_marks_file_marks_the_packets_of_its_port_groups() {
    if !can_run("nft marks", &["nft", "unshare", "ip", "curl"]) {
        return;
    }
    let out = built("fixtures/valid/port-groups.yaml");
    let marks = out.join("hosts/lb1/etc/nftables.d/dsrgen-marks.nft");
    let run = in_namespace(
        &format!(
            "ip link set lo up
             ip addr add 192.0.2.181/32 dev lo
             ip addr add 2001:db8::181/128 dev lo
             nft -f {marks}
             nft add table inet seen
             nft add chain inet seen c '{{ type filter hook prerouting priority 0; }}'
             nft add rule inet seen c ip daddr 192.0.2.181 tcp dport 80 meta mark 65616 counter
             nft add rule inet seen c ip daddr 192.0.2.181 tcp dport 443 meta mark 65616 counter
             nft add rule inet seen c ip daddr 192.0.2.181 tcp dport 8080 meta mark 0 counter
             nft add rule inet seen c ip6 daddr 2001:db8::181 tcp dport 443 meta mark 131152 counter
             for url in http://192.0.2.181:80/ http://192.0.2.181:443/ http://192.0.2.181:8080/ 'http://[2001:db8::181]:443/'; do
                 curl --noproxy '*' -s --max-time 1 \"$url\" || true
             done
             nft list chain inet seen c",
            marks = marks.display()
        ),
        false,
    );
    assert_success("marks in a namespace", &run);
    let listed = String::from_utf8_lossy(&run.stdout);
    let counted: Vec<&str> = listed.lines().filter(|l| l.contains("counter")).collect();
    assert_eq!(counted.len(), 4, "{listed}");
    for line in counted {
        assert!(
            !line.contains("packets 0 "),
            "a rule saw no packet marked as it should be:\n{listed}"
        );
    }
}
