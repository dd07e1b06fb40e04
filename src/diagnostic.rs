//! Diagnostics: what went wrong, where, and how it is shown to the user.

use std::fmt::Write as _;

use crate::source::{Source, Span};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding about the inventory. The message is lower-case and names things
/// in backticks; the span is the YAML node it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub span: Option<Span>,
    /// Other nodes that take part, such as the first of two duplicates.
    pub notes: Vec<(String, Span)>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>, span: Span) -> Self {
        Self::new(Severity::Error, message.into(), Some(span))
    }

    pub fn warning(message: impl Into<String>, span: Span) -> Self {
        Self::new(Severity::Warning, message.into(), Some(span))
    }

    /// An error about the file as a whole (it cannot be read, it is too large).
    pub fn file_error(message: impl Into<String>) -> Self {
        Self::new(Severity::Error, message.into(), None)
    }

    fn new(severity: Severity, message: String, span: Option<Span>) -> Self {
        Self {
            severity,
            message,
            span,
            notes: Vec::new(),
            help: None,
        }
    }

    #[must_use]
    pub fn note(mut self, message: impl Into<String>, span: Span) -> Self {
        self.notes.push((message.into(), span));
        self
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Render in the shape of DESIGN §1: headline, location, the source line,
    /// a caret run under the node, then notes and help.
    pub fn render(&self, source: &Source) -> String {
        let mut out = format!("{}: {}\n", self.severity.label(), self.message);
        if let Some(span) = self.span {
            write_snippet(&mut out, source, span);
        }
        for (message, span) in &self.notes {
            let _ = writeln!(out, "note: {message}");
            write_snippet(&mut out, source, *span);
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "help: {help}");
        }
        out
    }
}

/// Lines longer than this are shown as a window around the node.
const MAX_SHOWN_CHARS: usize = 100;

fn write_snippet(out: &mut String, source: &Source, span: Span) {
    let start = source.line_col(span.start);
    let line_text = source.line_text(span.start);
    let gutter = " ".repeat(start.line.to_string().len());
    let _ = writeln!(
        out,
        "{gutter}--> {}:{}:{}",
        source.name(),
        start.line,
        start.column
    );
    let _ = writeln!(out, "{gutter} |");
    // The caret run stops at the end of the first line of a multi-line node.
    let line_chars = line_text.chars().count();
    let end = source.line_col(span.end);
    let end_column = if end.line == start.line {
        end.column
    } else {
        line_chars + 1
    };
    let mut caret_at = start.column - 1;
    let mut width = end_column.saturating_sub(start.column).max(1);
    let mut shown = printable(line_text);
    if line_chars > MAX_SHOWN_CHARS {
        let from = caret_at.saturating_sub(MAX_SHOWN_CHARS / 4);
        let to = (from + MAX_SHOWN_CHARS).min(line_chars);
        let window: String = shown.chars().skip(from).take(to - from).collect();
        let (before, after) = (
            if from > 0 { "…" } else { "" },
            if to < line_chars { "…" } else { "" },
        );
        shown = format!("{before}{window}{after}");
        caret_at = caret_at - from + before.chars().count();
        width = width.min(to.saturating_sub(start.column - 1)).max(1);
    }
    let _ = writeln!(out, "{} | {shown}", start.line);
    let _ = writeln!(
        out,
        "{gutter} | {}{}",
        " ".repeat(caret_at),
        "^".repeat(width)
    );
}

/// Source lines are shown as they are, except characters a terminal would act on:
/// each becomes one visible character so the caret below still lines up. A tab
/// shows as `→`, so that a tab-indentation error shows its tab.
fn printable(line: &str) -> String {
    line.chars()
        .map(|c| match c {
            '\t' => '→',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// A value from the inventory as a message quotes it: control and other
/// unprintable characters escaped, and cut short past 60 characters so that
/// one hostile value cannot flood the terminal.
pub fn shown(value: &str) -> String {
    const MAX: usize = 60;
    let escaped: String = value.escape_debug().collect();
    if escaped.chars().count() <= MAX {
        return escaped;
    }
    let cut: String = escaped.chars().take(MAX).collect();
    format!("{cut}… ({} characters)", value.chars().count())
}

/// Sort diagnostics by position; file-level ones (no span) first.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics
        .sort_by(|a, b| (a.span, a.severity, &a.message).cmp(&(b.span, b.severity, &b.message)));
}

/// The closing line: `error: inventory.yaml: 3 errors, 1 warning`.
pub fn summary(source_name: &str, diagnostics: &[Diagnostic]) -> Option<String> {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let counts = [(errors, "error"), (warnings, "warning")]
        .into_iter()
        .filter(|&(n, _)| n > 0)
        .map(|(n, word)| format!("{n} {word}{}", if n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>();
    if counts.is_empty() {
        return None;
    }
    let label = if errors > 0 { "error" } else { "warning" };
    Some(format!("{label}: {source_name}: {}", counts.join(", ")))
}

/// The closest candidate within a small edit distance, for "did you mean".
pub fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// Edit distance where swapping two neighbours counts as one edit, the commonest
/// typo (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i-2, i-1 and i of the distance table.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_the_documented_shape() {
        let text = "a: 1\n".repeat(13) + "    address: 192.268.0.181\n";
        let source = Source::new("inventory.yaml", text);
        let start = source.offset_of(14, 14);
        let diagnostic = Diagnostic::error(
            "cluster `www`: `192.268.0.181` is not an IPv4 or IPv6 address",
            Span::new(start, start + 13),
        );
        assert_eq!(
            diagnostic.render(&source),
            "error: cluster `www`: `192.268.0.181` is not an IPv4 or IPv6 address\n\
             \x20 --> inventory.yaml:14:14\n\
             \x20  |\n\
             14 |     address: 192.268.0.181\n\
             \x20  |              ^^^^^^^^^^^^^\n"
        );
    }

    #[test]
    fn long_lines_are_shown_as_a_window_around_the_node() {
        let line = format!("key: {}bad{}", "[".repeat(500), "]".repeat(500));
        let source = Source::new("f.yaml", line.clone());
        let start = line.find("bad").unwrap();
        let rendered = Diagnostic::error("e", Span::new(start, start + 3)).render(&source);
        let shown = rendered.lines().nth(3).unwrap();
        let caret = rendered.lines().nth(4).unwrap();
        assert!(shown.chars().count() < 120, "{shown}");
        assert!(
            shown.starts_with("1 | …") && shown.ends_with('…'),
            "{shown}"
        );
        // The caret still sits under `bad`.
        let col = caret.find('^').unwrap();
        assert_eq!(shown.chars().skip(col).take(3).collect::<String>(), "bad");
        assert_eq!(caret.matches('^').count(), 3);
    }

    #[test]
    fn summary_counts_and_pluralises() {
        let e = Diagnostic::error("e", Span::at(0));
        let w = Diagnostic::warning("w", Span::at(0));
        assert_eq!(summary("f", &[]), None);
        assert_eq!(
            summary("f", &[e.clone(), e.clone(), e, w.clone()]).unwrap(),
            "error: f: 3 errors, 1 warning"
        );
        assert_eq!(
            summary("f", &[w.clone(), w]).unwrap(),
            "warning: f: 2 warnings"
        );
    }

    #[test]
    fn suggestions_are_close_names_only() {
        let names = ["web1", "web2", "db1"];
        assert_eq!(did_you_mean("web3", names.iter().copied()), Some("web1"));
        assert_eq!(did_you_mean("wbe1", names.iter().copied()), Some("web1"));
        assert_eq!(did_you_mean("mail", names.iter().copied()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("wbe1", "web1"), 1);
        assert_eq!(edit_distance("", "ab"), 2);
    }
}
