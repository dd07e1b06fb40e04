//! A small builder over the real binary, and golden-file comparison with
//! `DSRGEN_BLESS=1`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root: fixtures and golden files are found from here.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `dsrgen` with arguments, run in the repository root.
#[derive(Debug, Default)]
pub struct Test {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// Seconds after which the run is killed (`timeout`, exit code 124).
    timeout: Option<u32>,
}

impl Test {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: Into<OsString>>(mut self, args: impl IntoIterator<Item = I>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Kill the run after `seconds`: for inputs that could hang it.
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = Some(seconds);
        self
    }

    pub fn run(self) -> Output {
        let mut command = match self.timeout {
            Some(seconds) => {
                let mut c = Command::new("timeout");
                c.arg("-s").arg("KILL").arg(seconds.to_string());
                c.arg(env!("CARGO_BIN_EXE_dsrgen"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_dsrgen")),
        };
        let output = command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(root())
            .output()
            .expect("dsrgen runs");
        Output {
            args: self.args,
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }
}

/// `dsrgen build INVENTORY --out OUT`.
pub fn build(inventory: &Path, out: &Path) -> Output {
    Test::new()
        .arg("build")
        .arg(inventory)
        .arg("--out")
        .arg(out)
        .run()
}

#[derive(Debug)]
pub struct Output {
    args: Vec<OsString>,
    /// `None` when killed by a signal, which is always a failure here.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(self.code, Some(expected), "exit code of {self}");
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {self}"
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}: {self}"
        );
        self
    }

    /// The number of `error:` headlines, not counting the summary line.
    pub fn error_count(&self) -> usize {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .count()
            .saturating_sub(1)
    }

    /// The run as one text: command, exit code, stdout, stderr.
    pub fn transcript(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let code = self
            .code
            .map_or_else(|| "killed by a signal".to_owned(), |c| c.to_string());
        format!(
            "$ dsrgen {}\nexit code {code}\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            self.stdout,
            self.stderr
        )
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.transcript())
    }
}

fn blessing() -> bool {
    let bless = std::env::var_os("DSRGEN_BLESS").is_some_and(|v| v == "1");
    assert!(
        !(bless && std::env::var_os("CI").is_some()),
        "DSRGEN_BLESS=1 is refused under CI: golden files change only in a reviewed commit"
    );
    bless
}

/// Compare `actual` with the golden file at `path` (relative to the root), or
/// rewrite it under `DSRGEN_BLESS=1`. A mismatch is described in `failures`.
pub fn golden(path: &Path, actual: &str, failures: &mut Vec<String>) {
    let full = root().join(path);
    if blessing() {
        std::fs::create_dir_all(full.parent().expect("golden files live in folders"))
            .expect("create golden folder");
        std::fs::write(&full, actual).expect("write golden file");
        return;
    }
    let expected = match std::fs::read_to_string(&full) {
        Ok(text) => text,
        Err(e) => {
            failures.push(format!(
                "{}: cannot read golden file ({e}); run `DSRGEN_BLESS=1 cargo test` to create it",
                path.display()
            ));
            return;
        }
    };
    if expected != actual {
        let diff = similar::TextDiff::from_lines(&expected, actual)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{} (expected)", path.display()), "actual")
            .to_string();
        failures.push(format!(
            "{} differs:\n{diff}\nIf the new output is right, run `DSRGEN_BLESS=1 cargo test` and review the change.",
            path.display()
        ));
    }
}

/// Golden files in `dir` whose fixture is gone fail the test: stale files rot.
pub fn stale_goldens(dir: &Path, wanted: &[PathBuf], failures: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
        return;
    };
    for entry in entries {
        let path = dir.join(entry.expect("read golden folder").file_name());
        if !wanted.contains(&path) {
            if blessing() {
                std::fs::remove_file(root().join(&path)).expect("remove stale golden file");
            } else {
                failures.push(format!(
                    "{}: golden file without a fixture; delete it or bless with DSRGEN_BLESS=1",
                    path.display()
                ));
            }
        }
    }
}

/// The `.yaml` files of a folder of the repository, sorted.
pub fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .map(|e| Path::new(dir).join(e.expect("read folder").file_name()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[track_caller]
pub fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} golden mismatch(es):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// A folder under the system's temporary folder, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        Self::below(&std::env::temp_dir(), name)
    }

    /// In memory (`/dev/shm`) where the machine has it: for tests that write
    /// many files many times and are about dsrgen's logic, not the disk's.
    pub fn in_memory(name: &str) -> Self {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            Self::below(shm, name)
        } else {
            Self::new(name)
        }
    }

    fn below(parent: &Path, name: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("dsrgen-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp folder");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, part: impl AsRef<Path>) -> PathBuf {
        self.0.join(part)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file below `dir`, as sorted paths relative to it.
pub fn tree_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.expect("walk folder"))
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).expect("below dir").to_owned())
        .collect();
    files.sort();
    files
}

/// Compare the tree at `actual` with the golden tree at `golden_dir` (relative
/// to the root): the file set first, then each file's bytes. Blessing replaces
/// the golden tree.
pub fn golden_tree(golden_dir: &Path, actual: &Path, failures: &mut Vec<String>) {
    let full = root().join(golden_dir);
    if blessing() {
        let _ = std::fs::remove_dir_all(&full);
        for file in tree_files(actual) {
            let target = full.join(&file);
            std::fs::create_dir_all(target.parent().expect("in a folder")).expect("create folder");
            std::fs::copy(actual.join(&file), &target).expect("copy into golden tree");
        }
        return;
    }
    let want = if full.is_dir() {
        tree_files(&full)
    } else {
        Vec::new()
    };
    let got = tree_files(actual);
    if want != got {
        let show = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.display().to_string() + "\n")
                .collect::<String>()
        };
        let (want_text, got_text) = (show(&want), show(&got));
        let diff = similar::TextDiff::from_lines(&want_text, &got_text)
            .unified_diff()
            .header("expected files", "actual files")
            .to_string();
        failures.push(format!(
            "{}: the file set differs:\n{diff}\nIf the new output is right, run `DSRGEN_BLESS=1 cargo test` and review the change.",
            golden_dir.display()
        ));
        return;
    }
    for file in got {
        let actual_text =
            std::fs::read_to_string(actual.join(&file)).expect("generated files are text");
        golden(&golden_dir.join(&file), &actual_text, failures);
    }
}

/// A second cluster on `web1` alone, appended to `fixtures/valid/minimal.yaml`
/// by tests that change an inventory.
pub const API_CLUSTER: &str = "  api:
    id: 2
    address: 192.0.2.182
    balancers: [lb1]
    ports:
      - port: 8080
        backends: [web1]
";
