//! The raw inventory, format version 1: serde types that mirror the YAML, with a
//! span on every node a rule may point at. This is the only module that names the
//! YAML crate.
//!
//! Leaves are kept as [`Scalar`]s, not as the Rust types they will become: a quoted
//! `"80"` or a `yes` where a number or boolean belongs is then reported by
//! validation at the exact node, together with every other error, instead of
//! ending the parse at the first one. Structure (unknown fields, a list where a
//! mapping belongs, duplicate keys, syntax) is checked here, and the first such
//! error ends the parse.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Localizer, Location, MessageFormatter};

use crate::diagnostic::{Diagnostic, shown};
use crate::source::{Source, Span};

/// Inventories larger than this are refused before parsing: even a 10,000-host
/// fleet is a few megabytes.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// A value with the span of the YAML node it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        Ok(Spanned {
            value: spanned.value,
            // Byte offsets are always known when parsing from a string, the only
            // way this module parses.
            span: byte_span(spanned.referenced).unwrap_or(Span::at(0)),
        })
    }
}

/// The byte span of a location, where the parser recorded byte offsets.
fn byte_span(location: Location) -> Option<Span> {
    let span = location.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    Some(Span::new(start, start.saturating_add(len)))
}

/// A YAML scalar as written, typed by the YAML 1.2 core schema: `80` is an
/// integer, `"80"` a string, `yes` a string, `true` a boolean.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

impl Scalar {
    /// How the value is described in a type error: "string `80`", "integer `3`".
    pub fn describe(&self) -> String {
        match self {
            Scalar::Null => "nothing (null)".to_owned(),
            Scalar::Bool(b) => format!("boolean `{b}`"),
            Scalar::Int(i) => format!("integer `{i}`"),
            Scalar::Float(f) => format!("number `{f:?}`"),
            Scalar::Str(s) => format!("string `{}`", shown(s)),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a single value (a string, number or boolean)")
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Scalar, E> {
                // Out of i128 range is out of every range we accept.
                Ok(i128::try_from(v).map_or(Scalar::Float(f64::INFINITY), Scalar::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(v))
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// A YAML mapping keyed by name, in file order, each key with its span.
/// Duplicate keys never reach it: the parser rejects them.
#[derive(Clone, Debug, PartialEq)]
pub struct Entries<T>(pub Vec<(Spanned<String>, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Entries<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for EntriesVisitor<T> {
            type Value = Entries<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<T>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// A YAML sequence whose items each keep their span.
#[derive(Clone, Debug, PartialEq)]
pub struct List<T>(pub Vec<Spanned<T>>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = List<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(List(items))
            }
        }

        deserializer.deserialize_seq(ListVisitor(PhantomData))
    }
}

pub type Value = Spanned<Scalar>;

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub version: Option<Value>,
    pub defaults: Option<Spanned<Defaults>>,
    pub balancers: Option<Spanned<Entries<Spanned<Balancer>>>>,
    pub backends: Option<Spanned<Entries<Spanned<Backend>>>>,
    pub clusters: Option<Spanned<Entries<Spanned<Cluster>>>>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub arp_ignore: Option<Value>,
    pub arp_announce: Option<Value>,
    pub vip_device: Option<Value>,
    pub outputs: Option<Spanned<List<Scalar>>>,
    pub scheduler: Option<Value>,
    pub persistence: Option<Value>,
    pub health: Option<Spanned<Health>>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub kind: Option<Value>,
    pub path: Option<Value>,
    pub status: Option<Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Balancer {
    pub engine: Option<Value>,
    pub interface: Option<Value>,
    pub address: Option<Value>,
    pub address6: Option<Value>,
    pub vrrp: Option<Spanned<Vrrp>>,
    pub dispatcher: Option<Spanned<Dispatcher>>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vrrp {
    pub router_id: Option<Value>,
    pub priority: Option<Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dispatcher {
    pub separator: Option<Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub interface: Option<Value>,
    pub address: Option<Value>,
    pub address6: Option<Value>,
    pub vip_device: Option<Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub id: Option<Value>,
    pub address: Option<Value>,
    pub balancers: Option<Spanned<List<Scalar>>>,
    pub ports: Option<Spanned<List<Port>>>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub port: Option<Value>,
    pub protocol: Option<Value>,
    pub scheduler: Option<Value>,
    pub persistence: Option<Value>,
    pub health: Option<Spanned<Health>>,
    pub backends: Option<Spanned<List<Scalar>>>,
    pub weights: Option<Spanned<Entries<Value>>>,
}

/// Read and parse an inventory file. Every failure is one diagnostic; a file
/// that cannot be read has no source to point into.
pub fn load(path: &std::path::Path, display_name: &str) -> Result<Source, Diagnostic> {
    use std::io::Read as _;

    let cannot_read =
        |e: std::io::Error| Diagnostic::file_error(format!("cannot read `{display_name}`: {e}"));
    let file = std::fs::File::open(path).map_err(cannot_read)?;
    let too_large = || {
        Diagnostic::file_error(format!(
            "`{display_name}` is larger than {} MiB; an inventory is expected to be a few megabytes",
            MAX_FILE_BYTES / 1024 / 1024
        ))
    };
    // A regular file says its size up front; anything else is read up to the cap.
    if file
        .metadata()
        .is_ok_and(|m| m.is_file() && m.len() > MAX_FILE_BYTES)
    {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    // Read one byte past the cap so that a file growing under us is caught too.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
        let source = Source::new(display_name, prefix);
        let at = source.line_col(valid);
        Diagnostic::file_error(format!(
            "`{display_name}` is not UTF-8 text: invalid byte at line {}, column {}",
            at.line, at.column
        ))
    })?;
    Ok(Source::new(display_name, text))
}

/// Below this size an inventory is parsed in one pass: splitting it would
/// cost more than it saves.
const PARALLEL_MIN_BYTES: usize = 256 * 1024;

/// Parse the source into the raw inventory: a large one in parts, on all
/// cores, when its layout allows it (see [`parse_in_parts`]).
pub fn parse(source: &Source) -> Result<Inventory, Diagnostic> {
    let parts = if source.text().len() >= PARALLEL_MIN_BYTES {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    } else {
        1
    };
    parse_in_parts(source, parts)
}

/// Parse the source in up to `parts` parts at once, or in one pass.
///
/// The result is the one-pass result, error or not: a text is split only at
/// lines that start an entry of a top-level section (`clusters:` and the like),
/// and each part is parsed from a copy of the text in which everything before it
/// but its section's header is blanked, so every byte offset is kept. Whatever
/// a part cannot show to be equivalent sends the whole text to the one-pass
/// parser: anchors or aliases anywhere, a part that fails to parse (a quoted
/// scalar or a flow collection cut in two), or a name in two parts (a
/// duplicate key the one-pass parser reports).
pub fn parse_in_parts(source: &Source, parts: usize) -> Result<Inventory, Diagnostic> {
    let blank_or_comment = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    if source.text().lines().all(blank_or_comment) {
        return Err(Diagnostic::error("the inventory is empty", Span::at(0))
            .help("an inventory is a mapping that starts with `version: 1`"));
    }
    if let Some(inventory) =
        split(source.text(), parts).and_then(|s| parse_split(source.text(), &s))
    {
        return Ok(inventory);
    }
    serde_saphyr::from_str_with_options::<Inventory>(source.text(), options(1))
        .map_err(|e| error_diagnostic(source, &e))
}

/// The parser's options for one of `parts` parts of an inventory. Every limit
/// that adds up over a document is divided among the parts, so that a text
/// over a limit has a part over its share, which sends it to the one-pass
/// parser and its error.
fn options(parts: usize) -> serde_saphyr::Options {
    let mut options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            // Large enough for a 20 MB inventory, small enough to stop a runaway one.
            max_events: 64_000_000,
            max_nodes: 32_000_000,
            // One is an inventory; the second is reported as such, not as a budget.
            max_documents: 2,
            max_depth: 64,
        },
        alias_limits: serde_saphyr::alias_limits! {
            // Every alias use replays its anchor's events. Half a million is ten
            // times what a 10,000-backend inventory built on aliases needs, and
            // parses in well under a second.
            max_total_replayed_events: 500_000,
        },
        strict_booleans: true,
        // Tags have no place in an inventory: unknown ones are refused, and
        // `!!binary` is not decoded, so that what a reviewer reads is what
        // dsrgen checks.
        reject_unsupported_tags: true,
        ignore_binary_tag_for_string: true,
        with_snippet: false,
    };
    if let Some(budget) = options.budget.as_mut() {
        budget.max_events /= parts;
        budget.max_nodes /= parts;
        budget.max_merge_keys /= parts;
        budget.max_total_scalar_bytes /= parts;
    }
    options
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

/// Turn a parse error into a diagnostic at its location, in our own words where
/// the library's are addressed to programmers.
fn error_diagnostic(source: &Source, error: &serde_saphyr::Error) -> Diagnostic {
    use serde_saphyr::Error as E;

    let location = error.location();
    // Errors met while replaying an alias come wrapped; the wording is inside.
    let mut error = error;
    while let E::AliasError { error: inner, .. } | E::WithSnippet { error: inner, .. } = error {
        error = inner;
    }
    let message = match error {
        E::DuplicateMappingKey { key: Some(key), .. } => {
            format!("duplicate key `{}`", shown(key))
        }
        E::DuplicateMappingKey { key: None, .. } => "duplicate key".to_owned(),
        E::MultipleDocuments { .. } => {
            "the inventory holds more than one YAML document; dsrgen reads exactly one".to_owned()
        }
        E::SerdeUnknownField {
            field, expected, ..
        } => format!(
            "unknown field `{}`, expected one of {}",
            shown(field),
            expected
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        E::Budget { breach, .. } => budget_message(breach),
        E::NullIntoString { .. } => {
            "a name or value is missing here (null); write it, quoted if it looks like something else"
                .to_owned()
        }
        E::NonFiniteFloat { .. } => "`.inf` and `.nan` are not values dsrgen accepts".to_owned(),
        E::UnsupportedTag { .. } => {
            "YAML tags (`!...`) have no meaning in an inventory; remove it".to_owned()
        }
        E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => ALIAS_BOMB.to_owned(),
        E::Unexpected { expected, .. } => match *expected {
            "mapping start" => "expected a mapping (`key: value` lines)".to_owned(),
            "sequence start" => "expected a list (`- item` lines or `[a, b]`)".to_owned(),
            other => format!("expected {other}"),
        },
        _ => {
            let formatter = serde_saphyr::DefaultMessageFormatter.with_localizer(&NoLocation);
            formatter.format_message(error).into_owned()
        }
    };
    let span = location
        .or_else(|| error.location())
        .filter(|l| *l != Location::UNKNOWN)
        .map_or(Span::at(0), |l| location_span(source, l));
    Diagnostic::error(message, span)
}

const ALIAS_BOMB: &str = "the inventory's aliases expand to too much data (an alias bomb?)";

fn budget_message(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;

    match breach {
        B::Depth { .. } => "the inventory is nested more than 64 levels deep".to_owned(),
        B::Aliases { .. }
        | B::AliasAnchorRatio { .. }
        | B::RecordedAnchorEvents { .. }
        | B::RecordedAnchorBytes { .. } => ALIAS_BOMB.to_owned(),
        other => format!("the inventory is too large for dsrgen's parser limits ({other:?})"),
    }
}

fn location_span(source: &Source, location: Location) -> Span {
    if let Some(span) = byte_span(location) {
        return span;
    }
    let span = location.span();
    let line = usize::try_from(location.line()).unwrap_or(usize::MAX);
    let column = usize::try_from(location.column()).unwrap_or(usize::MAX);
    let start = source.offset_of(line, column);
    let len = usize::try_from(span.len()).unwrap_or(0);
    Span::new(start, source.advance_chars(start, len))
}

/// Our diagnostics place the location themselves; the library must not append
/// "at line X, column Y" to its messages.
struct NoLocation;

impl Localizer for NoLocation {
    fn attach_location<'a>(&self, base: Cow<'a, str>, _location: Location) -> Cow<'a, str> {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
