//! The output folder: compare the planned tree with it, then write what changed,
//! each file atomically and the manifest last, and prune what the previous
//! manifest owned and the new build no longer generates. A file dsrgen did not
//! write is never replaced or removed.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read as _, Seek as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

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
    /// Temporary files of an interrupted build, to remove.
    pub stale: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

impl Survey {
    pub fn is_up_to_date(&self) -> bool {
        self.changes.is_empty() && self.manifest.is_none() && self.removals.is_empty()
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

/// The name of the lock file in the output folder. It also records whether a
/// build was under way: a build killed half-way leaves it non-empty, and the
/// next one then sweeps the temporary files it left.
pub const LOCK_FILE: &str = ".dsrgen.lock";

/// A build's hold on the output folder: an exclusive lock for `build`, a
/// shared one for `--check`, so that two builds never interleave and a check
/// never reads a half-applied tree. Released when dropped.
#[derive(Debug)]
pub struct Lock {
    file: Option<fs::File>,
    /// The previous build did not finish.
    pub interrupted: bool,
}

impl Lock {
    /// Mark the folder as being written, until [`Lock::finish`].
    fn begin(&mut self) -> io::Result<()> {
        if let Some(file) = &mut self.file {
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(b"a build is under way, or was killed\n")?;
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if let Some(file) = &mut self.file {
            file.set_len(0)?;
        }
        Ok(())
    }
}

/// Refuse an output folder that is a symbolic link or not a folder, create it
/// for a build, and take the lock: waiting while another build holds it.
pub fn lock(out: &Path, exclusive: bool) -> Result<Lock, IoError> {
    match fs::symlink_metadata(out) {
        Ok(m) if m.is_symlink() => {
            return Err(io_error(out, "use")(io::Error::other(
                "it is a symbolic link; dsrgen writes only into a real folder",
            )));
        }
        Ok(m) if !m.is_dir() => {
            return Err(io_error(out, "use")(io::Error::other("it is not a folder")));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound && !exclusive => {
            // Nothing to read, and --check writes nothing: no lock needed.
            return Ok(Lock {
                file: None,
                interrupted: false,
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(out).map_err(io_error(out, "create the folder"))?;
        }
        Err(e) => return Err(io_error(out, "inspect")(e)),
    }
    let path = out.join(LOCK_FILE);
    let opened = fs::OpenOptions::new()
        .read(true)
        .write(exclusive)
        .create(exclusive)
        .truncate(false)
        .open(&path);
    let mut file = match opened {
        Ok(file) => file,
        // A folder never built by dsrgen: --check has nothing to wait for.
        Err(e) if !exclusive && e.kind() == io::ErrorKind::NotFound => {
            return Ok(Lock {
                file: None,
                interrupted: false,
            });
        }
        Err(e) => return Err(io_error(&path, "open")(e)),
    };
    if exclusive {
        file.lock().map_err(io_error(&path, "lock"))?;
    } else {
        file.lock_shared().map_err(io_error(&path, "lock"))?;
    }
    let mut state = String::new();
    let _ = file.read_to_string(&mut state);
    Ok(Lock {
        file: Some(file),
        interrupted: !state.is_empty(),
    })
}

/// Read the previous build's manifest. A missing one means a first build; an
/// unusable one is a warning, and then nothing counts as owned.
pub fn read_previous(out: &Path, warnings: &mut Vec<String>) -> Result<Previous, IoError> {
    let path = out.join(manifest::FILE_NAME);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Previous::default()),
        Err(e) => return Err(io_error(&path, "read")(e)),
    };
    match Manifest::parse(&text) {
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
            })
        }
        Err(why) => {
            warnings.push(format!(
                "cannot use `{}` ({why}); nothing will be pruned, and only files that already match are taken over",
                path.display()
            ));
            Ok(Previous::default())
        }
    }
}

/// The first folder between `out` and `tree_path` that is a symbolic link or
/// not a folder, if any. Folders found sound are remembered in `sound`.
fn unsound_folder(
    out: &Path,
    tree_path: &str,
    sound: &mut HashSet<PathBuf>,
) -> Result<Option<PathBuf>, IoError> {
    let mut dir = out.to_path_buf();
    let Some((folders, _)) = tree_path.rsplit_once('/') else {
        return Ok(None);
    };
    for part in folders.split('/') {
        dir.push(part);
        if sound.contains(&dir) {
            continue;
        }
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {
                sound.insert(dir.clone());
            }
            Ok(_) => return Ok(Some(dir)),
            // The rest does not exist yet: it will be created as folders.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&dir, "inspect")(e)),
        }
    }
    Ok(None)
}

/// Temporary files a killed build left: the manifest's in the folder itself,
/// the others anywhere below `hosts/`. Nothing else of the folder is read.
fn stale_temporaries(out: &Path, found: &mut Vec<PathBuf>) -> Result<(), IoError> {
    scan_temporaries(out, false, found)?;
    scan_temporaries(&out.join("hosts"), true, found)
}

fn scan_temporaries(dir: &Path, recurse: bool, found: &mut Vec<PathBuf>) -> Result<(), IoError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(dir, "read")(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_error(dir, "read"))?;
        let kind = entry.file_type().map_err(io_error(dir, "read"))?;
        if kind.is_dir() && recurse {
            scan_temporaries(&entry.path(), true, found)?;
        } else if kind.is_file() && is_temporary(&entry.file_name().to_string_lossy()) {
            found.push(entry.path());
        }
    }
    Ok(())
}

fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

const TEMP_SUFFIX: &str = ".dsrgen-tmp";

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
    if lock.interrupted {
        // The manifest's temporaries sit in the folder itself, the others
        // below `hosts/`.
        stale_temporaries(out, &mut survey.stale)?;
        survey.warnings.push(format!(
            "the previous build into `{}` was interrupted before it finished",
            out.display()
        ));
    }
    let mut sound = HashSet::new();
    for (index, file) in files.iter().enumerate() {
        match compare(out, &file.tree_path, &file.content, file.mode, &mut sound)? {
            Found::Same => survey.unchanged += 1,
            Found::Changed(change @ (Change::Create | Change::Mode { .. })) => {
                survey.changes.push((index, change));
            }
            Found::Changed(Change::Update { old, .. }) => {
                let path = out.join(&file.tree_path);
                let Some(owned_digest) = previous.owned.get(&file.tree_path) else {
                    survey.conflicts.push(format!(
                        "`{}` exists and dsrgen did not write it (the previous {} does not list it); move it away, then build again",
                        path.display(),
                        manifest::FILE_NAME
                    ));
                    continue;
                };
                // After an interrupted build, an owned file may still hold its
                // old content under the new digest: that is no hand edit.
                let edited = !lock.interrupted && *owned_digest != manifest::sha256_hex(&old);
                survey.changes.push((index, Change::Update { old, edited }));
            }
            Found::InTheWay(conflict) => survey.conflicts.push(conflict),
        }
    }
    match compare(
        out,
        manifest::FILE_NAME,
        manifest_json,
        manifest::FILE_MODE,
        &mut sound,
    )? {
        Found::Same => {}
        Found::Changed(change) => survey.manifest = Some(change),
        Found::InTheWay(conflict) => survey.conflicts.push(conflict),
    }

    let planned: HashSet<&str> = files.iter().map(|f| f.tree_path.as_str()).collect();
    for entry in &previous.entries {
        let tree_path = entry.tree_path();
        if planned.contains(tree_path.as_str()) {
            continue;
        }
        let path = out.join(&tree_path);
        if let Some(dir) = unsound_folder(out, &tree_path, &mut sound)? {
            survey.warnings.push(format!(
                "not removing `{}`: `{}` is a symbolic link or not a folder, and dsrgen does not follow it",
                path.display(),
                dir.display()
            ));
            continue;
        }
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path, "inspect")(e)),
            Ok(m) if !m.is_file() => survey.warnings.push(format!(
                "not removing `{}`: the previous build wrote a file there, but it is no longer a regular file",
                path.display()
            )),
            Ok(_) => {
                let old = fs::read(&path).map_err(io_error(&path, "read"))?;
                let edited = !lock.interrupted && entry.sha256 != manifest::sha256_hex(&old);
                survey.removals.push(Removal {
                    tree_path,
                    old,
                    edited,
                });
            }
        }
    }
    Ok(survey)
}

/// What the folder holds where a file is planned.
enum Found {
    Same,
    Changed(Change),
    /// A link, a non-file, or a file below one: dsrgen neither follows nor
    /// replaces it.
    InTheWay(String),
}

/// Compare one planned file with the folder. `Update` carries the old content,
/// not yet whether it was edited by hand.
fn compare(
    out: &Path,
    tree_path: &str,
    content: &[u8],
    mode: u32,
    sound: &mut HashSet<PathBuf>,
) -> Result<Found, IoError> {
    let path = out.join(tree_path);
    if let Some(dir) = unsound_folder(out, tree_path, sound)? {
        return Ok(Found::InTheWay(format!(
            "`{}` is in the way: it is a symbolic link or not a folder, and dsrgen neither follows nor replaces it",
            dir.display()
        )));
    }
    let metadata = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Changed(Change::Create)),
        Err(e) => return Err(io_error(&path, "inspect")(e)),
    };
    if !metadata.is_file() {
        return Ok(Found::InTheWay(format!(
            "`{}` is in the way: it is {}, and dsrgen neither follows nor replaces it",
            path.display(),
            if metadata.is_symlink() {
                "a symbolic link"
            } else {
                "not a regular file"
            }
        )));
    }
    let old = fs::read(&path).map_err(io_error(&path, "read"))?;
    let old_mode = metadata.permissions().mode() & 0o7777;
    Ok(if old != content {
        Found::Changed(Change::Update { old, edited: false })
    } else if old_mode != mode {
        Found::Changed(Change::Mode { old: old_mode })
    } else {
        Found::Same
    })
}

/// What a build did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub written: usize,
    pub unchanged: usize,
    pub removed: usize,
}

/// Write the changes of the survey: files first, then removals, the manifest
/// (`next`, and its JSON) last of all. Hand edits that are overwritten or
/// removed are reported in `warnings`.
///
/// A build killed half-way must leave nothing the next one cannot take over:
/// before a file is created where none was, the manifest is rewritten as the
/// union of the old one and `next`, so that every file that may exist after
/// a kill is owned, and pruned by the next build if it is no longer planned.
pub fn apply(
    out: &Path,
    files: &[File],
    (next, next_json): (&Manifest, &[u8]),
    survey: &Survey,
    previous: &Previous,
    lock: &mut Lock,
    warnings: &mut Vec<String>,
) -> Result<Counts, IoError> {
    let lock_path = out.join(LOCK_FILE);
    lock.begin().map_err(io_error(&lock_path, "write"))?;
    for temp in &survey.stale {
        fs::remove_file(temp).map_err(io_error(temp, "remove"))?;
    }
    let manifest_path = out.join(manifest::FILE_NAME);
    if survey
        .changes
        .iter()
        .any(|(_, c)| matches!(c, Change::Create))
    {
        let intent = next.union(&previous.entries);
        write_atomically(
            &manifest_path,
            intent.to_json().as_bytes(),
            manifest::FILE_MODE,
        )?;
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
            .map(|run| scope.spawn(move || write_files(out, files, run)))
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
    for removal in &survey.removals {
        let path = out.join(&removal.tree_path);
        if removal.edited {
            warnings.push(format!(
                "removed `{}`, which had been edited by hand since dsrgen wrote it",
                path.display()
            ));
        }
        fs::remove_file(&path).map_err(io_error(&path, "remove"))?;
        remove_empty_parents(out, &path);
        counts.removed += 1;
    }
    if survey.manifest.is_some() {
        write_atomically(&manifest_path, next_json, manifest::FILE_MODE)?;
    }
    lock.finish().map_err(io_error(&lock_path, "write"))?;
    Ok(counts)
}

/// Write a run of changed files, with a warning for each that had been edited
/// by hand; stop at the first failure.
fn write_files(
    out: &Path,
    files: &[File],
    run: &[&(usize, Change)],
) -> (Vec<String>, Result<(), IoError>) {
    let mut warnings = Vec::new();
    // Folders made or seen: one mkdir per folder, not per file.
    let mut folders: HashSet<PathBuf> = HashSet::new();
    for (index, change) in run {
        let file = &files[*index];
        let path = out.join(&file.tree_path);
        let dir = path.parent().expect("output files live in a folder");
        if !folders.contains(dir) {
            // create_dir_all takes a folder made meanwhile by another writer.
            if let Err(e) = fs::create_dir_all(dir) {
                return (warnings, Err(io_error(dir, "create the folder")(e)));
            }
            folders.insert(dir.to_owned());
        }
        if let Change::Update { edited: true, .. } = change {
            warnings.push(format!(
                "overwrote `{}`, which had been edited by hand since dsrgen wrote it",
                path.display()
            ));
        }
        if let Err(e) = write_atomically(&path, &file.content, file.mode) {
            return (warnings, Err(e));
        }
    }
    (warnings, Ok(()))
}

/// Write through a temporary file in the same folder and rename it into place,
/// so that a reader (or a crash) sees the old file or the new one, never half.
fn write_atomically(path: &Path, content: &[u8], mode: u32) -> Result<(), IoError> {
    let dir = path.parent().expect("output files live in a folder");
    let name = path
        .file_name()
        .expect("output files have names")
        .to_string_lossy();
    let temp = dir.join(format!(".{name}.{}{TEMP_SUFFIX}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(content)?;
        // The umask may have narrowed the mode given to open().
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        drop(file);
        fs::rename(&temp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&temp);
        io_error(path, "write")(e)
    })
}

/// Remove the folders a removal left empty, up to `hosts/`.
fn remove_empty_parents(out: &Path, file: &Path) {
    let stop = out.join("hosts");
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == stop || !d.starts_with(&stop) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}
