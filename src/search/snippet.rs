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

use crate::analyzer::analyzer;

/// Default snippet budget, in characters.
pub const SNIPPET_CHARS: usize = 160;

/// Text longer than this (bytes) is only analyzed up to here: snippets come from the start of a
/// long section, and analysis time stays bounded.
const MAX_ANALYZED_BYTES: usize = 8 * 1024;

/// Bytes analyzed at a time while looking for the first match, per character of the budget
/// (about four windows of English, one and a third of Chinese: the best window is chosen among
/// the matches of the first chunk that has any), and at least. Analysis is most of a snippet's
/// cost, and most of a search's: against 6 (two windows of Chinese), 4 took 8% less CPU time
/// per aliyun-faq search (top 10 with snippets), a quarter of the snippets starting elsewhere.
const CHUNK_BYTES_PER_CHAR: usize = 4;
const MIN_CHUNK_BYTES: usize = 512;

/// How far (characters) a chunk may run on to end at a word break rather than inside a word.
const MAX_RUN_ON_CHARS: usize = 32;

/// Characters shown before the first match of the chosen window.
const LEAD_CHARS: usize = 20;

/// A snippet of `text` of at most `max_chars` characters around the matches of `terms`.
pub fn snippet(text: &str, terms: &HashSet<String>, max_chars: usize) -> String {
    // Analysis is the cost of a snippet: analyze chunk by chunk and stop at the first chunk with
    // a match (matches are usually early), never past MAX_ANALYZED_BYTES.
    let mut matches: Vec<(usize, usize, String)> = Vec::new();
    let mut start = 0;
    let limit = text.len().min(MAX_ANALYZED_BYTES);
    let chunk = (max_chars * CHUNK_BYTES_PER_CHAR).max(MIN_CHUNK_BYTES);
    while start < limit && matches.is_empty() {
        let end = word_break_after(text, start + chunk);
        find_matches(text, start, end, terms, &mut matches);
        start = end;
    }
    // Char index of every byte offset we need: the window ends at most `max_chars` characters
    // past the analyzed text, so the rest of a long section is only counted.
    let mut char_starts: Vec<usize> = Vec::with_capacity(start.min(text.len()) + max_chars + 2);
    let mut beyond = 0;
    let mut tail_chars = 0;
    for (i, _) in text.char_indices() {
        if i >= start {
            beyond += 1;
            if beyond > max_chars + 1 {
                tail_chars = text[i..].chars().count();
                break;
            }
        }
        char_starts.push(i);
    }
    let char_of = |byte: usize| char_starts.partition_point(|&b| b < byte);
    let total_chars = char_starts.len() + tail_chars;
    let (from_char, to_char) = if matches.is_empty() {
        (0, total_chars.min(max_chars))
    } else {
        best_window(&matches, &char_of, total_chars, max_chars)
    };
    let byte_at = |c: usize| char_starts.get(c).copied().unwrap_or(text.len());
    let (mut from, mut to) = (byte_at(from_char), byte_at(to_char));
    // The window may run past the analyzed text: its matches are highlighted too.
    if to > start {
        let end = word_break_after(text, to);
        find_matches(text, start, end, terms, &mut matches);
    }
    // Never start inside a match (half a word highlighted); the budget still holds.
    if let Some(&(m_from, _, _)) = matches.iter().find(|m| m.0 < from && from < m.1) {
        from = m_from;
        to = byte_at(to_char.min(char_of(from) + max_chars));
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
fn find_matches(
    text: &str,
    start: usize,
    end: usize,
    terms: &HashSet<String>,
    matches: &mut Vec<(usize, usize, String)>,
) {
    for token in analyzer().analyze(&text[start..end]) {
        if token.stop || !terms.contains(&token.text) {
            continue;
        }
        let (from, to) = (start + token.offset_from, start + token.offset_to);
        if let Some(last) = matches.last_mut()
            && from < last.1
        {
            last.1 = last.1.max(to);
            continue;
        }
        matches.push((from, to, token.text));
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

/// The window (in chars) of at most `max_chars` with the most distinct matched terms, starting a
/// little before its first match.
fn best_window(
    matches: &[(usize, usize, String)],
    char_of: &dyn Fn(usize) -> usize,
    total_chars: usize,
    max_chars: usize,
) -> (usize, usize) {
    let spans: Vec<(usize, usize, &str)> = matches
        .iter()
        .map(|(f, t, term)| (char_of(*f), char_of(*t), term.as_str()))
        .collect();
    let mut best = (0usize, 0usize); // (distinct terms, matches), first wins
    let mut best_start = spans[0].0;
    // A window holds a handful of terms: a reused list beats a set per window.
    let mut distinct: Vec<&str> = Vec::new();
    for (i, &(start, _, _)) in spans.iter().enumerate() {
        distinct.clear();
        let mut count = 0;
        for &(s, e, term) in &spans[i..] {
            if e > start + max_chars.saturating_sub(LEAD_CHARS.min(max_chars / 4)) || s < start {
                break;
            }
            if !distinct.contains(&term) {
                distinct.push(term);
            }
            count += 1;
        }
        let score = (distinct.len(), count);
        if score > best {
            best = score;
            best_start = start;
        }
    }
    let lead = LEAD_CHARS.min(max_chars / 4);
    let mut from = best_start.saturating_sub(lead);
    let to = (from + max_chars).min(total_chars);
    if to - from < max_chars {
        from = to.saturating_sub(max_chars);
    }
    (from, to)
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
    fn matches_past_the_analyzed_chunk_are_highlighted() {
        // The first chunk ends right after the first "refund"; the window reaches the second.
        let text = format!("{}refund {}refund end", "a ".repeat(250), "c ".repeat(15));
        let s = snippet(&text, &terms(&["refund"]), 60);
        assert_eq!(s.matches("<em>refund</em>").count(), 2, "{s}");
    }

    #[test]
    fn no_match_gives_the_start() {
        assert_eq!(snippet("短文本", &terms(&["x"]), 10), "短文本");
        assert_eq!(snippet("", &terms(&["x"]), 10), "");
    }
}
