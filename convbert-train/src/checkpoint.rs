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

/// Writes `output_dir/checkpoint-<step>` atomically and keeps the newest `keep` checkpoints.
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
        let mut all = checkpoints(output_dir)?;
        while all.len() > keep.max(1) {
            discard_dir(&all.remove(0))?;
        }
    }
    Ok(dir)
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
