//! Where the steady state starts: the one rule every reader of records uses, defined in the
//! record-format crate (`shardsweep_records::measured`, MSER-5 after the warm-up steps).

pub use shardsweep_records::measured::steady_start;
