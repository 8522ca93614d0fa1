//! Starting and stopping: bind first (so `/health` answers 503 while the model loads), load and
//! warm the model on its own thread, serve until SIGTERM or SIGINT, then stop accepting, finish
//! every request in flight and stop the model thread.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::router;
use crate::batcher::{BatchLimits, Batcher};
use crate::config::ServeConfig;
use crate::engine::Engine;
use crate::error::ServeError;
use crate::state::{AppState, Ready};

/// Runs the server until SIGTERM or SIGINT (then `Ok`), or until the model fails to load.
/// Progress goes to stderr, first `listening on http://ADDR`.
pub fn serve(config: ServeConfig) -> Result<(), ServeError> {
    config.check().map_err(ServeError::Config)?;
    if let Some(n) = config.threads {
        tch::set_num_threads(n as i32);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("convbert-http")
        .build()
        .map_err(|source| ServeError::Io {
            context: "cannot start the async runtime".into(),
            source,
        })?;
    runtime.block_on(run(config))
}

async fn run(config: ServeConfig) -> Result<(), ServeError> {
    let addr = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Io {
            context: format!("cannot listen on {addr}"),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Io {
        context: "cannot read the bound address".into(),
        source,
    })?;
    eprintln!("listening on http://{local}");
    crate::metrics::handle();
    let state = Arc::new(AppState::new(config.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);

    let loader_state = state.clone();
    let loader_stop = stop_tx.clone();
    let loader = tokio::task::spawn_blocking(move || {
        let result = load(&loader_state.config).map(|ready| {
            // Only this thread sets it, once.
            let _ = loader_state.ready.set(ready);
        });
        if result.is_err() {
            let _ = loader_stop.send(true);
        }
        result
    });

    let app = router(state.clone());
    let shutdown = shutdown_signal(stop_rx);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServeError::Io {
            context: "serving failed".into(),
            source,
        })?;
    eprintln!("stopped accepting; every request in flight answered");
    let loaded = loader
        .await
        .map_err(|e| ServeError::Config(format!("model loader failed: {e}")))?;
    drop(state);
    loaded
}

fn load(config: &ServeConfig) -> Result<Ready, ServeError> {
    let started = std::time::Instant::now();
    let (engine, warnings) = Engine::load(config)?;
    for w in warnings {
        eprintln!("{w}");
    }
    let batcher = Batcher::start(
        engine.model(),
        BatchLimits {
            max_batch_tokens: config.max_batch_tokens,
            max_batch_requests: config.max_batch_requests,
        },
    )
    .map_err(|source| ServeError::Io {
        context: "cannot start the model thread".into(),
        source,
    })?;
    eprintln!(
        "ready: {} ({}) loaded and warmed up in {:.2} s",
        config.model_id,
        engine.task().name(),
        started.elapsed().as_secs_f64()
    );
    Ok(Ready { engine, batcher })
}

/// Resolves on SIGTERM, SIGINT or a failed model load.
async fn shutdown_signal(mut stop: watch::Receiver<bool>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let failed = async {
        let _ = stop.wait_for(|&v| v).await;
    };
    tokio::select! {
        _ = ctrl_c => eprintln!("SIGINT: shutting down"),
        _ = term => eprintln!("SIGTERM: shutting down"),
        _ = failed => {},
    }
}
