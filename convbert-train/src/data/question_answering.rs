//! Extractive QA data from SQuAD v1.1 / v2.0 JSON. Each question is paired with windows of its
//! context: `max_length` tokens at most, consecutive windows overlapping by `doc_stride` tokens
//! (the `truncation="only_second", stride=doc_stride` features of HF's run_qa.py). A window that
//! does not hold the whole answer, and an unanswerable question, target `[CLS]` (position 0).

use std::path::Path;

use convbert_tokenizer::ConvBertTokenizer;
use serde::Deserialize;

use super::reader::{data_error, read_text};
use super::{DataOptions, Dataset, Encoded, Example, Target, Task};
use crate::error::{Result, TrainError};

/// Longest question in tokens (run_qa's default `max_query_length` is not exposed; 64 as in BERT).
const MAX_QUERY: usize = 64;

#[derive(Debug, Deserialize)]
struct Squad {
    data: Vec<Article>,
}

#[derive(Debug, Deserialize)]
struct Article {
    paragraphs: Vec<Paragraph>,
}

#[derive(Debug, Deserialize)]
struct Paragraph {
    context: String,
    qas: Vec<Question>,
}

#[derive(Debug, Deserialize)]
struct Question {
    id: String,
    question: String,
    #[serde(default)]
    answers: Vec<Answer>,
    #[serde(default)]
    is_impossible: bool,
}

#[derive(Debug, Deserialize)]
struct Answer {
    text: String,
    answer_start: usize,
}

/// What evaluation needs to turn a window's logits back into answer text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SquadFeature {
    /// The question id (several windows share it).
    pub id: String,
    /// The paragraph.
    pub context: String,
    /// Per token of the window: its character span in `context`, `None` outside the context.
    pub offsets: Vec<Option<(usize, usize)>>,
    /// Gold answer texts (empty for an unanswerable question).
    pub answers: Vec<String>,
}

/// Reads a SQuAD JSON file.
pub fn read_squad(
    path: &Path,
    tokenizer: &ConvBertTokenizer,
    options: &DataOptions,
) -> Result<Dataset> {
    let text = read_text(path)?;
    let squad: Squad = serde_json::from_str(&text).map_err(|e| data_error(path, e.line(), e))?;
    let cfg = tokenizer.config();
    let id = |t: &str| tokenizer.vocab().token_to_id(t).map(i64::from);
    let (cls, sep) = match (id(&cfg.cls_token), id(&cfg.sep_token)) {
        (Some(c), Some(s)) => (c, s),
        _ => {
            return Err(TrainError::argument(
                "tokenizer",
                "no [CLS] or [SEP] in the vocabulary",
            ))
        }
    };
    let (mut examples, mut features) = (Vec::new(), Vec::new());
    for paragraph in squad.data.iter().flat_map(|a| &a.paragraphs) {
        let (ctx_ids, ctx_offsets) = tokenizer.tokenize_with_offsets(&paragraph.context);
        for q in &paragraph.qas {
            let mut q_ids = tokenizer.tokenize_ids(&q.question)?;
            q_ids.truncate(MAX_QUERY);
            let avail = options.max_length.saturating_sub(q_ids.len() + 3);
            if avail == 0 {
                let reason = format!("question {:?} leaves no room for its context", q.id);
                return Err(data_error(path, 0, reason));
            }
            let answer = q
                .answers
                .first()
                .filter(|_| !q.is_impossible)
                .map(|a| (a.answer_start, a.answer_start + a.text.chars().count()));
            let mut start = 0;
            loop {
                let end = (start + avail).min(ctx_ids.len());
                let window = start..end;
                let mut ids = vec![cls];
                ids.extend(q_ids.iter().map(|&i| i64::from(i)));
                ids.push(sep);
                let ctx_at = ids.len();
                let mut offsets = vec![None; ctx_at];
                ids.extend(ctx_ids[window.clone()].iter().map(|&i| i64::from(i)));
                offsets.extend(ctx_offsets[window.clone()].iter().map(|&o| Some(o)));
                ids.push(sep);
                offsets.push(None);
                let n = ids.len();
                let target = span_target(answer, &offsets);
                let mut types = vec![0; ctx_at];
                types.resize(n, 1);
                let special = (0..n)
                    .map(|i| i == 0 || i == ctx_at - 1 || i == n - 1)
                    .collect();
                examples.push(Example {
                    inputs: vec![Encoded {
                        input_ids: ids,
                        token_type_ids: types,
                        special,
                        word_start: vec![true; n],
                    }],
                    target,
                });
                features.push(SquadFeature {
                    id: q.id.clone(),
                    context: paragraph.context.clone(),
                    offsets,
                    answers: q.answers.iter().map(|a| a.text.clone()).collect(),
                });
                if end >= ctx_ids.len() {
                    break;
                }
                start += avail.saturating_sub(options.doc_stride).max(1);
            }
        }
    }
    Ok(Dataset {
        task: Task::QuestionAnswering,
        examples,
        label_names: Vec::new(),
        squad: features,
    })
}

/// Token positions of the answer's characters `[s, e)` when the window holds all of it, else 0/0.
fn span_target(answer: Option<(usize, usize)>, offsets: &[Option<(usize, usize)>]) -> Target {
    let none = Target::Span { start: 0, end: 0 };
    let Some((s, e)) = answer else { return none };
    let ctx: Vec<(usize, (usize, usize))> = offsets
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.map(|o| (i, o)))
        .collect();
    let (Some(first), Some(last)) = (ctx.first(), ctx.last()) else {
        return none;
    };
    if first.1 .0 > s || last.1 .1 < e {
        return none;
    }
    let start = ctx
        .iter()
        .rev()
        .find(|(_, o)| o.0 <= s)
        .map_or(first.0, |c| c.0);
    let end = ctx.iter().find(|(_, o)| o.1 >= e).map_or(last.0, |c| c.0);
    Target::Span {
        start: start as i64,
        end: end as i64,
    }
}
