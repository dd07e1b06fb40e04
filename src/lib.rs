//! dsrgen compiles one YAML inventory of direct-server-return load balancers and
//! their backends into per-host configuration files.
//!
//! The pipeline, one module a stage:
//!
//! ```text
//! cli -> inventory (read, parse: raw serde types with spans)
//!     -> validate  (every rule, every diagnostic; raw -> model)
//!     -> model     (typed, resolved, checked)
//! ```
//!
//! `diagnostic`, `source` and `error` are leaves used by every stage. Exit codes
//! are mapped in one place, [`error::exit_code`].

pub mod cli;
pub mod diagnostic;
pub mod error;
pub mod inventory;
pub mod model;
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
use crate::model::Model;
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
