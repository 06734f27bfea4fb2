//! Text normalization with a map back to the original text.
//!
//! Owns: compatibility folding (NFKD per character, so full-width `ＥＣＳ１２３` becomes `ecs123`),
//! dropping combining marks (`café` → `cafe`), lower-casing, and traditional → simplified Chinese
//! at phrase level with zhconv's `zh-CN` tables (帳單 → 账单, 餘額 → 余额). Every byte of the
//! normalized text knows the original byte span it came from, so highlights land on the
//! characters the user wrote.
//!
//! Must never: change the meaning of ASCII identifiers beyond lower-casing, or lose the offset map.
//!
//! ```
//! let n = kefu::analyzer::normalize::Normalized::new("ＥＣＳ 帳單");
//! assert_eq!(n.text(), "ecs 账单");
//! assert_eq!(n.original_span(0, 3), (0, 9)); // "ecs" came from three 3-byte full-width letters
//! ```

use std::sync::LazyLock;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};
use zhconv::{Variant, ZhConverter, get_builtin_converter};

/// `zh-CN` rather than `zh-Hans`: only the former maps 帳單 → 账单 and 餘額 → 余额
/// (`zh-Hans` gives 帐单 / 馀额, which do not match the simplified articles).
static TO_SIMPLIFIED: LazyLock<&'static ZhConverter> =
    LazyLock::new(|| get_builtin_converter(Variant::ZhCN));

/// Normalized text plus, for every byte of it, the original byte span it came from.
#[derive(Debug, Clone)]
pub struct Normalized {
    text: String,
    /// `starts[i]` / `ends[i]`: original span of the character that normalized byte `i` belongs to.
    starts: Vec<u32>,
    ends: Vec<u32>,
}

impl Normalized {
    /// Normalizes `original`. Runs in one pass for ASCII and two for text with Chinese.
    pub fn new(original: &str) -> Normalized {
        let folded = fold(original);
        if original.is_ascii() {
            return folded;
        }
        folded.into_simplified()
    }

    /// The normalized text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The original byte span covering normalized bytes `from..to` (`from < to`).
    pub fn original_span(&self, from: usize, to: usize) -> (usize, usize) {
        debug_assert!(from < to && to <= self.text.len());
        (self.starts[from] as usize, self.ends[to - 1] as usize)
    }

    fn with_capacity(n: usize) -> Normalized {
        Normalized {
            text: String::with_capacity(n),
            starts: Vec::with_capacity(n),
            ends: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, c: char, start: usize, end: usize) {
        let before = self.text.len();
        self.text.push(c);
        for _ in before..self.text.len() {
            self.starts.push(start as u32);
            self.ends.push(end as u32);
        }
    }

    fn push_str(&mut self, s: &str, start: usize, end: usize) {
        self.text.push_str(s);
        self.starts
            .extend(std::iter::repeat_n(start as u32, s.len()));
        self.ends.extend(std::iter::repeat_n(end as u32, s.len()));
    }

    /// Phrase-level traditional → simplified. A replacement of the same length in characters maps
    /// character by character (the usual case); otherwise each new character maps to the whole
    /// replaced span.
    fn into_simplified(self) -> Normalized {
        let converter = *TO_SIMPLIFIED;
        let mut out: Option<Normalized> = None;
        let mut last = 0;
        for (s, e, target) in converter.search(&self.text) {
            let source = &self.text[s..e];
            if source == target {
                continue;
            }
            let out = out.get_or_insert_with(|| Normalized::with_capacity(self.text.len()));
            out.copy_from(&self, last, s);
            if source.chars().count() == target.chars().count() {
                for ((i, _), t) in source.char_indices().zip(target.chars()) {
                    let (os, oe) = self.char_span(s + i);
                    out.push(t, os, oe);
                }
            } else {
                let (os, oe) = self.original_span(s, e);
                out.push_str(target, os, oe);
            }
            last = e;
        }
        match out {
            None => self,
            Some(mut out) => {
                out.copy_from(&self, last, self.text.len());
                out
            }
        }
    }

    fn copy_from(&mut self, other: &Normalized, from: usize, to: usize) {
        self.text.push_str(&other.text[from..to]);
        self.starts.extend_from_slice(&other.starts[from..to]);
        self.ends.extend_from_slice(&other.ends[from..to]);
    }

    fn char_span(&self, byte: usize) -> (usize, usize) {
        (self.starts[byte] as usize, self.ends[byte] as usize)
    }
}

/// Compatibility decomposition, combining marks dropped, lower-cased; one char at a time so every
/// output byte maps to the char it came from.
fn fold(original: &str) -> Normalized {
    let mut out = Normalized::with_capacity(original.len());
    let bytes = original.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // ASCII runs in bulk: lower-cased, each byte mapping to itself.
        let run = bytes[i..].iter().take_while(|b| b.is_ascii()).count();
        if run > 0 {
            let chunk = &original[i..i + run];
            let at = out.text.len();
            out.text.push_str(chunk);
            out.text[at..].make_ascii_lowercase();
            out.starts.extend(i as u32..(i + run) as u32);
            out.ends.extend(i as u32 + 1..=(i + run) as u32);
            i += run;
            continue;
        }
        let c = original[i..].chars().next().expect("i is a char boundary");
        let (start, end) = (i, i + c.len_utf8());
        if matches!(c, '\u{3400}'..='\u{9FFF}') {
            // Unified ideographs: no compatibility form, no case. Most Chinese text.
            out.push(c, start, end);
            i = end;
            continue;
        }
        decompose_compatible(c, |d| {
            if is_combining_mark(d) {
                return;
            }
            for l in d.to_lowercase() {
                out.push(l, start, end);
            }
        });
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_folds_to_ascii_with_original_spans() {
        let n = Normalized::new("ＥＣＳ１２３");
        assert_eq!(n.text(), "ecs123");
        assert_eq!(n.original_span(0, 1), (0, 3));
        assert_eq!(n.original_span(3, 6), (9, 18));
    }

    #[test]
    fn traditional_becomes_mainland_simplified() {
        assert_eq!(Normalized::new("帳單與餘額").text(), "账单与余额");
        assert_eq!(
            Normalized::new("雲伺服器無法連線").text(),
            "云服务器无法连线"
        );
    }

    #[test]
    fn simplified_text_is_left_alone() {
        let text = "如何申请退款？ECS实例无法启动";
        assert_eq!(Normalized::new(text).text(), "如何申请退款?ecs实例无法启动");
    }

    #[test]
    fn accents_and_case_fold() {
        let n = Normalized::new("Café ÉCOLE");
        assert_eq!(n.text(), "cafe ecole");
        // "é" (2 bytes) maps back to its original span.
        assert_eq!(n.original_span(3, 4), (3, 5));
    }

    #[test]
    fn length_changing_conversion_maps_to_the_whole_span() {
        let original = "伺服器";
        let n = Normalized::new(original);
        assert_eq!(n.text(), "服务器");
        assert_eq!(n.original_span(0, n.text().len()), (0, original.len()));
    }
}
