//! The output folder: compare the planned tree with it, then write what changed,
//! each file atomically and the manifest last, and prune what the previous
//! manifest owned and the new build no longer generates. A file dsrgen did not
//! write is never replaced or removed, and nothing outside the folder is ever
//! reached: every path is resolved beneath the folder's open handle without
//! following links (see [`beneath`]).

mod beneath;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use beneath::{Cursor, Folder, Found};

use crate::manifest::{self, Manifest};

/// A host file the build wants in the output folder.
#[derive(Debug)]
pub struct File {
    /// Relative to the output folder: `hosts/web1/etc/...`.
    pub tree_path: String,
    pub content: Vec<u8>,
    pub mode: u32,
}

/// What the previous build left: the files its manifest lists, with the digest
/// each had when it was written.
#[derive(Debug, Default)]
pub struct Previous {
    /// Tree path -> digest, for looking up.
    owned: HashMap<String, String>,
    /// In manifest order: what pruning walks, and what the manifest of intent
    /// keeps (see [`apply`]).
    entries: Vec<manifest::Entry>,
    /// The manifest as found, with its mode; `None` when there is none.
    found: Option<(Vec<u8>, u32)>,
}

/// How one planned file differs from the folder.
#[derive(Debug)]
pub enum Change {
    Create,
    /// `edited`: the file was changed by hand since dsrgen wrote it.
    Update {
        old: Vec<u8>,
        edited: bool,
    },
    Mode {
        old: u32,
    },
}

#[derive(Debug)]
pub struct Removal {
    pub tree_path: String,
    pub old: Vec<u8>,
    pub edited: bool,
}

/// The comparison of the plan with the folder, before anything is written.
#[derive(Debug, Default)]
pub struct Survey {
    /// Indexes into the planned host files, with how each differs.
    pub changes: Vec<(usize, Change)>,
    /// How the manifest differs, if it does.
    pub manifest: Option<Change>,
    /// Host files already as planned (the manifest is not counted).
    pub unchanged: usize,
    pub removals: Vec<Removal>,
    /// Files in the way that dsrgen did not write: the build must not proceed.
    pub conflicts: Vec<String>,
    /// The previous build was killed before it finished.
    pub interrupted: bool,
    /// Temporary files of an interrupted build, to remove (tree paths).
    pub stale: Vec<String>,
    /// Folders of files the previous manifest lists that are gone already:
    /// removed where they are left empty.
    pub vacated: Vec<String>,
    pub warnings: Vec<String>,
}

impl Survey {
    pub fn is_up_to_date(&self) -> bool {
        self.changes.is_empty()
            && self.manifest.is_none()
            && self.removals.is_empty()
            && self.stale.is_empty()
    }
}

/// An I/O failure, with the path it concerns.
#[derive(Debug)]
pub struct IoError {
    pub path: PathBuf,
    pub action: &'static str,
    pub source: io::Error,
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot {} `{}`: {}",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

fn io_error<'p>(path: &'p Path, action: &'static str) -> impl FnOnce(io::Error) -> IoError + 'p {
    move |source| IoError {
        path: path.to_owned(),
        action,
        source,
    }
}

/// The failure of a folder of the tree (relative to `out`).
fn folder_error(out: &Path, action: &'static str) -> impl FnOnce(beneath::FolderError) -> IoError {
    move |(at, source)| IoError {
        path: out.join(at),
        action,
        source,
    }
}

/// A tree path split into its folder and its name.
fn split(tree_path: &str) -> (&str, &str) {
    tree_path.rsplit_once('/').unwrap_or(("", tree_path))
}

/// The most a file dsrgen reads from the folder may hold, the manifest
/// included: far more than any it writes (a manifest entry is about 250
/// bytes), far less than a device or a runaway file could feed it.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// A build's hold on the output folder: its open handle, through which every
/// path in it is reached, locked (with `flock`) exclusively for `build` and
/// shared for `--check`, so that two builds never interleave and a check never
/// reads a half-applied tree. No file marks the lock: it goes with the handle
/// when the process ends, however it ends.
#[derive(Debug)]
pub struct Lock {
    /// `None` for `--check` of a folder that does not exist.
    root: Option<OwnedFd>,
}

/// Refuse an output folder that is a symbolic link or not a folder, create it
/// for a build, open it and lock it: waiting while another build holds it.
pub fn lock(out: &Path, exclusive: bool) -> Result<Lock, IoError> {
    let refuse = |why: &str| io_error(out, "use")(io::Error::other(why.to_owned()));
    let link = "it is a symbolic link; dsrgen writes only into a real folder";
    match fs::symlink_metadata(out) {
        Ok(m) if m.is_symlink() => return Err(refuse(link)),
        Ok(m) if !m.is_dir() => return Err(refuse("it is not a folder")),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound && !exclusive => {
            // Nothing to read, and --check writes nothing: no lock needed.
            return Ok(Lock { root: None });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(out).map_err(io_error(out, "create the folder"))?;
        }
        Err(e) => return Err(io_error(out, "inspect")(e)),
    }
    // Opened without following a link: it may have become one since.
    let root = match beneath::open_root(out) {
        Ok(root) => root,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(refuse(link));
        }
        Err(e) => return Err(io_error(out, "open")(e)),
    };
    let operation = if exclusive {
        rustix::fs::FlockOperation::LockExclusive
    } else {
        rustix::fs::FlockOperation::LockShared
    };
    rustix::fs::flock(&root, operation).map_err(|e| io_error(out, "lock")(e.into()))?;
    Ok(Lock { root: Some(root) })
}

impl Lock {
    fn root(&self) -> Option<BorrowedFd<'_>> {
        self.root.as_ref().map(OwnedFd::as_fd)
    }
}

/// Read the previous build's manifest. A missing one means a first build; one
/// that is not a regular file, or too large, is refused. One that cannot be
/// parsed is refused too, unless `adopt` is set: then nothing counts as owned.
pub fn read_previous(
    out: &Path,
    lock: &Lock,
    adopt: bool,
    warnings: &mut Vec<String>,
) -> Result<Previous, IoError> {
    let path = out.join(manifest::FILE_NAME);
    let Some(root) = lock.root() else {
        return Ok(Previous::default());
    };
    let refuse = |why: String| io_error(&path, "use")(io::Error::other(why));
    let (bytes, mode) = match beneath::read(root, manifest::FILE_NAME, MAX_FILE_BYTES)
        .map_err(io_error(&path, "read"))?
    {
        Found::Missing => return Ok(Previous::default()),
        Found::Link => {
            return Err(refuse(
                "it is a symbolic link, and dsrgen neither follows nor replaces it".into(),
            ));
        }
        Found::Special => {
            return Err(refuse(
                "it is not a regular file, and dsrgen neither reads nor replaces it".into(),
            ));
        }
        Found::TooLarge => {
            return Err(refuse(format!(
                "it is larger than {} MiB, far more than any manifest dsrgen writes",
                MAX_FILE_BYTES >> 20
            )));
        }
        Found::Regular { bytes, mode } => (bytes, mode),
    };
    let parsed = std::str::from_utf8(&bytes)
        .map_err(|e| e.to_string())
        .and_then(Manifest::parse);
    match parsed {
        Ok((manifest, mut problems)) => {
            warnings.append(&mut problems);
            let owned = manifest
                .files
                .iter()
                .map(|entry| (entry.tree_path(), entry.sha256.clone()))
                .collect();
            Ok(Previous {
                owned,
                entries: manifest.files,
                found: Some((bytes, mode)),
            })
        }
        Err(why) if adopt => {
            warnings.push(format!(
                "cannot use `{}` ({why}); with --adopt, nothing will be pruned, and only files that already match are taken over",
                path.display()
            ));
            Ok(Previous {
                found: Some((bytes, mode)),
                ..Previous::default()
            })
        }
        Err(why) => Err(refuse(format!(
            "it is unusable ({why}), and it is what says which files dsrgen wrote; restore it (from version control, for example), or build with --adopt to take over only the files that already match, pruning nothing"
        ))),
    }
}

/// Compare every planned file, and the manifest, with the folder, and find
/// what to prune. After an interrupted build, also find the temporary files it
/// left.
pub fn survey(
    out: &Path,
    files: &[File],
    manifest_json: &[u8],
    previous: &Previous,
    lock: &Lock,
) -> Result<Survey, IoError> {
    let mut survey = Survey::default();
    let Some(root) = lock.root() else {
        // --check of a folder that does not exist.
        survey.changes = (0..files.len()).map(|i| (i, Change::Create)).collect();
        survey.manifest = Some(Change::Create);
        return Ok(survey);
    };
    if previous
        .found
        .as_ref()
        .is_some_and(|(_, mode)| *mode == manifest::INTENT_MODE)
    {
        survey.interrupted = true;
        // The manifest's temporaries sit in the folder itself, the others
        // below `hosts/`.
        let mut cursor = Cursor::new(root);
        beneath::temporaries(root, "", false, &mut survey.stale)
            .map_err(folder_error(out, "read"))?;
        if let Folder::Open(hosts) = cursor
            .folder("hosts", false)
            .map_err(folder_error(out, "read"))?
        {
            beneath::temporaries(hosts, "hosts", true, &mut survey.stale)
                .map_err(folder_error(out, "read"))?;
        }
        survey.warnings.push(format!(
            "the previous build into `{}` was killed before it finished; this one completes it",
            out.display()
        ));
    }
    let mut cursor = Cursor::new(root);
    // Folders in the way, each reported once.
    let mut blocked = HashSet::new();
    for (index, file) in files.iter().enumerate() {
        let path = out.join(&file.tree_path);
        let found = match look(&mut cursor, out, &file.tree_path, &mut blocked)? {
            Looked::Found(found) => found,
            Looked::Blocked(None) => continue,
            Looked::Blocked(Some(at)) => {
                survey.conflicts.push(format!(
                    "`{}` is in the way: it is a symbolic link or not a folder, and dsrgen neither follows nor replaces it",
                    out.join(at).display()
                ));
                continue;
            }
        };
        match found {
            Found::Missing => survey.changes.push((index, Change::Create)),
            Found::Regular { bytes, mode } if bytes == file.content => {
                if mode == file.mode {
                    survey.unchanged += 1;
                } else {
                    survey.changes.push((index, Change::Mode { old: mode }));
                }
            }
            Found::Regular { bytes: old, .. } => {
                let Some(owned_digest) = previous.owned.get(&file.tree_path) else {
                    survey.conflicts.push(format!(
                        "`{}` exists and dsrgen did not write it (the previous {} does not list it); move it away, then build again",
                        path.display(),
                        manifest::FILE_NAME
                    ));
                    continue;
                };
                // The manifest keeps the digest of what an owned file held
                // until it is rewritten, even after a killed build: a file
                // that differs from it was edited by hand, or (after a killed
                // build of another inventory) written by that build.
                let edited = *owned_digest != manifest::sha256_hex(&old);
                survey.changes.push((index, Change::Update { old, edited }));
            }
            Found::Link => survey.conflicts.push(in_the_way(&path, "a symbolic link")),
            Found::Special => survey
                .conflicts
                .push(in_the_way(&path, "not a regular file")),
            Found::TooLarge => survey.conflicts.push(in_the_way(
                &path,
                "a file far larger than any dsrgen writes",
            )),
        }
    }
    if let Some((bytes, mode)) = &previous.found {
        survey.manifest = if bytes != manifest_json {
            Some(Change::Update {
                old: bytes.clone(),
                edited: false,
            })
        } else if *mode != manifest::FILE_MODE {
            Some(Change::Mode { old: *mode })
        } else {
            None
        };
    } else {
        survey.manifest = Some(Change::Create);
    }

    let planned: HashSet<&str> = files.iter().map(|f| f.tree_path.as_str()).collect();
    for entry in &previous.entries {
        let tree_path = entry.tree_path();
        if planned.contains(tree_path.as_str()) {
            continue;
        }
        let path = out.join(&tree_path);
        let found = match look(&mut cursor, out, &tree_path, &mut blocked)? {
            Looked::Found(found) => found,
            Looked::Blocked(None) => continue,
            Looked::Blocked(Some(at)) => {
                survey.warnings.push(format!(
                    "not removing `{}`: `{}` is a symbolic link or not a folder, and dsrgen does not follow it",
                    path.display(),
                    out.join(at).display()
                ));
                continue;
            }
        };
        match found {
            Found::Missing => survey.vacated.push(split(&tree_path).0.to_owned()),
            Found::Regular { bytes: old, .. } => {
                let edited = entry.sha256 != manifest::sha256_hex(&old);
                survey.removals.push(Removal {
                    tree_path,
                    old,
                    edited,
                });
            }
            Found::Link | Found::Special | Found::TooLarge => survey.warnings.push(format!(
                "not removing `{}`: the previous build wrote a file there, but it is no longer a regular file",
                path.display()
            )),
        }
    }
    Ok(survey)
}

enum Looked {
    Found(Found),
    /// Below a folder in the way: with the folder, the first time it is met.
    Blocked(Option<String>),
}

/// What the folder `out` holds at `tree_path`.
fn look(
    cursor: &mut Cursor<'_>,
    out: &Path,
    tree_path: &str,
    blocked: &mut HashSet<String>,
) -> Result<Looked, IoError> {
    let (dir, name) = split(tree_path);
    Ok(
        match cursor
            .folder(dir, false)
            .map_err(folder_error(out, "open"))?
        {
            Folder::Missing => Looked::Found(Found::Missing),
            Folder::Blocked(at) => Looked::Blocked(blocked.insert(at.clone()).then_some(at)),
            Folder::Open(fd) => Looked::Found(
                beneath::read(fd, name, MAX_FILE_BYTES)
                    .map_err(io_error(&out.join(tree_path), "read"))?,
            ),
        },
    )
}

fn in_the_way(path: &Path, what: &str) -> String {
    format!(
        "`{}` is in the way: it is {what}, and dsrgen neither follows nor replaces it",
        path.display()
    )
}
/// What a build did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub written: usize,
    pub unchanged: usize,
    pub removed: usize,
}

/// Write the changes of the survey: files first, then removals, the manifest
/// (`next`, and its JSON) last of all. Hand edits that were overwritten or
/// removed are reported in `warnings`.
///
/// A build killed half-way must leave nothing the next one cannot take over.
/// Before it touches `hosts/`, the manifest is given the mode
/// [`manifest::INTENT_MODE`], which tells the next build to sweep temporary
/// files; and before a file is created where none was, the manifest is
/// rewritten as the manifest of intent (the old entries, with the digests of
/// what the files hold until they are rewritten, and the new files), so that
/// every file that may exist after a kill is owned, and pruned by the next
/// build if it is no longer planned. A build that fails rather than being
/// killed cleans up after itself and gives the manifest its mode back.
pub fn apply(
    out: &Path,
    files: &[File],
    (next, next_json): (&Manifest, &[u8]),
    survey: &Survey,
    previous: &Previous,
    lock: &Lock,
    warnings: &mut Vec<String>,
) -> Result<Counts, IoError> {
    let root = lock.root().expect("a build holds the folder");
    test_hook("apply");
    let manifest_path = out.join(manifest::FILE_NAME);
    let touches_hosts = !(survey.changes.is_empty()
        && survey.removals.is_empty()
        && survey.stale.is_empty()
        && survey.vacated.is_empty());
    let creates = survey
        .changes
        .iter()
        .any(|(_, c)| matches!(c, Change::Create));
    let mut marked = false;
    let mut intent_written = false;
    let result = (|| {
        if touches_hosts {
            if creates || previous.found.is_none() {
                let intent = next.intent(&previous.entries);
                beneath::write_atomically(
                    root,
                    manifest::FILE_NAME,
                    intent.to_json().as_bytes(),
                    manifest::INTENT_MODE,
                )
                .map_err(io_error(&manifest_path, "write"))?;
                intent_written = true;
            } else {
                beneath::set_mode(root, manifest::FILE_NAME, manifest::INTENT_MODE)
                    .map_err(io_error(&manifest_path, "write"))?;
            }
            marked = true;
            test_hook("marked");
        }
        apply_to_hosts(out, root, files, survey, warnings)
    })();
    let counts = match result {
        Ok(counts) => counts,
        Err(e) => {
            if marked {
                let _ = beneath::set_mode(root, manifest::FILE_NAME, manifest::FILE_MODE);
            }
            return Err(e);
        }
    };
    if survey.manifest.is_some() || intent_written {
        beneath::write_atomically(root, manifest::FILE_NAME, next_json, manifest::FILE_MODE)
            .map_err(io_error(&manifest_path, "write"))?;
    } else if marked {
        beneath::set_mode(root, manifest::FILE_NAME, manifest::FILE_MODE)
            .map_err(io_error(&manifest_path, "write"))?;
    }
    Ok(counts)
}

/// In debug builds only, and for the tests: with `DSRGEN_TEST_HOOK` set to
/// `<point>:<shell command>`, run the command when the build reaches `point`
/// (`apply`: the survey is done, nothing written yet; `marked`: the manifest
/// says a build is under way), so that a test can change the folder at a
/// moment of its choosing; the command `abort` stands for SIGKILL.
fn test_hook(point: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    let Some(hook) = std::env::var_os("DSRGEN_TEST_HOOK") else {
        return;
    };
    let hook = hook.to_string_lossy();
    let Some(command) = hook
        .strip_prefix(point)
        .and_then(|rest| rest.strip_prefix(':'))
    else {
        return;
    };
    if command == "abort" {
        std::process::abort();
    }
    let status = std::process::Command::new("sh")
        .args(["-c", command])
        .status();
    assert!(
        status.as_ref().is_ok_and(std::process::ExitStatus::success),
        "test hook `{command}`: {status:?}"
    );
}

/// Sweep the temporaries, write the changed files, then prune.
fn apply_to_hosts(
    out: &Path,
    root: BorrowedFd<'_>,
    files: &[File],
    survey: &Survey,
    warnings: &mut Vec<String>,
) -> Result<Counts, IoError> {
    let mut cursor = Cursor::new(root);
    for temp in &survey.stale {
        let (dir, name) = split(temp);
        if let Folder::Open(fd) = cursor
            .folder(dir, false)
            .map_err(folder_error(out, "open"))?
        {
            beneath::remove(fd, name).map_err(io_error(&out.join(temp), "remove"))?;
        }
    }
    let writes: Vec<&(usize, Change)> = survey.changes.iter().collect();
    // Creating files is mostly the kernel's work on folders and inodes, and it
    // goes faster on every core. Each writer takes a run of files in tree
    // order, so that a host's folders are mostly made by one of them.
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(writes.len().div_ceil(64))
        .max(1);
    let runs: Vec<(Vec<String>, Result<(), IoError>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = writes
            .chunks(writes.len().div_ceil(threads).max(1))
            .map(|run| scope.spawn(move || write_files(out, root, files, run, survey.interrupted)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a writer thread panicked"))
            .collect()
    });
    let mut failed = None;
    for (run_warnings, result) in runs {
        warnings.extend(run_warnings);
        if let (Err(e), None) = (result, &failed) {
            failed = Some(e);
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let mut counts = Counts {
        written: writes.len(),
        unchanged: survey.unchanged,
        ..Counts::default()
    };
    // Anew: the writers may have made folders this one found missing.
    let mut cursor = Cursor::new(root);
    for removal in &survey.removals {
        let path = out.join(&removal.tree_path);
        let (dir, name) = split(&removal.tree_path);
        match cursor
            .folder(dir, false)
            .map_err(folder_error(out, "open"))?
        {
            Folder::Open(fd) => {
                beneath::remove(fd, name).map_err(io_error(&path, "remove"))?;
                // Up to `hosts/`, which stays.
                cursor.remove_empty_folders(1);
            }
            Folder::Missing => continue,
            // It became a link or a file since the survey: left alone.
            Folder::Blocked(at) => {
                warnings.push(format!(
                    "not removing `{}`: `{}` is a symbolic link or not a folder, and dsrgen does not follow it",
                    path.display(),
                    out.join(at).display()
                ));
                continue;
            }
        }
        if removal.edited {
            warnings.push(format!(
                "removed `{}`, {}",
                path.display(),
                edited(survey.interrupted)
            ));
        }
        counts.removed += 1;
    }
    for dir in &survey.vacated {
        remove_empty_folders(&mut cursor, out, dir)?;
    }
    Ok(counts)
}

/// Remove `dir` and the folders above it up to `hosts/` while they are empty,
/// starting from the innermost that exists.
fn remove_empty_folders(cursor: &mut Cursor<'_>, out: &Path, dir: &str) -> Result<(), IoError> {
    let mut dir = dir;
    while dir.contains('/') {
        match cursor
            .folder(dir, false)
            .map_err(folder_error(out, "open"))?
        {
            Folder::Open(_) => {
                cursor.remove_empty_folders(1);
                return Ok(());
            }
            Folder::Missing => dir = split(dir).0,
            Folder::Blocked(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Why a file that differs from its digest in the manifest does.
fn edited(interrupted: bool) -> &'static str {
    if interrupted {
        "which differs from what dsrgen recorded for it: edited by hand, or written by the build that was killed"
    } else {
        "which had been edited by hand since dsrgen wrote it"
    }
}

/// Write a run of changed files, with a warning for each that had been edited
/// by hand; stop at the first failure.
fn write_files(
    out: &Path,
    root: BorrowedFd<'_>,
    files: &[File],
    run: &[&(usize, Change)],
    interrupted: bool,
) -> (Vec<String>, Result<(), IoError>) {
    let mut warnings = Vec::new();
    // Folders opened (and made) once for the files of a folder in a row.
    let mut cursor = Cursor::new(root);
    for (index, change) in run {
        let file = &files[*index];
        let path = out.join(&file.tree_path);
        let (dir, name) = split(&file.tree_path);
        let written = match cursor.folder(dir, true) {
            Ok(Folder::Open(fd)) => beneath::write_atomically(fd, name, &file.content, file.mode)
                .map_err(io_error(&path, "write")),
            // It became a link or a file since the survey.
            Ok(Folder::Blocked(at)) => {
                Err(io_error(&out.join(at), "write into")(io::Error::other(
                    "it is a symbolic link or not a folder, and dsrgen does not follow it",
                )))
            }
            // Removed again as soon as made.
            Ok(Folder::Missing) => Err(io_error(&path, "write")(io::ErrorKind::NotFound.into())),
            Err(e) => Err(folder_error(out, "create the folder")(e)),
        };
        if let Err(e) = written {
            return (warnings, Err(e));
        }
        if let Change::Update { edited: true, .. } = change {
            warnings.push(format!(
                "overwrote `{}`, {}",
                path.display(),
                edited(interrupted)
            ));
        }
    }
    (warnings, Ok(()))
}
