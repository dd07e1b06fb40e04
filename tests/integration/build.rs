//! `dsrgen build`: golden trees, and the output folder's life over several
//! builds, as a user lives it.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::support::{
    API_CLUSTER, TempDir, Test, assert_no_failures, build, golden_tree, root, stale_goldens,
    tree_files, yaml_files,
};

/// Every valid fixture and shipped example builds to its golden tree.
#[test]
fn valid_fixtures_build_their_golden_trees() {
    let mut failures = Vec::new();
    let mut wanted = Vec::new();
    for fixture in yaml_files("fixtures/valid")
        .into_iter()
        .chain(yaml_files("examples"))
    {
        let stem = fixture.file_stem().expect("named").to_owned();
        let out = TempDir::new("golden");
        let run = Test::new()
            .arg("build")
            .arg(&fixture)
            .arg("--out")
            .arg(out.path())
            .run();
        if run.code != Some(0) {
            failures.push(format!("{}: build failed:\n{run}", fixture.display()));
            continue;
        }
        let golden_dir = Path::new("golden/build").join(&stem);
        // A fixture and an example of one name would share, and fight over,
        // one golden folder.
        assert!(
            !wanted.contains(&golden_dir),
            "{}: another fixture or example already has the golden folder {}",
            fixture.display(),
            golden_dir.display()
        );
        golden_tree(&golden_dir, out.path(), &mut failures);
        wanted.push(golden_dir);
    }
    stale_goldens(Path::new("golden/build"), &wanted, &mut failures);
    assert_no_failures(&failures);
}

fn check(inventory: &Path, out: &Path) -> crate::support::Output {
    Test::new()
        .arg("build")
        .arg(inventory)
        .arg("--out")
        .arg(out)
        .arg("--check")
        .run()
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

/// The walk-through of the issue: build into an empty folder, build again,
/// edit, check, build, check; a file placed by hand survives it all.
#[test]
fn a_folder_lives_through_edits() {
    let tmp = TempDir::new("life");
    let inventory = tmp.join("inventory.yaml");
    let out = tmp.join("out");
    let minimal =
        std::fs::read_to_string(root().join("fixtures/valid/minimal.yaml")).expect("read");
    std::fs::write(&inventory, &minimal).expect("write inventory");
    let hand = out.join("hosts/web1/NOTES.txt");
    std::fs::create_dir_all(hand.parent().expect("in a folder")).expect("create folder");
    std::fs::write(&hand, "placed by hand\n").expect("write hand file");

    build(&inventory, &out)
        .code(0)
        .stdout_has("11 written, 0 unchanged, 0 removed");
    build(&inventory, &out)
        .code(0)
        .stdout_has("0 written, 11 unchanged, 0 removed");
    check(&inventory, &out).code(0).stderr_has("up to date");

    // A second cluster on web1 alone: web1's script and networkd file change,
    // and lb1's keepalived.conf and script; nothing of web2's is touched.
    let web2_script = out.join("hosts/web2/usr/local/sbin/dsrgen-vips");
    let web2_inode = inode(&web2_script);
    std::fs::write(&inventory, format!("{minimal}{API_CLUSTER}")).expect("edit inventory");
    build(&inventory, &out)
        .code(0)
        .stdout_has("4 written, 7 unchanged, 0 removed");
    assert_eq!(
        inode(&web2_script),
        web2_inode,
        "web2's script was rewritten"
    );

    // Without `www`, web2 serves nothing: --check shows its files going and
    // web1's changing, and writes nothing.
    let without_www = format!("{minimal}{API_CLUSTER}").replace(
        "  www:\n    id: 1\n    address: 192.0.2.181\n    balancers: [lb1]\n    ports:\n      - port: 80\n        backends: [web1, web2]\n",
        "",
    );
    std::fs::write(&inventory, &without_www).expect("edit inventory");
    let drift = check(&inventory, &out);
    drift
        .code(1)
        .stderr_has("out of date: 4 to write, 4 to remove");
    for needle in [
        "--- a/hosts/web2/usr/local/sbin/dsrgen-vips\n+++ /dev/null\n",
        "--- a/hosts/web1/usr/local/sbin/dsrgen-vips\n+++ b/hosts/web1/usr/local/sbin/dsrgen-vips\n",
        "-4 192.0.2.181/32 host lo:1 www\n",
        "--- a/manifest.json\n+++ b/manifest.json\n",
    ] {
        drift.stdout_has(needle);
    }
    assert!(web2_script.exists(), "--check removed a file");

    build(&inventory, &out)
        .code(0)
        .stdout_has("4 written, 3 unchanged, 4 removed");
    assert!(
        !out.join("hosts/web2").exists(),
        "web2's empty folders stay behind"
    );
    check(&inventory, &out).code(0);
    assert_eq!(
        std::fs::read_to_string(&hand).expect("hand file survives"),
        "placed by hand\n"
    );
}

#[test]
fn the_same_inventory_builds_the_same_bytes_anywhere() {
    let tmp = TempDir::new("anywhere");
    let text =
        std::fs::read_to_string(root().join("fixtures/valid/mixed-engines.yaml")).expect("read");
    let (a, b) = (tmp.join("a/deep/inv.yaml"), tmp.join("b/inv.yaml"));
    for inventory in [&a, &b] {
        std::fs::create_dir_all(inventory.parent().expect("in a folder")).expect("mkdir");
        std::fs::write(inventory, &text).expect("write inventory");
    }
    build(&a, &tmp.join("out-a")).code(0);
    build(&b, &tmp.join("elsewhere/out-b")).code(0);
    let files = tree_files(&tmp.join("out-a"));
    assert_eq!(files, tree_files(&tmp.join("elsewhere/out-b")));
    for file in files {
        assert_eq!(
            std::fs::read(tmp.join("out-a").join(&file)).expect("read"),
            std::fs::read(tmp.join("elsewhere/out-b").join(&file)).expect("read"),
            "{}",
            file.display()
        );
    }
}

#[test]
fn a_file_dsrgen_did_not_write_stops_the_build_before_any_write() {
    let tmp = TempDir::new("conflict");
    let out = tmp.join("out");
    let theirs = out.join("hosts/web1/etc/sysctl.d/90-dsrgen.conf");
    std::fs::create_dir_all(theirs.parent().expect("in a folder")).expect("mkdir");
    std::fs::write(&theirs, "net.ipv4.conf.all.arp_ignore = 8\n").expect("write");
    let minimal = root().join("fixtures/valid/minimal.yaml");
    build(&minimal, &out)
        .code(2)
        .stderr_has("90-dsrgen.conf` exists and dsrgen did not write it");
    // Nothing but their file: no lock, no manifest.
    assert_eq!(
        tree_files(&out),
        [PathBuf::from("hosts/web1/etc/sysctl.d/90-dsrgen.conf")]
    );
    check(&minimal, &out).code(2);
    // Identical content is taken over, not a conflict.
    let taken = TempDir::new("take-over");
    build(&minimal, &taken.join("first")).code(0);
    std::fs::remove_file(taken.join("first/manifest.json")).expect("lose the manifest");
    build(&minimal, &taken.join("first"))
        .code(0)
        .stdout_has("0 written, 11 unchanged, 0 removed");
}

#[test]
fn nothing_is_written_for_an_invalid_inventory() {
    let tmp = TempDir::new("invalid");
    let out = tmp.join("out");
    build(&root().join("fixtures/invalid/seed-typo.yaml"), &out).code(2);
    assert!(!out.exists());
}

#[test]
fn hand_edits_of_generated_files_are_overwritten_loudly() {
    let tmp = TempDir::new("edited");
    let out = tmp.join("out");
    let minimal = root().join("fixtures/valid/minimal.yaml");
    build(&minimal, &out).code(0);
    let conf = out.join("hosts/web1/etc/sysctl.d/90-dsrgen.conf");
    let generated = std::fs::read_to_string(&conf).expect("read");
    std::fs::write(&conf, "# tweaked\n").expect("edit");
    let script = out.join("hosts/web1/usr/local/sbin/dsrgen-vips");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    check(&minimal, &out)
        .code(1)
        .stdout_has("-# tweaked\n")
        .stdout_has("old mode 0700\nnew mode 0755\n");
    build(&minimal, &out)
        .code(0)
        .stdout_has("2 written, 9 unchanged, 0 removed")
        .stderr_has("which had been edited by hand since dsrgen wrote it");
    assert_eq!(std::fs::read_to_string(&conf).expect("read"), generated);
    let mode = std::fs::metadata(&script).expect("stat").mode() & 0o7777;
    assert_eq!(mode, 0o755);
}

#[test]
fn check_of_a_missing_folder_shows_every_file_as_added() {
    let tmp = TempDir::new("check-new");
    let out = tmp.join("never-built");
    let run = check(&root().join("fixtures/valid/minimal.yaml"), &out);
    run.code(1)
        .stderr_has("out of date: 11 to write, 0 to remove");
    assert_eq!(run.stdout.matches("--- /dev/null\n").count(), 12);
    assert!(!out.exists());
}

#[test]
fn a_corrupt_manifest_stops_the_build_and_says_how_to_recover() {
    let tmp = TempDir::new("corrupt");
    let inventory = tmp.join("inventory.yaml");
    let out = tmp.join("out");
    let minimal =
        std::fs::read_to_string(root().join("fixtures/valid/minimal.yaml")).expect("read");
    std::fs::write(&inventory, format!("{minimal}{API_CLUSTER}")).expect("write");
    build(&inventory, &out).code(0);
    let good = std::fs::read(out.join("manifest.json")).expect("read");
    // A merge conflict left in it is enough.
    let mut conflicted = b"<<<<<<< HEAD\n".to_vec();
    conflicted.extend_from_slice(&good);
    std::fs::write(out.join("manifest.json"), conflicted).expect("corrupt");
    std::fs::write(&inventory, &minimal).expect("drop api");
    let before = tree_files(&out);
    build(&inventory, &out)
        .code(2)
        .stderr_has("manifest.json`: it is unusable (")
        .stderr_has("restore it (from version control, for example), or build with --adopt");
    assert_eq!(tree_files(&out), before);
    // --adopt goes on without it: what matches is taken over, and web1's
    // script, which must change, is in the way.
    build_with(&inventory, &out, &["--adopt"])
        .code(2)
        .stderr_has("warning: cannot use")
        .stderr_has("with --adopt, nothing will be pruned")
        .stderr_has("dsrgen did not write it");
    // Restored, the manifest leads the build again.
    std::fs::write(out.join("manifest.json"), good).expect("restore");
    build(&inventory, &out).code(0).stdout_has(" removed");
}

fn build_with(inventory: &Path, out: &Path, args: &[&str]) -> crate::support::Output {
    Test::new()
        .arg("build")
        .arg(inventory)
        .arg("--out")
        .arg(out)
        .args(args.iter().copied())
        .run()
}
