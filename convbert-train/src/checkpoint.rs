//! Training checkpoints: `checkpoint-<step>/` holds the HF-loadable model (config.json +
//! model.safetensors), `optimizer.safetensors` (AdamW moments and steps) and `trainer_state.json`
//! (step, seed, log history), as HF Trainer's do. Each is written to a temporary directory and
//! renamed into place, so a crash never leaves a half-written checkpoint; older ones beyond
//! `save_total_limit` are renamed away, then removed, so a crash never leaves a half-removed one.
//! Floats are written in their shortest round-trip form and parsed exactly (serde_json's
//! `float_roundtrip`), so a resumed run logs the same values as an uninterrupted one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::data::{data_error, read_text};
use crate::error::{Result, TrainError};
use crate::model::TaskModel;
use crate::optimizer::AdamW;
use crate::output_dir::discard_dir;
use crate::precision::GradScaler;

/// One logged step: the JSONL log line and a `log_history` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Optimizer steps done.
    pub step: usize,
    /// Fractional epoch.
    pub epoch: f64,
    /// Mean training loss since the previous log entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Learning rate of the last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    /// Gradient norm of the last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Training throughput since the previous entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples_per_second: Option<f64>,
    /// Evaluation loss and metrics, prefixed `eval_`.
    #[serde(flatten)]
    pub eval: BTreeMap<String, f64>,
}

/// `trainer_state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub global_step: usize,
    /// Planned optimizer steps of the run.
    pub max_steps: usize,
    /// The run's seed (shuffling, masking and dropout derive from it and the step).
    pub seed: u64,
    /// Every log entry so far.
    pub log_history: Vec<LogEntry>,
    /// Training losses of the steps since the last log entry (their mean is the next entry's
    /// `loss`), so that a run resumed between two log entries logs what an uninterrupted one does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlogged_losses: Vec<f64>,
    /// The fp16 loss scaler's state, when training with fp16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_scaler: Option<GradScaler>,
    /// Processes of a data-parallel run (absent for one): a resumed run needs the same number,
    /// since each one's share of the data and batches depend on it.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub world_size: usize,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "trainer_state.json";

fn checkpoint_step(path: &Path) -> Option<usize> {
    path.file_name()?
        .to_str()?
        .strip_prefix("checkpoint-")?
        .parse()
        .ok()
}

/// Writes `output_dir/checkpoint-<step>` atomically and keeps `keep` checkpoints ([`prune`]).
pub(crate) fn save_checkpoint(
    output_dir: &Path,
    model: &TaskModel,
    optimizer: &AdamW,
    state: &TrainerState,
    keep: Option<usize>,
) -> Result<PathBuf> {
    let name = format!("checkpoint-{}", state.global_step);
    let dir = output_dir.join(&name);
    let tmp = output_dir.join(format!(".tmp-{name}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    model.save_pretrained(&tmp)?;
    Tensor::write_safetensors(&optimizer.state_tensors()?, tmp.join(OPTIMIZER_FILE))?;
    let json = serde_json::to_string_pretty(state)?;
    std::fs::write(tmp.join(STATE_FILE), json)
        .map_err(|e| TrainError::io(tmp.join(STATE_FILE), e))?;
    if dir.exists() {
        discard_dir(&dir)?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| TrainError::io(&dir, e))?;
    if let Some(keep) = keep {
        prune(output_dir, &dir, state.global_step, keep)?;
    }
    Ok(dir)
}

/// Keeps `keep` checkpoints in `output_dir`: `current` (of `step`) and the newest before it.
/// When some must go, those past `step` go first: a run resumed from an earlier checkpoint left
/// them, on a path this run no longer follows, and keeping them over this run's own would leave
/// a stale one as the newest.
fn prune(output_dir: &Path, current: &Path, step: usize, keep: usize) -> Result<()> {
    let mut others: Vec<(bool, usize, PathBuf)> = checkpoints(output_dir)?
        .into_iter()
        .filter(|p| p != current)
        .map(|p| {
            let s = checkpoint_step(&p).unwrap_or(0);
            (s <= step, s, p)
        })
        .collect();
    others.sort();
    let excess = (others.len() + 1).saturating_sub(keep.max(1));
    for (_, _, p) in others.iter().take(excess) {
        discard_dir(p)?;
    }
    Ok(())
}

/// The `checkpoint-<step>` directories of `output_dir`, oldest first.
pub fn checkpoints(output_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<(usize, PathBuf)> = Vec::new();
    let entries = match std::fs::read_dir(output_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrainError::io(output_dir, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| TrainError::io(output_dir, e))?.path();
        if let Some(step) = checkpoint_step(&path).filter(|_| path.is_dir()) {
            out.push((step, path));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// Restores model weights and optimizer state from `dir`; returns its trainer state.
pub(crate) fn load_checkpoint(
    dir: &Path,
    model: &TaskModel,
    optimizer: &mut AdamW,
) -> Result<TrainerState> {
    let resume_error = |reason: String| TrainError::Resume {
        path: dir.into(),
        reason,
    };
    let state_path = dir.join(STATE_FILE);
    let text = read_text(&state_path)?;
    let state: TrainerState =
        serde_json::from_str(&text).map_err(|e| data_error(&state_path, e.line(), e))?;
    let read_tensors = |file: &str| -> Result<BTreeMap<String, Tensor>> {
        let path = dir.join(file);
        let tensors = Tensor::read_safetensors(&path).map_err(|e| TrainError::Resume {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(tensors.into_iter().collect())
    };
    let weights = read_tensors("model.safetensors")?;
    let vars = model.var_store().variables();
    tch::no_grad(|| -> Result<()> {
        for (name, var) in &vars {
            let w = weights
                .get(name)
                .ok_or_else(|| resume_error(format!("no weight {name}")))?;
            if w.size() != var.size() {
                return Err(resume_error(format!(
                    "{name}: shape {:?}, model {:?}",
                    w.size(),
                    var.size()
                )));
            }
            var.shallow_clone().f_copy_(w)?;
        }
        Ok(())
    })?;
    let opt = read_tensors(OPTIMIZER_FILE)?;
    optimizer
        .load_state(&opt)
        .map_err(|e| resume_error(e.to_string()))?;
    Ok(state)
}

/// Saves the final model into `output_dir` through a temporary directory, file by file renamed.
pub(crate) fn save_final(output_dir: &Path, model: &TaskModel) -> Result<()> {
    let tmp = output_dir.join(".tmp-final");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    model.save_pretrained(&tmp)?;
    for file in ["config.json", "model.safetensors"] {
        std::fs::rename(tmp.join(file), output_dir.join(file))
            .map_err(|e| TrainError::io(output_dir.join(file), e))?;
    }
    std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Empty `checkpoint-<step>` directories in a fresh directory, pruned for `current` and
    /// `keep`; what stays.
    fn pruned(steps: &[usize], current: usize, keep: usize) -> Vec<String> {
        let dir = std::env::temp_dir().join(format!(
            "convbert-prune-{}-{current}-{keep}-{}",
            std::process::id(),
            steps.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for s in steps {
            std::fs::create_dir_all(dir.join(format!("checkpoint-{s}"))).unwrap();
        }
        let at = dir.join(format!("checkpoint-{current}"));
        prune(&dir, &at, current, keep).unwrap();
        let kept = checkpoints(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        kept.iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_newest_are_kept() {
        assert_eq!(pruned(&[2, 4, 6], 6, 2), ["checkpoint-4", "checkpoint-6"]);
        assert_eq!(pruned(&[2, 4, 6], 6, 0), ["checkpoint-6"]);
        assert_eq!(pruned(&[2, 4], 4, 5), ["checkpoint-2", "checkpoint-4"]);
    }

    #[test]
    fn after_resuming_from_an_older_checkpoint_the_abandoned_newer_ones_go_first() {
        // Resumed from checkpoint-2, now at step 4: 6 and 8 belong to the abandoned run.
        assert_eq!(pruned(&[2, 4, 6, 8], 4, 1), ["checkpoint-4"]);
        assert_eq!(
            pruned(&[2, 4, 6, 8], 4, 2),
            ["checkpoint-2", "checkpoint-4"]
        );
        assert_eq!(
            pruned(&[2, 4, 6, 8], 4, 3),
            ["checkpoint-2", "checkpoint-4", "checkpoint-8"]
        );
    }
}
