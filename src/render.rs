//! Plan -> file contents: a minijinja environment with the templates of
//! `templates/` embedded in the binary. Undefined variables are errors, never
//! empty strings, and every file keeps its trailing newline.

use std::sync::Mutex;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use crate::kind::FileKind;
use crate::plan::{Context, PlannedFile, Role};

#[derive(Debug)]
pub struct Renderer {
    env: Environment<'static>,
}

impl Renderer {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_syntax(
            SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        for kind in FileKind::ALL {
            let declaration = kind.declaration();
            env.add_template(declaration.template, declaration.source)
                .unwrap_or_else(|e| {
                    panic!("template {} does not compile: {e:#}", declaration.template)
                });
        }
        Self { env }
    }

    /// Render one planned file with its context. An error here is a bug in
    /// dsrgen (a template and its context disagree), never a problem of the
    /// inventory.
    pub fn render(&self, file: &PlannedFile, context: &Context) -> Result<String, String> {
        let name = file.kind.template();
        self.env
            .get_template(name)
            .and_then(|t| t.render(Value::from(Serde(context))))
            .map_err(|e| format!("rendering {} with {name}: {e:#}", file.tree_path()))
    }
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

/// Render every file on all cores, consuming the contexts: each is dropped as
/// soon as its file is rendered, so that contexts and contents are never all
/// in memory at once. `contexts[i]` is `files[i]`'s; contents come back in the
/// same order.
pub fn render_all(files: &[PlannedFile], contexts: Vec<Context>) -> Result<Vec<String>, String> {
    assert_eq!(files.len(), contexts.len(), "one context a file");
    let renderer = Renderer::new();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    // Threads take one file at a time. A balancer's tables are few and large
    // (one keepalived.conf holds every service), a backend's files many and
    // small: the large go first, so that no thread is left alone with one at
    // the end.
    let mut work: Vec<(usize, Context)> = contexts.into_iter().enumerate().collect();
    work.sort_by_key(|(i, _)| files[*i].role != Role::Balancer);
    let queue = Mutex::new(work.into_iter());
    let next = || queue.lock().expect("a render thread panicked").next();
    let results: Vec<Vec<(usize, Result<String, String>)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    while let Some((i, context)) = next() {
                        // minijinja sizes each string for twice the template's
                        // text; tens of thousands of files make the slack count.
                        let text = renderer.render(&files[i], &context).map(|mut text| {
                            text.shrink_to_fit();
                            text
                        });
                        drop(context);
                        done.push((i, text));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a render thread panicked"))
            .collect()
    });
    let mut texts = vec![String::new(); files.len()];
    let mut first_error: Option<(usize, String)> = None;
    for (i, text) in results.into_iter().flatten() {
        match text {
            Ok(text) => texts[i] = text,
            Err(e) if first_error.as_ref().is_none_or(|(at, _)| i < *at) => {
                first_error = Some((i, e));
            }
            Err(_) => {}
        }
    }
    match first_error {
        Some((_, e)) => Err(e),
        None => Ok(texts),
    }
}
