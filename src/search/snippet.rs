//! Highlighted snippets: the window of a section's text with the most query terms, HTML-escaped,
//! with `<em>` around each match.
//!
//! Owns: choosing the window (budget in characters, not bytes: tantivy's
//! `SnippetGenerator::set_max_num_chars` counts bytes, 80 ≈ 27 Chinese characters) and marking
//! matches on the ORIGINAL characters, using the analyzer's offsets (so `帳單` is highlighted when
//! the query said `账单`). Must never: emit unescaped text, split a character, or panic.
//!
//! ```
//! use std::collections::HashSet;
//! let terms: HashSet<String> = ["账单".to_string()].into();
//! let s = kefu::search::snippet::snippet("查看帳單 <明細>", &terms, 40);
//! assert_eq!(s, "查看<em>帳單</em> &lt;明細&gt;");
//! ```

use std::collections::HashSet;
use std::hash::BuildHasher;

use crate::analyzer::analyzer;

/// Default snippet budget, in characters.
pub const SNIPPET_CHARS: usize = 160;

/// Text longer than this (bytes) is only analyzed up to here: snippets come from the start of a
/// long section, and analysis time stays bounded.
const MAX_ANALYZED_BYTES: usize = 8 * 1024;

/// How far (characters) a chunk may run on to end at a word break rather than inside a word.
const MAX_RUN_ON_CHARS: usize = 32;

/// Characters shown before the first match of the chosen window.
const LEAD_CHARS: usize = 20;

/// A snippet of `text` of at most `max_chars` characters around the matches of `terms`.
pub fn snippet<S: BuildHasher>(text: &str, terms: &HashSet<String, S>, max_chars: usize) -> String {
    snippet_with(text, &Matcher::Analyze(terms), max_chars)
}

/// [`snippet`] from the tokens `marks` recorded of `text` at index time ([`encode_marks`]), so
/// nothing is analyzed at query time where they reach; the same snippet as [`snippet`] but where
/// analysis of a long section's first MAX_ANALYZED_BYTES alone splits its last words differently.
/// Marks that cannot be read (not made for this text) fall back to analysis.
pub fn snippet_marked<S: BuildHasher>(
    text: &str,
    marks: &[u8],
    terms: &HashSet<String, S>,
    max_chars: usize,
) -> String {
    match Marks::decode(marks, terms, text) {
        Some(marks) => snippet_with(text, &Matcher::Marked(&marks, terms), max_chars),
        None => snippet(text, terms, max_chars),
    }
}

/// Text past this (bytes, then to a word break) has no marks: snippets come from the start of
/// a section (analysis stops at MAX_ANALYZED_BYTES, the window runs on a few hundred bytes).
const MARKED_BYTES: usize = MAX_ANALYZED_BYTES + 4 * 1024;

/// Snippets of up to this many characters read nothing of a text past what its marks cover
/// (and the last marked token): see [`encode_marks`]. The analyzed start, the longest window
/// and a word break after it, at 4 bytes a character, fit in the marked bytes.
pub const MAX_STORED_SNIPPET_CHARS: usize = 512;

const _: () = assert!(
    SNIPPET_CHARS <= MAX_STORED_SNIPPET_CHARS
        && MAX_ANALYZED_BYTES + 4 * (2 * MAX_RUN_ON_CHARS + MAX_STORED_SNIPPET_CHARS + 2)
            < MARKED_BYTES
);

/// The analyzed tokens of `text` (not stop words; `(offset_from, offset_to, term)` in analyzer
/// order) as compact bytes for [`snippet_marked`]: the end of the marked text, the terms that
/// differ from the text they were analyzed from (normalized, stemmed: the rest are their own
/// text, as most Chinese words are), then each token's offset (zigzag delta from the previous
/// one), its length times two, plus one when the number of its term follows; all varints of six
/// bits a byte, the seventh saying another byte follows ([`put_varint`]): every byte of a number
/// is ASCII, so the marks are text. The index stores them in a text field, which tantivy reads
/// back whole (a bytes field it reads byte by byte: a fifth of reading a hit's document).
///
/// Also returns how many bytes of `text` snippets read with these marks: the marked start and
/// the rest of its last token. A snippet of at most [`MAX_STORED_SNIPPET_CHARS`] characters from
/// `&text[..n]` and the marks is the snippet from the whole text, so the index stores no more:
/// the text of a long section past its first 12 KB is never shown.
///
/// Tried and dropped (session 12): marks grouped by term (per distinct term a 16-bit hash, the
/// length of its group, then its tokens with their numbers in analyzer order), so that a
/// snippet decodes the groups of the query's terms only: the same snippets, but the hits'
/// tokens of query terms are many (about 135 a snippet), so search instructions over the 52
/// slowest aliyun-faq dev queries went down only 3.3% (404M to 391M, callgrind) while the doc
/// store grew 35% (90.6 MB to 122.0 MB: a token's offset is a delta from its term's previous
/// token, not from its neighbour).
pub fn encode_marks<'t>(
    text: &str,
    tokens: impl Iterator<Item = (usize, usize, &'t str)>,
) -> (String, usize) {
    let covered = if text.len() <= MARKED_BYTES {
        text.len()
    } else {
        word_break_after(text, MARKED_BYTES)
    };
    let mut terms: Vec<&str> = Vec::new();
    let mut number: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut spans = String::new();
    let mut last_from = 0i64;
    let mut read = covered;
    for (from, to, term) in tokens {
        if from >= covered || to < from || to > text.len() {
            continue;
        }
        read = read.max(to);
        let delta = from as i64 - last_from;
        last_from = from as i64;
        put_varint(&mut spans, ((delta << 1) ^ (delta >> 63)) as u64);
        let len = (to - from) as u64;
        if text.get(from..to) == Some(term) {
            put_varint(&mut spans, len << 1);
        } else {
            put_varint(&mut spans, (len << 1) | 1);
            let n = *number.entry(term).or_insert_with(|| {
                terms.push(term);
                terms.len() - 1
            });
            put_varint(&mut spans, n as u64);
        }
    }
    let mut out = String::with_capacity(spans.len() + 16 * terms.len() + 8);
    put_varint(&mut out, covered as u64);
    put_varint(&mut out, terms.len() as u64);
    for term in &terms {
        put_varint(&mut out, term.len() as u64);
        out.push_str(term);
    }
    out.push_str(&spans);
    (out, read)
}

/// Appends `v`, six bits a character from the lowest, `0x40` on each but the last: ASCII only.
fn put_varint(out: &mut String, mut v: u64) {
    while v >= 0x40 {
        out.push(char::from((v as u8 & 0x3f) | 0x40));
        v >>= 6;
    }
    out.push(char::from(v as u8));
}

/// The number [`put_varint`] wrote at `*at`, moving past it; `None` if cut short or not one.
fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(6) {
        let b = *bytes.get(*at)?;
        if b >= 0x80 {
            return None;
        }
        *at += 1;
        v |= u64::from(b & 0x3f) << shift;
        if b < 0x40 {
            return Some(v);
        }
    }
    None
}

/// Decoded marks: only the tokens of query terms are kept.
struct Marks<'t> {
    /// Text marked, bytes from the start.
    covered: usize,
    /// `(offset_from, offset_to, term)` of the tokens of query terms, in analyzer order.
    tokens: Vec<(usize, usize, &'t str)>,
}

impl<'t> Marks<'t> {
    fn decode<S: BuildHasher>(
        bytes: &[u8],
        terms: &'t HashSet<String, S>,
        text: &str,
    ) -> Option<Marks<'t>> {
        let mut at = 0;
        let covered = usize::try_from(get_varint(bytes, &mut at)?).ok()?;
        let n_terms = usize::try_from(get_varint(bytes, &mut at)?).ok()?;
        if covered > text.len() || n_terms > bytes.len() {
            return None;
        }
        let prefilter = TermFilter::new(terms);
        // The query's terms among the section's, by term number.
        let mut wanted: Vec<Option<&'t str>> = Vec::with_capacity(n_terms);
        for _ in 0..n_terms {
            let len = usize::try_from(get_varint(bytes, &mut at)?).ok()?;
            let term = std::str::from_utf8(bytes.get(at..at.checked_add(len)?)?).ok()?;
            at += len;
            wanted.push(if prefilter.may_hold(term) {
                terms.get(term).map(String::as_str)
            } else {
                None
            });
        }
        // A hit's section holds some hundred tokens of query terms (growing from empty took
        // six reallocations).
        let mut tokens = Vec::with_capacity(64);
        let mut from = 0i64;
        while at < bytes.len() {
            let zigzag = get_varint(bytes, &mut at)?;
            from += ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
            let len_other = get_varint(bytes, &mut at)?;
            let start = usize::try_from(from).ok()?;
            let end = start.checked_add(usize::try_from(len_other >> 1).ok()?)?;
            let term = if len_other & 1 == 1 {
                let n = usize::try_from(get_varint(bytes, &mut at)?).ok()?;
                *wanted.get(n)?
            } else {
                let word = text.get(start..end)?;
                if prefilter.may_hold(word) {
                    terms.get(word).map(String::as_str)
                } else {
                    None
                }
            };
            if let Some(term) = term {
                text.get(start..end)?;
                tokens.push((start, end, term));
            }
        }
        Some(Marks { covered, tokens })
    }
}

/// A quick first check of whether a word may be one of the terms, by its length and its first
/// and last bytes (a set lookup hashes the whole word; most words of a section are not terms):
/// never says no to a term.
///
/// Tried and dropped (session 11): a 4096-slot filter that also reads the second and
/// second-to-last bytes, checked on the raw bytes before slicing the text, together with
/// `escape_into` copying the runs between escaped bytes whole: snippet CPU 3-5% lower, about
/// 0.5% of a search (perf samples, 52 slowest aliyun-faq dev queries): not worth keeping.
struct TermFilter {
    bits: [u64; 16],
}

impl TermFilter {
    fn new<S: BuildHasher>(terms: &HashSet<String, S>) -> TermFilter {
        let mut bits = [0u64; 16];
        for term in terms {
            let at = Self::slot(term);
            bits[at / 64] |= 1 << (at % 64);
        }
        TermFilter { bits }
    }

    fn slot(word: &str) -> usize {
        let bytes = word.as_bytes();
        let (first, last) = match (bytes.first(), bytes.last()) {
            (Some(&first), Some(&last)) => (usize::from(first), usize::from(last)),
            _ => (0, 0),
        };
        (bytes.len().wrapping_mul(131) ^ first.wrapping_mul(31) ^ last.wrapping_mul(7)) % 1024
    }

    fn may_hold(&self, word: &str) -> bool {
        let at = Self::slot(word);
        self.bits[at / 64] & (1 << (at % 64)) != 0
    }
}

/// Where matches come from: analysis of the text, or its marks (analysis past them).
enum Matcher<'a, 't, S> {
    Analyze(&'t HashSet<String, S>),
    Marked(&'a Marks<'t>, &'t HashSet<String, S>),
}

/// A match: `(offset_from, offset_to, term)`, byte offsets into the text.
type Match<'t> = (usize, usize, &'t str);

impl<'t, S: BuildHasher> Matcher<'_, 't, S> {
    /// Appends the matches in `text[start..end]`, as [`find_matches`].
    fn find(&self, text: &str, start: usize, end: usize, out: &mut Vec<Match<'t>>) {
        match self {
            Matcher::Marked(marks, _) if end <= marks.covered => {
                out.reserve(marks.tokens.len());
                for (from, to, term) in &marks.tokens {
                    if *from < start || *from >= end {
                        continue;
                    }
                    push_match(out, *from, *to, term);
                }
            }
            Matcher::Marked(_, terms) | Matcher::Analyze(terms) => {
                find_matches(text, start, end, terms, out)
            }
        }
    }
}

/// Adds a match; a word and its sub-words overlap: the outer span is kept.
fn push_match<'t>(matches: &mut Vec<Match<'t>>, from: usize, to: usize, term: &'t str) {
    if let Some(last) = matches.last_mut()
        && from < last.1
    {
        last.1 = last.1.max(to);
        return;
    }
    matches.push((from, to, term));
}

fn snippet_with<S: BuildHasher>(
    text: &str,
    matcher: &Matcher<'_, '_, S>,
    max_chars: usize,
) -> String {
    // The window is chosen among all the matches of the section's first MAX_ANALYZED_BYTES: the
    // marks hold them (analysis of that much text is only the fallback for a section without).
    let mut matches = Vec::new();
    let analyzed = word_break_after(text, MAX_ANALYZED_BYTES);
    matcher.find(text, 0, analyzed, &mut matches);
    let (mut from, mut to) = match best_window(text, &matches, max_chars) {
        Some(window) => window,
        None => (0, bytes_after(text, 0, max_chars)),
    };
    // The window may run past the analyzed text: its matches are highlighted too.
    if to > analyzed {
        let end = word_break_after(text, to);
        matcher.find(text, analyzed, end, &mut matches);
    }
    // Never start inside a match (half a word highlighted); the budget still holds.
    if let Some(&(m_from, _, _)) = matches.iter().find(|m| m.0 < from && from < m.1) {
        from = m_from;
        to = to.min(bytes_after(text, from, max_chars));
    }
    // Nor end inside one.
    if let Some(&(m_from, _, _)) = matches.iter().find(|m| m.0 < to && to < m.1 && m.0 > from) {
        to = m_from;
    }
    let mut out = String::with_capacity((to - from) * 2);
    if from > 0 {
        out.push('…');
    }
    let mut at = from;
    for &(m_from, m_to, _) in &matches {
        if m_to <= from || m_from >= to {
            continue;
        }
        let (m_from, m_to) = (m_from.max(from), m_to.min(to));
        escape_into(&text[at..m_from], &mut out);
        out.push_str("<em>");
        escape_into(&text[m_from..m_to], &mut out);
        out.push_str("</em>");
        at = m_to;
    }
    escape_into(&text[at..to], &mut out);
    if to < text.len() {
        out.push('…');
    }
    out
}

/// The first word break at or after byte `at` (at most `MAX_RUN_ON_CHARS` on), else the first
/// character boundary; the end of `text` at most.
fn word_break_after(text: &str, at: usize) -> usize {
    let mut end = at.min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    match text[end..]
        .char_indices()
        .take(MAX_RUN_ON_CHARS)
        .find(|&(_, c)| is_break(c))
    {
        Some((i, _)) => end + i,
        None => end,
    }
}

/// Appends the matches of `terms` in `text[start..end]` (byte offsets into `text`); a word and
/// its sub-words overlap: the outer span is kept.
fn find_matches<'t, S: BuildHasher>(
    text: &str,
    start: usize,
    end: usize,
    terms: &'t HashSet<String, S>,
    matches: &mut Vec<Match<'t>>,
) {
    for token in analyzer().analyze(&text[start..end]) {
        if token.stop {
            continue;
        }
        if let Some(term) = terms.get(&token.text) {
            push_match(
                matches,
                start + token.offset_from,
                start + token.offset_to,
                term,
            );
        }
    }
}

/// Whitespace or punctuation: a chunk ending there cuts no word.
fn is_break(c: char) -> bool {
    c.is_whitespace()
        || c.is_ascii_punctuation()
        || matches!(
            c,
            '。' | '，' | '、' | '；' | '：' | '？' | '！' | '（' | '）'
        )
}

/// The window (byte range) of at most `max_chars` characters with the most distinct matched
/// terms (then the most matches; the first wins), starting a little before its first match;
/// `None` without matches. Characters are counted between matches, never indexed for the whole
/// text: a section's matches may lie anywhere in its first MAX_ANALYZED_BYTES.
fn best_window(text: &str, matches: &[Match<'_>], max_chars: usize) -> Option<(usize, usize)> {
    let first = matches[best_first_match(text, matches, max_chars)?].0;
    let lead = LEAD_CHARS.min(max_chars / 4);
    let from = bytes_before(text, first, lead);
    let to = bytes_after(text, from, max_chars);
    // Near the end of the text the window starts earlier, to show `max_chars` all the same.
    Some((bytes_before(text, to, max_chars).min(from), to))
}

/// The first match of [`best_window`]'s window: of all windows that start at a match and hold
/// the matches ending within `max_chars` less the lead of its start, the one of the most
/// distinct terms, then the most matches, the first winning.
///
/// Tried and dropped (session 13): counting the characters between matches on the bytes
/// (`bytes.get(from..to)`, then the bytes that do not continue a character, a loop meant to
/// vectorize) instead of `str::get` and `chars().count()`: the same snippets, but best windows
/// took 20.4M instructions over the 52 slowest aliyun-faq dev queries instead of 10.3M plus
/// about 7.5M of `chars().count()` (callgrind): the runs between matches are short.
fn best_first_match(text: &str, matches: &[Match<'_>], max_chars: usize) -> Option<usize> {
    // Matches in characters (sorted and disjoint: `push_match` merges overlaps), each with the
    // number of its term (the terms come from one set: equal terms are mostly the same string,
    // compared by address first).
    let mut spans: Vec<(usize, usize, usize)> = Vec::with_capacity(matches.len());
    let mut distinct_terms: Vec<&str> = Vec::new();
    let (mut byte, mut chars) = (0, 0);
    for &(from, to, term) in matches {
        chars += text.get(byte..from).map_or(0, |t| t.chars().count());
        let start = chars;
        chars += text
            .get(from.max(byte)..to)
            .map_or(0, |t| t.chars().count());
        byte = to.max(byte);
        let number = match distinct_terms
            .iter()
            .position(|t| std::ptr::eq(t.as_ptr(), term.as_ptr()) && t.len() == term.len())
            .or_else(|| distinct_terms.iter().position(|t| *t == term))
        {
            Some(n) => n,
            None => {
                distinct_terms.push(term);
                distinct_terms.len() - 1
            }
        };
        spans.push((start, chars, number));
    }
    let lead = LEAD_CHARS.min(max_chars / 4);
    let reach = max_chars.saturating_sub(lead);
    let mut best = (0usize, 0usize); // (distinct terms, matches), first wins
    let mut best_match = None;
    // The window of each match: it and the matches after it that end within reach of its
    // start. Matches end in increasing order, so the window's end only moves forward.
    let mut in_window = vec![0u32; distinct_terms.len()];
    let (mut end, mut distinct) = (0usize, 0usize);
    for (i, &(start, _, _)) in spans.iter().enumerate() {
        if end < i {
            end = i;
        }
        while let Some(&(_, e, n)) = spans.get(end) {
            if e > start + reach {
                break;
            }
            if in_window[n] == 0 {
                distinct += 1;
            }
            in_window[n] += 1;
            end += 1;
        }
        let score = (distinct, end - i);
        if score > best {
            best = score;
            best_match = Some(i);
        }
        // This match leaves the window before the next one's.
        if end > i {
            let n = spans[i].2;
            in_window[n] -= 1;
            if in_window[n] == 0 {
                distinct -= 1;
            }
        }
    }
    best_match
}

/// The byte offset `n` characters after byte `at` of `text` (a character boundary), its end at
/// most.
fn bytes_after(text: &str, at: usize, n: usize) -> usize {
    text[at..]
        .char_indices()
        .nth(n)
        .map_or(text.len(), |(i, _)| at + i)
}

/// The byte offset `n` characters before byte `at` of `text` (a character boundary), its start
/// at most.
fn bytes_before(text: &str, at: usize, n: usize) -> usize {
    if n == 0 {
        return at;
    }
    text[..at]
        .char_indices()
        .rev()
        .nth(n - 1)
        .map_or(0, |(i, _)| i)
}

/// HTML-escapes `text` into `out` (`& < > " '`).
pub fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(words: &[&str]) -> HashSet<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn the_term_filter_lets_every_term_through_and_stops_others() {
        let words: Vec<String> = (0..200)
            .map(|i| format!("w{i}"))
            .chain(["账单", "云盘", "ecs", "a", ""].map(String::from))
            .collect();
        let (kept, others) = words.split_at(100);
        let filter = TermFilter::new(&kept.iter().cloned().collect::<HashSet<String>>());
        assert!(kept.iter().all(|w| filter.may_hold(w)));
        // A filter, not a pass: some words that are not terms are stopped.
        assert!(others.iter().any(|w| !filter.may_hold(w)));
    }

    #[test]
    fn budget_is_in_characters() {
        let text = "甲".repeat(50) + "退款规则说明" + &"乙".repeat(200);
        let s = snippet(&text, &terms(&["退款"]), 30);
        let visible = s.replace("<em>", "").replace("</em>", "").replace('…', "");
        assert_eq!(visible.chars().count(), 30);
        assert!(s.contains("<em>退款</em>"), "{s}");
    }

    #[test]
    fn escapes_html() {
        let s = snippet(
            "Blocked: <script>alert(1)</script> by the WAF",
            &terms(&["waf"]),
            100,
        );
        assert!(s.contains("&lt;script&gt;"), "{s}");
        assert!(s.contains("<em>WAF</em>"), "{s}");
    }

    #[test]
    fn prefers_window_with_more_terms() {
        let text = format!(
            "ssh once. {} ssh port 22 refused here. {}",
            "filler ".repeat(40),
            "tail ".repeat(40)
        );
        let s = snippet(&text, &terms(&["ssh", "port", "refus"]), 40);
        assert!(s.contains("<em>port</em>"), "{s}");
    }

    #[test]
    fn window_is_chosen_over_the_whole_section() {
        // The first match is alone; both terms meet far into the section.
        let text = format!(
            "A refund is rare. {}The refund policy is here.",
            "Unrelated filler words. ".repeat(60)
        );
        let want = terms(&["refund", "polici"]);
        for s in [
            snippet(&text, &want, 80),
            snippet_marked(&text, &marks_of(&text), &want, 80),
        ] {
            assert!(s.contains("<em>refund</em> <em>policy</em>"), "{s}");
            assert!(s.starts_with('…'), "{s}");
        }
    }

    #[test]
    fn matches_past_the_analyzed_text_are_highlighted() {
        // Analysis ends right after the first "refund"; the window reaches the second.
        let text = format!("{}refund {}refund end", "a ".repeat(4090), "c ".repeat(10));
        assert!(text.find("refund end").unwrap() > MAX_ANALYZED_BYTES);
        let s = snippet(&text, &terms(&["refund"]), 60);
        assert_eq!(s.matches("<em>refund</em>").count(), 2, "{s}");
    }

    /// Marks as the index records them: the analyzer's tokens of the whole text, not stop words.
    fn marks_of(text: &str) -> Vec<u8> {
        let tokens: Vec<_> = analyzer()
            .analyze(text)
            .into_iter()
            .filter(|t| !t.stop)
            .collect();
        encode_marks(
            text,
            tokens
                .iter()
                .map(|t| (t.offset_from, t.offset_to, t.text.as_str())),
        )
        .0
        .into_bytes()
    }

    #[test]
    fn marked_snippets_equal_analyzed_ones() {
        let long = format!(
            "{} ssh port 22 refused here. {} 查看帳單 <明細> {}",
            "filler words, ".repeat(900),
            "tail ".repeat(40),
            "退款规则说明。".repeat(300)
        );
        let cases: Vec<(String, Vec<&str>, usize)> = vec![
            ("查看帳單 <明細>".into(), vec!["账单"], 40),
            (
                "Blocked: <script>alert(1)</script> by the WAF".into(),
                vec!["waf", "script"],
                100,
            ),
            (
                format!("{}refund {}refund end", "a ".repeat(250), "c ".repeat(15)),
                vec!["refund"],
                60,
            ),
            (long.clone(), vec!["ssh", "port", "refus"], 40),
            (long.clone(), vec!["账单", "明细"], 30),
            (long, vec!["退款", "规则"], 160),
            ("短文本".into(), vec!["x"], 10),
            (String::new(), vec!["x"], 10),
        ];
        for (text, words, max_chars) in cases {
            let marks = marks_of(&text);
            let expected = snippet(&text, &terms(&words), max_chars);
            let marked = snippet_marked(&text, &marks, &terms(&words), max_chars);
            assert_eq!(marked, expected, "{words:?}");
        }
    }

    #[test]
    fn marks_cover_only_the_start_of_a_long_text() {
        let text = "退款规则说明。".repeat(2000);
        let marks = marks_of(&text);
        // The tail past MARKED_BYTES is not marked: the marks stay well under the text's size.
        assert!(marks.len() < MARKED_BYTES, "{}", marks.len());
        let wanted = terms(&["退款"]);
        let decoded = Marks::decode(&marks, &wanted, &text).expect("valid marks");
        assert!(decoded.covered >= MARKED_BYTES && decoded.covered < text.len());
        assert!(decoded.tokens.iter().all(|t| t.0 < decoded.covered));
        assert!(!decoded.tokens.is_empty());
    }

    #[test]
    fn the_stored_start_of_a_text_gives_its_snippets() {
        // Long sections: matches at the start, near the end of the analyzed bytes, past them
        // and past the marks; Chinese runs without breaks, so tokens cross the marked end.
        let mut rng = crate::route::train::SplitMix::new(11);
        let pieces = [
            "退款规则说明",
            "数据库",
            "查看帳單明細",
            "refund policy, ",
            "ssh port 22 ",
            "filler words ",
            "云盘性能",
            "。",
        ];
        for round in 0..60 {
            let mut text = String::new();
            let target = 9_000 + rng.below(12_000);
            // Every third text is one run of Chinese: its marks end inside a word.
            let kinds = if round % 3 == 0 { 3 } else { pieces.len() };
            while text.len() < target {
                text.push_str(pieces[rng.below(kinds)]);
            }
            // A word found only at the end of the analyzed bytes: the window reaches past them.
            let mut at = MAX_ANALYZED_BYTES - rng.below(600);
            while !text.is_char_boundary(at) {
                at += 1;
            }
            text.insert_str(at, " zebra ");
            let tokens: Vec<_> = analyzer()
                .analyze(&text)
                .into_iter()
                .filter(|t| !t.stop)
                .collect();
            let (marks, shown) = encode_marks(
                &text,
                tokens
                    .iter()
                    .map(|t| (t.offset_from, t.offset_to, t.text.as_str())),
            );
            assert!(text.is_char_boundary(shown));
            if text.len() > MARKED_BYTES + 4 * MAX_RUN_ON_CHARS {
                assert!(shown < text.len(), "round {round}: nothing left out");
            }
            let stored = &text[..shown];
            let marks = marks.into_bytes();
            assert!(Marks::decode(&marks, &terms(&["退款"]), stored).is_some());
            for words in [
                vec!["退款", "规则"],
                vec!["账单", "明细"],
                vec!["refund", "polici", "ssh"],
                vec!["云盘", "性能", "port"],
                vec!["zebra"],
                vec!["absent"],
            ] {
                for max_chars in [10, 40, SNIPPET_CHARS, MAX_STORED_SNIPPET_CHARS] {
                    assert_eq!(
                        snippet_marked(stored, &marks, &terms(&words), max_chars),
                        snippet_marked(&text, &marks, &terms(&words), max_chars),
                        "round {round}, {words:?}, {max_chars}"
                    );
                }
            }
        }
    }

    #[test]
    fn unreadable_marks_fall_back_to_analysis() {
        let text = "查看帳單 <明細>";
        let expected = snippet(text, &terms(&["账单"]), 40);
        let mut truncated = marks_of(text);
        truncated.pop();
        // Marks of another text: offsets past its end or inside a character.
        let foreign = marks_of("a much longer text about 账单 and more 账单");
        for marks in [&[][..], &[0xff][..], &truncated[..], &foreign[..]] {
            assert_eq!(
                snippet_marked(text, marks, &terms(&["账单"]), 40),
                expected,
                "{marks:?}"
            );
        }
    }

    /// The window of the most distinct terms, then matches, the first winning, by trying every
    /// match as the window's first (what `best_window` finds in one pass).
    fn best_window_by_every_start(
        text: &str,
        matches: &[Match<'_>],
        max_chars: usize,
    ) -> Option<usize> {
        let mut spans: Vec<(usize, usize, &str)> = Vec::new();
        let (mut byte, mut chars) = (0, 0);
        for &(from, to, term) in matches {
            chars += text[byte..from].chars().count();
            let start = chars;
            chars += text[from..to].chars().count();
            byte = to;
            spans.push((start, chars, term));
        }
        let reach = max_chars - LEAD_CHARS.min(max_chars / 4);
        let mut best = ((0, 0), None);
        for (i, &(start, _, _)) in spans.iter().enumerate() {
            let window: Vec<&str> = spans[i..]
                .iter()
                .take_while(|&&(_, e, _)| e <= start + reach)
                .map(|&(_, _, t)| t)
                .collect();
            let distinct: HashSet<&str> = window.iter().copied().collect();
            let score = (distinct.len(), window.len());
            if score > best.0 {
                best = (score, Some(i));
            }
        }
        best.1
    }

    #[test]
    fn the_window_is_the_best_of_every_start() {
        let mut rng = crate::route::train::SplitMix::new(7);
        let words = ["ssh", "port", "账单", "refund", "退款"];
        for _ in 0..500 {
            let mut text = String::new();
            let mut spans = Vec::new();
            for _ in 0..rng.below(60) {
                text.push_str(&"x".repeat(rng.below(30)));
                text.push_str(&"中".repeat(rng.below(3)));
                let word = words[rng.below(words.len())];
                let from = text.len();
                text.push_str(word);
                spans.push((from, text.len()));
            }
            // Each match's term a string of its own: terms are told apart by their text.
            let owned: Vec<String> = spans.iter().map(|&(f, t)| text[f..t].to_string()).collect();
            let matches: Vec<Match<'_>> = spans
                .iter()
                .zip(&owned)
                .map(|(&(f, t), term)| (f, t, term.as_str()))
                .collect();
            for max_chars in [10, 40, 160] {
                assert_eq!(
                    best_first_match(&text, &matches, max_chars),
                    best_window_by_every_start(&text, &matches, max_chars),
                    "{text} {max_chars}"
                );
            }
        }
    }

    #[test]
    fn no_match_gives_the_start() {
        assert_eq!(snippet("短文本", &terms(&["x"]), 10), "短文本");
        assert_eq!(snippet("", &terms(&["x"]), 10), "");
    }
}
