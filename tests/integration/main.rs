//! dsrgen's integration tests, one binary: golden files, the command line, and
//! hostile input. Every test runs the real `dsrgen` binary.

mod build;
mod cli;
mod deploy;
mod faults;
mod fuzz;
mod golden;
mod properties;
mod support;
pub mod system;
mod uml;
