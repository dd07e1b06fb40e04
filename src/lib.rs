//! dsrgen compiles one YAML inventory of direct-server-return load balancers and
//! their backends into per-host configuration files.
//!
//! The pipeline, one module a stage:
//!
//! ```text
//! run (cli) -> inventory (read, parse: raw serde types with spans)
//!           -> validate  (every rule, every diagnostic; raw -> model)
//!           -> model     (typed, resolved, checked)
//!           -> plan      (every file: host, path, kind, context)
//!                 engine/  one module per balancer engine: its rules' answers, its file
//!                 host/    one module per host output: sysctl, script, networkd
//!           -> render    (minijinja, templates embedded, on all cores)
//!           -> manifest  (what the tree holds: every file, its digest and reload)
//!           -> output    (compare with the folder; write atomically; prune) or diff (--check)
//! ```
//!
//! [`compile`] and [`generate`] are the pipeline without I/O: the binary, the
//! tests, the fuzzer and the benchmarks all call them. [`run`] is the
//! command line around them; it alone prints. `kind` declares every kind of
//! file once (template, mode, reload, order). `diagnostic`, `source` and
//! `error` are leaves used by every stage. Exit codes are mapped in one
//! place, [`error::exit_code`]. `impact` compares two models and the trees
//! generated from them (`dsrgen impact`).

pub mod cli;
pub mod diagnostic;
pub mod diff;
pub mod engine;
pub mod error;
pub mod host;
pub mod impact;
pub mod inventory;
pub mod kind;
pub mod manifest;
pub mod model;
pub mod output;
pub mod plan;
pub mod render;
mod run;
pub mod source;
pub mod validate;

pub use run::run;

use crate::diagnostic::Diagnostic;
use crate::manifest::Manifest;
use crate::model::Model;
use crate::plan::Plan;
use crate::source::Source;

/// The outcome of compiling an inventory: the model when it has no error, and
/// every diagnostic, sorted by position.
#[derive(Debug)]
pub struct Compiled {
    pub model: Option<Model>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Parse and validate an inventory's text.
pub fn compile(source: &Source) -> Compiled {
    match inventory::parse(source) {
        Ok(raw) => {
            let validated = validate::validate(&raw);
            Compiled {
                model: validated.model,
                diagnostics: validated.diagnostics,
            }
        }
        Err(diagnostic) => Compiled {
            model: None,
            diagnostics: vec![diagnostic],
        },
    }
}

/// The output tree in memory: every host file in tree order, and the
/// manifest that lists them.
#[derive(Debug)]
pub struct Tree {
    pub files: Vec<output::File>,
    pub manifest: Manifest,
}

/// Plan and render every file of a valid model. `inventory` is the name the
/// generated files give as their source ([`plan::inventory_name`]). An error
/// is a bug in dsrgen (a template and its context disagree).
pub fn generate(model: &Model, inventory: &str) -> Result<Tree, String> {
    let mut plan = Plan::new(model, inventory);
    let contents = render::render_all(&plan.files, std::mem::take(&mut plan.contexts))?;
    Ok(tree(&plan, inventory, contents))
}

/// The files of a rendered plan, and their manifest.
fn tree(plan: &Plan, inventory: &str, contents: Vec<String>) -> Tree {
    let files: Vec<output::File> = plan
        .files
        .iter()
        .zip(contents)
        .map(|(file, content)| output::File {
            tree_path: file.tree_path(),
            content: content.into_bytes(),
            mode: file.mode(),
        })
        .collect();
    let manifest = Manifest::new(
        inventory,
        plan.files
            .iter()
            .zip(&files)
            .map(|(planned, file)| (planned, file.content.as_slice())),
    );
    Tree { files, manifest }
}
