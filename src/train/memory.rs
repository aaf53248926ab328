//! The harness's own account of the bytes a rank holds, by FSDP's categories (parameter
//! shards, gathered parameters, gradients, optimizer state, activations), kept beside the
//! process's peak RSS: the account says what the strategy needs, RSS what the process took.

use std::collections::BTreeMap;

use crate::records::MemoryRecord;

#[derive(Debug, Default)]
pub struct MemoryAccount {
    param_shards_bytes: usize,
    optimizer_state_bytes: usize,
    gathered: BTreeMap<usize, usize>,
    gathered_peak: usize,
    unsharded_grads: BTreeMap<usize, usize>,
    unsharded_grads_peak: usize,
    activations: usize,
    activations_peak: usize,
}

impl MemoryAccount {
    /// `shard_elements` fp32 elements of parameter shards (gradient shards are the same size
    /// while held, from their reduction to the optimizer step; the record gives that size).
    pub fn new(shard_elements: usize, optimizer_state_bytes: usize) -> Self {
        Self { param_shards_bytes: 4 * shard_elements, optimizer_state_bytes, ..Default::default() }
    }

    pub fn gathered(&mut self, unit: usize, bytes: usize) {
        self.gathered.insert(unit, bytes);
        self.gathered_peak = self.gathered_peak.max(self.gathered.values().sum());
    }

    pub fn released(&mut self, unit: usize) {
        self.gathered.remove(&unit);
    }

    pub fn unsharded_grad(&mut self, unit: usize, bytes: usize) {
        self.unsharded_grads.insert(unit, bytes);
        self.unsharded_grads_peak =
            self.unsharded_grads_peak.max(self.unsharded_grads.values().sum());
    }

    /// Tensors kept between forward and backward (stage inputs and outputs).
    pub fn activations(&mut self, bytes: usize) {
        self.activations += bytes;
        self.activations_peak = self.activations_peak.max(self.activations);
    }

    /// A stage's tensors freed after its backward.
    pub fn activations_freed(&mut self, bytes: usize) {
        self.activations = self.activations.saturating_sub(bytes);
    }

    /// This step's figures; peaks start again from what is held now.
    pub fn take_record(&mut self) -> MemoryRecord {
        let record = MemoryRecord {
            param_shards_bytes: self.param_shards_bytes as u64,
            grad_shards_bytes: self.param_shards_bytes as u64,
            optimizer_state_bytes: self.optimizer_state_bytes as u64,
            gathered_params_peak_bytes: self.gathered_peak as u64,
            unsharded_grads_peak_bytes: self.unsharded_grads_peak as u64,
            activations_peak_bytes: self.activations_peak as u64,
        };
        self.gathered_peak = self.gathered.values().sum();
        self.unsharded_grads_peak = self.unsharded_grads.values().sum();
        self.activations_peak = self.activations;
        record
    }
}
