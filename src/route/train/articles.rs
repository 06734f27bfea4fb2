//! Help articles as extra training rows for the router (`kefu train --articles`).
//!
//! A knowledge base written for the support organisation says, in its own everyday words, what
//! each queue handles: an article's `category` is a router label (`kb/README.md`), and its title,
//! tags and section headings are short texts much like the questions customers ask. Turned into
//! labelled rows they teach the router that wording next to the training file's. The rows only
//! train: they never join the dev data or the held-back slice that calibrates the model and sets
//! its abstain threshold (see [`super::train_with_extra`]).

use std::collections::BTreeSet;
use std::str::FromStr;

use rayon::prelude::*;

use super::Example;
use crate::article::Article;
use crate::route::classifier::Classifier;

/// Which parts of an article become training rows (one row each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ArticlePart {
    /// The title.
    Title,
    /// The tags (keywords and synonyms), joined with spaces.
    Tags,
    /// Each section heading after the title: `title heading` (a heading alone, such as
    /// "How to request it", often says little).
    Headings,
    /// Each section's first sentence, after its heading.
    Sentences,
}

impl ArticlePart {
    /// The parts `kefu train --articles` uses unless told otherwise.
    pub const DEFAULT: &'static [ArticlePart] = &[ArticlePart::Title, ArticlePart::Tags];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ArticlePart::Title => "title",
            ArticlePart::Tags => "tags",
            ArticlePart::Headings => "headings",
            ArticlePart::Sentences => "sentences",
        }
    }
}

impl FromStr for ArticlePart {
    type Err = String;

    fn from_str(s: &str) -> Result<ArticlePart, String> {
        [
            ArticlePart::Title,
            ArticlePart::Tags,
            ArticlePart::Headings,
            ArticlePart::Sentences,
        ]
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| format!("unknown article part {s:?} (title, tags, headings, sentences)"))
    }
}

/// The training rows of `articles` whose category is one of `labels` (articles without a
/// category, or with one the training data lacks, give none), in article order.
pub fn article_examples(
    articles: &[Article],
    labels: &BTreeSet<String>,
    parts: &[ArticlePart],
) -> Vec<Example> {
    let mut out = Vec::new();
    for article in articles {
        let Some(label) = article.category.as_deref().map(str::trim) else {
            continue;
        };
        if !labels.contains(label) {
            continue;
        }
        let title = article.title.trim();
        let mut texts: Vec<String> = Vec::new();
        if parts.contains(&ArticlePart::Title) {
            texts.push(title.to_string());
        }
        if parts.contains(&ArticlePart::Tags) {
            texts.push(article.tags.join(" "));
        }
        let want_headings = parts.contains(&ArticlePart::Headings);
        let want_sentences = parts.contains(&ArticlePart::Sentences);
        if want_headings || want_sentences {
            for section in article.sections() {
                let heading = section.heading.as_deref().map(str::trim).unwrap_or("");
                if want_headings && !heading.is_empty() {
                    texts.push(format!("{title} {heading}"));
                }
                if want_sentences && let Some(sentence) = first_sentence(&section.text) {
                    texts.push(format!("{heading} {sentence}"));
                }
            }
        }
        out.extend(
            texts
                .into_iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .map(|text| Example {
                    text,
                    label: label.to_string(),
                }),
        );
    }
    out
}

/// One row per article whose category is one of `labels` (`kefu train --kb`, the members with
/// [`super::TrainOptions::knn_kb`]): its title, then each section's heading and text (heading
/// attributes left out), in article order.
pub fn kb_examples(articles: &[Article], labels: &BTreeSet<String>) -> Vec<Example> {
    articles
        .iter()
        .filter_map(|article| {
            let label = article.category.as_deref().map(str::trim)?;
            if !labels.contains(label) {
                return None;
            }
            let mut text = article.title.trim().to_string();
            for section in article.sections() {
                for part in [section.heading.as_deref().unwrap_or(""), &section.text] {
                    let part = part.trim();
                    if !part.is_empty() {
                        text.push('\n');
                        text.push_str(part);
                    }
                }
            }
            let text = text.trim().to_string();
            (!text.is_empty()).then(|| Example {
                text,
                label: label.to_string(),
            })
        })
        .collect()
}

/// The rows a `probe` model (trained without them, on the data they join) does not contradict:
/// a row it puts under another label with a calibrated confidence of at least `min_confidence`
/// is dropped, so where the articles' taxonomy and the training data's disagree (a help center
/// may file security groups under network, the data under security), the training data's wins.
/// Rows the probe is unsure of, the new wording the articles are for, stay. Order is kept.
pub fn agreeing_rows(rows: Vec<Example>, probe: &Classifier, min_confidence: f32) -> Vec<Example> {
    let keep: Vec<bool> = rows
        .par_iter()
        .map(|row| {
            let p = probe.predict(&row.text);
            probe.labels()[p.best] == row.label || p.confidence < min_confidence
        })
        .collect();
    rows.into_iter()
        .zip(keep)
        .filter_map(|(row, keep)| keep.then_some(row))
        .collect()
}

/// The first sentence of a section's Markdown: the first line of prose (fenced code, tables,
/// block quotes and list markers skipped), up to its first sentence end (`。！？!?`, or `.` before
/// a space), without emphasis and code marks.
pub fn first_sentence(markdown: &str) -> Option<String> {
    let mut fence = false;
    for line in markdown.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = !fence;
            continue;
        }
        if fence || trimmed.is_empty() || trimmed.starts_with('|') || trimmed.starts_with('<') {
            continue;
        }
        let text = strip_list_marker(trimmed.trim_start_matches('>').trim());
        let text: String = text.chars().filter(|c| !matches!(c, '*' | '`')).collect();
        let sentence = cut_sentence(&text).trim().to_string();
        if !sentence.is_empty() {
            return Some(sentence);
        }
    }
    None
}

fn strip_list_marker(line: &str) -> &str {
    if let Some(rest) = line
        .strip_prefix("- ")
        .or_else(|| line.strip_prefix("+ "))
        .or_else(|| line.strip_prefix("* "))
    {
        return rest.trim_start();
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if digits > 0
        && let Some(rest) = line[digits..]
            .strip_prefix(". ")
            .or_else(|| line[digits..].strip_prefix(") "))
    {
        return rest.trim_start();
    }
    line
}

fn cut_sentence(text: &str) -> &str {
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '。' | '！' | '？' | '!' | '?' => true,
            '.' => chars.peek().is_none_or(|&(_, next)| next.is_whitespace()),
            _ => false,
        };
        if end {
            return &text[..i + c.len_utf8()];
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article(category: Option<&str>, body: &str) -> Article {
        let mut a = Article::new("a.md", "Refunds: how to get your money back", body);
        a.category = category.map(str::to_string);
        a.tags = vec!["refund".into(), "money back".into()];
        a
    }

    fn labels() -> BTreeSet<String> {
        ["billing", "network"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn kb_rows_are_whole_articles_of_known_categories() {
        let body = "Intro line.\n\n## When the money arrives {#timing}\n\nBalance: instantly.\n";
        let articles = [
            article(Some("billing"), body),
            article(Some("legal"), body),
            article(None, body),
        ];
        let rows = kb_examples(&articles, &labels());
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].label, "billing");
        // Title, then each section's heading (without its attribute) and text.
        assert_eq!(
            rows[0].text,
            "Refunds: how to get your money back\nIntro line.\nWhen the money arrives\nBalance: instantly."
        );
    }

    #[test]
    fn rows_carry_the_category_and_the_chosen_parts() {
        let body = "Intro line. More.\n\n## When the money arrives {#timing}\n\n- Balance: instantly. Cards: later.\n";
        let a = article(Some("billing"), body);
        let rows = article_examples(std::slice::from_ref(&a), &labels(), ArticlePart::DEFAULT);
        let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(
            texts,
            ["Refunds: how to get your money back", "refund money back"]
        );
        assert!(rows.iter().all(|r| r.label == "billing"));
        let all = [
            ArticlePart::Title,
            ArticlePart::Tags,
            ArticlePart::Headings,
            ArticlePart::Sentences,
        ];
        let rows = article_examples(&[a], &labels(), &all);
        let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Refunds: how to get your money back",
                "refund money back",
                "Intro line.",
                "Refunds: how to get your money back When the money arrives",
                "When the money arrives Balance: instantly.",
            ]
        );
    }

    #[test]
    fn articles_without_a_known_category_give_no_rows() {
        let none = article(None, "text");
        let other = article(Some("support"), "text");
        assert!(article_examples(&[none, other], &labels(), ArticlePart::DEFAULT).is_empty());
    }

    #[test]
    fn first_sentence_skips_code_and_cuts_at_the_sentence_end() {
        assert_eq!(
            first_sentence("```sh\nls -l\n```\n\n1. 进入 **控制台**。然后点击。\n").as_deref(),
            Some("进入 控制台。")
        );
        assert_eq!(
            first_sentence("Use `dig` on v1.2 hosts. Then wait").as_deref(),
            Some("Use dig on v1.2 hosts.")
        );
        assert_eq!(first_sentence("| a | b |\n\n"), None);
        assert_eq!("sentences".parse(), Ok(ArticlePart::Sentences));
        assert!("body".parse::<ArticlePart>().is_err());
    }
}
