use std::str::FromStr;

use crate::DistError;

/// Where this process sits in a distributed job, as the launcher's environment says.
///
/// torchrun and Kubeflow's PyTorchJob set `MASTER_ADDR`, `MASTER_PORT`, `RANK`, `WORLD_SIZE`
/// (and `LOCAL_RANK`); under `srun` the rank, size and local rank come from `SLURM_PROCID`,
/// `SLURM_NTASKS` and `SLURM_LOCALID` when the torch variables are absent (`MASTER_ADDR` and
/// `MASTER_PORT` must still be exported by the batch script).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    pub master_addr: String,
    pub master_port: u16,
    pub rank: usize,
    pub world_size: usize,
    /// Rank on this node (picks `cuda:N`); 0 when neither `LOCAL_RANK` nor `SLURM_LOCALID` is set.
    pub local_rank: usize,
    /// Under torchrun the elastic agent already serves the TCPStore at `MASTER_ADDR:MASTER_PORT`
    /// (`TORCHELASTIC_USE_AGENT_STORE=True`): every rank joins it as a client, under this key
    /// prefix, as torch.distributed does. `None`: rank 0 serves the store.
    pub agent_store_prefix: Option<String>,
}

impl DistEnv {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, DistError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `get` (the process environment in [`DistEnv::from_env`]).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, DistError> {
        let master_addr = required(&get, "MASTER_ADDR")?;
        if master_addr.trim().is_empty() {
            return Err(bad("MASTER_ADDR", &master_addr, "empty"));
        }
        let master_port: u16 = parse(&get, "MASTER_PORT", None)?;
        if master_port == 0 {
            return Err(bad("MASTER_PORT", "0", "port 0 cannot be connected to"));
        }
        let world_size: usize = parse(&get, "WORLD_SIZE", Some("SLURM_NTASKS"))?;
        if world_size == 0 {
            return Err(bad("WORLD_SIZE", "0", "a group needs at least one process"));
        }
        let rank: usize = parse(&get, "RANK", Some("SLURM_PROCID"))?;
        if rank >= world_size {
            return Err(bad(
                "RANK",
                &rank.to_string(),
                &format!("not below WORLD_SIZE={world_size}"),
            ));
        }
        let local_rank = match get("LOCAL_RANK").or_else(|| get("SLURM_LOCALID")) {
            Some(_) => parse(&get, "LOCAL_RANK", Some("SLURM_LOCALID"))?,
            None => 0,
        };
        let agent_store_prefix = match get("TORCHELASTIC_USE_AGENT_STORE").as_deref() {
            Some("True") => {
                let attempt: u32 = match get("TORCHELASTIC_RESTART_COUNT") {
                    Some(_) => parse(&get, "TORCHELASTIC_RESTART_COUNT", None)?,
                    None => 0,
                };
                Some(format!("/worker/attempt_{attempt}"))
            }
            _ => None,
        };
        Ok(Self {
            master_addr,
            master_port,
            rank,
            world_size,
            local_rank,
            agent_store_prefix,
        })
    }

    /// Whether there is more than one process, i.e. anything to synchronise.
    pub fn is_distributed(&self) -> bool {
        self.world_size > 1
    }
}

fn required(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, DistError> {
    get(name).ok_or(DistError::MissingEnv { name })
}

/// Parses `name`, or `fallback` when `name` is unset; the error names the variable read.
fn parse<T: FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    fallback: Option<&'static str>,
) -> Result<T, DistError>
where
    T::Err: std::fmt::Display,
{
    let (used, value) = match (get(name), fallback) {
        (Some(value), _) => (name, value),
        (None, Some(other)) => (other, get(other).ok_or(DistError::MissingEnv { name })?),
        (None, None) => return Err(DistError::MissingEnv { name }),
    };
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| bad(used, &value, &e.to_string()))
}

fn bad(name: &'static str, value: &str, reason: &str) -> DistError {
    DistError::BadEnv {
        name,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<DistEnv, DistError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DistEnv::from_lookup(|name| map.get(name).cloned())
    }

    const TORCHRUN: &[(&str, &str)] = &[
        ("MASTER_ADDR", "10.0.0.1"),
        ("MASTER_PORT", "29500"),
        ("RANK", "3"),
        ("WORLD_SIZE", "4"),
        ("LOCAL_RANK", "1"),
    ];

    #[test]
    fn torchrun_variables() {
        let e = env(TORCHRUN).unwrap();
        assert_eq!(
            e,
            DistEnv {
                master_addr: "10.0.0.1".into(),
                master_port: 29500,
                rank: 3,
                world_size: 4,
                local_rank: 1,
                agent_store_prefix: None,
            }
        );
        assert!(e.is_distributed());
    }

    #[test]
    fn torchelastic_agent_store_is_joined_under_its_attempt_prefix() {
        let mut vars = TORCHRUN.to_vec();
        vars.extend([
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
        ]);
        assert_eq!(
            env(&vars).unwrap().agent_store_prefix.as_deref(),
            Some("/worker/attempt_2")
        );
        let mut off = TORCHRUN.to_vec();
        off.push(("TORCHELASTIC_USE_AGENT_STORE", "False"));
        assert_eq!(env(&off).unwrap().agent_store_prefix, None);
    }

    #[test]
    fn slurm_variables_fill_in_when_torch_ones_are_absent() {
        let e = env(&[
            ("MASTER_ADDR", "node01"),
            ("MASTER_PORT", "12345"),
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
        ])
        .unwrap();
        assert_eq!((e.rank, e.world_size, e.local_rank), (5, 8, 1));
        // The torch variables win over Slurm's.
        let e = env(&[
            ("MASTER_ADDR", "node01"),
            ("MASTER_PORT", "12345"),
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
        ])
        .unwrap();
        assert_eq!((e.rank, e.world_size, e.local_rank), (0, 2, 0));
    }

    #[test]
    fn missing_variables_are_named() {
        let err = env(&[("MASTER_PORT", "1"), ("RANK", "0"), ("WORLD_SIZE", "1")]).unwrap_err();
        assert!(
            matches!(
                err,
                DistError::MissingEnv {
                    name: "MASTER_ADDR"
                }
            ),
            "{err}"
        );
        let err = env(&[
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "1"),
            ("WORLD_SIZE", "1"),
        ])
        .unwrap_err();
        assert!(
            matches!(err, DistError::MissingEnv { name: "RANK" }),
            "{err}"
        );
        assert!(err.to_string().contains("RANK"));
    }

    #[test]
    fn bad_values_are_named_with_the_variable_read() {
        let mut vars = TORCHRUN.to_vec();
        vars[1] = ("MASTER_PORT", "99999");
        let err = env(&vars).unwrap_err();
        assert!(
            matches!(
                err,
                DistError::BadEnv {
                    name: "MASTER_PORT",
                    ..
                }
            ),
            "{err}"
        );
        let mut vars = TORCHRUN.to_vec();
        vars[2] = ("RANK", "4");
        assert!(matches!(
            env(&vars).unwrap_err(),
            DistError::BadEnv { name: "RANK", .. }
        ));
        let err = env(&[
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "1"),
            ("SLURM_PROCID", "x"),
            ("SLURM_NTASKS", "2"),
        ])
        .unwrap_err();
        assert!(
            matches!(
                err,
                DistError::BadEnv {
                    name: "SLURM_PROCID",
                    ..
                }
            ),
            "{err}"
        );
        let mut vars = TORCHRUN.to_vec();
        vars[3] = ("WORLD_SIZE", "0");
        assert!(matches!(
            env(&vars).unwrap_err(),
            DistError::BadEnv {
                name: "WORLD_SIZE",
                ..
            }
        ));
    }
}
