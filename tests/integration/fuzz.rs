//! A mutation fuzzer over parse, validate, plan and render, on the stable
//! toolchain: inputs are the fixtures, mutated at random (bytes flipped,
//! inserted, deleted, duplicated, spliced, and YAML tokens dropped in), and
//! every one must come back as a model or diagnostics, never a panic or a
//! hang. Each is also parsed in two and in three parts, which must give
//! exactly what one pass gives. It is not coverage-guided: it trades depth for
//! running anywhere.
//!
//! It runs for `DSRGEN_FUZZ_SECONDS`, else 60 s under CI (`CI` set), else 3 s.
//! An input that fails is written to `fixtures/hostile/fuzz-<hash>.yaml`, to
//! become a fixture forever.

use std::hash::{Hash as _, Hasher as _};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use dsrgen::source::Source;

use crate::support::{root, yaml_files};

const TOKENS: &[&str] = &[
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "!!str ",
    "!!binary ",
    "!x ",
    "\t",
    "\n",
    "\n  ",
    "~",
    "null",
    "0x",
    "1e9",
    "-1",
    "65536",
    "99999999999999999999999",
    ".inf",
    "\"",
    "'",
    "#",
    "---\n",
    "...\n",
    "<<: ",
    "? ",
    "|\n",
    ">\n",
    "%YAML 1.2\n",
    "\u{feff}",
    "\0",
    "\u{202e}",
    "::1",
    "/32",
    "/129",
    "%eth0",
    "255.255.255.255",
    "lo",
    "eth0.100",
    "yes",
];

/// xorshift64*: deterministic from its seed, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::try_from(self.next() % n as u64).expect("fits")
        }
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..=rng.below(4) {
        let len = input.len();
        let at = rng.below(len + 1);
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 => input.insert(at, u8::try_from(rng.below(256)).expect("byte")),
            2 if len > 0 => {
                let end = (at + rng.below(16)).min(len);
                input.drain(at..end);
            }
            3 if len > 0 => {
                let start = rng.below(len);
                let end = (start + rng.below(64)).min(len);
                let copy = input[start..end].to_vec();
                input.splice(at..at, copy);
            }
            4 => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let end = (start + rng.below(256)).min(other.len());
                    input.splice(at..at, other[start..end].iter().copied());
                }
            }
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                input.splice(at..at, token.iter().copied());
            }
        }
    }
}

/// The whole pipeline, as `dsrgen build` runs it, minus the disk.
fn compile(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return; // `load` refuses non-UTF-8 before parsing, as a test shows
    };
    let source = Source::new("fuzz.yaml", text);
    let parsed = dsrgen::inventory::parse_in_parts(&source, 1);
    // Differential: a large inventory is parsed in parts; whatever the text,
    // that must give exactly the one-pass result.
    for parts in [2, 3] {
        assert!(
            dsrgen::inventory::parse_in_parts(&source, parts) == parsed,
            "parsing in {parts} parts differs from one pass"
        );
    }
    let compiled = dsrgen::compile(&source);
    for d in &compiled.diagnostics {
        let _ = d.render(&source);
    }
    if let Some(model) = compiled.model {
        dsrgen::generate(&model, "fuzz.yaml").expect("a valid model renders");
    }
}

fn budget() -> Duration {
    let seconds = std::env::var("DSRGEN_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if std::env::var_os("CI").is_some() {
            60
        } else {
            3
        });
    Duration::from_secs(seconds)
}

#[test]
fn mutated_fixtures_never_panic_or_hang() {
    let corpus: Vec<Vec<u8>> = [
        "fixtures/valid",
        "fixtures/invalid",
        "fixtures/hostile",
        "examples",
    ]
    .iter()
    .flat_map(|dir| yaml_files(dir))
    .map(|p| std::fs::read(root().join(p)).expect("read fixture"))
    .collect();
    assert!(corpus.len() > 100, "only {} seeds", corpus.len());
    let seed = std::env::var("DSRGEN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) << 16 | 1);
    let mut rng = Rng(seed);
    let budget = budget();
    let started = Instant::now();
    let mut runs = 0u64;
    while started.elapsed() < budget {
        let mut input = corpus[rng.below(corpus.len())].clone();
        mutate(&mut rng, &mut input, &corpus);
        let one = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| compile(&input)));
        let took = one.elapsed();
        if outcome.is_err() || took > Duration::from_secs(2) {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            input.hash(&mut hasher);
            let path = root().join(format!(
                "fixtures/hostile/fuzz-{:016x}.yaml",
                hasher.finish()
            ));
            std::fs::write(&path, &input).expect("save the failing input");
            panic!(
                "{} on an input (seed {seed}, run {runs}, {took:?}), saved as {}: add its golden with DSRGEN_BLESS=1",
                if outcome.is_err() { "panic" } else { "hang" },
                path.display()
            );
        }
        runs += 1;
    }
    println!(
        "fuzz: {runs} inputs in {:?} (seed {seed})",
        started.elapsed()
    );
    assert!(runs > 100, "only {runs} inputs in {budget:?}");
}
