//! The command line, as clap derive types. No behaviour lives here.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Compile a YAML inventory of direct-server-return load balancers and the
/// backends behind them into per-host configuration files.
///
/// Exit codes: 0 success, 1 drift found by `build --check`, 2 trouble
/// (invalid inventory, unreadable file, I/O or usage error, a revision that
/// `impact --against` cannot read).
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
    /// Show what a change of the inventory does to the fleet.
    ///
    /// `dsrgen impact OLD NEW`, or `dsrgen impact NEW --against REV` to take
    /// OLD from git (`git show REV:<path of NEW>`). Both inventories must be
    /// valid. The report names the clusters and ports that change, the
    /// backends added, removed, drained and reweighted, the share of flows
    /// that change backend, each host's changed files and reloads (marked
    /// disruptive or not), the phases of the rollout and warnings. Exit code
    /// 0 whatever the change, 2 on trouble.
    Impact {
        /// OLD and NEW, or NEW alone with `--against`.
        #[arg(value_name = "INVENTORY", num_args = 1..=2, required = true)]
        inventories: Vec<PathBuf>,
        /// Take OLD from this git revision: the file at NEW's path in it.
        #[arg(long, value_name = "REV")]
        against: Option<String>,
        /// `text` for a terminal, `markdown` for a pull-request comment,
        /// `json` for tools.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// The forms of the `impact` report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}
