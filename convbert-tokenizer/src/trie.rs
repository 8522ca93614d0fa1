//! A byte trie answering "longest vocabulary token that prefixes these bytes" (the WordPiece
//! step). Kept free of the rest of the crate: the build script includes this file to build the
//! embedded vocabulary's tries at compile time, so `bert_base_uncased()` only decodes them.

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trie {
    root: Box<[u32; 256]>,
    /// Per node: token id (or NONE), first edge, edge count.
    nodes: Vec<(u32, u32, u32)>,
    labels: Vec<u8>,
    targets: Vec<u32>,
}

impl Trie {
    pub(crate) fn build<'a>(words: impl Iterator<Item = (&'a [u8], u32)>) -> Self {
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
    pub(crate) fn longest(&self, bytes: &[u8]) -> Option<(usize, u32)> {
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

    /// Serialises the trie (little-endian `u32`s, then the edge labels), appended to `out`.
    #[allow(dead_code)] // only build.rs serialises
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let words = |out: &mut Vec<u8>, values: &mut dyn Iterator<Item = u32>| {
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        };
        words(
            out,
            &mut [self.nodes.len() as u32, self.labels.len() as u32].into_iter(),
        );
        words(out, &mut self.root.iter().copied());
        words(out, &mut self.nodes.iter().flat_map(|&(a, b, c)| [a, b, c]));
        words(out, &mut self.targets.iter().copied());
        out.extend_from_slice(&self.labels);
    }

    /// Reads one trie written by [`Trie::encode`]; returns it and the bytes after it, or `None`
    /// when the bytes are too short.
    pub(crate) fn decode(bytes: &[u8]) -> Option<(Self, &[u8])> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = bytes.split_at_checked(n)?;
            *bytes = rest;
            Some(head)
        }
        fn words<'a>(bytes: &mut &'a [u8], n: usize) -> Option<impl Iterator<Item = u32> + 'a> {
            let raw = take(bytes, n.checked_mul(4)?)?;
            Some(
                raw.chunks_exact(4)
                    .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])),
            )
        }
        let mut rest = bytes;
        let mut counts = words(&mut rest, 2)?;
        let (n_nodes, n_edges) = (counts.next()? as usize, counts.next()? as usize);
        let mut root = Box::new([NONE; 256]);
        for (slot, v) in root.iter_mut().zip(words(&mut rest, 256)?) {
            *slot = v;
        }
        let mut flat = words(&mut rest, n_nodes.checked_mul(3)?)?;
        let mut nodes = Vec::with_capacity(n_nodes);
        while let (Some(a), Some(b), Some(c)) = (flat.next(), flat.next(), flat.next()) {
            nodes.push((a, b, c));
        }
        let targets = words(&mut rest, n_edges)?.collect();
        let labels = take(&mut rest, n_edges)?.to_vec();
        Some((
            Self {
                root,
                nodes,
                labels,
                targets,
            },
            rest,
        ))
    }
}
