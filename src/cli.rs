//! The command line, as clap derive types. No behaviour lives here.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Compile a YAML inventory of direct-server-return load balancers and the
/// backends behind them into per-host configuration files.
///
/// Exit codes: 0 success, 1 drift found by `build --check`, 2 trouble
/// (invalid inventory, unreadable file, I/O or usage error).
#[derive(Debug, Parser)]
#[command(name = "dsrgen", version, max_term_width = 100)]
pub struct Cli {
    /// Treat warnings as errors (exit code 2).
    #[arg(long, global = true)]
    pub deny_warnings: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate an inventory and print every problem found; write nothing.
    ///
    /// Each diagnostic names the file, line and column of the YAML node at
    /// fault. Exit code 0 when the inventory is valid, 2 when it is not.
    Check {
        /// The inventory file (YAML, format version 1).
        inventory: PathBuf,
    },
}
