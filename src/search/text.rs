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

use std::borrow::Cow;
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
    let mut text = Cow::Borrowed(markdown);
    if text.contains("<!--") {
        text = Cow::Owned(COMMENT.replace_all(&text, " ").into_owned());
    }
    if text.contains("](") {
        text = Cow::Owned(IMAGE.replace_all(&text, "$1").into_owned());
        text = Cow::Owned(LINK.replace_all(&text, "$1").into_owned());
    }
    if text.contains("://") {
        text = Cow::Owned(URL.replace_all(&text, " ").into_owned());
    }
    // The words of every kept line, joined by single spaces.
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("```") || line.starts_with("~~~") {
            continue;
        }
        // Emphasis and escapes are punctuation to the analyzer, but noise in a snippet.
        let cleaned = if line.contains(['*', '\\']) {
            Cow::Owned(
                line.replace("**", "")
                    .replace("\\>", ">")
                    .replace("\\_", "_"),
            )
        } else {
            Cow::Borrowed(line)
        };
        for word in cleaned.split_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
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
    fn whitespace_collapses_and_escapes_unescape() {
        let text = plain_text("  a\u{3000}b  \n\n\\_x\\> **y**\r\n ```\n\tz\t\n");
        assert_eq!(text, "a b _x> y z");
        assert_eq!(plain_text("\u{3000}\n"), "");
    }

    #[test]
    fn drops_urls_and_images() {
        let text = plain_text(
            "登录 [控制台](https://ecs.console.aliyun.com/?spm=1#/x) 。\n\n![](http://a/b.png)\n访问 https://x.example/y 即可",
        );
        assert_eq!(text, "登录 控制台 。 访问 即可");
    }
}
