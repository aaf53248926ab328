//! The analysis' integration tests as one test binary, on hand-built records with known answers.

#[path = "../fixture/mod.rs"]
mod fixture;

mod bundle;
mod compare;
mod history;
mod metrics;
mod outputs;
