//! The parts of the `cordon` command line that other crates reuse: the local AWS emulator
//! and its topology lab (the end-to-end tests run on the same code as the demo).

pub mod graph;
pub mod local;
pub mod runner;
