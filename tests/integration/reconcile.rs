//! `dsrgen-ipvsadm`, the script that applies an ipvsadm balancer's rules by
//! reconciling the live IPVS table, run against a fake `ipvsadm` first on
//! `PATH`: it prints a table for `-Sn`, logs every call, and fails the calls
//! a test asks it to. Each test asserts the exact commands the script ran,
//! and what it left in its record of owned services. (The real kernel:
//! `tests/uml/scenarios/reconcile.sh`.)

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use crate::support::{TempDir, Test};

/// A fake ipvsadm that keeps its table in the file `table`: `-Sn` prints it
/// (and exits with `save-rc`, 0 if absent), and `-A -E -D -a -e -d` change
/// it (the service and real server they name, found by endpoint; not
/// checked for being there). `-R` runs its stdin one command a line, as
/// ipvsadm 1.31 does: past a command that fails, and exiting with the status
/// of the last line. Any command that is a line of `fail` exits 1 and
/// changes nothing; one that is a line of `stop` exits 2 on the spot, `-R`
/// included (ipvsadm's parse errors). After `-R`, `save-rc-after-R` becomes
/// `save-rc`. Every call is logged, one line each,
/// to `log`, and `-R` logs each line it reads after its own; the first `-A`
/// copies the record as it is then to `record-at-first-add`.
const FAKE: &str = r#"#!/bin/sh
here=$(dirname "$0")/..
set -f
# shellcheck disable=SC2016
APPLY='
function key(line,    n, w, i, k, six, real) {
	n = split(line, w, / +/)
	k = ""; six = ""; real = ""
	for (i = 2; i <= n; i++) {
		if (w[i] == "-t" || w[i] == "-u" || w[i] == "--sctp-service" || w[i] == "-f") k = w[i] " " w[i + 1]
		else if (w[i] == "-6") six = " -6"
		else if (w[i] == "-r") real = " -r " w[i + 1]
	}
	service = k six
	return k six real
}
BEGIN { kind = substr(cmd, 1, 2); rest = substr(cmd, 4); wanted = key(cmd); of = service }
{ mine = key($0) }
kind == "-E" && $1 == "-A" && mine == wanted { print "-A " rest; next }
kind == "-D" && service == of { next }
kind == "-e" && $1 == "-a" && mine == wanted { print "-a " rest; next }
kind == "-d" && $1 == "-a" && mine == wanted { next }
{ print }
END { if (kind == "-A" || kind == "-a") print cmd }
'
one() {
	echo "$*" >>"$here/log"
	if [ "$1" = -A ] && [ ! -e "$here/record-at-first-add" ]; then
		cat "$DSRGEN_IPVSADM_RECORD" >"$here/record-at-first-add" 2>&1
	fi
	if [ -f "$here/stop" ] && grep -qxF -e "$*" "$here/stop"; then
		echo "ipvsadm: fake parse error" >&2
		exit 2
	fi
	if [ -f "$here/fail" ] && grep -qxF -e "$*" "$here/fail"; then
		echo "ipvsadm: fake failure" >&2
		return 1
	fi
	awk -v cmd="$*" "$APPLY" "$here/table" >"$here/table.new" &&
		mv "$here/table.new" "$here/table"
}
case $1 in
-Sn)
	echo -Sn >>"$here/log"
	cat "$here/table"
	exit "$(cat "$here/save-rc" 2>/dev/null || echo 0)"
	;;
-R)
	echo -R >>"$here/log"
	rc=0
	while read -r line; do
		[ -n "$line" ] || continue
		# shellcheck disable=SC2086
		one $line
		rc=$?
	done
	[ ! -f "$here/save-rc-after-R" ] || cp "$here/save-rc-after-R" "$here/save-rc"
	exit "$rc"
	;;
esac
one "$@"
"#;

struct Lab {
    dir: TempDir,
    script: PathBuf,
}

impl Lab {
    /// The script of a built tree, a fake ipvsadm, the live `table` and the
    /// `rules` file.
    fn new(table: &str, rules: &str) -> Self {
        let dir = TempDir::new("reconcile");
        Test::new()
            .args(["build", "fixtures/valid/ipvsadm-order.yaml", "--out"])
            .arg(dir.join("out"))
            .run()
            .code(0);
        let script = dir.join("out/hosts/lb1/usr/local/sbin/dsrgen-ipvsadm");
        std::fs::create_dir_all(dir.join("bin")).expect("mkdir");
        std::fs::write(dir.join("bin/ipvsadm"), FAKE).expect("write fake");
        std::fs::set_permissions(
            dir.join("bin/ipvsadm"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        let lab = Lab { dir, script };
        lab.write("table", table);
        lab.write("rules", rules);
        lab
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), text).expect("write");
    }

    fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(name)).ok()
    }

    /// Run the script with a verb; the log starts empty.
    fn run(&self, verb: &str) -> Output {
        let _ = std::fs::remove_file(self.dir.join("log"));
        let path = format!(
            "{}:{}",
            self.dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("sh")
            .arg(&self.script)
            .arg(verb)
            .env("PATH", path)
            .env("DSRGEN_IPVSADM_RULES", self.dir.join("rules"))
            .env("DSRGEN_IPVSADM_RECORD", self.dir.join("run/owned"))
            .output()
            .expect("run dsrgen-ipvsadm")
    }

    /// The ipvsadm calls of the last run.
    fn calls(&self) -> Vec<String> {
        self.read("log")
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn record(&self) -> Option<String> {
        self.read("run/owned")
    }
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("an exit code")
}

fn transcript(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A table with every kind of endpoint: IPv4 TCP with a flagged scheduler,
/// IPv6 UDP in brackets with persistence, a firewall-mark IPv6 service.
const RULES: &str = "\
-A -t 198.51.100.181:80 -s sh -p 300 -b sh-port
-a -t 198.51.100.181:80 -r 198.51.100.11:80 -g -w 1
-a -t 198.51.100.181:80 -r 198.51.100.12:80 -g -w 3
-A -u [2001:db8::181]:53 -s rr
-a -u [2001:db8::181]:53 -r [2001:db8::11]:53 -g -w 1
-A -f 65616 -6 -s mh -b mh-fallback,mh-port
-a -f 65616 -6 -r [2001:db8::12]:0 -g -w 0
";

#[test]
fn an_empty_table_gets_every_service_and_the_record_names_them() {
    let lab = Lab::new("", RULES);
    let run = lab.run("apply");
    assert_eq!(code(&run), 0, "{}", transcript(&run));
    assert_eq!(
        lab.calls(),
        [
            "-Sn",
            "-R",
            "-A -t 198.51.100.181:80 -s sh -p 300 -b sh-port",
            "-a -t 198.51.100.181:80 -r 198.51.100.11:80 -g -w 1",
            "-a -t 198.51.100.181:80 -r 198.51.100.12:80 -g -w 3",
            "-A -u [2001:db8::181]:53 -s rr",
            "-a -u [2001:db8::181]:53 -r [2001:db8::11]:53 -g -w 1",
            "-A -f 65616 -6 -s mh -b mh-fallback,mh-port",
            "-a -f 65616 -6 -r [2001:db8::12]:0 -g -w 0",
            "-Sn",
        ]
    );
    // Each command is printed, in the order it runs.
    assert_eq!(
        String::from_utf8_lossy(&run.stdout)
            .lines()
            .map(|line| line
                .strip_prefix("dsrgen-ipvsadm: ipvsadm ")
                .unwrap_or(line))
            .collect::<Vec<_>>(),
        lab.calls()[2..9],
        "{}",
        transcript(&run)
    );
    assert_eq!(
        lab.record().as_deref(),
        Some("-t 198.51.100.181:80\n-u [2001:db8::181]:53\n-f 65616 -6\n")
    );
    // Recorded before the first service was added: a crash after an add
    // never leaves a service of dsrgen's that it does not know of.
    assert_eq!(lab.read("record-at-first-add"), lab.record());
}

/// The table as `ipvsadm -Sn` may print it: other line order, other option
/// order, the `-b` flags in another order. Nothing is changed, the matching
/// services are adopted, and the second apply writes nothing either.
#[test]
fn a_table_that_matches_changes_nothing_and_is_adopted() {
    let saved = "\
-A -u [2001:db8::181]:53 -s rr
-a -u [2001:db8::181]:53 -r [2001:db8::11]:53 -w 1 -g
-A -f 65616 -6 -s mh -b mh-port,mh-fallback
-a -f 65616 -6 -r [2001:db8::12]:0 -g -w 0
-A -t 198.51.100.181:80 -s sh -b sh-port -p 300
-a -t 198.51.100.181:80 -r 198.51.100.12:80 -g -w 3
-a -t 198.51.100.181:80 -r 198.51.100.11:80 -g -w 1
";
    let lab = Lab::new(saved, RULES);
    let first = lab.run("apply");
    assert_eq!(code(&first), 0, "{}", transcript(&first));
    assert_eq!(lab.calls(), ["-Sn"], "{}", transcript(&first));
    assert!(first.stdout.is_empty(), "{}", transcript(&first));
    let record = lab.record().expect("the services are adopted");
    assert_eq!(record.lines().count(), 3, "{record}");
    let modified = std::fs::metadata(lab.dir.join("run/owned"))
        .and_then(|m| m.modified())
        .expect("mtime");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = lab.run("apply");
    assert_eq!(code(&second), 0, "{}", transcript(&second));
    assert_eq!(lab.calls(), ["-Sn"]);
    assert_eq!(
        std::fs::metadata(lab.dir.join("run/owned"))
            .and_then(|m| m.modified())
            .expect("mtime"),
        modified,
        "the record was rewritten"
    );
    let status = lab.run("status");
    assert_eq!(code(&status), 0, "{}", transcript(&status));
}

/// Scheduler, flags and persistence are edited with -E, weight and
/// forwarding method with -e, each with the whole wanted rule (ipvsadm
/// resets what a command leaves out: weight 1, direct routing, no flags).
#[test]
fn what_differs_is_edited_in_place() {
    let live = "\
-A -t 198.51.100.181:80 -s sh -b sh-port
-a -t 198.51.100.181:80 -r 198.51.100.11:80 -m -w 1
-a -t 198.51.100.181:80 -r 198.51.100.12:80 -g -w 1
-A -u [2001:db8::181]:53 -s wlc -p 60
-a -u [2001:db8::181]:53 -r [2001:db8::11]:53 -g -w 1
-A -f 65616 -6 -s mh -b mh-port
-a -f 65616 -6 -r [2001:db8::12]:0 -g -w 0
";
    let lab = Lab::new(live, RULES);
    let run = lab.run("apply");
    assert_eq!(code(&run), 0, "{}", transcript(&run));
    assert_eq!(
        lab.calls(),
        [
            "-Sn",
            "-R",
            "-E -t 198.51.100.181:80 -s sh -p 300 -b sh-port",
            "-e -t 198.51.100.181:80 -r 198.51.100.11:80 -g -w 1",
            "-e -t 198.51.100.181:80 -r 198.51.100.12:80 -g -w 3",
            "-E -u [2001:db8::181]:53 -s rr",
            "-E -f 65616 -6 -s mh -b mh-fallback,mh-port",
            "-Sn",
        ]
    );
}

/// A service an earlier apply added and the rules no longer list is deleted,
/// and so is a real server that left an owned service; a service nobody
/// recorded is never touched, nor is a recorded one that is gone already
/// (it is forgotten).
#[test]
fn what_went_is_deleted_and_what_is_not_ours_is_left_alone() {
    let live = "\
-A -t 198.51.100.181:80 -s sh -p 300 -b sh-port
-a -t 198.51.100.181:80 -r 198.51.100.11:80 -g -w 1
-a -t 198.51.100.181:80 -r 198.51.100.12:80 -g -w 3
-a -t 198.51.100.181:80 -r 198.51.100.13:80 -g -w 1
-A -t 198.51.100.181:443 -s wlc
-a -t 198.51.100.181:443 -r 198.51.100.11:443 -g -w 1
-A -u [2001:db8::181]:53 -s rr
-a -u [2001:db8::181]:53 -r [2001:db8::11]:53 -g -w 1
-A -f 65616 -6 -s mh -b mh-fallback,mh-port
-a -f 65616 -6 -r [2001:db8::12]:0 -g -w 0
-A -f 7 -6 -s rr
-a -f 7 -6 -r [2001:db8::13]:0 -g -w 1
-A -t 203.0.113.7:22 -s rr
-a -t 203.0.113.7:22 -r 203.0.113.8:22 -m -w 1
";
    let lab = Lab::new(live, RULES);
    std::fs::create_dir_all(lab.dir.join("run")).expect("mkdir");
    lab.write(
        "run/owned",
        "-f 7 -6\n-t 198.51.100.181:443\n-t 198.51.100.181:80\n-t 198.51.100.199:80\n",
    );
    let run = lab.run("apply");
    assert_eq!(code(&run), 0, "{}", transcript(&run));
    assert_eq!(
        lab.calls(),
        [
            "-Sn",
            "-R",
            "-d -t 198.51.100.181:80 -r 198.51.100.13:80",
            "-D -t 198.51.100.181:443",
            "-D -f 7 -6",
            "-Sn",
        ]
    );
    assert_eq!(
        lab.record().as_deref(),
        Some("-t 198.51.100.181:80\n-u [2001:db8::181]:53\n-f 65616 -6\n")
    );
}

/// A deletion that fails in the middle of the batch keeps its service in
/// the record (the next apply tries again) and the apply exits 1, though
/// `ipvsadm -R` exits 0 (its last line succeeded): the table read again
/// shows the service, whose deletion is tried once more on its own. The
/// other commands still run.
#[test]
fn a_failed_deletion_stays_recorded() {
    let live = "\
-A -t 198.51.100.181:443 -s wlc
-A -t 198.51.100.181:8080 -s wlc
";
    let lab = Lab::new(live, "-A -t 198.51.100.181:80 -s rr\n");
    std::fs::create_dir_all(lab.dir.join("run")).expect("mkdir");
    lab.write(
        "run/owned",
        "-t 198.51.100.181:443\n-t 198.51.100.181:8080\n",
    );
    lab.write("fail", "-D -t 198.51.100.181:443\n");
    let run = lab.run("apply");
    assert_eq!(code(&run), 1, "{}", transcript(&run));
    assert_eq!(
        lab.calls(),
        [
            "-Sn",
            "-R",
            "-A -t 198.51.100.181:80 -s rr",
            "-D -t 198.51.100.181:443",
            "-D -t 198.51.100.181:8080",
            "-Sn",
            "-D -t 198.51.100.181:443",
        ]
    );
    assert_eq!(
        lab.record().as_deref(),
        Some("-t 198.51.100.181:80\n-t 198.51.100.181:443\n")
    );
}

/// An add that fails in the middle of the batch: ipvsadm goes on with the
/// next lines and exits 0; the table read again lacks the real server, which
/// is added once more on its own, fails again, and the apply exits 1. The
/// record names every listed service all the same.
#[test]
fn an_add_that_fails_mid_batch_is_tried_again_and_the_apply_fails() {
    let lab = Lab::new("", RULES);
    lab.write(
        "fail",
        "-a -t 198.51.100.181:80 -r 198.51.100.12:80 -g -w 3\n",
    );
    let run = lab.run("apply");
    assert_eq!(code(&run), 1, "{}", transcript(&run));
    assert_eq!(
        lab.calls(),
        [
            "-Sn",
            "-R",
            "-A -t 198.51.100.181:80 -s sh -p 300 -b sh-port",
            "-a -t 198.51.100.181:80 -r 198.51.100.11:80 -g -w 1",
            "-a -t 198.51.100.181:80 -r 198.51.100.12:80 -g -w 3",
            "-A -u [2001:db8::181]:53 -s rr",
            "-a -u [2001:db8::181]:53 -r [2001:db8::11]:53 -g -w 1",
            "-A -f 65616 -6 -s mh -b mh-fallback,mh-port",
            "-a -f 65616 -6 -r [2001:db8::12]:0 -g -w 0",
            "-Sn",
            "-a -t 198.51.100.181:80 -r 198.51.100.12:80 -g -w 3",
        ]
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("not in place after ipvsadm -R"),
        "{}",
        transcript(&run)
    );
    assert_eq!(
        lab.record().as_deref(),
        Some("-t 198.51.100.181:80\n-u [2001:db8::181]:53\n-f 65616 -6\n")
    );
}

/// A line `ipvsadm -R` cannot parse ends the batch there (exit 2). The
/// table read again shows what did not run: each runs on its own, the
/// unparsable one fails again, and the rest go in, the deletion of a
/// recorded service that went included (it leaves the record).
#[test]
fn a_batch_that_stops_half_way_is_finished_one_command_at_a_time() {
    let live = "\
-A -t 198.51.100.181:80 -s sh -p 300 -b sh-port
-a -t 198.51.100.181:80 -r 198.51.100.11:80 -g -w 1
-a -t 198.51.100.181:80 -r 198.51.100.12:80 -g -w 3
-A -t 198.51.100.181:443 -s wlc
";
    let lab = Lab::new(live, RULES);
    std::fs::create_dir_all(lab.dir.join("run")).expect("mkdir");
    lab.write("run/owned", "-t 198.51.100.181:80\n-t 198.51.100.181:443\n");
    lab.write(
        "stop",
        "-a -u [2001:db8::181]:53 -r [2001:db8::11]:53 -g -w 1\n",
    );
    let run = lab.run("apply");
    assert_eq!(code(&run), 1, "{}", transcript(&run));
    assert_eq!(
        lab.calls(),
        [
            "-Sn",
            "-R",
            "-A -u [2001:db8::181]:53 -s rr",
            "-a -u [2001:db8::181]:53 -r [2001:db8::11]:53 -g -w 1",
            "-Sn",
            "-a -u [2001:db8::181]:53 -r [2001:db8::11]:53 -g -w 1",
            "-A -f 65616 -6 -s mh -b mh-fallback,mh-port",
            "-a -f 65616 -6 -r [2001:db8::12]:0 -g -w 0",
            "-D -t 198.51.100.181:443",
        ]
    );
    assert_eq!(
        lab.record().as_deref(),
        Some("-t 198.51.100.181:80\n-u [2001:db8::181]:53\n-f 65616 -6\n")
    );
    // The next apply finds only the real server that never went in.
    std::fs::remove_file(lab.dir.join("stop")).expect("rm");
    let again = lab.run("apply");
    assert_eq!(code(&again), 0, "{}", transcript(&again));
    assert_eq!(
        lab.calls(),
        [
            "-Sn",
            "-R",
            "-a -u [2001:db8::181]:53 -r [2001:db8::11]:53 -g -w 1",
            "-Sn",
        ]
    );
}

/// When the table cannot be read after the batch, nothing shows what was
/// deleted: the apply exits 1 and every recorded service stays recorded.
#[test]
fn a_table_unreadable_after_the_batch_forgets_nothing() {
    let live = "\
-A -t 198.51.100.181:80 -s rr
-A -t 198.51.100.181:443 -s wlc
";
    let lab = Lab::new(live, "-A -t 198.51.100.181:80 -s rr\n");
    std::fs::create_dir_all(lab.dir.join("run")).expect("mkdir");
    lab.write("run/owned", "-t 198.51.100.181:80\n-t 198.51.100.181:443\n");
    lab.write("save-rc-after-R", "1");
    let run = lab.run("apply");
    assert_eq!(code(&run), 1, "{}", transcript(&run));
    assert_eq!(
        lab.calls(),
        ["-Sn", "-R", "-D -t 198.51.100.181:443", "-Sn"]
    );
    assert_eq!(
        lab.record().as_deref(),
        Some("-t 198.51.100.181:80\n-t 198.51.100.181:443\n")
    );
}

/// Without the live table nothing is changed; without the rules file
/// neither (a missing file is not an empty table).
#[test]
fn nothing_changes_without_the_live_table_or_the_rules() {
    let lab = Lab::new("", RULES);
    lab.write("save-rc", "1");
    let run = lab.run("apply");
    assert_eq!(code(&run), 1, "{}", transcript(&run));
    assert_eq!(lab.calls(), ["-Sn"]);
    assert_eq!(lab.record(), None);
    std::fs::remove_file(lab.dir.join("save-rc")).expect("rm");
    std::fs::remove_file(lab.dir.join("rules")).expect("rm");
    let run = lab.run("apply");
    assert_eq!(code(&run), 2, "{}", transcript(&run));
    assert!(lab.calls().is_empty(), "{:?}", lab.calls());
}

/// A record of services added just before a crash, that the kernel never
/// got (or a reboot emptied), is forgotten without a command.
#[test]
fn recorded_services_that_are_gone_are_forgotten() {
    let lab = Lab::new(
        "-A -t 198.51.100.181:80 -s rr\n",
        "-A -t 198.51.100.181:80 -s rr\n",
    );
    std::fs::create_dir_all(lab.dir.join("run")).expect("mkdir");
    lab.write("run/owned", "-t 198.51.100.181:80\n-t 198.51.100.181:443\n");
    let run = lab.run("apply");
    assert_eq!(code(&run), 0, "{}", transcript(&run));
    assert_eq!(lab.calls(), ["-Sn"]);
    assert_eq!(lab.record().as_deref(), Some("-t 198.51.100.181:80\n"));
}

/// `status` prints what apply would run and changes nothing; `down` deletes
/// the recorded services and nothing else.
#[test]
fn status_changes_nothing_and_down_deletes_only_what_is_recorded() {
    let live = "\
-A -t 198.51.100.181:80 -s rr
-A -t 203.0.113.7:22 -s rr
";
    let lab = Lab::new(live, RULES);
    std::fs::create_dir_all(lab.dir.join("run")).expect("mkdir");
    lab.write("run/owned", "-t 198.51.100.181:80\n");
    let status = lab.run("status");
    assert_eq!(code(&status), 1, "{}", transcript(&status));
    assert_eq!(lab.calls(), ["-Sn"]);
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(
        stdout.contains("would run: ipvsadm -E -t 198.51.100.181:80 -s sh -p 300 -b sh-port"),
        "{stdout}"
    );
    assert_eq!(lab.record().as_deref(), Some("-t 198.51.100.181:80\n"));
    let down = lab.run("down");
    assert_eq!(code(&down), 0, "{}", transcript(&down));
    assert_eq!(lab.calls(), ["-Sn", "-R", "-D -t 198.51.100.181:80", "-Sn"]);
    assert_eq!(lab.record().as_deref(), Some(""));
}

/// A rules file that is not in ipvsadm's save format stops the apply before
/// any change.
#[test]
fn a_malformed_rules_file_changes_nothing() {
    for rules in [
        "-A -t 198.51.100.181:80 -s rr\n-x -t 198.51.100.181:80\n",
        "-a -t 198.51.100.181:80 -r 198.51.100.11:80 -g -w 1\n",
        "-A -t 198.51.100.181:80 -s rr\n-A -t 198.51.100.181:80 -s rr\n",
        "-A -s rr\n",
    ] {
        let lab = Lab::new("-A -t 203.0.113.7:22 -s rr\n", rules);
        let run = lab.run("apply");
        assert_eq!(code(&run), 2, "{rules}{}", transcript(&run));
        assert_eq!(lab.calls(), ["-Sn"], "{rules}");
        assert_eq!(lab.record(), None, "{rules}");
    }
}
