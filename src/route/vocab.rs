//! The classifier's vocabulary: a `tokenizers` `WordLevel` model over the analyzer's tokens, with
//! a whitespace-split pre-tokenizer and `[UNK]` = id 0, saved as a standard `tokenizer.json` that
//! other tools (Python `tokenizers`, transformers) load as is.
//!
//! Owns: building the vocabulary from token counts (deterministic order: count, then text).
//! Must never: see raw text — only what the one analyzer produced, joined by spaces.

use std::collections::HashMap;

use tokenizers::Tokenizer;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;

/// The unknown-word token (id 0).
pub const UNK: &str = "[UNK]";

/// Builds the vocabulary from analyzed documents (each a list of `(token, subword, span)`),
/// keeping tokens seen at least `min_count` times.
pub fn build<I, T>(docs: I, min_count: usize) -> Result<Tokenizer, String>
where
    I: IntoIterator<Item = Vec<(String, bool, T)>>,
{
    let mut counts: HashMap<String, usize> = HashMap::new();
    for doc in docs {
        for (tok, _, _) in doc {
            if tok.chars().any(char::is_whitespace) {
                continue;
            }
            *counts.entry(tok).or_default() += 1;
        }
    }
    let mut words: Vec<(String, usize)> = counts
        .into_iter()
        .filter(|(_, c)| *c >= min_count.max(1))
        .collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let vocab = std::iter::once((UNK.to_string(), 0u32))
        .chain(
            words
                .into_iter()
                .enumerate()
                .map(|(i, (w, _))| (w, i as u32 + 1)),
        )
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab)
        .unk_token(UNK.to_string())
        .build()
        .map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(WhitespaceSplit));
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_round_trips_through_tokenizer_json() {
        let docs = vec![
            vec![
                ("发票".to_string(), false, ()),
                ("invoic".to_string(), false, ()),
            ],
            vec![("发票".to_string(), false, ())],
        ];
        let tok = build(docs, 1).unwrap();
        assert_eq!(tok.token_to_id(UNK), Some(0));
        assert_eq!(tok.token_to_id("发票"), Some(1)); // most frequent first
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path, false).unwrap();
        let loaded = Tokenizer::from_file(&path).unwrap();
        let enc = loaded.encode("发票 nope invoic", false).unwrap();
        assert_eq!(enc.get_ids(), &[1, 0, 2]);
    }
}
