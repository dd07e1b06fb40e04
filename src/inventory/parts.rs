//! Parsing a large inventory in parts, on all cores, with exactly the one-pass
//! result: where a text may be cut, the text each part is parsed from, and how
//! the parts join (see [`super::parse_in_parts`]).

use std::ops::Range;

use super::{Entries, Inventory, Spanned, options};

/// `text` parsed in up to `parts` parts at once, or `None` when it cannot be
/// cut safely, is not worth cutting, or a part does not join.
pub(super) fn parse(text: &str, parts: usize) -> Option<Inventory> {
    split(text, parts).and_then(|s| parse_split(text, &s))
}

/// One part of a split inventory: the lines it covers, and the header line of
/// the section it starts in, which its parse needs too.
#[derive(Debug, PartialEq)]
struct Part {
    lines: Range<usize>,
    header: Option<Range<usize>>,
}

/// Where to cut `text` into up to `parts` parts of about the same size, or
/// `None` when it cannot be cut safely or is not worth cutting.
///
/// The layout looked for is the usual one: top-level keys at column 0, each
/// unique, and the sections of named entries (`balancers`, `backends`,
/// `clusters`) with a bare header line and their names at one indentation. A
/// cut goes before a line at exactly that indentation that starts with a
/// letter, a digit, `_` or a quote. Block and plain scalars end at such a
/// line; quoted scalars and flow collections do not, and are caught when the
/// part before fails to parse.
fn split(text: &str, parts: usize) -> Option<Vec<Part>> {
    if parts < 2 {
        return None;
    }
    let candidates = cut_points(text)?;
    let mut cuts: Vec<(usize, Range<usize>)> = Vec::new();
    for i in 1..parts {
        let target = text.len() * i / parts;
        let after = cuts.last().map_or(0, |(at, _)| *at);
        if let Some(cut) = candidates
            .iter()
            .find(|(at, _)| *at >= target && *at > after)
        {
            cuts.push(cut.clone());
        }
    }
    (!cuts.is_empty()).then(|| parts_at(text.len(), cuts))
}

/// Every line a cut may go before, with the header line of its section; `None`
/// when the text's layout is not the one [`split`] knows to be safe.
fn cut_points(text: &str) -> Option<Vec<(usize, Range<usize>)>> {
    if text.bytes().any(|b| b == b'&' || b == b'*') {
        return None;
    }
    let mut top_keys: Vec<&str> = Vec::new();
    // Cut candidates: (line start, header line of its section).
    let mut candidates: Vec<(usize, Range<usize>)> = Vec::new();
    // The open section: its header line and its entries' indentation, once seen.
    let mut section: Option<(Range<usize>, Option<usize>)> = None;
    let mut offset = 0;
    let mut seen_content = false;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        if content.trim().is_empty() || content.starts_with('#') {
            continue;
        }
        if indent == 0 {
            if !seen_content && content.trim_end() == "---" {
                seen_content = true;
                continue;
            }
            seen_content = true;
            let (key, rest) = content.split_once(':')?;
            let key_like = !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !key_like || !(rest.trim().is_empty() || rest.starts_with([' ', '\t'])) {
                return None;
            }
            if top_keys.contains(&key) {
                return None;
            }
            top_keys.push(key);
            let bare = rest.trim().is_empty() || rest.trim_start().starts_with('#');
            let named = matches!(key, "balancers" | "backends" | "clusters");
            section = (bare && named).then_some((start..offset, None));
            continue;
        }
        seen_content = true;
        let Some((header, entry_indent)) = section.as_mut() else {
            continue;
        };
        let starts_name = content
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'"' | b'\''));
        match *entry_indent {
            None if starts_name => *entry_indent = Some(indent),
            // A section that is not a mapping of names is not cut.
            None => section = None,
            Some(n) if n == indent && starts_name => candidates.push((start, header.clone())),
            Some(_) => {}
        }
    }
    Some(candidates)
}

/// The parts that cuts before these lines make of a text of `len` bytes.
fn parts_at(len: usize, cuts: Vec<(usize, Range<usize>)>) -> Vec<Part> {
    let mut split = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    let mut header = None;
    for (at, next_header) in cuts {
        split.push(Part {
            lines: from..at,
            header,
        });
        from = at;
        header = Some(next_header);
    }
    split.push(Part {
        lines: from..len,
        header,
    });
    split
}

/// Parse every part at once and join them, or `None` when a part fails or the
/// join would differ from a one-pass parse.
fn parse_split(text: &str, split: &[Part]) -> Option<Inventory> {
    let parsed: Vec<Option<Inventory>> = std::thread::scope(|scope| {
        let workers: Vec<_> = split
            .iter()
            .map(|part| {
                scope.spawn(move || {
                    let text = part_text(text, part);
                    serde_saphyr::from_str_with_options::<Inventory>(&text, options(split.len()))
                        .ok()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a parse thread panicked"))
            .collect()
    });
    let mut parsed = parsed.into_iter();
    let mut whole = parsed.next()??;
    for part in parsed {
        let part = part?;
        join_value(&mut whole.version, part.version)?;
        join_value(&mut whole.defaults, part.defaults)?;
        join_entries(&mut whole.balancers, part.balancers);
        join_entries(&mut whole.backends, part.backends);
        join_entries(&mut whole.clusters, part.clusters);
    }
    (unique(whole.balancers.as_ref())
        && unique(whole.backends.as_ref())
        && unique(whole.clusters.as_ref()))
    .then_some(whole)
}

/// Whether every name of a section is different.
fn unique<T>(entries: Option<&Spanned<Entries<T>>>) -> bool {
    entries.is_none_or(|e| {
        let mut names = std::collections::HashSet::with_capacity(e.value.0.len());
        e.value
            .0
            .iter()
            .all(|(name, _)| names.insert(name.value.as_str()))
    })
}

/// The text a part is parsed from: the source up to the part's end, with
/// every line before it blanked but its section's header, so that the part's
/// nodes keep their byte offsets.
fn part_text(text: &str, part: &Part) -> String {
    let blank = |from: usize, to: usize| {
        text[from..to]
            .bytes()
            .map(|b| if b == b'\n' { '\n' } else { ' ' })
            .collect::<String>()
    };
    let mut out = String::with_capacity(part.lines.end);
    match &part.header {
        Some(header) => {
            out.push_str(&blank(0, header.start));
            out.push_str(&text[header.clone()]);
            out.push_str(&blank(header.end, part.lines.start));
        }
        None => out.push_str(&blank(0, part.lines.start)),
    }
    out.push_str(&text[part.lines.clone()]);
    // The one-pass parser ends a block scalar at the next entry's name, past
    // that line's indentation; ending the text there makes the part agree.
    let rest = &text[part.lines.end..];
    out.push_str(&rest[..rest.len() - rest.trim_start_matches(' ').len()]);
    out
}

/// A top-level value is in one part only; in two, the parts do not join.
fn join_value<T>(whole: &mut Option<T>, part: Option<T>) -> Option<()> {
    match (whole.is_some(), part) {
        (_, None) => Some(()),
        (false, part) => {
            *whole = part;
            Some(())
        }
        (true, Some(_)) => None,
    }
}

/// A section cut in two continues in the next part.
fn join_entries<T>(whole: &mut Option<Spanned<Entries<T>>>, part: Option<Spanned<Entries<T>>>) {
    match (whole, part) {
        (_, None) => {}
        (Some(whole), Some(part)) => whole.value.0.extend(part.value.0),
        (whole, part) => *whole = part,
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_in_parts;
    use super::*;
    use crate::diagnostic::Diagnostic;
    use crate::source::Source;

    /// Every fixture and example: (path, text).
    fn corpus() -> Vec<(String, String)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in [
            "fixtures/valid",
            "fixtures/invalid",
            "fixtures/hostile",
            "examples",
        ] {
            for entry in std::fs::read_dir(root.join(dir)).expect("read fixtures") {
                let path = entry.expect("read fixtures").path();
                if path.extension().is_some_and(|x| x == "yaml") {
                    // Some hostile fixtures are not UTF-8; `load` refuses those.
                    if let Ok(text) = std::fs::read_to_string(&path) {
                        files.push((path.display().to_string(), text));
                    }
                }
            }
        }
        files.sort();
        files
    }

    fn one_pass(text: &str) -> Result<Inventory, Diagnostic> {
        parse_in_parts(&Source::new("t.yaml", text), 1)
    }

    /// The parts a single cut before the line that starts with `line` makes.
    fn cut_before(text: &str, line: &str) -> Vec<Part> {
        let at = text.find(&format!("\n{line}")).expect("the line is there") + 1;
        let cut = cut_points(text)
            .expect("the text can be cut")
            .into_iter()
            .find(|(start, _)| *start == at)
            .expect("the line is a cut point");
        parts_at(text.len(), vec![cut])
    }

    /// Each fixture is cut at each of its cut points in turn. Where the text
    /// parses in one pass, every cut must join to the same tree, spans and all;
    /// where it does not, no cut may parse.
    #[test]
    fn every_cut_of_every_fixture_joins_to_the_one_pass_result() {
        let mut joined = 0;
        for (name, text) in corpus() {
            let whole = one_pass(&text);
            for cut in cut_points(&text).unwrap_or_default() {
                let at = cut.0;
                match (parse_split(&text, &parts_at(text.len(), vec![cut])), &whole) {
                    (None, Err(_)) => {}
                    (None, Ok(_)) => panic!("{name}: cut at byte {at} falls back needlessly"),
                    (Some(parts), Ok(whole)) => {
                        assert!(
                            &parts == whole,
                            "{name}: cut at byte {at} joins differently"
                        );
                        joined += 1;
                    }
                    (Some(_), Err(e)) => {
                        panic!(
                            "{name}: cut at byte {at} parses; one pass says {}",
                            e.message
                        )
                    }
                }
            }
        }
        assert!(joined > 150, "only {joined} cuts joined");
    }

    #[test]
    fn parsing_in_parts_gives_the_one_pass_result_for_every_fixture() {
        for (name, text) in corpus() {
            let source = Source::new(name.as_str(), text.as_str());
            let whole = parse_in_parts(&source, 1);
            for parts in 2..=5 {
                assert!(
                    parse_in_parts(&source, parts) == whole,
                    "{name} in {parts} parts"
                );
            }
        }
    }

    const CLUSTERS: &str = "\
version: 1
clusters:
  a:
    id: 1
  b:
    id: 2
  c:
    id: 3
";

    #[test]
    fn a_cut_goes_before_an_entry_and_repeats_the_header() {
        let parts = cut_before(CLUSTERS, "  b:");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].header, Some(11..21));
        let text = part_text(CLUSTERS, &parts[1]);
        assert_eq!(
            text.len(),
            CLUSTERS.find("  b:").expect("b") + "  b:\n    id: 2\n  c:\n    id: 3\n".len()
        );
        assert!(text.starts_with("          \nclusters:\n    \n         \n  b:"));
        let joined = parse_split(CLUSTERS, &parts).expect("joins");
        assert!(Ok(joined) == one_pass(CLUSTERS));
    }

    #[test]
    fn only_entries_of_bare_sections_are_cut_points() {
        let text = "\
version: 1
defaults: {arp_ignore: 1,
  arp_announce: 2}
backends:
  - a
  - b
clusters:  # the clusters
  a:
    id: 1
  # a comment
  \"b\":
    id: 2
   odd: 3
";
        let at: Vec<usize> = cut_points(text)
            .expect("cuttable")
            .into_iter()
            .map(|(at, _)| at)
            .collect();
        assert_eq!(at, vec![text.find("  \"b\"").expect("b")]);
    }

    #[test]
    fn layouts_the_splitter_does_not_know_are_parsed_in_one_pass() {
        for text in [
            // Anchors and aliases may reach across parts.
            "version: 1\nclusters:\n  a: &x\n    id: 1\n  b: *x\n",
            // A duplicate top-level key is the one-pass parser's error to report.
            "version: 1\nclusters:\n  a:\n    id: 1\nclusters:\n  b:\n    id: 2\n",
            // A second document.
            "version: 1\nclusters:\n  a:\n    id: 1\n---\nclusters:\n  b:\n    id: 2\n",
            // A top-level key that is not a plain name.
            "\"version\": 1\nclusters:\n  a:\n    id: 1\n  b:\n    id: 2\n",
        ] {
            assert_eq!(cut_points(text), None, "{text}");
            assert!(split(text, 2).is_none());
        }
    }

    #[test]
    fn a_quoted_scalar_or_flow_collection_across_a_cut_falls_back() {
        for text in [
            "version: 1\nclusters:\n  a:\n    id: \"1\n  b:\n    id: 2\"\n  c:\n    id: 3\n",
            "version: 1\nclusters:\n  a:\n    id: '1\n  b:\n    id: 2'\n  c:\n    id: 3\n",
            "version: 1\nclusters:\n  a: {id: 1,\n  b: 2}\n  c:\n    id: 3\n",
            "version: 1\nclusters:\n  a:\n    ports: [\n  b, c]\n  c:\n    id: 3\n",
        ] {
            assert_eq!(parse_split(text, &cut_before(text, "  b")), None, "{text}");
            let source = Source::new("t.yaml", text);
            assert!(parse_in_parts(&source, 2) == one_pass(text), "{text}");
        }
    }

    #[test]
    fn a_block_scalar_ends_at_a_cut() {
        for chomp in ["", "-", "+", "2", "+2"] {
            let text = format!(
                "version: 1\nclusters:\n  a:\n    id: |{chomp}\n      1\n\n  b:\n    id: >{chomp}\n      2\n      3\n\n  c:\n    id: 3\n"
            );
            for line in ["  b:", "  c:"] {
                let joined = parse_split(&text, &cut_before(&text, line)).expect("joins");
                assert!(Ok(joined) == one_pass(&text), "{text}");
            }
        }
    }

    #[test]
    fn a_name_in_two_parts_is_the_one_pass_duplicate_key_error() {
        let text = "version: 1\nclusters:\n  a:\n    id: 1\n  a:\n    id: 2\n";
        assert_eq!(
            parse_split(text, &cut_before(text, "  a:\n    id: 2")),
            None
        );
        let error = parse_in_parts(&Source::new("t.yaml", text), 2).expect_err("duplicate");
        assert_eq!(error.message, "duplicate key `a`");
    }
}
