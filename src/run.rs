//! The commands: read the inventory, call the pipeline, print diagnostics,
//! summaries and diffs, and map every outcome to its exit code. Nothing else
//! in dsrgen prints.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser as _;

mod impact;

use crate::cli::{Cli, Command};
use crate::diagnostic::{self, Diagnostic};
use crate::error::{self, Error, Status};
use crate::model::Model;
use crate::plan::Plan;
use crate::source::Source;
use crate::{diff, inventory, manifest, output, plan};

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
            let (source, model) = load(inventory, cli.deny_warnings)?;
            print_out(&format!(
                "{}: valid: {}, {}, {}\n",
                source.name(),
                count(model.balancers.len(), "balancer"),
                count(model.backends.len(), "backend"),
                count(model.clusters.len(), "cluster"),
            ))?;
            Ok(Status::Success)
        }
        Command::Build {
            inventory,
            out,
            check,
            adopt,
            dump_contexts,
        } => build(
            inventory,
            out,
            Mode {
                check: *check,
                adopt: *adopt,
                deny_warnings: cli.deny_warnings,
            },
            dump_contexts.as_deref(),
        ),
        Command::Impact {
            inventories,
            against,
            format,
        } => impact::run(inventories, against.as_deref(), *format, cli.deny_warnings),
    }
}

/// How `build` was asked to run.
#[derive(Clone, Copy, Debug)]
struct Mode {
    check: bool,
    adopt: bool,
    deny_warnings: bool,
}

fn build(
    inventory: &Path,
    out: &Path,
    mode: Mode,
    dump_contexts: Option<&Path>,
) -> Result<Status, Error> {
    let Mode {
        check,
        adopt,
        deny_warnings,
    } = mode;
    let (_, model) = load(inventory, deny_warnings)?;
    let name = plan::inventory_name(inventory);
    if let Some(path) = dump_contexts {
        write_contexts(&Plan::new(&model, &name), path)
            .map_err(|e| output_error(format!("cannot write `{}`: {e}", path.display())))?;
    }
    let tree =
        crate::generate(&model, &name).map_err(|e| output_error(format!("internal error: {e}")))?;
    let manifest_json = tree.manifest.to_json().into_bytes();

    let mut warnings = Vec::new();
    let lock = output::lock(out, !check).map_err(output_error)?;
    let (previous, survey) = output::read_previous(out, &lock, adopt, &mut warnings)
        .and_then(|previous| {
            let survey = output::survey(out, &tree.files, &manifest_json, &previous, &lock)?;
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
        print_drift(&tree.files, &manifest_json, &survey)?;
        let shown = out.display();
        return if survey.is_up_to_date() {
            eprintln!("{shown}: up to date");
            Ok(Status::Success)
        } else {
            eprintln!(
                "{shown}: out of date: {} to write, {} to remove",
                survey.changes.len(),
                survey.removals.len()
            );
            Ok(Status::Drift)
        };
    }

    let mut warnings = Vec::new();
    let counts = output::apply(
        out,
        &tree.files,
        (&tree.manifest, &manifest_json),
        &survey,
        &previous,
        &lock,
        &mut warnings,
    );
    print_warnings(&warnings);
    let counts = counts.map_err(output_error)?;
    print_out(&format!(
        "{}: {} written, {} unchanged, {} removed\n",
        out.display(),
        counts.written,
        counts.unchanged,
        counts.removed
    ))?;
    Ok(Status::Success)
}

/// The benchmark's input: each planned file's template, path, mode and
/// context, one JSON object a line.
fn write_contexts(plan: &Plan, path: &Path) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (file, context) in plan.files.iter().zip(&plan.contexts) {
        let line = serde_json::json!({
            "template": file.kind.template(),
            "path": file.tree_path(),
            "mode": file.mode(),
            "context": context,
        });
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// `--check`: the diff of every change, on stdout: host files in tree order,
/// the manifest, then removals.
fn print_drift(
    files: &[output::File],
    manifest_json: &[u8],
    survey: &output::Survey,
) -> Result<(), Error> {
    let mut out = String::new();
    for (index, change) in &survey.changes {
        let file = &files[*index];
        out.push_str(&change_diff(
            &file.tree_path,
            &file.content,
            file.mode,
            change,
        ));
    }
    if let Some(change) = &survey.manifest {
        out.push_str(&change_diff(
            manifest::FILE_NAME,
            manifest_json,
            manifest::FILE_MODE,
            change,
        ));
    }
    for removal in &survey.removals {
        out.push_str(&diff::unified(&removal.tree_path, Some(&removal.old), None));
    }
    print_out(&out)
}

/// Write to stdout. A closed pipe is how a reader says it has seen enough
/// (`| head`): not an error, the command ends as if it had been read. Any
/// other failure (a full disk) is trouble.
fn print_out(text: &str) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(output_error(format!(
            "cannot write to standard output: {e}"
        ))),
        _ => Ok(()),
    }
}

fn change_diff(path: &str, content: &[u8], mode: u32, change: &output::Change) -> String {
    match change {
        output::Change::Create => diff::unified(path, None, Some(content)),
        output::Change::Update { old, .. } => diff::unified(path, Some(old), Some(content)),
        output::Change::Mode { old } => diff::mode_change(path, *old, mode),
    }
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
fn load(path: &Path, deny_warnings: bool) -> Result<(Source, Model), Error> {
    let name = path.display().to_string();
    let source = match inventory::load(path, &name) {
        Ok(source) => source,
        Err(diagnostic) => {
            report(&Source::new(name, ""), &[diagnostic], false);
            return Err(Error::Invalid);
        }
    };
    checked(source, deny_warnings)
}

/// Compile a source read from anywhere, printing every diagnostic to
/// stderr; the model only when there is no error (and, with
/// `deny_warnings`, no warning).
fn checked(source: Source, deny_warnings: bool) -> Result<(Source, Model), Error> {
    let compiled = crate::compile(&source);
    let denied = deny_warnings && !compiled.diagnostics.is_empty();
    report(&source, &compiled.diagnostics, denied);
    match compiled.model {
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
