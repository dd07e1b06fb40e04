//! dsrgen compiles one YAML inventory of direct-server-return load balancers and
//! their backends into per-host configuration files.
//!
//! The pipeline, one module a stage:
//!
//! ```text
//! cli -> inventory (read, parse: raw serde types with spans)
//!     -> validate  (every rule, every diagnostic; raw -> model)
//!     -> model     (typed, resolved, checked)
//!     -> plan      (every file: host, path, mode, template, context)
//!     -> render    (minijinja, templates embedded, on all cores)
//!     -> output    (compare with the folder; write atomically; prune) or diff (--check)
//! ```
//!
//! `manifest` is the output folder's record of what dsrgen owns. `diagnostic`,
//! `source` and `error` are leaves used by every stage. Exit codes are mapped
//! in one place, [`error::exit_code`].

pub mod cli;
pub mod diagnostic;
pub mod diff;
pub mod error;
pub mod inventory;
pub mod manifest;
pub mod model;
pub mod output;
pub mod plan;
pub mod render;
pub mod source;
pub mod validate;

use std::ffi::OsString;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};
use crate::diagnostic::Diagnostic;
use crate::error::{Error, Status};
use crate::manifest::Manifest;
use crate::model::Model;
use crate::plan::Plan;
use crate::source::Source;

/// Run dsrgen with these command-line arguments (the first is the program name).
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let result = match Cli::try_parse_from(args) {
        Ok(cli) => execute(&cli),
        Err(e) => {
            // --help and --version are not errors.
            let _ = e.print();
            if e.use_stderr() {
                Err(Error::Usage)
            } else {
                Ok(Status::Success)
            }
        }
    };
    error::exit_code(&result)
}

fn execute(cli: &Cli) -> Result<Status, Error> {
    match &cli.command {
        Command::Check { inventory } => {
            let (source, model) = compile(inventory, cli.deny_warnings)?;
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(
                stdout,
                "{}: valid: {}, {}, {}",
                source.name(),
                count(model.balancers.len(), "balancer"),
                count(model.backends.len(), "backend"),
                count(model.clusters.len(), "cluster"),
            );
            Ok(Status::Success)
        }
        Command::Build {
            inventory,
            out,
            check,
            dump_contexts,
        } => build(
            inventory,
            out,
            *check,
            dump_contexts.as_deref(),
            cli.deny_warnings,
        ),
    }
}

fn build(
    inventory: &Path,
    out: &Path,
    check: bool,
    dump_contexts: Option<&Path>,
    deny_warnings: bool,
) -> Result<Status, Error> {
    let (_, model) = compile(inventory, deny_warnings)?;
    let name = plan::inventory_name(inventory);
    let mut plan = Plan::new(&model, &name);
    if let Some(path) = dump_contexts {
        write_contexts(&plan, path)
            .map_err(|e| output_error(format!("cannot write `{}`: {e}", path.display())))?;
    }
    let contents = render::render_all(&plan.files, std::mem::take(&mut plan.contexts))
        .map_err(|e| output_error(format!("internal error: {e}")))?;
    let (files, manifest) = tree_files(&plan, &name, contents);

    let mut warnings = Vec::new();
    let mut lock = output::lock(out, !check).map_err(output_error)?;
    let (previous, survey) = output::read_previous(out, &mut warnings)
        .and_then(|previous| {
            let survey = output::survey(out, &files, &previous, &lock)?;
            Ok((previous, survey))
        })
        .map_err(output_error)?;
    warnings.extend(survey.warnings.iter().cloned());
    print_warnings(&warnings);
    if !survey.conflicts.is_empty() {
        print_errors(&survey.conflicts);
        return Err(Error::Output);
    }

    if check {
        print_drift(&files, &survey);
        let shown = out.display();
        return if survey.is_up_to_date() {
            eprintln!("{shown}: up to date");
            Ok(Status::Success)
        } else {
            let host_files = survey
                .changes
                .iter()
                .filter(|(i, _)| files[*i].tree_path != manifest::FILE_NAME)
                .count();
            eprintln!(
                "{shown}: out of date: {host_files} to write, {} to remove",
                survey.removals.len()
            );
            Ok(Status::Drift)
        };
    }

    let mut warnings = Vec::new();
    let counts = output::apply(
        out,
        &files,
        &survey,
        &previous,
        &manifest,
        &mut lock,
        &mut warnings,
    );
    print_warnings(&warnings);
    let counts = counts.map_err(output_error)?;
    println!(
        "{}: {} written, {} unchanged, {} removed",
        out.display(),
        counts.written,
        counts.unchanged,
        counts.removed
    );
    Ok(Status::Success)
}

/// The benchmark's input: each planned file's template, path, mode and
/// context, one JSON object a line.
fn write_contexts(plan: &Plan, path: &Path) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (file, context) in plan.files.iter().zip(&plan.contexts) {
        let line = serde_json::json!({
            "template": render::Renderer::template_name(file.template),
            "path": file.tree_path(),
            "mode": file.mode,
            "context": context,
        });
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Every file of the output folder, host files in plan order, the manifest
/// last; and the manifest itself.
fn tree_files(
    plan: &Plan,
    inventory: &str,
    contents: Vec<String>,
) -> (Vec<output::File>, Manifest) {
    let mut files: Vec<output::File> = plan
        .files
        .iter()
        .zip(contents)
        .map(|(file, content)| output::File {
            tree_path: file.tree_path(),
            content: content.into_bytes(),
            mode: file.mode,
        })
        .collect();
    let manifest = Manifest {
        format: manifest::FORMAT,
        inventory: inventory.to_owned(),
        files: plan
            .files
            .iter()
            .zip(&files)
            .map(|(planned, file)| manifest::Entry {
                host: planned.host.to_string(),
                role: planned.role.as_str().to_owned(),
                path: planned.path.clone(),
                mode: manifest::mode_string(planned.mode),
                sha256: manifest::sha256_hex(&file.content),
                reload: planned.reload.to_owned(),
            })
            .collect(),
    };
    files.push(output::File {
        tree_path: manifest::FILE_NAME.to_owned(),
        content: manifest.to_json().into_bytes(),
        mode: 0o644,
    });
    (files, manifest)
}

/// `--check`: the diff of every change, on stdout, in tree order.
fn print_drift(files: &[output::File], survey: &output::Survey) {
    let mut out = String::new();
    for (index, change) in &survey.changes {
        let file = &files[*index];
        out.push_str(&match change {
            output::Change::Create => diff::unified(&file.tree_path, None, Some(&file.content)),
            output::Change::Update { old, .. } => {
                diff::unified(&file.tree_path, Some(old), Some(&file.content))
            }
            output::Change::Mode { old } => diff::mode_change(&file.tree_path, *old, file.mode),
        });
    }
    for removal in &survey.removals {
        out.push_str(&diff::unified(&removal.tree_path, Some(&removal.old), None));
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}

/// Print an error about the output folder (or the files for it) and fail.
fn output_error(message: impl std::fmt::Display) -> Error {
    print_errors(&[message.to_string()]);
    Error::Output
}

fn print_errors(messages: &[String]) {
    print_lines("error", messages);
}

fn print_warnings(messages: &[String]) {
    print_lines("warning", messages);
}

fn print_lines(label: &str, messages: &[String]) {
    let mut stderr = std::io::stderr().lock();
    for message in messages {
        let _ = writeln!(stderr, "{label}: {message}");
    }
}

/// Load, parse and validate an inventory, printing every diagnostic to stderr.
/// Returns the model only when there is no error (and, with `deny_warnings`,
/// no warning).
pub fn compile(path: &Path, deny_warnings: bool) -> Result<(Source, Model), Error> {
    let name = path.display().to_string();
    let source = match inventory::load(path, &name) {
        Ok(source) => source,
        Err(diagnostic) => {
            report(&Source::new(name, ""), &[diagnostic], false);
            return Err(Error::Invalid);
        }
    };
    let validated = match inventory::parse(&source) {
        Ok(raw) => validate::validate(&raw),
        Err(diagnostic) => {
            report(&source, &[diagnostic], false);
            return Err(Error::Invalid);
        }
    };
    let denied = deny_warnings && !validated.diagnostics.is_empty();
    report(&source, &validated.diagnostics, denied);
    match validated.model {
        Some(model) if !denied => Ok((source, model)),
        _ => Err(Error::Invalid),
    }
}

/// Print diagnostics and the summary line to stderr in one write.
fn report(source: &Source, diagnostics: &[Diagnostic], warnings_denied: bool) {
    if diagnostics.is_empty() {
        return;
    }
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.render(source));
        out.push('\n');
    }
    if let Some(mut summary) = diagnostic::summary(source.name(), diagnostics) {
        if warnings_denied && !diagnostics.iter().any(Diagnostic::is_error) {
            summary = format!(
                "error{} (denied by --deny-warnings)",
                &summary["warning".len()..]
            );
        }
        out.push_str(&summary);
        out.push('\n');
    }
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}

fn count(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}
