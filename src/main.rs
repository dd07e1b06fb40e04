//! The `dsrgen` binary: everything happens in [`dsrgen::run`].

use std::process::ExitCode;

fn main() -> ExitCode {
    dsrgen::run(std::env::args_os())
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
