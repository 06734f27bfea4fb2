//! Markdown source → the plain text that is indexed and shown in snippets.
//!
//! Owns: dropping what readers do not read as words (link and image targets, bare URLs, emphasis
//! markers, HTML comments) so they neither match queries nor fill snippets. Must never: drop
//! words the reader sees (code, inline HTML shown as text such as `<script>` in a code block).
//!
//! ```
//! use kefu::search::text::plain_text;
//! assert_eq!(plain_text("See [the **console**](https://x.example/a?b=1) ![](a.png)"), "See the console");
//! ```

use std::sync::LazyLock;

use regex::Regex;

static IMAGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"!\[([^\]\n]*)\]\([^)\n]*\)").expect("static regex"));
static LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[([^\]\n]*)\]\([^)\n]*\)").expect("static regex"));
static URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"https?://[^\s)\]>]+").expect("static regex"));
static COMMENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<!--.*?-->").expect("static regex"));

/// Plain text of a Markdown fragment.
pub fn plain_text(markdown: &str) -> String {
    let mut text = markdown.to_string();
    if text.contains("<!--") {
        text = COMMENT.replace_all(&text, " ").into_owned();
    }
    if text.contains("](") {
        text = IMAGE.replace_all(&text, "$1").into_owned();
        text = LINK.replace_all(&text, "$1").into_owned();
    }
    if text.contains("://") {
        text = URL.replace_all(&text, " ").into_owned();
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("```") || line.starts_with("~~~") {
            continue;
        }
        // Emphasis and escapes are punctuation to the analyzer, but noise in a snippet.
        let cleaned = line
            .replace("**", "")
            .replace("\\>", ">")
            .replace("\\_", "_");
        let cleaned = cleaned.trim();
        if cleaned.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(cleaned);
    }
    let collapsed: String = out.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_code_and_html_text() {
        let text = plain_text("```html\n<script>alert(1)</script>\n```\n\n**粗体** 与 `code`\n");
        assert_eq!(text, "<script>alert(1)</script> 粗体 与 `code`");
    }

    #[test]
    fn drops_urls_and_images() {
        let text = plain_text(
            "登录 [控制台](https://ecs.console.aliyun.com/?spm=1#/x) 。\n\n![](http://a/b.png)\n访问 https://x.example/y 即可",
        );
        assert_eq!(text, "登录 控制台 。 访问 即可");
    }
}
