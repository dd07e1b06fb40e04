//! Paths beneath the output folder's open handle: each resolved one component
//! at a time with `openat`, never following a symbolic link, so that whatever
//! the folder holds or becomes while a build runs, no read, write or removal
//! lands outside it. Files are opened without blocking and only regular files
//! are read.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// How folders are opened: never through a link, never blocking.
const FOLDER: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// How files are opened for reading: a FIFO or a device opens at once (and is
/// then refused), a link is not followed, a terminal is not taken.
const READ: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// Open the output folder itself, refusing a link.
pub fn open_root(path: &std::path::Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, FOLDER, Mode::empty())?)
}

/// A walk through the folders of the tree, holding the chain of open folders
/// to the last one asked for: files asked for in tree order open each folder
/// once.
#[derive(Debug)]
pub struct Cursor<'r> {
    root: BorrowedFd<'r>,
    /// The open folders, outermost first, with their names.
    stack: Vec<(String, OwnedFd)>,
    /// The first folder found missing, if the last walk found one: the files
    /// below it are missing too, without a look each.
    missing: Option<String>,
}

/// Where a folder of the tree stands.
#[derive(Debug)]
pub enum Folder<'c> {
    Open(BorrowedFd<'c>),
    /// It, or one above it, does not exist.
    Missing,
    /// This folder of the tree (relative to the root) is a link or not a
    /// folder: nothing below it is reached.
    Blocked(String),
}

/// A failure at a folder of the tree (relative to the root).
pub type FolderError = (String, io::Error);

impl<'r> Cursor<'r> {
    pub fn new(root: BorrowedFd<'r>) -> Self {
        Cursor {
            root,
            stack: Vec::new(),
            missing: None,
        }
    }

    /// Open the folder at `dir` (components separated by `/`, `""` for the
    /// root), making the missing ones when `create` is set.
    pub fn folder(&mut self, dir: &str, create: bool) -> Result<Folder<'_>, FolderError> {
        if let Some(missing) = &self.missing {
            let below = dir
                .strip_prefix(missing.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if below && !create {
                return Ok(Folder::Missing);
            }
            self.missing = None;
        }
        let parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
        let kept = self
            .stack
            .iter()
            .zip(&parts)
            .take_while(|((name, _), part)| name == *part)
            .count();
        self.stack.truncate(kept);
        // Below a folder this walk made, the next is missing too: made at once.
        let mut made = false;
        for (depth, part) in parts.iter().enumerate().skip(kept) {
            let parent = self.stack.last().map_or(self.root, |(_, fd)| fd.as_fd());
            let at = || parts[..=depth].join("/");
            let first = if made {
                Err(rustix::io::Errno::NOENT)
            } else {
                rustix::fs::openat(parent, *part, FOLDER, Mode::empty())
            };
            let opened = match first {
                Err(rustix::io::Errno::NOENT) if create => {
                    made = true;
                    match rustix::fs::mkdirat(parent, *part, Mode::from_bits_truncate(0o777)) {
                        // Another writer made it meanwhile.
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err((at(), e.into())),
                    }
                    rustix::fs::openat(parent, *part, FOLDER, Mode::empty())
                }
                other => other,
            };
            match opened {
                Ok(fd) => self.stack.push(((*part).to_owned(), fd)),
                Err(rustix::io::Errno::NOENT) => {
                    self.missing = Some(at());
                    return Ok(Folder::Missing);
                }
                Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                    return Ok(Folder::Blocked(at()));
                }
                Err(e) => return Err((at(), e.into())),
            }
        }
        Ok(Folder::Open(
            self.stack.last().map_or(self.root, |(_, fd)| fd.as_fd()),
        ))
    }

    /// Remove the innermost folders of the last one opened while they are
    /// empty, keeping the outermost `keep`.
    pub fn remove_empty_folders(&mut self, keep: usize) {
        while self.stack.len() > keep {
            let (name, fd) = self.stack.pop().expect("not empty");
            drop(fd);
            let parent = self.stack.last().map_or(self.root, |(_, fd)| fd.as_fd());
            if rustix::fs::unlinkat(parent, name.as_str(), AtFlags::REMOVEDIR).is_err() {
                // Not empty (or not ours to remove): the folders above are not
                // empty either.
                self.stack.clear();
                return;
            }
        }
    }
}

/// What a name in a folder holds.
#[derive(Debug)]
pub enum Found {
    Missing,
    Link,
    /// A FIFO, a device, a socket or a folder.
    Special,
    TooLarge,
    Regular {
        bytes: Vec<u8>,
        mode: u32,
    },
}

/// Read the regular file `name` of `dir`, up to `cap` bytes.
pub fn read(dir: BorrowedFd<'_>, name: &str, cap: u64) -> io::Result<Found> {
    let fd = match rustix::fs::openat(dir, name, READ, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(Found::Missing),
        Err(rustix::io::Errno::LOOP) => return Ok(Found::Link),
        Err(e) => return Err(e.into()),
    };
    let stat = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Ok(Found::Special);
    }
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size > cap {
        return Ok(Found::TooLarge);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // One byte past the cap, so that a file growing under us is caught too.
    fs::File::from(fd).take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Ok(Found::TooLarge);
    }
    Ok(Found::Regular {
        bytes,
        mode: stat.st_mode & 0o7777,
    })
}

/// The suffix of the temporary files a build writes through.
pub const TEMP_SUFFIX: &str = ".dsrgen-tmp";

pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// Write `name` in `dir` through a temporary file in the same folder and a
/// rename, so that a reader (or a crash) sees the old file or the new one,
/// never half. The rename replaces whatever `name` is, a link included,
/// without following it.
pub fn write_atomically(
    dir: BorrowedFd<'_>,
    name: &str,
    content: &[u8],
    mode: u32,
) -> io::Result<()> {
    let temp = format!(".{name}.{}{TEMP_SUFFIX}", std::process::id());
    let result = (|| {
        let fd = rustix::fs::openat(
            dir,
            temp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_bits_truncate(mode),
        )?;
        // The umask may have narrowed the mode given to open().
        rustix::fs::fchmod(&fd, Mode::from_bits_truncate(mode))?;
        fs::File::from(fd).write_all(content)?;
        rustix::fs::renameat(dir, temp.as_str(), dir, name)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, temp.as_str(), AtFlags::empty());
    }
    result
}

/// Set the mode of the regular file `name` of `dir`, not through a link.
pub fn set_mode(dir: BorrowedFd<'_>, name: &str, mode: u32) -> io::Result<()> {
    let fd = rustix::fs::openat(dir, name, READ, Mode::empty())?;
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) != FileType::RegularFile {
        return Err(io::Error::other("it is not a regular file"));
    }
    Ok(rustix::fs::fchmod(&fd, Mode::from_bits_truncate(mode))?)
}

/// Remove the name `name` of `dir` (a link is removed, not followed); one
/// that is gone already is no failure.
pub fn remove(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The temporary files below the folder `dir` (named `at` relative to the
/// root), into every subfolder when `recurse` is set: tree paths, in the order
/// found. Links are neither followed nor listed.
pub fn temporaries(
    dir: BorrowedFd<'_>,
    at: &str,
    recurse: bool,
    found: &mut Vec<String>,
) -> Result<(), FolderError> {
    let fail = |e: rustix::io::Errno| (at.to_owned(), io::Error::from(e));
    let mut entries = rustix::fs::Dir::read_from(dir).map_err(fail)?;
    while let Some(entry) = entries.read() {
        let entry = entry.map_err(fail)?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        let path = if at.is_empty() {
            name.to_owned()
        } else {
            format!("{at}/{name}")
        };
        // Some filesystems do not say the type in the listing.
        let kind = match entry.file_type() {
            FileType::Unknown => rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_or(FileType::Unknown, |s| FileType::from_raw_mode(s.st_mode)),
            kind => kind,
        };
        match kind {
            FileType::RegularFile if is_temporary(name) => found.push(path),
            FileType::Directory if recurse && name != "." && name != ".." => {
                match rustix::fs::openat(dir, name, FOLDER, Mode::empty()) {
                    Ok(sub) => temporaries(sub.as_fd(), &path, true, found)?,
                    // Replaced by something else since it was listed.
                    Err(
                        rustix::io::Errno::NOENT
                        | rustix::io::Errno::LOOP
                        | rustix::io::Errno::NOTDIR,
                    ) => {}
                    Err(e) => return Err((path, e.into())),
                }
            }
            _ => {}
        }
    }
    Ok(())
}
