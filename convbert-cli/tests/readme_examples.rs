//! The README's shell examples, run as written: every `$ ` command of its ```console blocks and
//! every command of its ```sh blocks runs with the built `convbert` first on PATH, from a scratch
//! directory that sees the repository's `fixtures/` and `docs/`. A command must succeed, and the
//! output lines the README shows under it must match what it prints: `…` stands for any text,
//! and a number matches to the precision the README writes it (0.0449 matches 0.044866…) or
//! within 1e-6.
//! Servers started with `&` get free ports in place of the README's, and are waited for.
//! A block preceded by `<!-- not run: REASON -->` is skipped (it needs what tests never use).

use std::path::{Path, PathBuf};
use std::process::Command;

/// One command of a block and the output lines the README shows for it.
#[derive(Debug)]
struct Example {
    command: String,
    expected: Vec<String>,
}

/// A fenced shell block of the README.
#[derive(Debug)]
struct Block {
    line: usize,
    examples: Vec<Example>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `text` without a trailing `  # comment` (two spaces or more before the `#`).
fn strip_comment(text: &str) -> &str {
    match text.find("  #") {
        Some(i) => text[..i].trim_end(),
        None => text.trim_end(),
    }
}

fn parse_blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let lines: Vec<&str> = readme.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim();
        let console = fence == "```console";
        if !(console || fence == "```sh") {
            i += 1;
            continue;
        }
        let skipped = i > 0 && lines[i - 1].trim_start().starts_with("<!-- not run:");
        let start = i + 1;
        let mut end = start;
        while end < lines.len() && lines[end].trim() != "```" {
            end += 1;
        }
        if !skipped {
            let mut examples: Vec<Example> = Vec::new();
            let mut j = start;
            while j < end {
                let line = lines[j];
                let command_start = if console {
                    line.strip_prefix("$ ")
                } else {
                    Some(line)
                };
                match command_start {
                    Some(cmd) if !(!console && (cmd.trim().is_empty() || cmd.starts_with('#'))) => {
                        let mut command = cmd.to_string();
                        while command.trim_end().ends_with('\\') && j + 1 < end {
                            j += 1;
                            command = format!("{}\n{}", command.trim_end(), lines[j]);
                        }
                        examples.push(Example {
                            command,
                            expected: Vec::new(),
                        });
                    }
                    _ if console && !line.trim().is_empty() && !line.starts_with('#') => {
                        if let Some(last) = examples.last_mut() {
                            last.expected.push(strip_comment(line).to_string());
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            blocks.push(Block {
                line: i + 1,
                examples,
            });
        }
        i = end + 1;
    }
    blocks
}

/// A piece of output: a number (with the decimals it was written with) or one character.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(f64, usize),
    Char(char),
}

fn tokens(s: &str) -> Vec<Token> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let negative = chars[i] == '-' && i + 1 < chars.len() && chars[i + 1].is_ascii_digit();
        let prev_alnum = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if (chars[i].is_ascii_digit() || negative) && !prev_alnum {
            let begin = i;
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let mut decimals = 0;
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                    decimals += 1;
                }
            }
            if i + 1 < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut k = i + 1;
                if k < chars.len() && (chars[k] == '-' || chars[k] == '+') {
                    k += 1;
                }
                if k < chars.len() && chars[k].is_ascii_digit() {
                    while k < chars.len() && chars[k].is_ascii_digit() {
                        k += 1;
                    }
                    decimals = 20;
                    i = k;
                }
            }
            let text: String = chars[begin..i].iter().collect();
            match text.parse::<f64>() {
                Ok(v) => out.push(Token::Num(v, decimals)),
                Err(_) => out.extend(text.chars().map(Token::Char)),
            }
        } else {
            out.push(Token::Char(chars[i]));
            i += 1;
        }
    }
    out
}

/// `got` matches `want` (a token of the README): the same character, or a number equal to the
/// README's at the README's precision, or within 1e-6 (full-precision scores vary that much
/// between CPUs).
fn token_matches(want: &Token, got: &Token) -> bool {
    match (want, got) {
        (Token::Char(a), Token::Char(b)) => a == b,
        (Token::Num(w, decimals), Token::Num(g, _)) => {
            let half_ulp = 0.5 * 10f64.powi(-(*decimals.min(&15) as i32));
            (w - g).abs() <= half_ulp.max(1e-6) + 1e-12
        }
        _ => false,
    }
}

fn match_at(piece: &[Token], got: &[Token], at: usize) -> bool {
    at + piece.len() <= got.len()
        && piece
            .iter()
            .zip(&got[at..])
            .all(|(w, g)| token_matches(w, g))
}

/// `got` matches the README line `want`, where `…` stands for any text.
fn line_matches(want: &str, got: &str) -> bool {
    let pieces: Vec<Vec<Token>> = want.split('…').map(tokens).collect();
    let got = tokens(got);
    let last = pieces.len() - 1;
    let mut pos = 0;
    for (k, piece) in pieces.iter().enumerate() {
        if piece.is_empty() {
            continue;
        }
        let found = if k == 0 {
            match_at(piece, &got, 0).then_some(0)
        } else if k == last {
            let at = got.len().checked_sub(piece.len());
            at.filter(|&a| a >= pos && match_at(piece, &got, a))
        } else {
            (pos..got.len()).find(|&a| match_at(piece, &got, a))
        };
        match found {
            Some(a) => pos = a + piece.len(),
            None => return false,
        }
    }
    pieces.len() > 1 || pos == got.len()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// The block as one bash script: each command's output between markers; a server started with
/// `&` gets a free port and is waited for; every background job is stopped at the end.
fn script(block: &Block) -> String {
    let mut ports: Vec<(String, String)> = Vec::new();
    for e in &block.examples {
        if let Some(i) = e.command.find("--port ") {
            let port: String = e.command[i + 7..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if !port.is_empty() && !ports.iter().any(|(p, _)| *p == port) {
                ports.push((port, free_port().to_string()));
            }
        }
    }
    let mut s = String::from("exec 2>&1\n");
    for (k, e) in block.examples.iter().enumerate() {
        let mut command = e.command.clone();
        for (from, to) in &ports {
            command = command.replace(from.as_str(), to);
        }
        s.push_str(&format!("echo '@@@ {k}'\n{command}\n"));
        let background = strip_comment(&command).ends_with('&');
        if background {
            // Servers log to stderr; the README's lines under them are that log, not compared.
            let port = ports
                .iter()
                .find(|(_, to)| command.contains(&format!("--port {to}")))
                .map(|(_, to)| to.clone())
                .unwrap_or_default();
            s.push_str(&format!(
                "for i in $(seq 600); do curl -sf localhost:{port}/health >/dev/null && break; sleep 0.1; done\n"
            ));
        } else {
            // Output without a final newline (curl) must not swallow the marker.
            s.push_str("st=$?; echo; echo \"@@@ status $st\"\n");
        }
    }
    s.push_str("kill $(jobs -p) 2>/dev/null; wait\n");
    s
}

#[test]
fn every_shell_example_of_the_readme_runs_and_prints_what_it_shows() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let blocks = parse_blocks(&readme);
    assert!(blocks.len() >= 3, "{blocks:?}");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_convbert"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut failures = Vec::new();
    let mut ran = 0;
    for block in &blocks {
        let scratch = std::env::temp_dir().join(format!(
            "convbert-readme-{}-{}",
            std::process::id(),
            block.line
        ));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).expect("scratch");
        for shared in ["fixtures", "docs"] {
            std::os::unix::fs::symlink(
                repo().join(shared).canonicalize().expect(shared),
                scratch.join(shared),
            )
            .expect("symlink");
        }
        let out = Command::new("bash")
            .arg("-c")
            .arg(script(block))
            .current_dir(&scratch)
            .env("PATH", &path)
            .output()
            .expect("bash");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // Split the transcript at the markers: command k's output, then its status.
        let mut outputs: Vec<(Vec<String>, Option<i32>)> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("@@@ ") {
                if let Some(status) = rest.strip_prefix("status ") {
                    if let Some(last) = outputs.last_mut() {
                        last.1 = status.trim().parse().ok();
                    }
                } else {
                    outputs.push((Vec::new(), None));
                }
            } else if let Some(last) = outputs.last_mut() {
                last.0.push(line.to_string());
            }
        }
        for (k, e) in block.examples.iter().enumerate() {
            ran += 1;
            let where_ = format!(
                "README line {} `{}`",
                block.line,
                e.command.lines().next().unwrap_or("")
            );
            let Some((lines, status)) = outputs.get(k) else {
                failures.push(format!("{where_}: did not run"));
                continue;
            };
            let background = strip_comment(&e.command).ends_with('&');
            if background {
                continue;
            }
            if *status != Some(0) {
                failures.push(format!("{where_}: exit {status:?}:\n{}", lines.join("\n")));
                continue;
            }
            // Progress and log lines on stderr are not part of what the README shows.
            let shown: Vec<&String> = lines
                .iter()
                .filter(|l| !l.starts_with("warning:") && !l.trim().is_empty())
                .collect();
            let mut at = 0;
            for want in &e.expected {
                match shown[at..].iter().position(|got| line_matches(want, got)) {
                    Some(p) => at += p + 1,
                    None => failures.push(format!(
                        "{where_}: no output line matches\n  {want}\nit printed:\n  {}",
                        lines.join("\n  ")
                    )),
                }
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
    }
    println!("{ran} README commands run");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_matcher_reads_numbers_and_ellipses_as_the_readme_means_them() {
    assert!(line_matches(
        "[[-0.0852,0.1150,…],[…]]",
        "[[-0.08517,0.11497,0.3],[0.1,0.2]]"
    ));
    assert!(!line_matches(
        "[[-0.0852,0.1150,…],[…]]",
        "[[-0.0861,0.1150,0.3],[0.1]]"
    ));
    assert!(line_matches(
        r#"{"score":0.0449,"token":3007}"#,
        r#"{"score":0.04486676678061485,"token":3007}"#
    ));
    assert!(!line_matches(
        r#"{"score":0.0448}"#,
        r#"{"score":0.04486676678061485}"#
    ));
    assert!(!line_matches(r#"{"token":3007}"#, r#"{"token":3008}"#));
    assert!(line_matches("a …, b", "a x, y, b"));
    assert!(!line_matches("abc", "abcd"));
    assert!(line_matches(
        "[CLS] hello , world ! cafe 生 [UNK] [SEP]",
        "[CLS] hello , world ! cafe 生 [UNK] [SEP]"
    ));
}

#[test]
fn tokenize_writes_the_inputs_forward_reads() {
    let dir = std::env::temp_dir().join(format!("convbert-readme-forward-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let inputs = dir.join("in.safetensors");
    let bin = env!("CARGO_BIN_EXE_convbert");
    let o = Command::new(bin)
        .args(["tokenize", "--format", "safetensors", "-o"])
        .arg(&inputs)
        .args(["paris is the [MASK] of france.", "hello"])
        .output()
        .expect("tokenize");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&inputs).expect("written");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let ids = st.tensor("input_ids").expect("input_ids");
    assert_eq!(ids.shape(), [2, 9]);
    assert_eq!(ids.dtype(), safetensors::Dtype::I64);
    let ids: Vec<i64> = ids
        .data()
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    // [CLS] hello [SEP] then [PAD]s; the mask marks the real tokens.
    assert_eq!(&ids[9..], [101, 7592, 102, 0, 0, 0, 0, 0, 0]);
    let mask = st.tensor("attention_mask").expect("mask").data().to_vec();
    assert_eq!(
        mask.chunks(8).map(|c| c[0]).collect::<Vec<u8>>()[9..],
        [1, 1, 1, 0, 0, 0, 0, 0, 0]
    );
    // Without -o it is a usage error; a missing --inputs file is one plain line.
    let o = Command::new(bin)
        .args(["tokenize", "--format", "safetensors", "x"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    let o = Command::new(bin)
        .args(["forward", "--inputs"])
        .arg(dir.join("absent.safetensors"))
        .arg("--output")
        .arg(dir.join("out.safetensors"))
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("No such file or directory") && !err.contains("Os {"),
        "{err}"
    );
}
