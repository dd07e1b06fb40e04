//! Every fixture's `dsrgen check` transcript (exit code, stdout, stderr) against
//! its golden file, byte for byte.

use std::path::Path;

use crate::support::{Test, assert_no_failures, golden, stale_goldens, yaml_files};

fn check_transcripts(fixture_dir: &str, golden_dir: &str, expected_code: i32) {
    let mut failures = Vec::new();
    let mut wanted = Vec::new();
    let fixtures = yaml_files(fixture_dir);
    assert!(!fixtures.is_empty(), "no fixtures in {fixture_dir}");
    for fixture in &fixtures {
        let out = Test::new().arg("check").arg(fixture).run();
        if out.code != Some(expected_code) {
            failures.push(format!(
                "{}: expected exit code {expected_code}:\n{out}",
                fixture.display()
            ));
        }
        if out.stderr.contains("panicked") {
            failures.push(format!("{}: dsrgen panicked:\n{out}", fixture.display()));
        }
        let stem = fixture.file_stem().expect("fixture has a name");
        let golden_path = Path::new(golden_dir).join(stem).with_extension("txt");
        golden(&golden_path, &out.transcript(), &mut failures);
        wanted.push(golden_path);
    }
    stale_goldens(Path::new(golden_dir), &wanted, &mut failures);
    assert_no_failures(&failures);
}

#[test]
fn invalid_fixtures_fail_with_their_golden_diagnostics() {
    check_transcripts("fixtures/invalid", "golden/check/invalid", 2);
}

#[test]
fn hostile_fixtures_fail_with_their_golden_diagnostics() {
    check_transcripts("fixtures/hostile", "golden/check/hostile", 2);
}

#[test]
fn valid_fixtures_pass_with_their_golden_warnings() {
    check_transcripts("fixtures/valid", "golden/check/valid", 0);
}

#[test]
fn shipped_examples_are_valid() {
    check_transcripts("examples", "golden/check/examples", 0);
}

/// Each invalid fixture points at a line and column of its own file.
#[test]
fn every_error_names_a_location_in_its_file() {
    for fixture in yaml_files("fixtures/invalid") {
        let out = Test::new().arg("check").arg(&fixture).run();
        let arrow = format!("--> {}:", fixture.display());
        let located = out
            .stderr
            .lines()
            .filter(|l| l.trim_start().starts_with("-->"));
        let located: Vec<&str> = located.collect();
        assert!(!located.is_empty(), "no location in:\n{out}");
        for line in located {
            assert!(line.trim_start().starts_with(&arrow), "{line:?} in:\n{out}");
        }
    }
}

/// Each rule of DESIGN §3 is shown failing by at least one invalid fixture: a
/// fixture deleted, or a rule that stopped firing, fails here by name.
#[test]
fn invalid_fixtures_cover_every_rule() {
    let rules: &[(&str, &str)] = &[
        ("YAML syntax", "illegal placement"),
        ("wrong type", "expected a mapping"),
        ("unknown field", "unknown field `adress`"),
        ("duplicate key", "duplicate key `web1`"),
        ("missing version", "missing `version`"),
        (
            "version other than 1",
            "`version` must be the integer 1, found integer `2`",
        ),
        (
            "unparsable address",
            "`192.268.0.181` is not an IPv4 or IPv6 address",
        ),
        ("host address without prefix", "has no prefix length"),
        ("cluster address with a prefix", "has prefix /24"),
        (
            "duplicate cluster id",
            "id 1 is already used by cluster `www`",
        ),
        ("duplicate cluster address", "is already cluster `www`'s"),
        (
            "cluster address of a host",
            "is backend `web2`'s own address",
        ),
        ("network address", "is the network address of balancer"),
        ("broadcast address", "is the broadcast address of balancer"),
        ("unspecified", "it is unspecified"),
        ("loopback", "it is a loopback address"),
        ("multicast", "it is a multicast address"),
        ("link-local", "it is a link-local address"),
        ("limited broadcast", "it is the limited broadcast address"),
        ("IPv4-mapped", "IPv4-mapped"),
        ("zone", "has a zone"),
        ("undefined balancer", "no balancer is named `lb2`"),
        ("undefined backend", "no backend is named `wbe2`"),
        ("did you mean", "help: did you mean `web2`?"),
        (
            "one layer-2 segment",
            "MAC forwarding needs one layer-2 segment",
        ),
        (
            "IPv6 cluster, balancer without address6",
            "but balancer `lb1` has no `address6`",
        ),
        (
            "IPv6 cluster, backend without address6",
            "but backend `web1` has no `address6`",
        ),
        (
            "port range",
            "`port` must be an integer from 1 to 65535, found integer `0`",
        ),
        (
            "same protocol and port twice",
            "port 80/tcp is listed twice",
        ),
        (
            "weights key not among backends",
            "in `weights` is not among this port's `backends`",
        ),
        (
            "weight range",
            "`weight` must be an integer from 0 to 65535",
        ),
        (
            "dispatcher weight range",
            "the most a dispatcher balancer takes",
        ),
        (
            "persistence range",
            "`persistence` must be an integer from 0 to 2678400",
        ),
        ("unknown scheduler", "unknown scheduler `wlcc`"),
        (
            "nftables scheduler",
            "nftables balancer `lb1` cannot run scheduler `wlc`",
        ),
        (
            "dispatcher scheduler",
            "dispatcher balancers have no scheduler",
        ),
        (
            "interface name length",
            "Linux allows at most 15 (IFNAMSIZ)",
        ),
        (
            "interface name characters",
            "contains `:`, which Linux refuses",
        ),
        (
            "interface name . or ..",
            "`..` is not a valid interface name",
        ),
        ("label length", "bytes; Linux allows at most 15\n"),
        ("arp_ignore", "`arp_ignore` must be 1 or 3"),
        ("arp_announce", "`arp_announce` must be 1 or 2"),
        ("cluster with no balancers", "`balancers` is empty"),
        ("name alphabet", "invalid backend name"),
        ("both roles", "is both a balancer and a backend"),
        ("vrrp elsewhere", "`vrrp` is for keepalived balancers only"),
        (
            "dispatcher elsewhere",
            "`dispatcher` settings are for dispatcher balancers only",
        ),
        ("health on UDP", "cannot probe a udp service"),
        (
            "UDP check on TCP",
            "a `kind: udp` check cannot probe a tcp service",
        ),
        (
            "`!` in a check path",
            "which keepalived reads as the start of a comment",
        ),
        (
            "check an engine cannot run",
            "dispatcher balancers cannot run `kind: udp` checks",
        ),
        (
            "none among several checks",
            "`kind: none` cannot be one of several checks",
        ),
        ("digest", "`digest` must be the MD5 digest"),
        ("on_failure", "unknown on_failure `quiesce`"),
        (
            "check timing range",
            "`interval` must be an integer from 1 to 3600",
        ),
        (
            "a group of one port",
            "groups several ports into one service, but lists 1",
        ),
        (
            "port and ports",
            "a port entry has `port` or `ports`, not both",
        ),
        (
            "groups with one mark",
            "their firewall marks would be the same",
        ),
        (
            "group on an engine without marks",
            "cannot serve several ports as one service",
        ),
        (
            "sorry server among the backends",
            "a sorry server stands in for them all",
        ),
        ("VRRP peers that disagree", "must agree on `advert_int`"),
        (
            "unrelated VRRP instances with one router id",
            "both use router id 40 on one segment",
        ),
        ("router ids past 255", "VRRP's go up to 255"),
        (
            "priority with active_active",
            "priorities come from the order of each cluster's balancers",
        ),
        ("sync with active_active", "`active_active` makes several"),
        (
            "preempt_delay without preemption",
            "has no meaning with `preempt: false`",
        ),
        (
            "two hosts with one address",
            "is already the address of backend",
        ),
        ("hysteresis without quorum", "`hysteresis` dampens `quorum`"),
        ("quoted number", "found string `80`"),
        (
            "interface and interfaces",
            "`interface` and `interfaces` cannot both be given",
        ),
        ("empty interfaces", "`interfaces` is empty"),
        (
            "an interface listed twice",
            "is listed twice in `interfaces`",
        ),
        (
            "overlapping segments",
            "each segment needs a subnet of its own",
        ),
        (
            "a backend on none of a balancer's segments",
            "is on none of balancer `lb1`'s segments (198.51.100.0/24 on `eth0`, 203.0.113.0/24 on `eth1`)",
        ),
        (
            "routed on an engine that cannot hold it",
            "so it cannot hold a routed one on its loopback",
        ),
        (
            "VRRP with routed addresses only",
            "so its VRRP instance would hold no address",
        ),
        ("routed not a boolean", "`routed` must be `true` or `false`"),
        ("YAML 1.1 boolean", "unknown engine `yes`"),
    ];
    let goldens: String = std::fs::read_dir(crate::support::root().join("golden/check/invalid"))
        .expect("golden/check/invalid exists")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read golden"))
        .collect();
    let missing: Vec<&str> = rules
        .iter()
        .filter(|(_, fragment)| !goldens.contains(fragment))
        .map(|(rule, _)| *rule)
        .collect();
    assert!(
        missing.is_empty(),
        "rules no invalid fixture shows: {missing:?}"
    );
}
