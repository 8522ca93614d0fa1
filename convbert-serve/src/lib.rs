//! `convbert serve`: a ConvBERT inference server. It speaks Text Embeddings Inference's API
//! (`/embed`, `/embed_all`, `/predict`, `/tokenize`, `/decode`, `/info`, `/health`, `/metrics`,
//! OpenAI's `/v1/embeddings`), the Hugging Face Inference API (`POST /`, what
//! `huggingface_hub.InferenceClient` calls), and the tasks TEI lacks for ConvBERT (`/fill_mask`,
//! `/ner`, `/qa`), with the results of `convbert-pipelines`.
//!
//! Requests are tokenized on worker threads and their rows packed into batches by a token budget
//! on the one thread that runs the model (see `batcher.rs`). The model runs in the
//! padding-invariant mode, so a result never depends on what it was batched with. The TEI
//! reference: <https://github.com/huggingface/text-embeddings-inference/tree/main/router/src>.
//!
//! ```no_run
//! let mut config = convbert_serve::ServeConfig::new("fixtures/default-model");
//! config.port = 0; // any free port; the address is printed on stderr
//! convbert_serve::serve(config)?; // until SIGTERM / SIGINT
//! # Ok::<(), convbert_serve::ServeError>(())
//! ```

mod app;
mod batcher;
mod config;
mod engine;
mod error;
mod json;
mod metrics;
mod routes;
mod server;
mod state;

pub use config::{ServeConfig, Task};
pub use error::{ErrorResponse, ErrorType, ServeError};
pub use server::serve;
