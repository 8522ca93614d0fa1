//! `--shard I/N`: one of N machines (or processes) takes every N-th input line, from the I-th
//! (0-based line index modulo N, as PyTorch's `DistributedSampler` deals out indices), so a
//! corpus too big for one box is split without copying it; `convbert merge` rebuilds the output
//! of one unsharded run from the N shard outputs, byte for byte.
//!
//! A sharded run writes JSON Lines whatever the command's row format, each row carrying its
//! input line number, and ends with a footer that names the shard and counts the input lines, so
//! the merge can prove that every line is there once:
//!
//! ```text
//! {"line":1,"result":ROW}            a JSON row (the model commands, tokenize --format json)
//! {"line":3,"text":"101 7592 102"}   a text row (tokenize --format ids|tokens) as a JSON string
//! {"shard":0,"shards":2,"lines":4}   last: shard I of N, input lines read (all shards')
//! ```
//!
//! `embed` to .safetensors keeps its `line_numbers` tensor and says the same in the file's
//! metadata (`shard`, `shards`, `lines`).

use std::fmt::Display;
use std::io::Write;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::report::{CliError, CliResult};

/// The lines of one shard: those whose 0-based index is `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Whether 1-based input line `line` belongs to this shard.
    pub fn takes(&self, line: usize) -> bool {
        line.saturating_sub(1) % self.count == self.index
    }
}

impl Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What `--shard` says: a shard, or `auto` (its index from the job scheduler's environment, its
/// count given or from there too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSpec {
    Fixed(Shard),
    Auto(Option<usize>),
}

/// `I/N`, `auto` or `auto/N`; a bad one is a clap usage error (exit 2).
fn parse_spec(s: &str) -> Result<ShardSpec, String> {
    let count = |n: &str| match n.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "N must be a whole number of shards, at least 1, not {n:?}"
        )),
    };
    if s == "auto" {
        return Ok(ShardSpec::Auto(None));
    }
    let Some((i, n)) = s.split_once('/') else {
        return Err("expected I/N (shard I of N, I from 0 to N-1), auto or auto/N".into());
    };
    if i == "auto" {
        return Ok(ShardSpec::Auto(Some(count(n)?)));
    }
    let count = count(n)?;
    let index = i.parse::<usize>().map_err(|_| {
        format!(
            "I must be a whole number from 0 to {}, not {i:?}",
            count - 1
        )
    })?;
    if index >= count {
        return Err(format!(
            "shard {index} of {count}: I goes from 0 to {}",
            count - 1
        ));
    }
    Ok(ShardSpec::Fixed(Shard { index, count }))
}

/// `--shard` of the line-oriented subcommands.
#[derive(Debug, Clone, Default, Args)]
pub struct ShardArgs {
    /// Take only input lines I+1, I+1+N, I+1+2N, ... (shard I of N, I from 0) and write rows that
    /// keep their line numbers, for `convbert merge`. `auto`: I from JOB_COMPLETION_INDEX
    /// (Kubernetes Indexed Job; N from auto/N or JOB_COMPLETIONS) or SLURM_ARRAY_TASK_ID minus
    /// SLURM_ARRAY_TASK_MIN (Slurm job array; N from auto/N or SLURM_ARRAY_TASK_COUNT)
    #[arg(long, value_name = "I/N|auto", value_parser = parse_spec)]
    pub shard: Option<ShardSpec>,
}

impl ShardArgs {
    /// The shard of this process, `None` without `--shard`; `auto` read from the environment.
    pub fn shard(&self) -> CliResult<Option<Shard>> {
        match self.shard {
            None => Ok(None),
            Some(ShardSpec::Fixed(s)) => Ok(Some(s)),
            Some(ShardSpec::Auto(count)) => auto(count, &|name| std::env::var(name).ok()).map(Some),
        }
    }
}

/// `--shard auto`: the shard the job scheduler gave this process, from `env`. Kubernetes first,
/// then Slurm; a usage error when neither says, or says something impossible.
pub fn auto(count: Option<usize>, env: &dyn Fn(&str) -> Option<String>) -> CliResult<Shard> {
    let number = |name: &str| -> CliResult<Option<usize>> {
        match env(name) {
            None => Ok(None),
            Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                CliError::Usage(format!("--shard auto: {name}={v:?} is not a whole number"))
            }),
        }
    };
    let (index, count, from) = if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let count = match count {
            Some(n) => n,
            // Kubernetes exports the index only: the manifest sets the count.
            None => number("JOB_COMPLETIONS")?.ok_or_else(|| {
                CliError::Usage(
                    "--shard auto: JOB_COMPLETION_INDEX is set but not the number of shards: \
                     give --shard auto/N (N = the Job's completions) or set JOB_COMPLETIONS"
                        .into(),
                )
            })?,
        };
        (index, count, format!("JOB_COMPLETION_INDEX={index}"))
    } else if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
        let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        // --array=1-8 or 0-14:2 still number the shards 0, 1, 2, ...
        let from = format!("SLURM_ARRAY_TASK_ID={id} (SLURM_ARRAY_TASK_MIN={min})");
        let offset = id
            .checked_sub(min)
            .filter(|o| o % step == 0)
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--shard auto: {from} with step {step} is not a task of the array"
                ))
            })?;
        let count = match count {
            Some(n) => n,
            None => number("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                CliError::Usage(
                    "--shard auto: SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT: \
                     give --shard auto/N"
                        .into(),
                )
            })?,
        };
        (offset / step, count, from)
    } else {
        return Err(CliError::Usage(
            "--shard auto: neither JOB_COMPLETION_INDEX (Kubernetes Indexed Job) nor \
             SLURM_ARRAY_TASK_ID (Slurm job array) is set; give --shard I/N"
                .into(),
        ));
    };
    if count == 0 || index >= count {
        return Err(CliError::Usage(format!(
            "--shard auto: {from} makes shard {index}, but there are {count} shards (0 to {})",
            count.saturating_sub(1)
        )));
    }
    Ok(Shard { index, count })
}

/// The last line of a sharded JSON Lines output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Footer {
    pub shard: usize,
    pub shards: usize,
    /// Input lines read, the other shards' included: the unsharded run's row count.
    pub lines: usize,
}

/// `{"line":N,"result":ROW}`: a JSON row (`row` one line of JSON, without its newline).
pub fn write_result(out: &mut impl Write, line: usize, row: impl Display) -> std::io::Result<()> {
    writeln!(out, "{{\"line\":{line},\"result\":{row}}}")
}

/// `{"line":N,"text":"ROW"}`: a row of plain text (without its newline) as a JSON string.
pub fn write_text(out: &mut impl Write, line: usize, row: &str) -> std::io::Result<()> {
    let text = serde_json::to_string(row).map_err(std::io::Error::other)?;
    writeln!(out, "{{\"line\":{line},\"text\":{text}}}")
}

/// A row formatted for the unsharded output (`row`, newline included), written for a shard.
pub fn write_row(out: &mut impl Write, line: usize, row: &[u8], json: bool) -> std::io::Result<()> {
    let row = row.strip_suffix(b"\n").unwrap_or(row);
    let row = std::str::from_utf8(row).map_err(std::io::Error::other)?;
    if json {
        write_result(out, line, row)
    } else {
        write_text(out, line, row)
    }
}

/// The footer: this shard, and how many input lines there were.
pub fn write_footer(out: &mut impl Write, shard: Shard, lines: usize) -> std::io::Result<()> {
    let footer = Footer {
        shard: shard.index,
        shards: shard.count,
        lines,
    };
    let json = serde_json::to_string(&footer).map_err(std::io::Error::other)?;
    writeln!(out, "{json}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn specs() {
        let fixed = |index, count| Ok(ShardSpec::Fixed(Shard { index, count }));
        assert_eq!(parse_spec("0/1"), fixed(0, 1));
        assert_eq!(parse_spec("3/4"), fixed(3, 4));
        assert_eq!(parse_spec("auto"), Ok(ShardSpec::Auto(None)));
        assert_eq!(parse_spec("auto/8"), Ok(ShardSpec::Auto(Some(8))));
        for bad in [
            "4/4", "1/0", "-1/2", "1", "a/2", "1/b", "", "auto/0", "1/2/3",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lines_are_dealt_round_robin() {
        let s = Shard { index: 1, count: 3 };
        let taken: Vec<usize> = (1..=9).filter(|&l| s.takes(l)).collect();
        assert_eq!(taken, [2, 5, 8]);
    }

    #[test]
    fn auto_from_the_schedulers() {
        let k8s = [("JOB_COMPLETION_INDEX", "2"), ("JOB_COMPLETIONS", "5")];
        assert_eq!(
            auto(None, &env(&k8s)).ok(),
            Some(Shard { index: 2, count: 5 })
        );
        assert_eq!(
            auto(Some(3), &env(&k8s[..1])).ok(),
            Some(Shard { index: 2, count: 3 })
        );
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ];
        assert_eq!(
            auto(None, &env(&slurm)).ok(),
            Some(Shard { index: 6, count: 8 })
        );
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(
            auto(None, &env(&stepped)).ok(),
            Some(Shard { index: 3, count: 4 })
        );
        for bad in [
            &[][..],
            &k8s[..1],
            &[("JOB_COMPLETION_INDEX", "5"), ("JOB_COMPLETIONS", "5")],
            &[("JOB_COMPLETION_INDEX", "x"), ("JOB_COMPLETIONS", "5")],
            &[("SLURM_ARRAY_TASK_ID", "3")],
            &[("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_ARRAY_TASK_MIN", "1")],
        ] {
            assert!(
                matches!(auto(None, &env(bad)), Err(CliError::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
