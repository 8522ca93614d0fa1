//! What `convbert serve` is told: the checkpoint, where to listen, the device and dtype, and the
//! batching and admission limits. Names and defaults follow Text Embeddings Inference's router.

use std::net::IpAddr;
use std::path::PathBuf;

use convbert_pipelines::{Pooling, Quantization};
use tch::{Device, Kind};

/// The task a checkpoint serves, as the HF Inference API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Encoder features (any checkpoint).
    FeatureExtraction,
    /// `ConvBertForMaskedLM`.
    FillMask,
    /// `ConvBertForSequenceClassification`.
    TextClassification,
    /// `ConvBertForTokenClassification`.
    TokenClassification,
    /// `ConvBertForQuestionAnswering`.
    QuestionAnswering,
}

impl Task {
    /// The Inference API's name of the task.
    pub fn name(self) -> &'static str {
        match self {
            Task::FeatureExtraction => "feature-extraction",
            Task::FillMask => "fill-mask",
            Task::TextClassification => "text-classification",
            Task::TokenClassification => "token-classification",
            Task::QuestionAnswering => "question-answering",
        }
    }

    /// The task of an Inference API task name.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Task::FeatureExtraction,
            Task::FillMask,
            Task::TextClassification,
            Task::TokenClassification,
            Task::QuestionAnswering,
        ]
        .into_iter()
        .find(|t| t.name() == name)
    }

    /// The task of a config.json `architectures` entry; anything else serves features.
    pub fn from_architecture(architecture: &str) -> Self {
        match architecture {
            "ConvBertForMaskedLM" => Task::FillMask,
            "ConvBertForSequenceClassification" => Task::TextClassification,
            "ConvBertForTokenClassification" => Task::TokenClassification,
            "ConvBertForQuestionAnswering" => Task::QuestionAnswering,
            _ => Task::FeatureExtraction,
        }
    }
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Checkpoint directory or HF model id in the local cache.
    pub model: PathBuf,
    /// The name `/info` and `/v1/embeddings` report (default: `model` as given).
    pub model_id: String,
    /// The task; `None` reads config.json `architectures`.
    pub task: Option<Task>,
    /// Address to listen on.
    pub host: IpAddr,
    /// Port to listen on; 0 picks a free one (the address is printed on stderr).
    pub port: u16,
    /// Where the model runs.
    pub device: Device,
    /// Weight and compute dtype.
    pub kind: Kind,
    /// int8 dynamic quantization after loading (CPU, `kind` f32 only).
    pub quantization: Quantization,
    /// On a CUDA device, replay small batches from CUDA graphs (a build with the `cuda-graphs`
    /// feature); `true` by default.
    pub cuda_graphs: bool,
    /// Pooling of `/embed` and `/v1/embeddings` (`Cls` or `Mean`).
    pub pooling: Pooling,
    /// Requests in flight beyond which new ones get 429.
    pub max_concurrent_requests: usize,
    /// Padded tokens (longest row × rows) per model batch.
    pub max_batch_tokens: usize,
    /// Rows per model batch (`None`: only the token budget limits).
    pub max_batch_requests: Option<usize>,
    /// Inputs per request.
    pub max_client_batch_size: usize,
    /// Request body bytes.
    pub payload_limit: usize,
    /// Truncate long inputs instead of refusing them, whatever the request says.
    pub auto_truncate: bool,
    /// Bearer token every inference route requires.
    pub api_key: Option<String>,
    /// libtorch intra-op threads (`None`: libtorch's default).
    pub threads: Option<usize>,
}

impl ServeConfig {
    /// TEI's defaults for `model`, on 127.0.0.1:8080, CPU, f32, mean pooling.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        let model = model.into();
        Self {
            model_id: model.display().to_string(),
            model,
            task: None,
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            device: Device::Cpu,
            kind: Kind::Float,
            quantization: Quantization::None,
            cuda_graphs: true,
            pooling: Pooling::Mean,
            max_concurrent_requests: 512,
            max_batch_tokens: 16384,
            max_batch_requests: None,
            max_client_batch_size: 32,
            payload_limit: 2_000_000,
            auto_truncate: false,
            api_key: None,
            threads: None,
        }
    }

    /// Refuses limits of 0 and pooling `None`.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("max-concurrent-requests", self.max_concurrent_requests),
            ("max-batch-tokens", self.max_batch_tokens),
            ("max-batch-requests", self.max_batch_requests.unwrap_or(1)),
            ("max-client-batch-size", self.max_client_batch_size),
            ("payload-limit", self.payload_limit),
            ("threads", self.threads.unwrap_or(1)),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("--{name} must be at least 1"));
        }
        if self.pooling == Pooling::None {
            return Err("--pooling must be cls or mean".into());
        }
        Ok(())
    }
}
