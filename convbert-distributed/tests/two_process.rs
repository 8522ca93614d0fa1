//! Real process groups: this test binary re-executes itself as the workers (the `worker` test,
//! a no-op unless `CONVBERT_DIST_TEST_ROLE` is set), over 127.0.0.1 with a free port, directly
//! and under torchrun. Every wait is bounded: a hang fails the test instead of blocking CI.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use convbert_distributed::{DistEnv, DistError, ProcessGroup};
use tch::{Device, Kind, Tensor};

const ROLE: &str = "CONVBERT_DIST_TEST_ROLE";
/// The group timeout in the workers: short, so a dead peer is noticed quickly.
const GROUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the parent waits for its workers before killing them and failing.
const JOB_LIMIT: Duration = Duration::from_secs(120);

#[test]
fn worker() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let env = DistEnv::from_env().unwrap();
    let group = ProcessGroup::new(&env, GROUP_TIMEOUT).unwrap();
    match role.as_str() {
        "collectives" => collectives(&group),
        "early_exit" => early_exit(&group),
        "stall" => stall(&group),
        other => panic!("unknown role {other}"),
    }
}

fn collectives(group: &ProcessGroup) {
    assert_eq!(group.world_size(), 2);
    let rank = group.rank();
    let r = rank as f64;

    let mut t = Tensor::from_slice(&[r + 1.0, 2.0 * (r + 1.0)]);
    group.all_reduce_mean(&mut t).unwrap();
    assert_eq!(Vec::<f64>::try_from(&t).unwrap(), [1.5, 3.0]);
    let mut t = Tensor::full([2, 3], r * 4.0, (Kind::Float, Device::Cpu));
    group.all_reduce_mean(&mut t).unwrap();
    assert_eq!(Vec::<f32>::try_from(t.view(-1)).unwrap(), [2.0; 6]);

    for root in [0, 1] {
        let mut b = if rank == root {
            Tensor::from_slice(&[7.0f32 + root as f32, 8.0, 9.0])
        } else {
            Tensor::zeros([3], (Kind::Float, Device::Cpu))
        };
        group.broadcast(&mut b, root).unwrap();
        assert_eq!(
            Vec::<f32>::try_from(&b).unwrap(),
            [7.0 + root as f32, 8.0, 9.0]
        );
    }
    // Parameters require grad: the broadcast must still write them in place.
    let mut p = Tensor::full([2], r, (Kind::Double, Device::Cpu)).set_requires_grad(true);
    group.broadcast(&mut p, 1).unwrap();
    assert_eq!(Vec::<f64>::try_from(&p.detach()).unwrap(), [1.0, 1.0]);

    let mine: Vec<f64> = (0..=rank).map(|i| 10.0 * r + i as f64).collect();
    assert_eq!(
        group.all_gather_f64(&mine).unwrap(),
        [vec![0.0], vec![10.0, 11.0]]
    );
    assert_eq!(
        group.all_gather_f64(&[]).unwrap(),
        [Vec::<f64>::new(), Vec::new()]
    );

    group.barrier().unwrap();
    println!("collectives ok on rank {rank}");
}

fn early_exit(group: &ProcessGroup) {
    group.barrier().unwrap();
    if group.rank() == 1 {
        // Dies without leaving the group, as a crashed worker would.
        std::process::exit(3);
    }
    let start = Instant::now();
    let mut t = Tensor::ones([4], (Kind::Float, Device::Cpu));
    let err = group.all_reduce_mean(&mut t).unwrap_err();
    assert!(
        matches!(
            err,
            DistError::Collective {
                op: "all_reduce_mean",
                rank: 0,
                ..
            }
        ),
        "{err}"
    );
    println!("rank 0 failed after {:?}: {err}", start.elapsed());
}

fn stall(group: &ProcessGroup) {
    group.barrier().unwrap();
    if group.rank() == 1 {
        // Alive but out of step (stuck in data loading, say): rank 0 must time out.
        std::thread::sleep(GROUP_TIMEOUT + Duration::from_secs(5));
        std::process::exit(3);
    }
    let start = Instant::now();
    let err = group.barrier().unwrap_err();
    let waited = start.elapsed();
    assert!(
        matches!(err, DistError::Collective { op: "barrier", .. }),
        "{err}"
    );
    assert!(
        waited >= GROUP_TIMEOUT / 2,
        "failed after {waited:?}, before the timeout: {err}"
    );
    println!("rank 0 timed out after {waited:?}: {err}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("convbert-dist-{}-{name}.log", std::process::id()))
}

/// The command that re-runs this binary as a worker.
fn worker_command(program: &Path, role: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env(ROLE, role);
    cmd
}

fn worker_args() -> [&'static str; 4] {
    ["--exact", "worker", "--nocapture", "--test-threads=1"]
}

fn spawn_logged(mut cmd: Command, name: &str) -> (Child, PathBuf) {
    let log = log_path(name);
    let file = fs::File::create(&log).unwrap();
    cmd.stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null());
    (cmd.spawn().unwrap(), log)
}

/// Waits for all children, killing them and failing past `limit`; returns status and log text.
fn wait_all(children: Vec<(Child, PathBuf)>, limit: Duration) -> Vec<(ExitStatus, String)> {
    let start = Instant::now();
    let mut children: Vec<(Child, PathBuf, Option<ExitStatus>)> = children
        .into_iter()
        .map(|(c, log)| (c, log, None))
        .collect();
    while children.iter().any(|(_, _, status)| status.is_none()) {
        for (child, _, status) in &mut children {
            if status.is_none() {
                *status = child.try_wait().unwrap();
            }
        }
        if start.elapsed() > limit {
            for (child, log, _) in &mut children {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!(
                    "--- {}:\n{}",
                    log.display(),
                    fs::read_to_string(&*log).unwrap_or_default()
                );
            }
            panic!("workers still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    children
        .into_iter()
        .map(|(_, log, status)| {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let _ = fs::remove_file(&log);
            (status.unwrap(), text)
        })
        .collect()
}

fn run_pair(role: &str) -> Vec<(ExitStatus, String)> {
    let exe = std::env::current_exe().unwrap();
    let port = free_port().to_string();
    let children = (0..2)
        .map(|rank| {
            let mut cmd = worker_command(&exe, role);
            cmd.args(worker_args())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("LOCAL_RANK", rank.to_string())
                .env_remove("TORCHELASTIC_USE_AGENT_STORE");
            spawn_logged(cmd, &format!("{role}-{rank}"))
        })
        .collect();
    wait_all(children, JOB_LIMIT)
}

#[test]
fn two_processes_all_reduce_broadcast_gather_and_barrier() {
    for (rank, (status, log)) in run_pair("collectives").into_iter().enumerate() {
        assert!(status.success(), "rank {rank} failed ({status}):\n{log}");
        assert!(
            log.contains(&format!("collectives ok on rank {rank}")),
            "rank {rank}:\n{log}"
        );
    }
}

#[test]
fn a_rank_that_exits_makes_the_next_collective_fail_within_the_timeout() {
    let start = Instant::now();
    let results = run_pair("early_exit");
    let elapsed = start.elapsed();
    let (status0, log0) = &results[0];
    let (status1, log1) = &results[1];
    assert_eq!(status1.code(), Some(3), "rank 1:\n{log1}");
    assert!(status0.success(), "rank 0 ({status0}):\n{log0}");
    assert!(log0.contains("rank 0 failed after"), "rank 0:\n{log0}");
    // Start-up, the group timeout and some slack; a hang would be cut at JOB_LIMIT.
    assert!(elapsed < GROUP_TIMEOUT * 4, "took {elapsed:?}:\n{log0}");
}

#[test]
fn a_rank_that_stalls_makes_the_collective_time_out() {
    let start = Instant::now();
    let results = run_pair("stall");
    let (status0, log0) = &results[0];
    assert!(status0.success(), "rank 0 ({status0}):\n{log0}");
    assert!(log0.contains("rank 0 timed out after"), "rank 0:\n{log0}");
    assert!(
        start.elapsed() < GROUP_TIMEOUT * 4,
        "took {:?}:\n{log0}",
        start.elapsed()
    );
}

/// Rank 0 of a job of `world_size` on a free local port.
fn rank0_env(world_size: usize) -> DistEnv {
    DistEnv {
        master_addr: "127.0.0.1".into(),
        master_port: free_port(),
        rank: 0,
        world_size,
        local_rank: 0,
        agent_store_prefix: None,
    }
}

#[test]
fn rendezvous_without_peers_fails_with_init_error_after_the_timeout() {
    let env = rank0_env(2);
    let start = Instant::now();
    let err = ProcessGroup::new(&env, Duration::from_secs(2))
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            DistError::Init {
                rank: 0,
                world_size: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_group_of_one_needs_no_peers() {
    let env = rank0_env(1);
    let group = ProcessGroup::new(&env, GROUP_TIMEOUT).unwrap();
    let mut t = Tensor::from_slice(&[1.0f32, 2.0]);
    group.all_reduce_mean(&mut t).unwrap();
    assert_eq!(Vec::<f32>::try_from(&t).unwrap(), [1.0, 2.0]);
    assert_eq!(group.all_gather_f64(&[0.5]).unwrap(), [vec![0.5]]);
    let err = group.broadcast(&mut t, 1).unwrap_err();
    assert!(
        matches!(
            err,
            DistError::InvalidArgument {
                op: "broadcast",
                ..
            }
        ),
        "{err}"
    );
    group.barrier().unwrap();
}

/// torchrun from the torch venv (next to CONVBERT_PYTHON), when there is one.
fn torchrun() -> Option<PathBuf> {
    let python = PathBuf::from(std::env::var_os("CONVBERT_PYTHON")?);
    let torchrun = python.parent()?.join("torchrun");
    torchrun.exists().then_some(torchrun)
}

#[test]
fn workers_launched_by_torchrun_join_its_store() {
    let Some(torchrun) = torchrun() else {
        eprintln!("skipped: no torchrun next to CONVBERT_PYTHON");
        return;
    };
    let exe = std::env::current_exe().unwrap();
    for (name, rdzv) in [
        ("standalone", vec!["--standalone".to_string()]),
        (
            "static",
            vec![
                "--master_addr=127.0.0.1".into(),
                format!("--master_port={}", free_port()),
            ],
        ),
    ] {
        let mut cmd = worker_command(&torchrun, "collectives");
        cmd.args(&rdzv)
            .args(["--nnodes=1", "--nproc_per_node=2", "--no-python"])
            .arg(&exe)
            .args(worker_args());
        for var in [
            "MASTER_ADDR",
            "MASTER_PORT",
            "RANK",
            "WORLD_SIZE",
            "LOCAL_RANK",
        ] {
            cmd.env_remove(var);
        }
        let (status, log) = wait_all(
            vec![spawn_logged(cmd, &format!("torchrun-{name}"))],
            JOB_LIMIT,
        )
        .pop()
        .unwrap();
        assert!(
            status.success(),
            "torchrun {name} failed ({status}):\n{log}"
        );
        for rank in 0..2 {
            assert!(
                log.contains(&format!("collectives ok on rank {rank}")),
                "torchrun {name}:\n{log}"
            );
        }
    }
}

/// On a GPU machine NCCL runs; without one, asking for it is an error, not a crash.
#[cfg(feature = "nccl")]
#[test]
fn nccl_group_of_one_runs_on_the_gpu() {
    use convbert_distributed::Backend;
    let env = rank0_env(1);
    let group = ProcessGroup::with_backend(&env, Backend::Nccl, GROUP_TIMEOUT);
    if !tch::Cuda::is_available() {
        let err = group.unwrap_err();
        assert!(matches!(err, DistError::Init { .. }), "{err}");
        eprintln!("no CUDA device, NCCL refused: {err}");
        return;
    }
    let group = group.unwrap();
    assert_eq!(group.device(), Device::Cuda(0));
    let mut t = Tensor::from_slice(&[1.0f32, 2.0]).to_device(group.device());
    group.all_reduce_mean(&mut t).unwrap();
    group.broadcast(&mut t, 0).unwrap();
    assert_eq!(
        Vec::<f32>::try_from(t.to_device(Device::Cpu)).unwrap(),
        [1.0, 2.0]
    );
    assert_eq!(group.all_gather_f64(&[0.5, 1.5]).unwrap(), [vec![0.5, 1.5]]);
    group.barrier().unwrap();
}
