//! Changes under the real systemd-networkd. The inventory versions of
//! `converge.rs` are deployed in turn as a fleet would deploy them (the new
//! files, `networkctl reload`, the new `dsrgen-vips up`, then `prune`), with
//! systemd-networkd running in the host's namespace on a private D-Bus:
//!
//! - a backend whose lo networkd manages from dsrgen's `.network`: after every
//!   step lo holds exactly what the version says. networkd never takes an
//!   address off a loopback device (not even one its `.network` stopped
//!   listing), so the removal is `prune`'s; `up` records the listed addresses
//!   networkd added before it.
//! - a balancer whose interface networkd manages from the operator's own
//!   `.network`, holding the cluster addresses with `dsrgen-vips`: a restart
//!   of networkd keeps them. A reconfiguration of the interface (`networkctl
//!   reconfigure`, or `networkctl reload` after its `.network` changed) takes
//!   them away unless that file says `KeepConfiguration=static`; `status` then
//!   names them and `up` puts them back (README, "systemd-networkd").

use std::fmt::Write as _;
use std::path::Path;

use crate::converge::{Sequence, VERSIONS, expected, held, parse_addresses};
use crate::system::{assert_success, can_run};

/// A system bus for the namespace alone: `networkctl reload` talks to
/// networkd (which runs as systemd-network) over D-Bus.
const BUS: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#;

const TOOLS: &[&str] = &[
    "/lib/systemd/systemd-networkd",
    "networkctl",
    "dbus-daemon",
    "unshare",
    "ip",
    "awk",
];

/// The start of a host's namespace: its own `/run`, a read-only `/sys` (so
/// that networkd does not wait for udev), `net` as `/etc/systemd/network` and
/// nothing from the machine's own networkd folders, then the bus, and shell
/// functions to start networkd (`start`) and to wait until it has configured
/// a device with every address a `.network` file lists (`settled DEVICE
/// FILE`).
fn prologue(dir: &Path, net: &Path) -> String {
    let run = dir.join("run");
    std::fs::create_dir_all(run.join("dbus")).expect("mkdir");
    std::fs::create_dir_all(net).expect("mkdir");
    let bus = dir.join("bus.conf");
    std::fs::write(&bus, BUS).expect("write the bus configuration");
    format!(
        "mount --bind {run} /run
         mount -t sysfs -o ro sysfs /sys
         mount --bind {net} /etc/systemd/network
         mount -t tmpfs tmpfs /usr/lib/systemd/network
         mkdir -p /run/systemd/netif/links /run/systemd/netif/leases /run/systemd/netif/lldp
         chown -R systemd-network:systemd-network /run/systemd/netif
         dbus-daemon --config-file={bus} --fork --nopidfile
         start() {{ /lib/systemd/systemd-networkd 2>>{log} & ND=$!; }}
         stop() {{ kill $ND; wait $ND || true; }}
         settled() {{
             deadline=$(( $(date +%s) + 10 ))
             while :; do
                 setup=$(networkctl list \"$1\" --no-legend 2>/dev/null | awk '{{ print $5 }}')
                 missing=
                 for a in $(sed -n 's/^Address=//p' \"$2\"); do
                     case \" $(ip -o addr show dev \"$1\") \" in *\" $a \"*) ;; *) missing=\"$missing $a\" ;; esac
                 done
                 [ \"$setup\" = configured ] && [ -z \"$missing\" ] && return 0
                 [ $(date +%s) -lt $deadline ] || {{ echo \"networkd did not configure $1 in 10 s (setup: $setup, missing:$missing)\" >&2; exit 1; }}
                 sleep 0.05
             done
         }}
         ip link set lo up\n",
        run = run.display(),
        net = net.display(),
        bus = bus.display(),
        log = dir.join("networkd.log").display(),
    )
}

/// Run a host's script in network, mount and PID namespaces of its own: the
/// bus and networkd die with it.
fn in_host(script: &str) -> std::process::Output {
    std::process::Command::new("timeout")
        .args([
            "120",
            "unshare",
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "sh",
            "-euc",
            script,
        ])
        .output()
        .expect("run unshare")
}

/// The rollout of version `n` on `host`: `up`, `prune`, `status` (its output
/// kept in `status-<n>`), and what every device holds (`held-<n>.json`).
fn step(seq: &Sequence, n: usize, host: &str, dir: &Path, tag: &str) -> String {
    let s = seq.script(n, host);
    format!(
        "{s} up
         {s} prune
         {s} status > {dir}/status-{tag} 2>&1 || echo 'status failed' >> {dir}/status-{tag}
         ip -j addr show > {dir}/held-{tag}.json\n",
        s = s.display(),
        dir = dir.display(),
    )
}

/// What a step left: the addresses held, and `status`'s verdict.
fn check(seq: &Sequence, n: usize, host: &str, dir: &Path, tag: &str) {
    let what = format!("{host}, {tag} ({})", VERSIONS[n].what);
    let status = std::fs::read_to_string(dir.join(format!("status-{tag}"))).expect("status");
    assert!(
        !status.contains("status failed") && status.contains("in place"),
        "{what}: status says\n{status}"
    );
    let got = parse_addresses(
        &std::fs::read_to_string(dir.join(format!("held-{tag}.json"))).expect("held"),
    );
    assert_eq!(got, expected(seq.model(n, host), host), "{what}");
}

#[test]
fn networkd_on_lo_and_dsrgen_vips_converge_together() {
    if !can_run("networkd through inventory changes", TOOLS) {
        return;
    }
    let seq = Sequence::build();
    let host = "web1";
    let dir = seq.tmp.join("networkd-web1");
    let net = dir.join("network");
    let mut script = prologue(&dir, &net);
    script += "ip link add eth0 type veth peer name peer0
               ip link set eth0 up
               ip link set peer0 up
               ip addr add 192.0.2.7/32 dev lo label lo:7\n";
    let file = net.join("90-dsrgen-lo.network");
    let restarted = 3;
    for n in 0..VERSIONS.len() {
        let new = seq.tmp.join(format!(
            "v{n}/out/hosts/{host}/etc/systemd/network/90-dsrgen-lo.network"
        ));
        assert!(new.exists(), "version {n} gives {host} a .network");
        // networkd starts with the first version's file, and reloads the
        // next ones.
        let apply = if n == 0 { "start" } else { "networkctl reload" };
        let _ = write!(
            script,
            "cp {new} {file}
             {apply}
             settled lo {file}\n",
            new = new.display(),
            file = file.display(),
        );
        script += &step(&seq, n, host, &dir, &n.to_string());
        if n == restarted {
            let _ = write!(
        script,
                "stop
                 start
                 settled lo {file}
                 {s} status > {dir}/status-restart 2>&1 || echo 'status failed' >> {dir}/status-restart
                 ip -j addr show > {dir}/held-restart.json\n",
                file = file.display(),
                s = seq.script(n, host).display(),
                dir = dir.display(),
            );
        }
    }
    script += "stop\n";
    let run = in_host(&script);
    assert_success("networkd and dsrgen-vips through every version", &run);
    for n in 0..VERSIONS.len() {
        check(&seq, n, host, &dir, &n.to_string());
    }
    check(&seq, restarted, host, &dir, "restart");
}

#[test]
fn a_networkd_restart_keeps_a_balancers_addresses() {
    if !can_run("networkd under a balancer's addresses", TOOLS) {
        return;
    }
    let seq = Sequence::build();
    let host = "lb1";
    let dir = seq.tmp.join("networkd-lb1");
    let net = dir.join("network");
    // The operator's own file for the interface; the namespace's peer keeps
    // the carrier up.
    let own = net.join("10-eth2.network");
    let mut script = prologue(&dir, &net);
    std::fs::write(
        &own,
        "[Match]\nName=eth2\n\n[Network]\nAddress=192.0.2.73/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
    )
    .expect("write");
    let _ = write!(
        script,
        "ip link add eth2 type veth peer name peer0
         ip link set peer0 up
         start
         settled eth2 {own}
         ip addr add 192.0.2.8/24 dev eth2 label eth2:8\n",
        own = own.display()
    );
    let last = VERSIONS.len() - 1;
    for n in 0..VERSIONS.len() {
        script += &step(&seq, n, host, &dir, &n.to_string());
    }
    let s = seq.script(last, host);
    // A restart keeps every address; a reconfiguration takes the cluster
    // addresses (and the hand-made one) away, status names them, up puts the
    // cluster addresses back; with KeepConfiguration=static a
    // reconfiguration keeps them.
    let _ = write!(
        script,
        "stop
         start
         settled eth2 {own}
         {s} status > {dir}/status-restart 2>&1 || echo 'status failed' >> {dir}/status-restart
         ip -j addr show > {dir}/held-restart.json
         networkctl reconfigure eth2
         settled eth2 {own}
         ip -j addr show > {dir}/held-reconfigured.json
         {s} status > {dir}/status-reconfigured 2>&1 && echo 'status passed' >> {dir}/status-reconfigured
         {s} up
         ip addr add 192.0.2.8/24 dev eth2 label eth2:8
         printf 'KeepConfiguration=static\\n' >> {own}
         networkctl reload
         networkctl reconfigure eth2
         settled eth2 {own}
         {s} status > {dir}/status-kept 2>&1 || echo 'status failed' >> {dir}/status-kept
         ip -j addr show > {dir}/held-kept.json
         stop\n",
        own = own.display(),
        s = s.display(),
        dir = dir.display(),
    );
    let run = in_host(&script);
    assert_success("a balancer's addresses under networkd", &run);
    for n in 0..VERSIONS.len() {
        check(&seq, n, host, &dir, &n.to_string());
    }
    check(&seq, last, host, &dir, "restart");
    check(&seq, last, host, &dir, "kept");
    // Without KeepConfiguration, a reconfiguration leaves only networkd's
    // own address, and status says what is missing.
    let got = parse_addresses(
        &std::fs::read_to_string(dir.join("held-reconfigured.json")).expect("held"),
    );
    let want = std::collections::BTreeSet::from([
        held("lo", "127.0.0.1/8", "host", Some("lo")),
        held("lo", "::1/128", "host", None),
        held("eth2", "192.0.2.73/24", "global", Some("eth2")),
    ]);
    assert_eq!(got, want, "lb1 after networkctl reconfigure");
    let status = std::fs::read_to_string(dir.join("status-reconfigured")).expect("status");
    let model = seq.model(last, host).expect("lb1 serves");
    let balancer = &model
        .balancers
        .iter()
        .find(|(n, _)| n.as_str() == host)
        .expect("lb1")
        .1;
    for vip in &balancer.vips {
        assert!(
            status.contains(&format!("{}/", vip.address)) && status.contains("missing"),
            "status after the reconfiguration does not name {}:\n{status}",
            vip.address
        );
    }
    assert!(
        !status.contains("status passed"),
        "status passed:\n{status}"
    );
}
