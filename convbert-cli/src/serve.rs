//! `convbert serve`: the inference server of `convbert-serve`, with Text Embeddings Inference's
//! flag names and defaults.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use convbert_pipelines::Pooling;
use convbert_serve::{ServeConfig, Task};

use crate::common::{default_model, parse_device, CliError, CliResult, Dtype};

/// `--pooling` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PoolingArg {
    Cls,
    Mean,
}

/// `--task` values (the HF Inference API's names).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TaskArg {
    FeatureExtraction,
    FillMask,
    TextClassification,
    TokenClassification,
    QuestionAnswering,
}

/// Arguments of `convbert serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Checkpoint directory, or HF model id (from the HF cache, downloaded from the Hub when missing) [default: the shipped tiny pretrained checkpoint]
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The served task [default: from config.json "architectures"; feature-extraction for an encoder]
    #[arg(long, value_enum)]
    pub task: Option<TaskArg>,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0: any free port; the address is printed on stderr)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Weight and compute dtype
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Dtype,
    /// Pooling of /embed and /v1/embeddings
    #[arg(long, value_enum, default_value = "mean")]
    pub pooling: PoolingArg,
    /// Requests in flight beyond which new ones get 429
    #[arg(long, default_value_t = 512)]
    pub max_concurrent_requests: usize,
    /// Padded tokens (longest sequence x sequences) per model batch
    #[arg(long, default_value_t = 16384)]
    pub max_batch_tokens: usize,
    /// Sequences per model batch [default: only --max-batch-tokens limits]
    #[arg(long)]
    pub max_batch_requests: Option<usize>,
    /// Inputs per request
    #[arg(long, default_value_t = 32)]
    pub max_client_batch_size: usize,
    /// Request body bytes
    #[arg(long, default_value_t = 2_000_000)]
    pub payload_limit: usize,
    /// Truncate inputs longer than the model takes instead of refusing them
    #[arg(long)]
    pub auto_truncate: bool,
    /// Require `Authorization: Bearer KEY` on every inference route
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Intra-op CPU threads of libtorch
    #[arg(long)]
    pub threads: Option<usize>,
    /// With --device cuda, run every batch eagerly instead of replaying CUDA graphs of small
    /// batches (a build with the cuda-graphs feature)
    #[arg(long)]
    pub no_cuda_graphs: bool,
}

pub fn run(args: &ServeArgs) -> CliResult {
    // Request traces on stderr when RUST_LOG asks for them (e.g. RUST_LOG=tower_http=debug).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let model = args.model.clone().unwrap_or_else(default_model);
    let mut config = ServeConfig::new(model);
    config.task = args.task.map(|t| match t {
        TaskArg::FeatureExtraction => Task::FeatureExtraction,
        TaskArg::FillMask => Task::FillMask,
        TaskArg::TextClassification => Task::TextClassification,
        TaskArg::TokenClassification => Task::TokenClassification,
        TaskArg::QuestionAnswering => Task::QuestionAnswering,
    });
    config.host = args.host;
    config.port = args.port;
    args.dtype.check_device(&args.device)?;
    config.device = parse_device(&args.device)?;
    config.kind = args.dtype.kind();
    config.quantization = args.dtype.quantization();
    config.cuda_graphs = !args.no_cuda_graphs;
    config.pooling = match args.pooling {
        PoolingArg::Cls => Pooling::Cls,
        PoolingArg::Mean => Pooling::Mean,
    };
    config.max_concurrent_requests = args.max_concurrent_requests;
    config.max_batch_tokens = args.max_batch_tokens;
    config.max_batch_requests = args.max_batch_requests;
    config.max_client_batch_size = args.max_client_batch_size;
    config.payload_limit = args.payload_limit;
    config.auto_truncate = args.auto_truncate;
    config.api_key = args.api_key.clone();
    config.threads = args.threads;
    config.check().map_err(CliError::Usage)?;
    convbert_serve::serve(config).map_err(CliError::failed)
}
