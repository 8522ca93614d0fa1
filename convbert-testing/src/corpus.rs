//! The multilingual benchmark text of the tokenizer benches: the sentences of
//! `convbert-tokenizer/benches/corpus_seed.txt` (20+ languages and scripts) recombined word by
//! word, deterministically.

const SEED: &str = include_str!("../../convbert-tokenizer/benches/corpus_seed.txt");

/// xorshift64: the same numbers on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Lines of about `target` bytes in all (newlines counted): two seed sentences mixed word by
/// word, or — one line in four, when `prose` has lines — a line of `prose`.
pub fn multilingual_lines(target: usize, prose: &[&str]) -> Vec<String> {
    let seed_lines: Vec<Vec<&str>> = SEED.lines().map(|l| l.split(' ').collect()).collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::new();
    let mut size = 0;
    while size < target {
        let line = if !prose.is_empty() && rng.below(4) == 0 {
            prose[rng.below(prose.len())].to_string()
        } else {
            let a = &seed_lines[rng.below(seed_lines.len())];
            let b = &seed_lines[rng.below(seed_lines.len())];
            let mut words: Vec<&str> = a.iter().copied().filter(|_| rng.below(3) != 0).collect();
            let at = rng.below(words.len() + 1);
            words.splice(at..at, b.iter().copied().take(1 + rng.below(b.len())));
            words.join(" ")
        };
        size += line.len() + 1;
        out.push(line);
    }
    out
}
