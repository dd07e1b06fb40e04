//! The output folder: compare the planned tree with it, then write what changed,
//! each file atomically and the manifest last, and prune what the previous
//! manifest owned and the new build no longer generates. A file dsrgen did not
//! write is never replaced or removed.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::manifest::{self, Manifest};

/// A file the build wants in the output folder.
#[derive(Debug)]
pub struct File {
    /// Relative to the output folder: `hosts/web1/etc/...`, or `manifest.json`.
    pub tree_path: String,
    pub content: Vec<u8>,
    pub mode: u32,
}

/// What the previous build left: the files its manifest lists, with the digest
/// each had when it was written.
#[derive(Debug, Default)]
pub struct Previous {
    owned: HashMap<String, String>,
    /// Owned paths in manifest order, for deterministic pruning.
    order: Vec<String>,
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
    /// Indexes into the planned files, with how each differs.
    pub changes: Vec<(usize, Change)>,
    /// Host files already as planned (the manifest is not counted).
    pub unchanged: usize,
    pub removals: Vec<Removal>,
    /// Files in the way that dsrgen did not write: the build must not proceed.
    pub conflicts: Vec<String>,
    pub warnings: Vec<String>,
}

impl Survey {
    pub fn is_up_to_date(&self) -> bool {
        self.changes.is_empty() && self.removals.is_empty()
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
            let order: Vec<String> = manifest
                .files
                .iter()
                .map(manifest::Entry::tree_path)
                .collect();
            let owned = manifest
                .files
                .into_iter()
                .zip(&order)
                .map(|(entry, path)| (path.clone(), entry.sha256))
                .collect();
            Ok(Previous { owned, order })
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

/// Compare every planned file with the folder, and find what to prune.
pub fn survey(out: &Path, files: &[File], previous: &Previous) -> Result<Survey, IoError> {
    let mut survey = Survey::default();
    for (index, file) in files.iter().enumerate() {
        let path = out.join(&file.tree_path);
        let metadata = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                survey.changes.push((index, Change::Create));
                continue;
            }
            Err(e) => return Err(io_error(&path, "inspect")(e)),
        };
        if !metadata.is_file() {
            survey.conflicts.push(format!(
                "`{}` is in the way: it is {}, and dsrgen neither follows nor replaces it",
                path.display(),
                if metadata.is_symlink() {
                    "a symbolic link"
                } else {
                    "not a regular file"
                }
            ));
            continue;
        }
        let old = fs::read(&path).map_err(io_error(&path, "read"))?;
        let mode = metadata.permissions().mode() & 0o7777;
        if old == file.content {
            if mode != file.mode {
                survey.changes.push((index, Change::Mode { old: mode }));
            } else if file.tree_path != manifest::FILE_NAME {
                survey.unchanged += 1;
            }
            continue;
        }
        let owned_digest = previous.owned.get(&file.tree_path);
        if owned_digest.is_none() && file.tree_path != manifest::FILE_NAME {
            survey.conflicts.push(format!(
                "`{}` exists and dsrgen did not write it (the previous {} does not list it); move it away, then build again",
                path.display(),
                manifest::FILE_NAME
            ));
            continue;
        }
        let edited = owned_digest.is_some_and(|digest| *digest != manifest::sha256_hex(&old));
        survey.changes.push((index, Change::Update { old, edited }));
    }

    let planned: HashSet<&str> = files.iter().map(|f| f.tree_path.as_str()).collect();
    for tree_path in &previous.order {
        if planned.contains(tree_path.as_str()) {
            continue;
        }
        let path = out.join(tree_path);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path, "inspect")(e)),
            Ok(m) if !m.is_file() => survey.warnings.push(format!(
                "not removing `{}`: the previous build wrote a file there, but it is no longer a regular file",
                path.display()
            )),
            Ok(_) => {
                let old = fs::read(&path).map_err(io_error(&path, "read"))?;
                let edited = previous.owned[tree_path] != manifest::sha256_hex(&old);
                survey.removals.push(Removal {
                    tree_path: tree_path.clone(),
                    old,
                    edited,
                });
            }
        }
    }
    Ok(survey)
}

/// What a build did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub written: usize,
    pub unchanged: usize,
    pub removed: usize,
}

/// Write the changes of the survey: files first, then removals, the manifest
/// (always the last planned file) last of all. Hand edits that are overwritten
/// or removed are reported in `warnings`.
pub fn apply(
    out: &Path,
    files: &[File],
    survey: &Survey,
    warnings: &mut Vec<String>,
) -> Result<Counts, IoError> {
    let is_manifest = |i: usize| files[i].tree_path == manifest::FILE_NAME;
    let mut counts = Counts {
        unchanged: survey.unchanged,
        ..Counts::default()
    };
    let mut manifest_change = None;
    for (index, change) in &survey.changes {
        if is_manifest(*index) {
            manifest_change = Some(*index);
            continue;
        }
        let file = &files[*index];
        let path = out.join(&file.tree_path);
        if let Change::Update { edited: true, .. } = change {
            warnings.push(format!(
                "overwrote `{}`, which had been edited by hand since dsrgen wrote it",
                path.display()
            ));
        }
        write_atomically(&path, &file.content, file.mode)?;
        counts.written += 1;
    }
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
    if let Some(index) = manifest_change {
        let file = &files[index];
        write_atomically(&out.join(&file.tree_path), &file.content, file.mode)?;
    }
    Ok(counts)
}

/// Write through a temporary file in the same folder and rename it into place,
/// so that a reader (or a crash) sees the old file or the new one, never half.
fn write_atomically(path: &Path, content: &[u8], mode: u32) -> Result<(), IoError> {
    let dir = path.parent().expect("output files live in a folder");
    fs::create_dir_all(dir).map_err(io_error(dir, "create the folder"))?;
    let name = path
        .file_name()
        .expect("output files have names")
        .to_string_lossy();
    let temp = dir.join(format!(".{name}.{}.dsrgen-tmp", std::process::id()));
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
