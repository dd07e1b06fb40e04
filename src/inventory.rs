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

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Localizer, Location, MessageFormatter};

use crate::diagnostic::{Diagnostic, shown};
use crate::source::{Source, Span};

mod parts;

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
    #[serde(default, deserialize_with = "present")]
    pub version: Option<Value>,
    pub defaults: Option<Spanned<Defaults>>,
    pub balancers: Option<Spanned<Entries<Spanned<Balancer>>>>,
    pub backends: Option<Spanned<Entries<Spanned<Backend>>>>,
    pub clusters: Option<Spanned<Entries<Spanned<Cluster>>>>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default, deserialize_with = "present")]
    pub arp_ignore: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub arp_announce: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub vip_device: Option<Value>,
    pub outputs: Option<Spanned<List<Scalar>>>,
    #[serde(default, deserialize_with = "present")]
    pub scheduler: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub persistence: Option<Value>,
    pub health: Option<Spanned<Health>>,
    #[serde(default, deserialize_with = "present")]
    pub on_failure: Option<Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    #[serde(default, deserialize_with = "present")]
    pub kind: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub path: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub status: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub host: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub expect: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub digest: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub port: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub script: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub interval: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub timeout: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub retries: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub retry_delay: Option<Value>,
}

/// A port's `health`: one check, or a list of checks that must all pass.
#[derive(Debug, PartialEq)]
pub enum Checks {
    One(Box<Health>),
    All(List<Health>),
}

impl<'de> Deserialize<'de> for Checks {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChecksVisitor;

        impl<'de> Visitor<'de> for ChecksVisitor {
            type Value = Checks;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a health check (a mapping) or a list of them")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Checks, A::Error> {
                Health::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|h| Checks::One(Box::new(h)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checks, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Checks::All(List(items)))
            }
        }

        deserializer.deserialize_any(ChecksVisitor)
    }
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Balancer {
    #[serde(default, deserialize_with = "present")]
    pub engine: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub interface: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub address: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub address6: Option<Value>,
    pub interfaces: Option<Spanned<List<Segment>>>,
    pub vrrp: Option<Spanned<Vrrp>>,
    pub dispatcher: Option<Spanned<Dispatcher>>,
}

/// One entry of a balancer's `interfaces`: a segment it is on.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub address: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub address6: Option<Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vrrp {
    #[serde(default, deserialize_with = "present")]
    pub router_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub priority: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub advert_int: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub preempt: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub preempt_delay: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub auth_file: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub unicast: Option<Value>,
    pub track_interfaces: Option<Spanned<List<Scalar>>>,
    pub track_scripts: Option<Spanned<List<Scalar>>>,
    pub notify: Option<Spanned<Notify>>,
    #[serde(default, deserialize_with = "present")]
    pub sync_interface: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub sync_id: Option<Value>,
    pub active_active: Option<Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    #[serde(default, deserialize_with = "present")]
    pub master: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub backup: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub fault: Option<Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dispatcher {
    #[serde(default, deserialize_with = "present")]
    pub separator: Option<Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    #[serde(default, deserialize_with = "present")]
    pub interface: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub address: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub address6: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub vip_device: Option<Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    #[serde(default, deserialize_with = "present")]
    pub id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub address: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub routed: Option<Value>,
    pub balancers: Option<Spanned<List<Scalar>>>,
    pub ports: Option<Spanned<List<Port>>>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    #[serde(default, deserialize_with = "present")]
    pub port: Option<Value>,
    pub ports: Option<Spanned<List<Scalar>>>,
    #[serde(default, deserialize_with = "present")]
    pub protocol: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub scheduler: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub persistence: Option<Value>,
    pub health: Option<Spanned<Checks>>,
    #[serde(default, deserialize_with = "present")]
    pub on_failure: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub quorum: Option<Value>,
    pub hysteresis: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub sorry: Option<Value>,
    pub backends: Option<Spanned<List<Scalar>>>,
    pub weights: Option<Spanned<Entries<Value>>>,
}

/// A field that is present, even as null: `port: ~` is then an empty value,
/// reported as such, not a missing field.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
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
    if let Some(diagnostic) = repeated_merge_key(source.text()) {
        return Err(diagnostic);
    }
    if let Some(inventory) = parts::parse(source.text(), parts) {
        return Ok(inventory);
    }
    serde_saphyr::from_str_with_options::<Inventory>(source.text(), options(1))
        .map_err(|e| error_diagnostic(source, &e))
}

/// A block mapping that gives the merge key `<<` twice. The parser keeps the
/// first and drops the second without a word, where every other repeated key
/// is an error. Found by indentation, line by line: a `<<` key belongs to the
/// mapping whose keys start at its column, until a line starts left of it.
fn repeated_merge_key(text: &str) -> Option<Diagnostic> {
    if !text.contains("<<") {
        return None;
    }
    // Columns of the open mappings that have a `<<` key, with its offset.
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let body = line.trim_start_matches(' ');
        if body.trim().is_empty() || body.starts_with('#') {
            continue;
        }
        let mut column = line.len() - body.len();
        open.retain(|&(c, _)| c <= column);
        // `- ` opens a mapping inside a list item, further right.
        let mut key = body;
        while let Some(rest) = key.strip_prefix('-').filter(|r| r.starts_with(' ')) {
            let trimmed = rest.trim_start_matches(' ');
            column += 1 + rest.len() - trimmed.len();
            key = trimmed;
        }
        let is_merge = key
            .strip_prefix("<<")
            .is_some_and(|r| r.trim_start_matches(' ').starts_with(':'));
        if !is_merge {
            continue;
        }
        let at = start + column;
        if let Some(&(_, first)) = open.iter().find(|&&(c, _)| c == column) {
            let mut diagnostic = Diagnostic::error(
                "duplicate key `<<`: YAML would merge only the first of these and ignore this one",
                Span::new(at, at + 2),
            )
            .help("merge several anchors with one key: `<<: [*first, *second]`");
            diagnostic.notes.push((
                "the first `<<` is here".to_owned(),
                Span::new(first, first + 2),
            ));
            return Some(diagnostic);
        }
        open.push((column, at));
    }
    None
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
        // `0120` is octal in YAML 1.1 and decimal in 1.2: kept as written, so
        // that validation refuses it as ambiguous instead of guessing.
        leading_zero_numbers_as_strings: true,
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

/// Turn a parse error into a diagnostic at its location, in our own words where
/// the library's are addressed to programmers.
fn error_diagnostic(source: &Source, error: &serde_saphyr::Error) -> Diagnostic {
    use serde_saphyr::Error as E;

    let location = error.location();
    // Where the alias (or merge) that replayed the failing node was used.
    let used_at = match error {
        E::AliasError { locations, .. } => Some(locations.reference_location),
        _ => None,
    };
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
        E::RecursiveReferencesRequireWeakTypes { .. } => {
            "this alias refers to a node that contains it: an inventory cannot hold a structure that contains itself"
                .to_owned()
        }
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
    let mut diagnostic = Diagnostic::error(message, span);
    let used = used_at
        .filter(|l| *l != Location::UNKNOWN)
        .map(|l| location_span(source, l))
        .filter(|&used| used != span);
    // A merge replays its anchor's keys where they fail: say where it merged.
    let merges = match (used, error) {
        (Some(used), _) => vec![used],
        (None, E::SerdeUnknownField { .. }) => {
            merges_of_enclosing_anchor(source.text(), span.start)
        }
        (None, _) => Vec::new(),
    };
    for merge in merges {
        diagnostic
            .notes
            .push(("the anchor is merged here".to_owned(), merge));
    }
    diagnostic
}

/// The aliases in merge keys (`<<: *name`) of the nearest anchor above the
/// block line holding `offset`, found by indentation.
fn merges_of_enclosing_anchor(text: &str, offset: usize) -> Vec<Span> {
    let indent = |line: &str| line.len() - line.trim_start_matches(' ').len();
    let line_start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let mut column = offset - line_start;
    let mut anchor = None;
    for line in text[..line_start].lines().rev() {
        let body = line.trim_start_matches(' ');
        if body.is_empty() || body.starts_with('#') || indent(line) >= column {
            continue;
        }
        column = indent(line);
        if let Some((_, value)) = body.split_once(':')
            && let Some(name) = value.trim_start().strip_prefix('&')
        {
            let name: String = name.chars().take_while(|c| !c.is_whitespace()).collect();
            anchor = Some(format!("*{name}"));
            break;
        }
        if column == 0 {
            break;
        }
    }
    let Some(alias) = anchor else {
        return Vec::new();
    };
    let mut merges = Vec::new();
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_start_matches([' ', '-']);
        if body.starts_with("<<") {
            for (i, _) in line.match_indices(&alias) {
                let end = i + alias.len();
                let whole = line[end..]
                    .chars()
                    .next()
                    .is_none_or(|c| c.is_whitespace() || c == ',' || c == ']');
                if whole {
                    merges.push(Span::new(start + i, start + end));
                }
            }
        }
        start += line.len();
    }
    merges
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
