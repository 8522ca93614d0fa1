//! Running several processes of one job (the ranks of a distributed test or bench) on this
//! machine.

use std::net::TcpListener;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 free right now (for a job's MASTER_PORT).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// Waits for every child and collects its output; past `limit` kills those still running and
/// fails. Pipes are drained on threads: a rank blocked on a full pipe would stall its peers'
/// collectives.
pub fn wait_all(children: Vec<Child>, limit: Duration) -> Result<Vec<Output>, String> {
    let deadline = Instant::now() + limit;
    let handles: Vec<_> = children
        .into_iter()
        .map(|child| {
            let id = child.id();
            (id, std::thread::spawn(move || child.wait_with_output()))
        })
        .collect();
    while handles.iter().any(|(_, h)| !h.is_finished()) {
        if Instant::now() > deadline {
            for (id, h) in &handles {
                if !h.is_finished() {
                    // Only our own children, by pid.
                    let _ = Command::new("kill").arg(id.to_string()).status();
                }
            }
            return Err(format!("processes still running after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    handles
        .into_iter()
        .map(|(_, h)| {
            h.join()
                .map_err(|_| "output thread panicked".to_string())?
                .map_err(|e| e.to_string())
        })
        .collect()
}
