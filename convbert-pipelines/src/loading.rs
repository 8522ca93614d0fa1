//! What every pipeline does at load time: find the checkpoint (a directory or an HF model id in
//! the local cache), load its tokenizer, and turn a head's load report into a user warning when
//! the head weights were newly initialised (e.g. the encoder-only YituTech checkpoints).

use std::path::{Path, PathBuf};

use convbert_heads::HeadLoadReport;
use convbert_model::checkpoint;

use crate::error::Result;
use crate::tokenizer::TextTokenizer;

/// The checkpoint directory of `source` and its tokenizer.
pub(crate) fn locate_with_tokenizer(source: &Path) -> Result<(PathBuf, TextTokenizer)> {
    let dir = checkpoint::locate(source)?;
    let tokenizer = TextTokenizer::from_dir(&dir)?;
    Ok((dir, tokenizer))
}

/// A warning when `report` says head weights were not in the checkpoint.
pub(crate) fn head_warnings(report: Option<&HeadLoadReport>, task: &str) -> Vec<String> {
    match report {
        Some(r) if !r.is_complete() => vec![format!(
            "warning: {task}: the checkpoint at {} has no trained {} head ({}); these weights are \
             newly initialised at random, so the {task} results are meaningless. Use a checkpoint \
             fine-tuned for {task}.",
            r.source.display(),
            r.class,
            r.newly_initialized.join(", ")
        )],
        _ => Vec::new(),
    }
}

/// Checks a sequence length against the model's position table.
pub(crate) fn check_len(len: usize, max: i64) -> Result<(), String> {
    if len as i64 > max {
        Err(format!(
            "sequence of {len} tokens exceeds max_position_embeddings = {max}"
        ))
    } else {
        Ok(())
    }
}
