//! Plan -> file contents: a minijinja environment with the templates of
//! `templates/` embedded in the binary. Undefined variables are errors, never
//! empty strings, and every file keeps its trailing newline.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use crate::plan::{PlannedFile, Template};

/// Each template's name and source.
const TEMPLATES: &[(Template, &str, &str)] = &[
    (
        Template::Sysctl,
        "sysctl.conf",
        include_str!("../templates/sysctl.conf.j2"),
    ),
    (
        Template::Script,
        "dsrgen-vips.sh",
        include_str!("../templates/dsrgen-vips.sh.j2"),
    ),
    (
        Template::Service,
        "dsrgen-vips.service",
        include_str!("../templates/dsrgen-vips.service.j2"),
    ),
    (
        Template::Network,
        "vips.network",
        include_str!("../templates/vips.network.j2"),
    ),
    (
        Template::Netdev,
        "vips.netdev",
        include_str!("../templates/vips.netdev.j2"),
    ),
    (
        Template::Keepalived,
        "keepalived.conf",
        include_str!("../templates/keepalived.conf.j2"),
    ),
    (
        Template::Ipvsadm,
        "ipvsadm.rules",
        include_str!("../templates/ipvsadm.rules.j2"),
    ),
    (
        Template::Dispatcher,
        "dispatcher.cfg",
        include_str!("../templates/dispatcher.cfg.j2"),
    ),
    (
        Template::Nftables,
        "dsrgen.nft",
        include_str!("../templates/dsrgen.nft.j2"),
    ),
];

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
        for &(_, name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name} does not compile: {e:#}"));
        }
        Self { env }
    }

    /// The name of a template, as `templates/<name>.j2` holds it.
    pub fn template_name(template: Template) -> &'static str {
        TEMPLATES
            .iter()
            .find(|(t, _, _)| *t == template)
            .map(|(_, name, _)| *name)
            .expect("every template is listed")
    }

    /// Render one planned file. An error here is a bug in dsrgen (a template and
    /// its context disagree), never a problem of the inventory.
    pub fn render(&self, file: &PlannedFile) -> Result<String, String> {
        let name = Self::template_name(file.template);
        self.env
            .get_template(name)
            .and_then(|t| t.render(Value::from(Serde(&file.context))))
            .map_err(|e| format!("rendering {} with {name}: {e:#}", file.tree_path()))
    }
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

/// Render every file of the plan, in plan order, on all cores.
pub fn render_all(plan: &crate::plan::Plan) -> Result<Vec<String>, String> {
    let renderer = Renderer::new();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = plan.files.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = plan
            .files
            .chunks(chunk)
            .map(|files| {
                let renderer = &renderer;
                scope.spawn(move || {
                    files
                        .iter()
                        .map(|f| {
                            // Rendering grows each string by doubling; tens of
                            // thousands of files make the slack count.
                            renderer.render(f).map(|mut text| {
                                text.shrink_to_fit();
                                text
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut contents = Vec::with_capacity(plan.files.len());
        for worker in workers {
            contents.extend(worker.join().expect("a render thread panicked")?);
        }
        Ok(contents)
    })
}
