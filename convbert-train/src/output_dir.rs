//! The output directory of a run: a new run refuses a directory that holds files (an earlier
//! run's checkpoints and log would mix with its own), unless it resumes or overwrites, the
//! `overwrite_output_dir` check of HF's example scripts (transformers v4.57.6,
//! examples/pytorch/text-classification/run_glue.py). Overwriting clears the earlier run's
//! outputs first. Temporaries of a killed run (`.tmp-*` being written, `.deleting-*` being
//! removed) are removed before a run starts.

use std::io::Write;
use std::path::Path;

use crate::checkpoint::checkpoints;
use crate::error::{Result, TrainError};
use crate::trainer::TrainingArgs;

/// Files a run writes next to its checkpoints (the final model, the log and the curve).
const RUN_FILES: [&str; 4] = [
    "config.json",
    "model.safetensors",
    "train_log.jsonl",
    "loss_curve.svg",
];

/// Prefixes of the temporaries of checkpoint writing and removal.
const TEMPORARY: [&str; 2] = [".tmp-", ".deleting-"];

fn is_non_empty(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(TrainError::io(dir, e)),
    }
}

/// Refuses a new run into a non-empty `output_dir` ([`TrainError::OutputDirNotEmpty`]) unless
/// it resumes or overwrites. Reads only; [`crate::train`] calls it before anything is written.
pub fn check_output_dir(args: &TrainingArgs) -> Result<()> {
    let dir = &args.output_dir;
    if args.resume_from.is_none() && !args.overwrite_output_dir && is_non_empty(dir)? {
        return Err(TrainError::OutputDirNotEmpty(dir.clone()));
    }
    Ok(())
}

/// Creates the output directory; with `overwrite_output_dir`, removes the earlier run's
/// checkpoints, final model, log and curve (other files stay); always removes stale temporaries.
pub(crate) fn prepare_output_dir(args: &TrainingArgs) -> Result<()> {
    check_output_dir(args)?;
    let dir = &args.output_dir;
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    if args.overwrite_output_dir {
        for checkpoint in checkpoints(dir)? {
            discard_dir(&checkpoint)?;
        }
        for file in RUN_FILES.map(|f| dir.join(f)) {
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(TrainError::io(&file, e))
                }
                _ => {}
            }
        }
    }
    remove_temporaries(dir)
}

/// Removes the `.tmp-*` and `.deleting-*` directories that a killed run left in `dir`.
pub(crate) fn remove_temporaries(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))? {
        let path = entry.map_err(|e| TrainError::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if TEMPORARY.iter().any(|p| name.starts_with(p)) {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| TrainError::io(&path, e))?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` whole or not at all: into a temporary file beside it (a `.tmp-`
/// name, removed at the next start if a kill leaves it), synced, then renamed over it.
pub(crate) fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".tmp-{}", name.unwrap_or_default()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TrainError::io(path, e)
    })
}

/// Removes the directory `path` by first renaming it to `.deleting-<name>`: a process killed
/// mid-removal leaves a temporary that the next run removes, never a half-deleted `path`.
pub(crate) fn discard_dir(path: &Path) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let parent = path.parent().unwrap_or(Path::new("."));
    let doomed = parent.join(format!(".deleting-{}", name.unwrap_or_default()));
    if doomed.exists() {
        std::fs::remove_dir_all(&doomed).map_err(|e| TrainError::io(&doomed, e))?;
    }
    std::fs::rename(path, &doomed).map_err(|e| TrainError::io(path, e))?;
    std::fs::remove_dir_all(&doomed).map_err(|e| TrainError::io(&doomed, e))
}
