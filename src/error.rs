//! What can go wrong in a run, and the one mapping from outcome to exit code.

use std::process::ExitCode;

/// How a run that did its job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Done; for `--check`, the output folder is up to date.
    Success,
    /// `--check` only: the output folder differs from what would be generated.
    Drift,
}

/// Why a run failed. Everything the user needs to know has been printed by the
/// time one is returned.
#[derive(Debug)]
pub enum Error {
    /// The inventory could not be read or is invalid (or has warnings under
    /// `--deny-warnings`).
    Invalid,
    /// The command line was wrong; clap's message is printed.
    Usage,
    /// The output folder could not be read or written, or a file dsrgen did not
    /// write is in the way.
    Output,
}

/// DESIGN §1: 0 success, 1 drift (`--check` only), 2 trouble.
pub fn exit_code(result: &Result<Status, Error>) -> ExitCode {
    match result {
        Ok(Status::Success) => ExitCode::SUCCESS,
        Ok(Status::Drift) => ExitCode::from(1),
        Err(Error::Invalid | Error::Usage | Error::Output) => ExitCode::from(2),
    }
}
