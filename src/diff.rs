//! Unified diffs for `build --check`, in the shape `git diff` prints them.
//! Files on disk may hold anything: control characters in them are escaped,
//! as the diagnostics escape them, so that a diff never drives the reviewer's
//! terminal.

use similar::TextDiff;

/// The diff that turns `old` into `new` for the file at `path` (relative to the
/// output folder); `None` stands for a file that does not exist.
pub fn unified(path: &str, old: Option<&[u8]>, new: Option<&[u8]>) -> String {
    let label = |side: &str, content: Option<&[u8]>| {
        content.map_or_else(|| "/dev/null".to_owned(), |_| format!("{side}/{path}"))
    };
    let (from, to) = (label("a", old), label("b", new));
    let (Ok(old_text), Ok(new_text)) = (
        std::str::from_utf8(old.unwrap_or_default()),
        std::str::from_utf8(new.unwrap_or_default()),
    ) else {
        return format!("Binary files {from} and {to} differ\n");
    };
    let (old_text, new_text) = (escape(old_text), escape(new_text));
    let diff = TextDiff::from_lines(&old_text, &new_text);
    let mut out = format!("--- {from}\n+++ {to}\n");
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        out.push_str(&hunk.to_string());
    }
    out
}

/// `text` with every control character but line feed and tab written as its
/// Rust escape (`\u{1b}`, `\r`), and so are the bidirectional overrides that
/// reorder what a terminal shows.
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.contains(unsafe_char) {
        return text.into();
    }
    text.chars()
        .fold(String::with_capacity(text.len()), |mut out, c| {
            if unsafe_char(c) {
                out.extend(c.escape_debug());
            } else {
                out.push(c);
            }
            out
        })
        .into()
}

/// The note for a file whose content is right but whose mode is not.
pub fn mode_change(path: &str, old: u32, new: u32) -> String {
    format!("--- a/{path}\n+++ b/{path}\nold mode {old:04o}\nnew mode {new:04o}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_added_and_removed_files() {
        assert_eq!(
            unified("f", Some(b"a\nb\n"), Some(b"a\nc\n")),
            "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
        );
        assert_eq!(
            unified("f", None, Some(b"x\n")),
            "--- /dev/null\n+++ b/f\n@@ -0,0 +1 @@\n+x\n"
        );
        assert_eq!(
            unified("f", Some(b"x\n"), None),
            "--- a/f\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"
        );
        assert_eq!(
            unified("f", Some(b"x"), Some(b"x\n")),
            "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-x\n\\ No newline at end of file\n+x\n"
        );
        assert_eq!(
            unified("f", Some(b"\xff"), Some(b"x\n")),
            "Binary files a/f and b/f differ\n"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            unified(
                "f",
                Some(b"a\x1b[2J\r\n"),
                Some("a\tb\u{202e}\n".as_bytes())
            ),
            "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\\u{1b}[2J\\r\n+a\tb\\u{202e}\n"
        );
    }
}
