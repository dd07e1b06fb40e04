//! `dsrgen impact`: read OLD (from a file, or from git with `--against`) and
//! NEW, check both as `check` does, generate both trees, and print the
//! report that `crate::impact` computes.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{checked, load, print_errors, print_out};
use crate::cli::Format;
use crate::error::{Error, Status};
use crate::impact::{self, Side};
use crate::plan;
use crate::source::Source;

pub(super) fn run(
    inventories: &[PathBuf],
    against: Option<&str>,
    format: Format,
    deny_warnings: bool,
) -> Result<Status, Error> {
    let (old, new_path) = match (inventories, against) {
        ([new], Some(rev)) => (
            from_git(new, rev).and_then(|source| checked(source, deny_warnings)),
            new,
        ),
        ([old, new], None) => (load(old, deny_warnings), new),
        ([_, _], Some(_)) => {
            return usage("with `--against REV`, give NEW alone: OLD is NEW's file in REV");
        }
        _ => return usage("give OLD and NEW, or NEW with `--against REV`"),
    };
    // Both are checked, and every diagnostic printed, before either fails.
    let new = load(new_path, deny_warnings);
    let ((old_source, old_model), (new_source, new_model)) = (old?, new?);
    // Both trees carry NEW's file name in their headers, as a build of the
    // changed file would: a header is no change.
    let name = plan::inventory_name(new_path);
    let generate = |model| {
        crate::generate(model, &name).map_err(|e| {
            print_errors(&[format!("internal error: {e}")]);
            Error::Output
        })
    };
    // The report compares files by their digests in the manifests: the
    // rendered bytes can go as soon as a tree is built (an L inventory's
    // tree is 100 MB).
    let without_files = |mut tree: crate::Tree| {
        tree.files = Vec::new();
        tree
    };
    let old_tree = without_files(generate(&old_model)?);
    let new_tree = without_files(generate(&new_model)?);
    let report = impact::impact(
        Side {
            label: old_source.name(),
            model: &old_model,
            tree: &old_tree,
        },
        Side {
            label: new_source.name(),
            model: &new_model,
            tree: &new_tree,
        },
    );
    print_out(&match format {
        Format::Text => impact::render::text(&report),
        Format::Markdown => impact::render::markdown(&report),
        Format::Json => impact::render::json(&report),
    })?;
    Ok(Status::Success)
}

fn usage(message: &str) -> Result<Status, Error> {
    print_errors(&[format!("`impact`: {message}")]);
    Err(Error::Usage)
}

/// NEW's file as revision `rev` holds it: `git show REV:<path from the top
/// of the repository>`, run in NEW's folder. Shown as `REV:<path>`.
fn from_git(new: &Path, rev: &str) -> Result<Source, Error> {
    let fail = |message: String| {
        print_errors(&[message]);
        Error::Invalid
    };
    let dir = match new.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Some(file) = new.file_name().and_then(|f| f.to_str()) else {
        return Err(fail(format!(
            "`--against`: `{}` is not a file name git can be asked for",
            new.display()
        )));
    };
    let git = |args: &[&str]| -> Result<std::process::Output, Error> {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .map_err(|e| fail(format!("`--against` needs git, which cannot be run: {e}")))
    };
    let first_line = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("fatal: ")
            .to_owned()
    };
    let prefix = git(&["rev-parse", "--show-prefix"])?;
    if !prefix.status.success() {
        return Err(fail(format!(
            "`--against {rev}` reads OLD from git, but `{}` is not in a git checkout ({})",
            dir.display(),
            first_line(&prefix.stderr)
        )));
    }
    // A revision that looks like an option would be read as one.
    let known = !rev.starts_with('-')
        && git(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ])?
        .status
        .success();
    if !known {
        return Err(fail(format!(
            "`--against {rev}`: no such revision in the git repository of `{}`",
            dir.display()
        )));
    }
    let path = format!(
        "{}{file}",
        String::from_utf8_lossy(&prefix.stdout).trim_end()
    );
    let shown = git(&["show", &format!("{rev}:{path}")])?;
    if !shown.status.success() {
        return Err(fail(format!(
            "`--against {rev}`: revision `{rev}` has no `{path}` ({})",
            first_line(&shown.stderr)
        )));
    }
    let name = format!("{rev}:{path}");
    let text =
        String::from_utf8(shown.stdout).map_err(|_| fail(format!("`{name}` is not UTF-8 text")))?;
    Ok(Source::new(name, text))
}
