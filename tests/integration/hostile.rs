//! The output folder under an adversary: folders swapped for links while a
//! build runs, special files where the manifest belongs, manifests that list a
//! path twice, messages that must not mislead, leftovers of killed builds,
//! terminal escapes in `--check` diffs, a closed or full standard output; and
//! the lock on the folder itself, and the build with nothing to do that
//! changes nothing.
//!
//! Races are made deterministic with `DSRGEN_TEST_HOOK`, which the debug
//! binary honours: the test changes the folder at the point it names.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{API_CLUSTER, Output, TempDir, Test, build, root, tree_files};

fn minimal_text() -> String {
    std::fs::read_to_string(root().join("fixtures/valid/minimal.yaml")).expect("read")
}

/// An inventory in `tmp`: minimal, with the `api` cluster on web1 when `api`
/// is set, and without web2 in any cluster (so that its files go) when
/// `drop_web2` is set.
fn inventory(tmp: &TempDir, name: &str, api: bool, drop_web2: bool) -> PathBuf {
    let mut text = minimal_text();
    if drop_web2 {
        text = text.replace("backends: [web1, web2]", "backends: [web1]");
    }
    if api {
        text.push_str(API_CLUSTER);
    }
    let path = tmp.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn hooked(inventory: &Path, out: &Path, hook: &str) -> Output {
    Test::new()
        .arg("build")
        .arg(inventory)
        .arg("--out")
        .arg(out)
        .env("DSRGEN_TEST_HOOK", hook)
        .timeout(60)
        .run()
}

/// Every entry below `dir` (itself included, `skip` left out) with what a
/// change would change: inode, type and mode, size, mtime, ctime, and bytes
/// for files.
fn snapshot(dir: &Path, skip: Option<&Path>) -> BTreeMap<PathBuf, String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| Some(e.path()) != skip)
        .map(|e| e.expect("walk"))
        .map(|e| {
            let m = e.path().symlink_metadata().expect("stat");
            let sha256 = if m.is_file() {
                dsrgen::manifest::sha256_hex(&std::fs::read(e.path()).expect("read"))
            } else {
                String::new()
            };
            let state = format!(
                "ino {} mode {:o} size {} mtime {}.{} ctime {}.{} sha256 {sha256}",
                m.ino(),
                m.mode(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec()
            );
            (e.path().to_owned(), state)
        })
        .collect()
}

#[track_caller]
fn assert_same(before: &BTreeMap<PathBuf, String>, after: &BTreeMap<PathBuf, String>) {
    let changed: Vec<_> = before
        .iter()
        .filter(|(path, state)| after.get(*path) != Some(state))
        .map(|(path, state)| format!("{}: {state} -> {:?}", path.display(), after.get(path)))
        .chain(
            after
                .keys()
                .filter(|path| !before.contains_key(*path))
                .map(|path| format!("{}: new", path.display())),
        )
        .collect();
    assert!(changed.is_empty(), "changed:\n{}", changed.join("\n"));
}

fn shell(script: &str) {
    let status = Command::new("sh")
        .args(["-euc", script])
        .status()
        .expect("sh");
    assert!(status.success(), "{script}");
}

/// Build `v1`, copy the tree's `folder` outside it, then build `v2` while
/// the hook swaps `folder` for a link to the copy, after the survey and
/// before any write; nothing outside the output folder may change.
fn build_while_swapping(name: &str, folder: &str, v2: (bool, bool)) -> Output {
    let tmp = TempDir::new(name);
    let out = tmp.join("out");
    build(&inventory(&tmp, "v1.yaml", false, false), &out).code(0);
    let outside = tmp.join("outside");
    shell(&format!(
        "cp -a {}/{folder} {}",
        out.display(),
        outside.display()
    ));
    let v2 = inventory(&tmp, "v2.yaml", v2.0, v2.1);
    let before = snapshot(tmp.path(), Some(&out));
    let run = hooked(
        &v2,
        &out,
        &format!(
            "apply:mv {out}/{folder} {out}/moved && ln -s {outside} {out}/{folder}",
            out = out.display(),
            outside = outside.display()
        ),
    );
    assert_same(&before, &snapshot(tmp.path(), Some(&out)));
    run
}

/// Item 1: a host folder replaced by a link to a copy of it outside: nothing
/// is written through the link.
#[test]
fn a_folder_swapped_for_a_link_during_a_build_is_not_written_through() {
    build_while_swapping("swap-write", "hosts/web1", (true, false))
        .code(2)
        .stderr_has("hosts/web1`: it is a symbolic link or not a folder");
}

/// Item 1: the same while pruning: the folder of files to remove becomes a
/// link to a copy of it outside; the copy stays whole.
#[test]
fn a_folder_swapped_for_a_link_during_a_build_is_not_pruned_through() {
    build_while_swapping("swap-prune", "hosts/web2/etc", (false, true))
        .code(0)
        .stderr_has("not removing")
        .stderr_has("is a symbolic link or not a folder, and dsrgen does not follow it");
}

/// Item 2: a FIFO as the manifest, or as a planned file, a link to
/// `/dev/zero`, a 1 GiB manifest: each refused at once (a FIFO used to hang
/// `build` and `--check`; `/dev/zero` was read until memory ran out).
#[test]
fn special_files_are_refused_without_blocking_or_reading() {
    let tmp = TempDir::new("special");
    let inventory = inventory(&tmp, "v1.yaml", false, false);
    let out = tmp.join("out");
    build(&inventory, &out).code(0);
    let manifest = out.join("manifest.json");
    let run = |check: bool| {
        let mut test = Test::new()
            .arg("build")
            .arg(&inventory)
            .arg("--out")
            .arg(&out);
        if check {
            test = test.arg("--check");
        }
        test.timeout(20).run()
    };
    std::fs::remove_file(&manifest).expect("rm");
    shell(&format!("mkfifo {}", manifest.display()));
    for check in [false, true] {
        run(check)
            .code(2)
            .stderr_has("manifest.json`: it is not a regular file");
    }
    std::fs::remove_file(&manifest).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", &manifest).expect("symlink");
    run(false)
        .code(2)
        .stderr_has("manifest.json`: it is a symbolic link");
    std::fs::remove_file(&manifest).expect("rm");
    let big = std::fs::File::create(&manifest).expect("create");
    big.set_len(1 << 30).expect("a sparse GiB");
    let started = Instant::now();
    run(false).code(2).stderr_has("it is larger than 256 MiB");
    assert!(started.elapsed() < Duration::from_secs(5), "it was read");
    std::fs::remove_file(&manifest).expect("rm");
    // A FIFO where a planned file belongs.
    let conf = out.join("hosts/web1/etc/sysctl.d/90-dsrgen.conf");
    std::fs::remove_file(&conf).expect("rm");
    shell(&format!("mkfifo {}", conf.display()));
    run(false)
        .code(2)
        .stderr_has("90-dsrgen.conf` is in the way: it is not a regular file");
}

/// Item 3: a manifest that lists a path twice is read once: the build prunes
/// and finishes (it used to stop at "cannot remove").
#[test]
fn a_manifest_listing_a_path_twice_is_read_once() {
    let tmp = TempDir::new("twice");
    let out = tmp.join("out");
    build(&inventory(&tmp, "v1.yaml", false, false), &out).code(0);
    let path = out.join("manifest.json");
    let text = std::fs::read_to_string(&path).expect("read");
    let manifest = dsrgen::manifest::Manifest::parse(&text).expect("parse").0;
    let web2: Vec<String> = manifest
        .files
        .iter()
        .filter(|e| e.host == "web2")
        .map(|e| serde_json::to_string(e).expect("json"))
        .collect();
    let doubled = text.replacen(
        "\"files\": [",
        &format!("\"files\": [\n{},", web2.join(",\n")),
        1,
    );
    std::fs::write(&path, doubled).expect("write");
    build(&inventory(&tmp, "v2.yaml", false, true), &out)
        .code(0)
        .stderr_has("twice; using the first");
    assert!(!out.join("hosts/web2").exists());
    let mode = std::fs::metadata(&path).expect("stat").mode();
    assert_eq!(
        mode & 0o777,
        0o644,
        "the folder is still marked as under way"
    );
}

/// Item 5: a folder in the way is reported once, not once per planned file.
#[test]
fn a_folder_in_the_way_is_reported_once() {
    let tmp = TempDir::new("hosts-file");
    let out = tmp.join("out");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(out.join("hosts"), "mine\n").expect("write");
    let run = build(&inventory(&tmp, "v1.yaml", false, false), &out);
    run.code(2);
    assert_eq!(run.stderr.matches("is in the way").count(), 1, "{run}");
}

/// Item 5: a write that fails is not announced as done, and the build after a
/// failed one does not call it interrupted; the hand edit is still noticed.
/// web1's `usr/local/sbin` is made read-only in a mount namespace, so lb1's
/// files are written and web1's script is not.
#[test]
fn a_failed_build_says_only_what_happened() {
    if !crate::system::can_run("read-only output sub-folder", &["unshare", "mount"]) {
        return;
    }
    let tmp = TempDir::new("failed");
    let out = tmp.join("out");
    build(&inventory(&tmp, "v1.yaml", false, false), &out).code(0);
    let script = out.join("hosts/web1/usr/local/sbin/dsrgen-vips");
    let mut edited = std::fs::read_to_string(&script).expect("read");
    edited.push_str("# tweaked\n");
    std::fs::write(&script, &edited).expect("edit");
    let v2 = inventory(&tmp, "v2.yaml", true, false);
    let sbin = out.join("hosts/web1/usr/local/sbin");
    let run = Command::new("unshare")
        .args(["--mount", "sh", "-euc"])
        .arg(format!(
            "mount --bind {sbin} {sbin}; mount -o remount,bind,ro {sbin}; exec {bin} build {inv} --out {out}",
            sbin = sbin.display(),
            out = out.display(),
            bin = env!("CARGO_BIN_EXE_dsrgen"),
            inv = v2.display()
        ))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(
        !stderr.contains("overwrote"),
        "announced a write that failed: {stderr}"
    );
    assert_eq!(std::fs::read_to_string(&script).expect("read"), edited);
    let next = build(&v2, &out);
    next.code(0)
        .stderr_has("dsrgen-vips`, which had been edited by hand");
    assert!(
        !next.stderr.contains("interrupted") && !next.stderr.contains("killed"),
        "{next}"
    );
}

/// Item 5: a hand edit made after a killed build is noticed, not silently
/// overwritten. The build is killed (aborted) right after it marked the
/// folder and wrote its manifest of intent.
#[test]
fn a_hand_edit_after_a_killed_build_is_noticed() {
    let tmp = TempDir::new("killed-edit");
    let out = tmp.join("out");
    build(&inventory(&tmp, "v1.yaml", false, false), &out).code(0);
    let v2 = inventory(&tmp, "v2.yaml", true, false);
    let killed = hooked(&v2, &out, "marked:abort");
    assert_eq!(killed.code, None, "not killed: {killed}");
    let mode = std::fs::metadata(out.join("manifest.json"))
        .expect("stat")
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the killed build did not mark the folder"
    );
    let script = out.join("hosts/web1/usr/local/sbin/dsrgen-vips");
    let mut edited = std::fs::read_to_string(&script).expect("read");
    edited.push_str("# tweaked\n");
    std::fs::write(&script, &edited).expect("edit");
    build(&v2, &out)
        .code(0)
        .stderr_has("was killed before it finished")
        .stderr_has("overwrote `")
        .stderr_has("dsrgen-vips`, which differs from what dsrgen recorded for it: edited by hand");
}

/// Item 6: folders left empty by files that are gone (a build killed while
/// pruning, or a file removed by hand) are removed by the next build.
#[test]
fn folders_left_empty_are_removed_by_the_next_build() {
    let tmp = TempDir::new("leftovers");
    let out = tmp.join("out");
    build(&inventory(&tmp, "v1.yaml", false, false), &out).code(0);
    shell(&format!(
        "find {}/hosts/web2 -type f -delete",
        out.display()
    ));
    build(&inventory(&tmp, "v2.yaml", false, true), &out).code(0);
    assert!(
        !out.join("hosts/web2").exists(),
        "{:?}",
        snapshot(&out, None).keys()
    );
    assert!(out.join("hosts/web1").is_dir());
}

/// Item 7: control characters of files on disk reach the `--check` diff
/// escaped, never raw.
#[test]
fn check_diffs_escape_control_characters() {
    let tmp = TempDir::new("escape");
    let inventory = inventory(&tmp, "v1.yaml", false, false);
    let out = tmp.join("out");
    build(&inventory, &out).code(0);
    let conf = out.join("hosts/web1/etc/sysctl.d/90-dsrgen.conf");
    std::fs::write(&conf, "\u{1b}]0;owned\u{7}\u{1b}[2J\r\n").expect("write");
    let run = Test::new()
        .arg("build")
        .arg(&inventory)
        .arg("--out")
        .arg(&out)
        .arg("--check")
        .run();
    run.code(1)
        .stdout_has("-\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\r\n");
    assert!(
        !run.stdout
            .contains(|c: char| c.is_control() && c != '\n' && c != '\t'),
        "{run}"
    );
}

/// Item 8: a closed standard output is no error (exit as if read); a full one
/// is exit 2. Both used to panic with exit 101.
#[test]
fn a_closed_stdout_is_no_error_and_a_full_one_is() {
    let tmp = TempDir::new("stdout");
    let inventory = inventory(&tmp, "v1.yaml", false, false);
    let out = tmp.join("out");
    let commands: [(&[&str], i32); 3] = [
        (&["check"], 0),
        (&["build", "--out"], 0),
        (&["build", "--check", "--out"], 1),
    ];
    for (i, (args, code)) in commands.iter().enumerate() {
        let run = |stdout: Stdio, dir: &str| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_dsrgen"));
            command.arg(args[0]).arg(&inventory).args(&args[1..]);
            if args.len() > 1 {
                command.arg(out.join(format!("{dir}-{i}")));
            }
            command.stdout(stdout).output().expect("run")
        };
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let closed = run(writer.into(), "closed");
        let stderr = String::from_utf8_lossy(&closed.stderr);
        assert_eq!(closed.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let run = run(full.into(), "full");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot write to standard output: No space left on device"),
            "{stderr}"
        );
    }
}

/// The lock is on the folder itself: a build waits while another process
/// holds `flock` on the folder, and no lock file appears in it.
#[test]
fn the_lock_is_the_folder_itself() {
    if !crate::system::can_run("flock on the output folder", &["flock"]) {
        return;
    }
    let tmp = TempDir::new("lock");
    let inventory = inventory(&tmp, "v1.yaml", false, false);
    let out = tmp.join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let held = tmp.join("held");
    let mut holder = Command::new("flock")
        .arg(&out)
        .arg("-c")
        .arg(format!("touch {}; sleep 2", held.display()))
        .spawn()
        .expect("flock");
    while !held.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    build(&inventory, &out).code(0);
    let waited = started.elapsed();
    holder.wait().expect("reap");
    assert!(
        waited >= Duration::from_millis(1500),
        "did not wait: {waited:?}"
    );
    let names: Vec<_> = std::fs::read_dir(&out)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(out.join("manifest.json").is_file() && out.join("hosts").is_dir());
}

/// A build with nothing to do changes nothing: no file, folder, inode, mode
/// or mtime (nor ctime) anywhere under the folder, the folder included.
#[test]
fn a_build_with_nothing_to_do_changes_nothing() {
    let tmp = TempDir::new("no-op");
    for example in ["fixtures/valid/minimal.yaml", "examples/seed.yaml"] {
        let out = tmp.join(Path::new(example).file_stem().expect("named"));
        build(&root().join(example), &out).code(0);
        let before = snapshot(&out, None);
        std::thread::sleep(Duration::from_millis(20));
        build(&root().join(example), &out)
            .code(0)
            .stdout_has(" 0 written, ")
            .stdout_has(" 0 removed");
        Test::new()
            .arg("build")
            .arg(root().join(example))
            .arg("--out")
            .arg(&out)
            .arg("--check")
            .run()
            .code(0);
        assert_same(&before, &snapshot(&out, None));
        assert!(
            tree_files(&out)
                .iter()
                .all(|p| !p.starts_with(".dsrgen.lock"))
        );
    }
}
