//! The analysis' integration tests as one test binary, on hand-built records with known answers.

#[path = "../fixture/mod.rs"]
mod fixture;

mod compare;
mod metrics;
mod outputs;
