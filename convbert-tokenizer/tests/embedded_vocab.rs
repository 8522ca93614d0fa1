//! The crate's embedded vocabulary (`data/`, packaged) is the same file as the fixtures' copy that
//! the Python generators read; workspace-only (excluded from the package).

#[test]
fn embedded_vocab_equals_the_fixtures_copy() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert!(
        read("data/bert-base-uncased-vocab.txt") == read("../fixtures/data/bert-base-uncased-vocab.txt"),
        "convbert-tokenizer/data/bert-base-uncased-vocab.txt differs from fixtures/data/: copy one onto the other"
    );
}
