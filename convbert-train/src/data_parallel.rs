//! Data-parallel training over a torch.distributed process group, with the semantics HF Trainer
//! has under torchrun (DistributedDataParallel): rank 0's parameters broadcast at the start, each
//! rank reading its `DistributedSampler` shard of every epoch, gradients averaged over the ranks
//! once per optimizer step (after the last micro-batch, before clipping), and the logged loss the
//! mean over ranks.

use std::sync::{Arc, Mutex, MutexGuard};

use convbert_distributed::ProcessGroup;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::collator::Collator;
use crate::data::Dataset;
use crate::error::{Result, TrainError};
use crate::evaluate::{collect, finish, EvalOutputs, EvalResult};
use crate::model::TaskModel;
use crate::optimizer::AdamW;
use crate::step::{step_with, StepOutcome};

/// A shared handle on the job's process group; `TrainingArgs::data_parallel` takes one.
/// Collectives go through the mutex: every rank must issue them in one order, which two threads
/// of one rank calling at once could not guarantee (and it makes the handle `Send + Sync`).
#[derive(Clone)]
pub struct DataParallel {
    group: Arc<Mutex<ProcessGroup>>,
    rank: usize,
    world_size: usize,
    device: Device,
}

impl std::fmt::Debug for DataParallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataParallel")
            .field("rank", &self.rank())
            .field("world_size", &self.world_size())
            .finish()
    }
}

impl DataParallel {
    /// Trains over `group`: every rank calls [`crate::train`] with the same arguments and data.
    pub fn new(group: ProcessGroup) -> Self {
        Self {
            rank: group.rank(),
            world_size: group.world_size(),
            device: group.device(),
            group: Arc::new(Mutex::new(group)),
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of processes.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    fn group(&self) -> Result<MutexGuard<'_, ProcessGroup>> {
        // A panic in another thread mid-collective leaves the group unusable.
        self.group
            .lock()
            .map_err(|_| TrainError::argument("data_parallel", "a thread panicked in a collective"))
    }

    /// Rank 0 writes checkpoints, the log and the final model.
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// [`crate::optimizer_step`] as one rank of the job: after the last micro-batch the
    /// gradients and the loss are averaged over the ranks (as DDP does), then clipped and applied,
    /// so every rank takes the same update. Every rank must call it for the same `step`.
    pub fn optimizer_step(
        &self,
        optimizer: &mut AdamW,
        lr: f64,
        accumulation: usize,
        max_grad_norm: f64,
        step: usize,
        loss_of: impl FnMut(usize) -> Result<Tensor>,
    ) -> Result<StepOutcome> {
        step_with(
            optimizer,
            lr,
            accumulation,
            max_grad_norm,
            step,
            None,
            Some(self),
            loss_of,
        )
    }

    /// Copies rank 0's values into every rank's variables (in name order, the same on all).
    pub(crate) fn broadcast_parameters(&self, vs: &VarStore) -> Result<()> {
        let mut vars = vs.variables().into_iter().collect::<Vec<_>>();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| -> Result<()> {
            for (_, var) in vars {
                let mut host = var.f_to_device(self.device)?.f_contiguous()?;
                self.group()?.broadcast(&mut host, 0)?;
                var.shallow_clone().f_copy_(&host)?;
            }
            Ok(())
        })
    }

    /// Averages the defined gradients of `params` and `loss` over the ranks, in one all-reduce of
    /// a flat fp32 buffer (Gloo's list all-reduce wants equal sizes; one buffer is also one
    /// round trip). Returns the mean loss.
    pub(crate) fn average_gradients(&self, params: &[Tensor], loss: f64) -> Result<f64> {
        // The backend's device: host memory for Gloo, this rank's GPU for NCCL.
        let device = self.device;
        tch::no_grad(|| -> Result<f64> {
            let grads = crate::clip::grads(params);
            let mut pieces = grads
                .iter()
                .map(|g| {
                    g.f_to_device(device)?
                        .f_to_kind(Kind::Float)?
                        .f_reshape([-1])
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            pieces.push(Tensor::from_slice(&[loss as f32]).f_to_device(device)?);
            let mut flat = Tensor::f_cat(&pieces, 0)?;
            drop(pieces);
            self.group()?.all_reduce_mean(&mut flat)?;
            let mut offset = 0i64;
            for g in &grads {
                let n = g.numel() as i64;
                let part = flat.f_narrow(0, offset, n)?.f_view_as(g)?;
                g.shallow_clone().f_copy_(&part)?;
                offset += n;
            }
            Ok(flat.f_double_value(&[offset])?)
        })
    }

    /// [`crate::evaluate`] over the ranks: each evaluates a contiguous share of `data`, the
    /// outputs are gathered in rank order and scored as one, so every rank gets the metrics of the
    /// whole set.
    pub(crate) fn evaluate(
        &self,
        model: &TaskModel,
        data: &Dataset,
        collator: &Collator,
        batch_size: usize,
        device: Device,
    ) -> Result<EvalResult> {
        let (n, rank, world) = (data.len(), self.rank(), self.world_size());
        let share = n * rank / world..n * (rank + 1) / world;
        let mine = collect(model, data, share, collator, batch_size, device)?;
        let mut all = EvalOutputs::default();
        for (r, values) in self
            .group()?
            .all_gather_f64(&mine.to_f64s())?
            .iter()
            .enumerate()
        {
            let theirs = EvalOutputs::from_f64s(values).ok_or_else(|| {
                TrainError::argument("eval", format!("rank {r} sent cut evaluation outputs"))
            })?;
            all.extend(theirs);
        }
        Ok(finish(data, all))
    }

    /// Shares one rank's outcome of a step only some ranks take (rank 0's writing): each rank
    /// returns its own error, and the others fail naming the rank, instead of waiting for it in
    /// their next collective until the timeout.
    pub(crate) fn all_ok(&self, outcome: Result<()>) -> Result<()> {
        let flags = self
            .group()?
            .all_gather_f64(&[if outcome.is_ok() { 1.0 } else { 0.0 }])?;
        outcome?;
        match flags.iter().position(|f| f.first() != Some(&1.0)) {
            Some(rank) => Err(TrainError::RankFailed { rank }),
            None => Ok(()),
        }
    }

    /// Fails the same way on every rank when the ranks disagree on `what` (a value that must be
    /// equal, such as the dataset size), instead of desynchronising their collectives.
    pub(crate) fn check_same(&self, what: &'static str, value: f64) -> Result<()> {
        let all = self.group()?.all_gather_f64(&[value])?;
        if all.iter().any(|v| v[0] != value) {
            let seen: Vec<String> = all.iter().map(|v| v[0].to_string()).collect();
            return Err(TrainError::argument(
                what,
                format!(
                    "differs between ranks ({}): every rank must get the same arguments and data",
                    seen.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

/// `torch.utils.data.DistributedSampler`'s shard of an epoch's `order` (drop_last false): the
/// order padded with its own head to a multiple of `world_size`, then every `world_size`-th
/// index from `rank`. All ranks get the same number of examples, and with a per-rank batch `b`
/// the ranks' `k`-th batches together are the `k`-th batch of `b * world_size` of one process.
pub(crate) fn shard(order: &[usize], rank: usize, world_size: usize) -> Vec<usize> {
    if world_size <= 1 {
        return order.to_vec();
    }
    let total = order.len().div_ceil(world_size) * world_size;
    order
        .iter()
        .cycle()
        .take(total)
        .skip(rank)
        .step_by(world_size)
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::shard;

    #[test]
    fn shards_stride_and_pad_like_distributed_sampler() {
        let order = [5, 3, 0, 4, 1, 2, 6];
        assert_eq!(shard(&order, 0, 1), order);
        assert_eq!(shard(&order, 0, 2), [5, 0, 1, 6]);
        assert_eq!(shard(&order, 1, 2), [3, 4, 2, 5]);
        assert_eq!(shard(&order, 2, 3), [0, 2, 3]);
        // Two ranks' first batches of 2 are one process's first batch of 4.
        let mut union = [&shard(&order, 0, 2)[..2], &shard(&order, 1, 2)[..2]].concat();
        union.sort();
        let mut single = order[..4].to_vec();
        single.sort();
        assert_eq!(union, single);
    }
}
