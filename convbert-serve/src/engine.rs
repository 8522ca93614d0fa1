//! The loaded checkpoint: the pipeline of its task (which also gives every checkpoint's encoder
//! features), picked from config.json `architectures` unless the task is forced, then warmed up.

use std::path::Path;
use std::sync::Arc;

use convbert_model::checkpoint;
use convbert_pipelines::{
    BatchModel, FeatureExtractionPipeline, FillMaskPipeline, PipelineError, PipelineOptions,
    QuestionAnsweringPipeline, TextClassificationPipeline, TokenClassificationPipeline,
};

use crate::config::{ServeConfig, Task};
use axum::http::StatusCode;

use crate::error::{ApiError, ErrorType, ServeError};

/// The pipeline of the served task.
#[derive(Clone)]
pub(crate) enum Engine {
    Features(Arc<FeatureExtractionPipeline>),
    FillMask(Arc<FillMaskPipeline>),
    TextClassification(Arc<TextClassificationPipeline>),
    TokenClassification(Arc<TokenClassificationPipeline>),
    QuestionAnswering(Arc<QuestionAnsweringPipeline>),
}

/// The first `architectures` entry of the checkpoint's config.json.
fn architecture(dir: &Path) -> Result<Option<String>, ServeError> {
    let path = dir.join("config.json");
    let text = checkpoint::read_json_file(&path).map_err(PipelineError::from)?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ServeError::Config(format!("{}: {e}", path.display())))?;
    Ok(json["architectures"][0].as_str().map(str::to_owned))
}

impl Engine {
    /// Loads the checkpoint of `config` for its task and runs one input through it.
    pub(crate) fn load(config: &ServeConfig) -> Result<(Self, Vec<String>), ServeError> {
        let dir = checkpoint::locate(&config.model).map_err(PipelineError::from)?;
        let task = match config.task {
            Some(t) => t,
            None => Task::from_architecture(architecture(&dir)?.as_deref().unwrap_or("")),
        };
        let options = PipelineOptions {
            device: config.device,
            kind: config.kind,
            batch_size: 1,
            padding_invariant: true,
            quantization: config.quantization,
            cuda_graphs: config.cuda_graphs,
        };
        let (engine, warnings) = match task {
            Task::FeatureExtraction => {
                let p = FeatureExtractionPipeline::from_pretrained(&dir, options)?;
                (Engine::Features(Arc::new(p)), Vec::new())
            }
            Task::FillMask => {
                let p = FillMaskPipeline::from_pretrained(&dir, options)?;
                let w = p.warnings().to_vec();
                (Engine::FillMask(Arc::new(p)), w)
            }
            Task::TextClassification => {
                let p = TextClassificationPipeline::from_pretrained(&dir, options)?;
                let w = p.warnings().to_vec();
                (Engine::TextClassification(Arc::new(p)), w)
            }
            Task::TokenClassification => {
                let p = TokenClassificationPipeline::from_pretrained(&dir, options)?;
                let w = p.warnings().to_vec();
                (Engine::TokenClassification(Arc::new(p)), w)
            }
            Task::QuestionAnswering => {
                let p = QuestionAnsweringPipeline::from_pretrained(&dir, options)?;
                let w = p.warnings().to_vec();
                (Engine::QuestionAnswering(Arc::new(p)), w)
            }
        };
        engine.warm_up()?;
        Ok((engine, warnings))
    }

    /// The served task.
    pub(crate) fn task(&self) -> Task {
        match self {
            Engine::Features(_) => Task::FeatureExtraction,
            Engine::FillMask(_) => Task::FillMask,
            Engine::TextClassification(_) => Task::TextClassification,
            Engine::TokenClassification(_) => Task::TokenClassification,
            Engine::QuestionAnswering(_) => Task::QuestionAnswering,
        }
    }

    /// The pipeline as the batching loop drives it.
    pub(crate) fn model(&self) -> Arc<dyn BatchModel> {
        match self {
            Engine::Features(p) => p.clone(),
            Engine::FillMask(p) => p.clone(),
            Engine::TextClassification(p) => p.clone(),
            Engine::TokenClassification(p) => p.clone(),
            Engine::QuestionAnswering(p) => p.clone(),
        }
    }

    /// One short input through the head and the encoder, so the first request pays no
    /// one-time libtorch set-up.
    fn warm_up(&self) -> Result<(), ServeError> {
        let model = self.model();
        let prepared = model.prepare_text("warm up", None, None)?;
        let rows: Vec<_> = prepared.rows().iter().collect();
        model.forward_head(&rows)?;
        model.forward_features(&rows)?;
        Ok(())
    }
}

/// 400 for a route the served checkpoint has no head for.
fn wrong_task(engine: &Engine, route: &str, class: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorType::Validation,
        format!(
            "{route} needs a {class} checkpoint; this server runs {}",
            engine.task().name()
        ),
    )
}

impl Engine {
    pub(crate) fn fill_mask(&self, route: &str) -> Result<Arc<FillMaskPipeline>, ApiError> {
        match self {
            Engine::FillMask(p) => Ok(p.clone()),
            _ => Err(wrong_task(self, route, "ConvBertForMaskedLM")),
        }
    }

    pub(crate) fn classifier(
        &self,
        route: &str,
    ) -> Result<Arc<TextClassificationPipeline>, ApiError> {
        match self {
            Engine::TextClassification(p) => Ok(p.clone()),
            _ => Err(wrong_task(self, route, "ConvBertForSequenceClassification")),
        }
    }

    pub(crate) fn tagger(&self, route: &str) -> Result<Arc<TokenClassificationPipeline>, ApiError> {
        match self {
            Engine::TokenClassification(p) => Ok(p.clone()),
            _ => Err(wrong_task(self, route, "ConvBertForTokenClassification")),
        }
    }

    pub(crate) fn reader(&self, route: &str) -> Result<Arc<QuestionAnsweringPipeline>, ApiError> {
        match self {
            Engine::QuestionAnswering(p) => Ok(p.clone()),
            _ => Err(wrong_task(self, route, "ConvBertForQuestionAnswering")),
        }
    }
}
