//! shardsweep: plan, launch, measure and analyse sweeps of FSDP-style sharded MAE training.
//!
//! The layout follows the data flow: [`plan`] turns an experiment file into points,
//! [`launch`] starts them, each rank runs [`train`] over [`model`], [`data`] and [`comm`],
//! timed by [`metrics`], and [`records`] turns what ranks wrote into the point's files.

pub mod bench;
pub mod comm;
pub mod data;
mod ffi;
pub mod launch;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod predict;
pub mod probe;
pub use shardsweep_records as records;
pub mod train;
