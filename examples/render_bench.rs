//! Times rendering alone, in memory, for the benchmark (`bench/bench.py`):
//! parse, validate and plan once, then render every file `ROUNDS` times on all
//! cores and print the best time in seconds.
//!
//! ```text
//! cargo run --release --example render_bench -- inventory.yaml
//! ```

use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 3;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: render_bench INVENTORY");
    let source = dsrgen::inventory::load(std::path::Path::new(&path), &path)
        .unwrap_or_else(|d| panic!("{}", d.message));
    let model = dsrgen::compile(&source)
        .model
        .expect("the benchmark's inventory is valid");
    let plan = dsrgen::plan::Plan::new(&model, "inventory.yaml");
    let mut best = Duration::MAX;
    let mut bytes = 0;
    for _ in 0..ROUNDS {
        // Rendering consumes the contexts; copying them is not timed.
        let input = plan.contexts.clone();
        let started = Instant::now();
        let contents = dsrgen::render::render_all(&plan.files, input).expect("renders");
        best = best.min(started.elapsed());
        bytes = contents.iter().map(String::len).sum::<usize>();
    }
    println!("{:.4} {} {}", best.as_secs_f64(), plan.files.len(), bytes);
}
