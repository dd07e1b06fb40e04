//! dsrgen's integration tests, one binary: golden files, the command line,
//! builds into a folder, faults and hostile input, deployment with Ansible and
//! Puppet, and the real consumers of the output (system). These run the real
//! `dsrgen` binary; the fuzzer and the property test call the pipeline
//! (`dsrgen::compile`, `dsrgen::generate`) in process.

mod build;
mod cli;
mod converge;
mod deploy;
mod faults;
mod fuzz;
mod gaps;
mod golden;
mod hostile;
mod impact;
mod networkd;
mod properties;
mod reconcile;
mod support;
pub mod system;
mod uml;
