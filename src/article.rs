//! Articles and their sections: the unit editors publish and the unit search returns.
//!
//! Owns: the `Article` record every input format is turned into, and splitting an article body
//! (Markdown) into sections at headings, each keeping its heading text and anchor for deep links.
//! Must never: read files or touch the index (that is `ingest` and `search`).
//!
//! ```
//! use kefu::article::Article;
//! let a = Article::new("billing/refund.md", "退款", "intro\n\n## 到账时间 {#refund-time}\n\n3 个工作日");
//! let sections = a.sections();
//! assert_eq!(sections[1].heading.as_deref(), Some("到账时间"));
//! assert_eq!(sections[1].anchor.as_deref(), Some("refund-time"));
//! ```

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A help article, whatever format it came from. `body` is Markdown (HTML input is converted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Article {
    /// Stable id: the path relative to the ingested folder for files, the `id` field for JSONL.
    /// Missing is empty, which validation refuses, except where the id comes from elsewhere
    /// (`PUT /v1/articles/{id}` takes it from the path).
    #[serde(default)]
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub body: String,
    /// `zh` or `en`; detected from the text when the input does not say.
    #[serde(default)]
    pub lang: Option<String>,
    #[serde(default)]
    pub product: Option<String>,
    /// Support category (the routing classifier's labels, e.g. `billing`, `network`), so agents
    /// can keep to the articles of a ticket's predicted category.
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// A part of an article under one heading (the first section may have no heading: the intro).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Section {
    pub heading: Option<String>,
    /// Deep-link anchor: the heading's `{#id}` attribute, else a slug of the heading.
    pub anchor: Option<String>,
    /// The section's text (Markdown source, heading line excluded).
    pub text: String,
}

impl Article {
    /// An article with only the required fields; `lang` is detected from the text.
    pub fn new(
        id: impl Into<String>,
        title: impl Into<String>,
        body: impl Into<String>,
    ) -> Article {
        let mut article = Article {
            id: id.into(),
            title: title.into(),
            body: body.into(),
            lang: None,
            product: None,
            category: None,
            url: None,
            tags: Vec::new(),
            updated_at: None,
        };
        article.lang =
            Some(detect_lang(&format!("{} {}", article.title, article.body)).to_string());
        article
    }

    /// The article's language, detected when it was not given.
    pub fn lang(&self) -> &str {
        match self.lang.as_deref() {
            Some(lang) if !lang.is_empty() => lang,
            _ => detect_lang(&self.body),
        }
    }

    /// Sections at Markdown headings (`#`…`######`, outside fenced code blocks).
    pub fn sections(&self) -> Vec<Section> {
        let mut sections = Vec::new();
        let mut current = Section {
            heading: None,
            anchor: None,
            text: String::new(),
        };
        let mut fence: Option<&str> = None;
        for line in self.body.lines() {
            let trimmed = line.trim_start();
            if let Some(f) = fence {
                if trimmed.starts_with(f) {
                    fence = None;
                }
            } else if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                fence = Some(&trimmed[..3]);
            } else if let Some((heading, anchor)) = parse_heading(line) {
                if current.heading.is_some() || !current.text.trim().is_empty() {
                    sections.push(current);
                }
                current = Section {
                    heading: Some(heading),
                    anchor: Some(anchor),
                    text: String::new(),
                };
                continue;
            }
            current.text.push_str(line);
            current.text.push('\n');
        }
        if current.heading.is_some() || !current.text.trim().is_empty() || sections.is_empty() {
            sections.push(current);
        }
        sections
    }
}

/// `## Heading text {#anchor .class}` → (text, anchor). Anchor falls back to a slug of the text.
pub fn parse_heading(line: &str) -> Option<(String, String)> {
    let hashes = line.bytes().take_while(|&b| b == b'#').count();
    if hashes == 0 || hashes > 6 {
        return None;
    }
    let rest = &line[hashes..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    let (text, attrs) = strip_attributes(rest.trim());
    let text = text.trim_end_matches('#').trim().to_string();
    if text.is_empty() {
        return None;
    }
    let anchor = attrs
        .and_then(|a| {
            a.split_whitespace()
                .find_map(|p| p.strip_prefix('#'))
                .map(str::to_string)
        })
        .unwrap_or_else(|| slug(&text));
    Some((text, anchor))
}

/// Splits a trailing `{#id .class}` attribute block off heading text.
pub fn strip_attributes(text: &str) -> (&str, Option<&str>) {
    if let Some(stripped) = text.strip_suffix('}')
        && let Some(open) = stripped.rfind('{')
    {
        let inner = &stripped[open + 1..];
        if inner.trim_start().starts_with(['#', '.']) {
            return (text[..open].trim_end(), Some(inner));
        }
    }
    (text, None)
}

/// URL-fragment slug: lower-case letters, digits and CJK kept, everything else folded to `-`.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// `zh` when a meaningful share of the letters are Han characters, else `en`.
pub fn detect_lang(text: &str) -> &'static str {
    let (mut han, mut latin) = (0usize, 0usize);
    for c in text.chars().take(4000) {
        if crate::analyzer::is_han(c) {
            han += 1;
        } else if c.is_ascii_alphabetic() {
            latin += 1;
        }
    }
    // A Han character carries about as much as a 4-letter English word.
    if han * 4 >= latin / 2 && han > 0 {
        "zh"
    } else {
        "en"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_split_sections_and_keep_anchors() {
        let a = Article::new(
            "x.md",
            "T",
            "intro line\n\n## First {#sec-1 .section}\nbody 1\n```\n# not a heading\n```\n### 第二节\nbody 2\n",
        );
        let s = a.sections();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].heading, None);
        assert_eq!(s[1].heading.as_deref(), Some("First"));
        assert_eq!(s[1].anchor.as_deref(), Some("sec-1"));
        assert!(s[1].text.contains("# not a heading"));
        assert_eq!(s[2].anchor.as_deref(), Some("第二节"));
    }

    #[test]
    fn language_detection() {
        assert_eq!(detect_lang("如何申请退款 refund"), "zh");
        assert_eq!(
            detect_lang("How do I get a refund for my ECS instance?"),
            "en"
        );
        assert_eq!(detect_lang("ECS实例无法启动"), "zh");
    }

    #[test]
    fn slug_folds_punctuation() {
        assert_eq!(slug("How to reset a password?"), "how-to-reset-a-password");
    }
}
