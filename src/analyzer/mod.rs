//! The one analyzer: the text pipeline shared by indexing, queries, snippets and the classifier.
//!
//! Owns: normalization ([`normalize`]), splitting into script runs, Chinese segmentation (jieba,
//! search granularity, with the product-term dictionary in `models/userdict.txt`), English words
//! (identifiers kept whole and split, Snowball stemming, stop words), and token offsets into the
//! ORIGINAL text. It also registers itself with tantivy ([`KefuTokenizer`]) and fingerprints
//! itself so an index built by another analyzer is refused.
//!
//! Must never: panic on any input, emit offsets off a char boundary of the original text, or
//! emit decreasing positions or decreasing start offsets (tantivy's snippet generator relies on
//! that order).
//!
//! ```
//! let tokens = kefu::analyzer::analyzer().analyze("ECS实例无法 SSH 登录");
//! let words: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
//! assert!(words.contains(&"ecs实例") && words.contains(&"ssh") && words.contains(&"登录"));
//! ```

pub mod normalize;
mod tokenizer;

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::LazyLock;

use jieba_rs::Jieba;
use rust_stemmers::{Algorithm, Stemmer};
use rustc_hash::{FxHashMap, FxHashSet};

pub use normalize::Normalized;
pub use tokenizer::{KefuTokenizer, TOKENIZER_NAME};

/// The product-term dictionary (jieba user-dictionary format: `word [freq] [tag]`), compiled in so
/// the analyzer is identical wherever the binary runs. Changing it changes the fingerprint.
pub const USER_DICT: &str = include_str!("../../models/userdict.txt");

/// Bump when the analyzer's behaviour changes in a way the dictionary text does not show.
const ANALYZER_VERSION: &str = "kefu-analyzer-2";

/// English stop words: function words that carry no topic. Kept in the token stream (with
/// `stop = true`) so the classifier may use them; the search index drops them.
const EN_STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "do", "does",
    "for", "from", "had", "has", "have", "i", "if", "in", "into", "is", "it", "its", "me", "my",
    "of", "on", "or", "our", "so", "than", "that", "the", "their", "them", "then", "there",
    "these", "they", "this", "to", "was", "we", "were", "will", "with", "would", "you", "your",
];

/// Chinese particles and pronouns that jieba emits as words of their own.
const ZH_STOP_WORDS: &[&str] = &[
    "的", "了", "吗", "呢", "吧", "啊", "呀", "是", "在", "和", "与", "及", "或", "我", "你", "您",
    "他", "她", "它", "我们", "你们", "这", "那", "个", "也", "就", "都", "而", "着", "之", "把",
    "被", "让", "给", "对", "从", "到", "请", "还", "又", "很", "么", "哪", "该",
];

/// One token: the normalized, stemmed `text`, its byte span in the ORIGINAL text and its ordinal
/// `position`. Sub-words of a longer word share that word's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Normalized term (lower-case, simplified Chinese, English stemmed).
    pub text: String,
    /// Start byte offset in the original text (a char boundary).
    pub offset_from: usize,
    /// End byte offset in the original text (a char boundary).
    pub offset_to: usize,
    /// Ordinal position; equal for a word and the sub-words it covers.
    pub position: usize,
    /// A stop word: the index skips it, the classifier may keep it.
    pub stop: bool,
    /// A part of a longer token at the same position (jieba sub-word, identifier part).
    pub subword: bool,
}

/// The analyzer. Build it once ([`analyzer`]); it is cheap to share.
pub struct Analyzer {
    jieba: Jieba,
    stemmer: Stemmer,
    /// Dictionary terms that mix Latin and Han (`ecs实例`, `ssl证书`), joined across the run split.
    mixed_terms: HashSet<String>,
    /// Longest Han suffix (in chars) of any mixed term.
    mixed_max_han: usize,
    en_stop: FxHashSet<&'static str>,
    zh_stop: FxHashSet<&'static str>,
    fingerprint: String,
}

const STEM_CACHE_SIZE: usize = 200_000;

thread_local! {
    static STEMS: RefCell<FxHashMap<Box<str>, Box<str>>> = RefCell::new(FxHashMap::default());
}

static ANALYZER: LazyLock<Analyzer> = LazyLock::new(Analyzer::new);

/// The shared analyzer (jieba's dictionary loads once, ≈ 0.15 s).
pub fn analyzer() -> &'static Analyzer {
    &ANALYZER
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Script {
    Han,
    Word,
    Other,
}

fn script(c: char) -> Script {
    if is_han(c) {
        Script::Han
    } else if c.is_alphanumeric() {
        Script::Word
    } else {
        Script::Other
    }
}

/// CJK ideographs (the blocks jieba segments).
pub fn is_han(c: char) -> bool {
    matches!(c,
        '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{2A6DF}' | '\u{2A700}'..='\u{2EBEF}' | '\u{2F800}'..='\u{2FA1F}')
}

/// Characters that join word characters into one identifier (`ecs.g6.large`, `err_x`, `tls-1.2`).
fn is_connector(c: char) -> bool {
    matches!(c, '.' | '_' | '-')
}

/// An English contraction's clitic (`s` of `user's`, `t` of `don't`, `ll`, `re`, `ve`, `d`, `m`)
/// or the auxiliary a `n't` negates (`don`, `doesn`, `can`, `won`): the apostrophe splits them into
/// words of their own, which say nothing of the topic, and a stray `t` or `doesn` matched as a
/// rare term outweighed the words that did.
fn is_contraction_part(norm: &str, from: usize, to: usize) -> bool {
    let word = &norm[from..to];
    let is_apostrophe = |c: char| c == '\'' || c == '\u{2019}';
    let mut before = norm[..from].chars().rev();
    if matches!(word, "s" | "t" | "d" | "ll" | "re" | "ve" | "m")
        && before.next().is_some_and(is_apostrophe)
        && before.next().is_some_and(|c| c.is_ascii_alphabetic())
    {
        return true;
    }
    let mut after = norm[to..].chars();
    word.ends_with('n')
        && word.bytes().all(|b| b.is_ascii_alphabetic())
        && after.next().is_some_and(is_apostrophe)
        && after.next() == Some('t')
        && !after.next().is_some_and(|c| c.is_alphanumeric())
}

impl Analyzer {
    fn new() -> Analyzer {
        let mut jieba = Jieba::new();
        let mut mixed_terms = HashSet::new();
        let mut mixed_max_han = 0;
        for line in USER_DICT.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let Some(word) = parts.next() else { continue };
            let word = Normalized::new(word).text().to_string();
            let freq = parts.next().and_then(|f| f.parse().ok());
            let tag = parts.next();
            let han = word.chars().filter(|&c| is_han(c)).count();
            if han > 0 && han < word.chars().count() {
                mixed_max_han = mixed_max_han.max(han);
                mixed_terms.insert(word.clone());
            }
            if han > 0 {
                // The Han part of a mixed term is a word too (`实例` of `ecs实例`).
                let han_part: String = word.chars().filter(|&c| is_han(c)).collect();
                if han_part != word && !jieba.has_word(&han_part) {
                    jieba.add_word(&han_part, None, None);
                }
                jieba.add_word(&word, freq, tag);
            }
        }
        let mut hasher = sha1_smol::Sha1::new();
        hasher.update(ANALYZER_VERSION.as_bytes());
        hasher.update(USER_DICT.as_bytes());
        hasher.update(EN_STOP_WORDS.join(" ").as_bytes());
        hasher.update(ZH_STOP_WORDS.join(" ").as_bytes());
        Analyzer {
            jieba,
            stemmer: Stemmer::create(Algorithm::English),
            mixed_terms,
            mixed_max_han,
            en_stop: EN_STOP_WORDS.iter().copied().collect(),
            zh_stop: ZH_STOP_WORDS.iter().copied().collect(),
            fingerprint: format!("{ANALYZER_VERSION}:{}", &hasher.digest().to_string()[..16]),
        }
    }

    /// Identifies this analyzer's behaviour; stored with an index and checked when it is opened.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Tokens of `text`, sorted by start offset with non-decreasing positions.
    pub fn analyze(&self, text: &str) -> Vec<Token> {
        let normalized = Normalized::new(text);
        let mut sink = TokenSink {
            normalized: &normalized,
            tokens: Vec::with_capacity(text.len() / 3),
            position: 0,
        };
        let norm = normalized.text();
        let mut run_start = 0;
        let mut run_script = Script::Other;
        // A word run ends at a connector only when no word character follows it.
        let mut chars = norm.char_indices().peekable();
        let mut prev_word_end: Option<(usize, usize, usize)> = None; // (token index, norm from, norm to)
        while let Some((i, c)) = chars.next() {
            let s = script(c);
            let joins = run_script == Script::Word
                && is_connector(c)
                && chars
                    .peek()
                    .is_some_and(|&(_, n)| script(n) == Script::Word);
            if s == run_script || joins {
                continue;
            }
            prev_word_end = self.flush(&mut sink, run_script, run_start, i, prev_word_end);
            run_start = i;
            run_script = if joins { Script::Word } else { s };
        }
        self.flush(&mut sink, run_script, run_start, norm.len(), prev_word_end);
        sink.tokens
    }

    /// Emits the tokens of one run; returns the last Latin word (for mixed-term joining).
    fn flush(
        &self,
        sink: &mut TokenSink<'_>,
        run: Script,
        from: usize,
        to: usize,
        prev_word: Option<(usize, usize, usize)>,
    ) -> Option<(usize, usize, usize)> {
        if from >= to {
            return prev_word;
        }
        match run {
            Script::Word => Some(self.word_run(sink, from, to)),
            Script::Han => {
                if let Some((index, wfrom, wto)) = prev_word
                    && wto == from
                {
                    self.join_mixed_term(sink, index, wfrom, to);
                }
                self.han_run(sink, from, to);
                None
            }
            Script::Other => {
                // Whitespace between a Latin word and Han text does not break a mixed term
                // (`ECS 实例`), anything else does.
                let gap = &sink.normalized.text()[from..to];
                match prev_word {
                    Some((index, wfrom, wto)) if gap.trim().is_empty() && gap.len() <= 1 => {
                        Some((index, wfrom, wto + gap.len()))
                    }
                    _ => None,
                }
            }
        }
    }

    /// Latin/digit run, possibly joined by connectors: the whole identifier, then its parts.
    fn word_run(&self, sink: &mut TokenSink<'_>, from: usize, to: usize) -> (usize, usize, usize) {
        let norm = sink.normalized.text();
        let word = &norm[from..to];
        let index = sink.tokens.len();
        if word.contains(is_connector) {
            sink.push(word.to_string(), from, to, false, false);
            let mut offset = from;
            for part in word.split(is_connector) {
                let start = offset;
                offset += part.len() + 1;
                if part.is_empty() {
                    continue;
                }
                let (text, stop) = self.english(part);
                sink.push_at_same_position(text, start, start + part.len(), stop);
            }
        } else {
            let (text, stop) = self.english(word);
            let stop = stop || is_contraction_part(norm, from, to);
            sink.push(text, from, to, stop, false);
        }
        sink.position += 1;
        (index, from, to)
    }

    fn english(&self, word: &str) -> (String, bool) {
        let stop = self.en_stop.contains(word);
        // Short words are mostly acronyms (`ecs`, `ssh`, `ips`): stemming them only hurts.
        if word.len() <= 3 || !word.bytes().all(|b| b.is_ascii_alphabetic()) {
            return (word.to_string(), stop);
        }
        // Word frequencies are Zipfian: a per-thread cache answers most stems (Snowball was a
        // quarter of English analysis time).
        STEMS.with_borrow_mut(|cache| {
            if let Some(stem) = cache.get(word) {
                return (stem.to_string(), stop);
            }
            let stem = self.stemmer.stem(word).into_owned();
            if cache.len() >= STEM_CACHE_SIZE {
                cache.clear();
            }
            cache.insert(word.into(), stem.as_str().into());
            (stem, stop)
        })
    }

    /// Han run through jieba at search granularity: each word, then its dictionary sub-words, all
    /// at the word's position, sorted by start offset.
    fn han_run(&self, sink: &mut TokenSink<'_>, from: usize, to: usize) {
        let norm = sink.normalized.text();
        let run = &norm[from..to];
        let words = self.jieba.cut(run, true);
        for word in words {
            let (wfrom, wto) = (from + word.byte_start, from + word.byte_end);
            let stop = self.zh_stop.contains(word.word);
            sink.push(word.word.to_string(), wfrom, wto, stop, false);
            let n = word.word.chars().count();
            if n > 2 {
                // Dictionary sub-words (2- and 3-grams), as jieba's cut_for_search finds them,
                // so 中国农业银行 is found by 农业 and by 银行.
                let mut subs: Vec<(usize, usize)> = Vec::new();
                let idx: Vec<usize> = word
                    .word
                    .char_indices()
                    .map(|(i, _)| i)
                    .chain([word.word.len()])
                    .collect();
                for len in [2, 3] {
                    if n <= len {
                        continue;
                    }
                    for i in 0..=n - len {
                        let gram = &word.word[idx[i]..idx[i + len]];
                        if self.jieba.has_word(gram) {
                            subs.push((idx[i], idx[i + len]));
                        }
                    }
                }
                subs.sort_unstable();
                for (s, e) in subs {
                    let gram = &word.word[s..e];
                    let stop = self.zh_stop.contains(gram);
                    sink.push_at_same_position(gram.to_string(), wfrom + s, wfrom + e, stop);
                }
            }
            sink.position += 1;
        }
    }

    /// Part-of-speech tags of already normalized text ([`Normalized::text`]), word by word in
    /// order, with each word's byte span in `norm`: jieba's dictionary tag (`ns` place, `nr`
    /// person, `nt` organisation, `v` verb…), a guessed one for a word the dictionary lacks
    /// (`eng` Latin, `m` digits, `x` punctuation). Whitespace is left out. The segmentation is
    /// jieba's own cut of the whole text, so it can differ from [`Analyzer::analyze`]'s words.
    pub fn pos_tags(&self, norm: &str, mut emit: impl FnMut(&str, usize, usize)) {
        for tag in self.jieba.tag(norm, true) {
            if !tag.word.trim().is_empty() {
                emit(tag.tag, tag.byte_start, tag.byte_end);
            }
        }
    }

    /// `ecs` followed by `实例...`: if `ecs实例` is a dictionary term, add it at the Latin word's
    /// position, spanning both.
    fn join_mixed_term(
        &self,
        sink: &mut TokenSink<'_>,
        word_index: usize,
        wfrom: usize,
        han_to: usize,
    ) {
        if self.mixed_terms.is_empty() {
            return;
        }
        let norm = sink.normalized.text();
        let latin: String = norm[wfrom..]
            .chars()
            .take_while(|c| !is_han(*c))
            .filter(|c| !c.is_whitespace())
            .collect();
        let han_from = wfrom + norm[wfrom..].find(is_han).unwrap_or(0);
        let mut best: Option<usize> = None;
        let mut end = han_from;
        for (k, c) in norm[han_from..han_to].chars().enumerate() {
            if k >= self.mixed_max_han {
                break;
            }
            end += c.len_utf8();
            let candidate = format!("{latin}{}", &norm[han_from..end]);
            if self.mixed_terms.contains(&candidate) {
                best = Some(end);
            }
        }
        if let Some(end) = best {
            let text = format!("{latin}{}", &norm[han_from..end]);
            sink.insert_after(word_index, text, wfrom, end);
        }
    }
}

struct TokenSink<'a> {
    normalized: &'a Normalized,
    tokens: Vec<Token>,
    position: usize,
}

impl TokenSink<'_> {
    fn token(
        &self,
        text: String,
        from: usize,
        to: usize,
        position: usize,
        stop: bool,
        subword: bool,
    ) -> Token {
        let (offset_from, offset_to) = self.normalized.original_span(from, to);
        Token {
            text,
            offset_from,
            offset_to,
            position,
            stop,
            subword,
        }
    }

    fn push(&mut self, text: String, from: usize, to: usize, stop: bool, subword: bool) {
        let token = self.token(text, from, to, self.position, stop, subword);
        self.tokens.push(token);
    }

    fn push_at_same_position(&mut self, text: String, from: usize, to: usize, stop: bool) {
        self.push(text, from, to, stop, true);
    }

    /// Inserts a token covering a previous word and what follows it, right after that word's own
    /// tokens, so start offsets stay sorted.
    fn insert_after(&mut self, word_index: usize, text: String, from: usize, to: usize) {
        let position = self.tokens[word_index].position;
        let token = self.token(text, from, to, position, false, false);
        let mut at = word_index + 1;
        while at < self.tokens.len() && self.tokens[at].position == position {
            at += 1;
        }
        self.tokens.insert(at, token);
    }
}

#[cfg(test)]
mod tests;
