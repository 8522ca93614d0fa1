//! Greedy longest-match-first WordPiece (`WordpieceTokenizer.tokenize` in tokenization_bert.py),
//! on two byte tries: one for word-initial pieces, one for `##` continuations (prefix removed).
//! Each step walks the trie once from the current position and keeps the last token seen, which
//! is the longest vocabulary match; no string is built while matching.

use crate::vocab::Vocab;

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Trie {
    root: Box<[u32; 256]>,
    /// Per node: token id (or NONE), first edge, edge count.
    nodes: Vec<(u32, u32, u32)>,
    labels: Vec<u8>,
    targets: Vec<u32>,
}

impl Trie {
    fn build<'a>(words: impl Iterator<Item = (&'a [u8], u32)>) -> Self {
        // Building is start-up time of every `convbert tokenize`, so no vector per node: edges
        // are sibling lists in flat arrays, and a node with many children (the root, first
        // bytes, `##`) gets a dense 256-entry table while building. Then every node's edges are
        // laid out sorted and contiguous.
        const DENSE_FROM: u32 = 8;
        let mut first: Vec<u32> = vec![NONE];
        let mut count: Vec<u32> = vec![0];
        let mut dense_of: Vec<u32> = vec![0];
        let mut dense: Vec<[u32; 256]> = vec![[NONE; 256]];
        let mut ids = vec![NONE];
        let mut edges: Vec<(u8, u32, u32)> = Vec::new(); // (label, target, next sibling)
        for (word, id) in words {
            let mut node = 0usize;
            for &b in word {
                let found = if dense_of[node] != NONE {
                    dense[dense_of[node] as usize][b as usize]
                } else {
                    let mut e = first[node];
                    while e != NONE && edges[e as usize].0 != b {
                        e = edges[e as usize].2;
                    }
                    if e == NONE {
                        NONE
                    } else {
                        edges[e as usize].1
                    }
                };
                node = if found != NONE {
                    found as usize
                } else {
                    let next = first.len() as u32;
                    first.push(NONE);
                    count.push(0);
                    dense_of.push(NONE);
                    ids.push(NONE);
                    edges.push((b, next, first[node]));
                    first[node] = (edges.len() - 1) as u32;
                    count[node] += 1;
                    if dense_of[node] != NONE {
                        dense[dense_of[node] as usize][b as usize] = next;
                    } else if count[node] >= DENSE_FROM {
                        let mut table = [NONE; 256];
                        let mut e = first[node];
                        while e != NONE {
                            let (label, target, sibling) = edges[e as usize];
                            table[label as usize] = target;
                            e = sibling;
                        }
                        dense_of[node] = dense.len() as u32;
                        dense.push(table);
                    }
                    next as usize
                };
            }
            ids[node] = id;
        }
        let mut root = Box::new([NONE; 256]);
        root.copy_from_slice(&dense[0]);
        let (mut nodes, mut labels, mut targets) = (
            Vec::with_capacity(ids.len()),
            Vec::with_capacity(edges.len()),
            Vec::with_capacity(edges.len()),
        );
        let mut out: Vec<(u8, u32)> = Vec::new();
        for node in 0..ids.len() {
            out.clear();
            let mut e = first[node];
            while e != NONE {
                let (b, t, next) = edges[e as usize];
                out.push((b, t));
                e = next;
            }
            out.sort_unstable();
            nodes.push((ids[node], labels.len() as u32, out.len() as u32));
            labels.extend(out.iter().map(|e| e.0));
            targets.extend(out.iter().map(|e| e.1));
        }
        Self {
            root,
            nodes,
            labels,
            targets,
        }
    }

    #[inline]
    fn child(&self, node: u32, b: u8) -> u32 {
        let (_, first, n) = self.nodes[node as usize];
        let labels = &self.labels[first as usize..(first + n) as usize];
        let found = if n <= 8 {
            labels.iter().position(|&l| l == b)
        } else {
            labels.binary_search(&b).ok()
        };
        found.map_or(NONE, |i| self.targets[first as usize + i])
    }

    /// Longest token that is a prefix of `bytes`: (length, id).
    #[inline]
    fn longest(&self, bytes: &[u8]) -> Option<(usize, u32)> {
        let mut best = None;
        let &first = bytes.first()?;
        let mut node = self.root[first as usize];
        let mut i = 1;
        while node != NONE {
            let id = self.nodes[node as usize].0;
            if id != NONE {
                best = Some((i, id));
            }
            match bytes.get(i) {
                Some(&b) => node = self.child(node, b),
                None => break,
            }
            i += 1;
        }
        best
    }
}

/// WordPiece model: the tries, `[UNK]` id and the per-word character limit.
#[derive(Debug, Clone)]
pub(crate) struct WordPiece {
    start: Trie,
    cont: Trie,
    unk_id: u32,
    max_chars: usize,
}

impl WordPiece {
    pub(crate) fn new(vocab: &Vocab, unk_id: u32, max_chars: usize) -> Self {
        let start = Trie::build(vocab.iter().map(|(t, id)| (t.as_bytes(), id)));
        let cont = Trie::build(
            vocab
                .iter()
                .filter_map(|(t, id)| t.strip_prefix("##").map(|s| (s.as_bytes(), id))),
        );
        Self {
            start,
            cont,
            unk_id,
            max_chars,
        }
    }

    /// Appends the pieces of `word` (`n_chars` characters) to `ids`, and to `spans` their byte
    /// ranges in `word` when asked. A word with an unmatchable position becomes one `[UNK]`.
    #[inline]
    pub(crate) fn tokenize(
        &self,
        word: &str,
        n_chars: usize,
        ids: &mut Vec<u32>,
        spans: Option<&mut Vec<(usize, usize)>>,
    ) {
        let bytes = word.as_bytes();
        let mark = ids.len();
        if n_chars > self.max_chars {
            ids.push(self.unk_id);
            if let Some(spans) = spans {
                spans.push((0, bytes.len()));
            }
            return;
        }
        let mut start = 0;
        let mut local_spans = spans;
        let span_mark = local_spans.as_ref().map_or(0, |s| s.len());
        while start < bytes.len() {
            let trie = if start == 0 { &self.start } else { &self.cont };
            match trie.longest(&bytes[start..]) {
                Some((len, id)) => {
                    ids.push(id);
                    if let Some(s) = local_spans.as_deref_mut() {
                        s.push((start, start + len));
                    }
                    start += len;
                }
                None => {
                    ids.truncate(mark);
                    ids.push(self.unk_id);
                    if let Some(s) = local_spans.as_deref_mut() {
                        s.truncate(span_mark);
                        s.push((0, bytes.len()));
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_longest_match() -> crate::Result<()> {
        let vocab = Vocab::from_bytes("[UNK]\nun\n##aff\n##able\nu\n##a\n".as_bytes())?;
        let wp = WordPiece::new(&vocab, 0, 100);
        let mut ids = Vec::new();
        let mut spans = Vec::new();
        wp.tokenize("unaffable", 9, &mut ids, Some(&mut spans));
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(spans, [(0, 2), (2, 5), (5, 9)]);
        ids.clear();
        wp.tokenize("unaffablex", 10, &mut ids, None);
        assert_eq!(ids, [0]);
        Ok(())
    }
}
