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
    /// Write the files of every host into an output folder.
    ///
    /// Only files whose content changed are rewritten, each atomically, and
    /// `manifest.json` last. Files the previous build wrote and this one no
    /// longer generates are removed; a file dsrgen did not write is never
    /// replaced or removed. Nothing is written unless the inventory is valid.
    Build {
        /// The inventory file (YAML, format version 1).
        inventory: PathBuf,
        /// The output folder; created if missing.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Write nothing: print a unified diff of what would change and exit 1
        /// if anything would, 0 if the folder is up to date.
        #[arg(long)]
        check: bool,
        /// Go on without a usable `manifest.json`: take over the files that
        /// already match the build, and prune nothing. Files that differ are
        /// still in the way.
        #[arg(long)]
        adopt: bool,
        /// Also write every file's template and context, one JSON object a
        /// line, for the benchmark's reference renderer.
        #[arg(long, value_name = "FILE", hide = true)]
        dump_contexts: Option<PathBuf>,
    },
}
