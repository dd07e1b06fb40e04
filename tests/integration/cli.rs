//! The command line: help, usage errors, exit codes, and inputs built to hurt.

use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::support::Test;

#[test]
fn help_explains_the_commands() {
    Test::new()
        .arg("--help")
        .run()
        .code(0)
        .stdout_has("check")
        .stdout_has("Exit codes");
    Test::new()
        .args(["check", "--help"])
        .run()
        .code(0)
        .stdout_has("INVENTORY");
}

#[test]
fn usage_errors_exit_2() {
    Test::new().run().code(2);
    Test::new().arg("frobnicate").run().code(2);
    Test::new()
        .arg("check")
        .run()
        .code(2)
        .stderr_has("INVENTORY");
}

#[test]
fn a_missing_file_is_trouble() {
    Test::new()
        .args(["check", "fixtures/no-such-file.yaml"])
        .run()
        .code(2)
        .stderr_has("error: cannot read `fixtures/no-such-file.yaml`");
    Test::new()
        .args(["check", "fixtures"])
        .run()
        .code(2)
        .stderr_has("error: cannot read `fixtures`");
}

#[test]
fn warnings_pass_unless_denied() {
    Test::new()
        .args(["check", "fixtures/valid/warnings.yaml"])
        .run()
        .code(0)
        .stderr_has("warning: fixtures/valid/warnings.yaml: 6 warnings");
    // The flag is global: before or after the subcommand.
    for args in [
        ["--deny-warnings", "check", "fixtures/valid/warnings.yaml"],
        ["check", "fixtures/valid/warnings.yaml", "--deny-warnings"],
    ] {
        Test::new().args(args).run().code(2).stderr_has(
            "error: fixtures/valid/warnings.yaml: 6 warnings (denied by --deny-warnings)",
        );
    }
    Test::new()
        .args(["--deny-warnings", "check", "fixtures/valid/minimal.yaml"])
        .run()
        .code(0);
}

/// A hostile file, written to a temporary folder, must give exit code 2 and
/// exactly one error, quickly. The bound is loose (the tests run a debug
/// build on a loaded machine); it catches hangs and blow-ups, not regressions.
fn one_clear_error(name: &str, bytes: &[u8], expected: &str) {
    let dir = std::env::temp_dir().join(format!("dsrgen-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp folder");
    let path = dir.join(format!("{name}.yaml"));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(bytes))
        .expect("write hostile file");
    let started = Instant::now();
    let out = Test::new().arg("check").arg(&path).run();
    let took = started.elapsed();
    std::fs::remove_dir_all(&dir).expect("remove temp folder");
    out.code(2).stderr_has(expected);
    assert_eq!(out.error_count(), 1, "{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");
    // Long source lines are cropped: one error is a few lines, never the file.
    assert!(out.stderr.len() < 2_000, "{out}");
    assert!(took < Duration::from_secs(5), "{name} took {took:?}");
}

#[test]
fn binary_files_are_refused() {
    let mut bytes = b"version: 1\n".to_vec();
    bytes.extend((0..=255u8).cycle().take(4096));
    one_clear_error(
        "binary",
        &bytes,
        "is not UTF-8 text: invalid byte at line 3, column 118",
    );
}

#[test]
fn nul_bytes_are_refused() {
    one_clear_error("nul", b"version: 1\nbalancers: {}\x00\n", "error: ");
}

#[test]
fn deep_nesting_is_refused() {
    let depth = 10_000;
    let text = format!(
        "version: 1\nbalancers: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    one_clear_error("deep", text.as_bytes(), "error: ");
}

#[test]
fn deep_block_nesting_is_refused() {
    let mut text = String::from("version: 1\nbalancers:\n");
    for level in 1..10_000 {
        text.push_str(&" ".repeat(level));
        text.push_str("- \n");
    }
    one_clear_error("deep-block", text.as_bytes(), "error: ");
}

#[test]
fn alias_bombs_are_refused() {
    // Nine levels of ten aliases each: a billion strings if expanded.
    let mut nested = String::from("version: 1\nbomb0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    nested.extend((1..10).map(|level| {
        let refs = vec![format!("*a{}", level - 1); 10].join(", ");
        format!("bomb{level}: &a{level} [{refs}]\n")
    }));
    one_clear_error("bomb-nested", nested.as_bytes(), "error: ");

    // Wide, and shaped like the schema so that it is really expanded: a list of
    // 5,000 names used as the backends of 5,000 ports is 25 million scalars
    // from a 200 kB file.
    let names = vec!["web"; 5_000].join(", ");
    let mut wide = format!(
        "version: 1\nclusters:\n  c:\n    ports:\n      - port: 1\n        backends: &all [{names}]\n"
    );
    wide.extend((2..=5_000).map(|port| format!("      - port: {port}\n        backends: *all\n")));
    one_clear_error(
        "bomb-wide",
        wide.as_bytes(),
        "aliases expand to too much data",
    );
}

#[test]
fn oversized_files_are_refused_before_parsing() {
    let dir = std::env::temp_dir().join(format!("dsrgen-test-{}-huge", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp folder");
    let path = dir.join("huge.yaml");
    let file = std::fs::File::create(&path).expect("create file");
    // Sparse: costs no disk.
    file.set_len(100 * 1024 * 1024).expect("grow file");
    let out = Test::new().arg("check").arg(&path).run();
    std::fs::remove_dir_all(&dir).expect("remove temp folder");
    out.code(2).stderr_has("is larger than 64 MiB");
    assert_eq!(out.error_count(), 1, "{out}");
}

/// 70,000 clusters: the ids (1..=65535) run out, and every cluster past them
/// is reported, at its `id`, in one run.
#[test]
fn cluster_ids_run_out() {
    let mut text = String::from(
        "version: 1\nbalancers:\n  lb1: { engine: ipvsadm, interface: eth1, address: 198.18.0.1/15 }\nbackends:\n  web1: { interface: eth0, address: 198.18.0.2/15 }\nclusters:\n",
    );
    let base = u32::from(std::net::Ipv4Addr::new(198, 18, 4, 0));
    text.extend((1..=70_000_u32).map(|id| {
        let address = std::net::Ipv4Addr::from(base + id);
        format!(
            "  c{id}: {{ id: {id}, address: {address}, balancers: [lb1], ports: [{{ port: 80, backends: [web1] }}] }}\n"
        )
    }));
    let dir = std::env::temp_dir().join(format!("dsrgen-test-{}-ids", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp folder");
    let path = dir.join("ids.yaml");
    std::fs::write(&path, text).expect("write");
    let started = Instant::now();
    let out = Test::new().arg("check").arg(&path).run();
    let took = started.elapsed();
    std::fs::remove_dir_all(&dir).expect("remove temp folder");
    out.code(2)
        .stderr_has("`id` must be an integer from 1 to 65535, found integer `65536`");
    assert_eq!(
        out.error_count(),
        70_000 - 65_535,
        "one error per cluster past the last id"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
}
