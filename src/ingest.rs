//! Ingestion: folders of Markdown, JSONL article files and HTML into [`Article`]s.
//!
//! Owns: walking folders, turning each input format into an `Article` (ids, titles, language,
//! front matter) and reporting bad records as [`IngestProblem`]s instead of failing the batch.
//! Must never: touch the index, or abort a batch because one file is bad.
//!
//! ```
//! let ingested = kefu::ingest::parse_articles_json(
//!     "{\"id\":\"faq/a\",\"title\":\"退款\",\"body\":\"三天到账\"}\nnot json\n",
//!     "faq.jsonl",
//! );
//! assert_eq!(ingested.articles.len(), 1);
//! assert_eq!(ingested.problems[0].line, Some(2));
//! ```

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Deserialize;

use crate::article::{Article, detect_lang};

/// One bad record, reported and skipped; the rest of the batch goes on.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct IngestProblem {
    /// File the record came from (or `<request>` for HTTP bodies).
    pub source: String,
    /// 1-based line of the record, when it has one (JSONL).
    pub line: Option<usize>,
    pub message: String,
}

/// Articles read from paths, and the problems met on the way.
#[derive(Debug, Default)]
pub struct Ingested {
    pub articles: Vec<Article>,
    pub problems: Vec<IngestProblem>,
}

/// Longest accepted article id, title and body (bytes).
const MAX_ID_BYTES: usize = 1024;
const MAX_TITLE_BYTES: usize = 4096;
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// One input file found under a path, with the folder its id is relative to.
struct InputFile {
    root: PathBuf,
    path: PathBuf,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Markdown,
    Jsonl,
    Html,
}

fn kind_of(path: &Path) -> Option<Kind> {
    let name = path.file_name()?.to_string_lossy().to_lowercase();
    if name.ends_with(".md") || name.ends_with(".markdown") {
        Some(Kind::Markdown)
    } else if name.ends_with(".jsonl") || name.ends_with(".json") {
        Some(Kind::Jsonl)
    } else if name.ends_with(".html") || name.ends_with(".htm") {
        Some(Kind::Html)
    } else {
        None
    }
}

/// Reads every article under `paths` (folders walked recursively; `.md`, `.jsonl`, `.html`).
pub fn read_paths(paths: &[PathBuf]) -> Ingested {
    let mut ingested = Ingested::default();
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, path, &mut files, &mut ingested.problems);
        } else if path.is_file() {
            match kind_of(path) {
                Some(kind) => files.push(InputFile {
                    root: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                    path: path.clone(),
                    kind,
                }),
                None => ingested.problems.push(problem(
                    path,
                    None,
                    "not a .md, .jsonl or .html file".into(),
                )),
            }
        } else {
            ingested
                .problems
                .push(problem(path, None, "no such file or folder".into()));
        }
    }
    let results: Vec<Ingested> = files
        .par_iter()
        .map(|file| match file.kind {
            Kind::Markdown => one(read_markdown(&file.root, &file.path)),
            Kind::Html => one(read_html(&file.root, &file.path)),
            Kind::Jsonl => match std::fs::read(&file.path) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => parse_articles_json(&text, &display(&file.path)),
                    Err(err) => one(Err(problem(
                        &file.path,
                        Some(line_of_byte(err.as_bytes(), err.utf8_error().valid_up_to())),
                        "invalid UTF-8".into(),
                    ))),
                },
                Err(err) => one(Err(problem(&file.path, None, err.to_string()))),
            },
        })
        .collect();
    for result in results {
        ingested.articles.extend(result.articles);
        ingested.problems.extend(result.problems);
    }
    ingested
}

fn one(result: Result<Article, IngestProblem>) -> Ingested {
    match result {
        Ok(article) => Ingested {
            articles: vec![article],
            problems: Vec::new(),
        },
        Err(problem) => Ingested {
            articles: Vec::new(),
            problems: vec![problem],
        },
    }
}

/// Recursive walk in name order (deterministic ids and problem order). The top-level README and
/// LICENSE of a folder describe it and are not articles (`kb/README.md`).
fn walk(root: &Path, dir: &Path, files: &mut Vec<InputFile>, problems: &mut Vec<IngestProblem>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            problems.push(problem(dir, None, err.to_string()));
            return;
        }
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            if !name.starts_with('.') {
                walk(root, &path, files, problems);
            }
            continue;
        }
        if dir == root {
            let upper = name.to_uppercase();
            if upper == "README.MD" || upper.starts_with("LICENSE") {
                continue;
            }
        }
        let Some(kind) = kind_of(&path) else { continue };
        if name.chars().any(char::is_control) {
            problems.push(problem(
                &path,
                None,
                "file name contains a control character (newline?); rename the file".into(),
            ));
            continue;
        }
        files.push(InputFile {
            root: root.to_path_buf(),
            path,
            kind,
        });
    }
}

fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn problem(path: &Path, line: Option<usize>, message: String) -> IngestProblem {
    IngestProblem {
        source: display(path),
        line,
        message,
    }
}

fn line_of_byte(bytes: &[u8], at: usize) -> usize {
    bytes[..at.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The id of a file: its path relative to `root`, `/`-separated.
fn relative_id(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Article as posted in JSON (every field but id/title optional).
#[derive(Deserialize)]
struct JsonArticle {
    id: String,
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    product: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    updated_at: Option<String>,
}

impl JsonArticle {
    fn into_article(self) -> Article {
        let mut article = Article {
            id: self.id,
            title: self.title,
            body: self.body,
            lang: self.lang.filter(|l| !l.trim().is_empty()),
            product: self.product.filter(|p| !p.trim().is_empty()),
            category: self.category.filter(|c| !c.trim().is_empty()),
            url: self.url,
            tags: self.tags,
            updated_at: self.updated_at,
        };
        if article.lang.is_none() {
            article.lang = Some(detect_lang(&format!("{} {}", article.title, article.body)).into());
        }
        article
    }
}

/// Parses JSONL text (one article object per line) or a JSON array of articles, as posted to
/// `POST /v1/articles`. `source` names the input in problems.
pub fn parse_articles_json(text: &str, source: &str) -> Ingested {
    let mut ingested = Ingested::default();
    let push =
        |ingested: &mut Ingested, line: Option<usize>, parsed: serde_json::Result<JsonArticle>| {
            let result = parsed
                .map_err(|err| err.to_string())
                .map(JsonArticle::into_article)
                .and_then(|article| validate(&article).map(|()| article));
            match result {
                Ok(article) => ingested.articles.push(article),
                Err(message) => ingested.problems.push(IngestProblem {
                    source: source.to_string(),
                    line,
                    message,
                }),
            }
        };
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<serde_json::Value>>(trimmed) {
            Ok(values) => {
                for value in values {
                    push(&mut ingested, None, serde_json::from_value(value));
                }
            }
            Err(err) => ingested.problems.push(IngestProblem {
                source: source.to_string(),
                line: Some(err.line()),
                message: format!("invalid JSON array: {err}"),
            }),
        }
        return ingested;
    }
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start_matches('\u{feff}').trim();
        if line.is_empty() {
            continue;
        }
        push(&mut ingested, Some(i + 1), serde_json::from_str(line));
    }
    ingested
}

/// Checks one article (id shape, non-empty title/body, sizes) before it is stored.
pub fn validate(article: &Article) -> Result<(), String> {
    let id = &article.id;
    if id.trim().is_empty() {
        return Err("empty id".into());
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!("id longer than {MAX_ID_BYTES} bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err("id contains a control character".into());
    }
    if article.title.trim().is_empty() {
        return Err("empty title".into());
    }
    if article.title.len() > MAX_TITLE_BYTES {
        return Err(format!("title longer than {MAX_TITLE_BYTES} bytes"));
    }
    if article.body.len() > MAX_BODY_BYTES {
        return Err(format!("body longer than {MAX_BODY_BYTES} bytes"));
    }
    if !has_words(&article.title) && !has_words(&article.body) {
        return Err("empty article: no text in title or body".into());
    }
    if let Some(lang) = &article.lang
        && !matches!(lang.as_str(), "zh" | "en")
    {
        return Err(format!("lang must be zh or en, not {lang:?}"));
    }
    Ok(())
}

fn has_words(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

/// YAML front matter keys kefu reads.
#[derive(Deserialize, Default)]
struct FrontMatter {
    title: Option<String>,
    lang: Option<String>,
    product: Option<String>,
    category: Option<String>,
    url: Option<String>,
    #[serde(default)]
    tags: Vec<serde_yaml_ng::Value>,
    updated_at: Option<serde_yaml_ng::Value>,
}

/// Reads one Markdown file (front matter optional); `root` gives the id.
pub fn read_markdown(root: &Path, path: &Path) -> Result<Article, IngestProblem> {
    let bytes = std::fs::read(path).map_err(|err| problem(path, None, err.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|err| {
        let line = line_of_byte(err.as_bytes(), err.utf8_error().valid_up_to());
        problem(path, Some(line), "invalid UTF-8".into())
    })?;
    let id = relative_id(root, path);
    let file_title = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .map(|n| strip_md_extension(&n).to_string())
        .unwrap_or_default();
    parse_markdown(&id, &text, &file_title).map_err(|(line, message)| problem(path, line, message))
}

fn strip_md_extension(name: &str) -> &str {
    let lower = name.to_lowercase();
    for ext in [".markdown", ".md"] {
        if lower.ends_with(ext) {
            return &name[..name.len() - ext.len()];
        }
    }
    name
}

/// Markdown text → article. Errors carry a 1-based line when they have one.
fn parse_markdown(id: &str, text: &str, file_title: &str) -> Result<Article, FileError> {
    let text = text.trim_start_matches('\u{feff}');
    let (front, body, body_line) = split_front_matter(text)?;
    let front: FrontMatter = match front {
        Some(yaml) if !yaml.trim().is_empty() => serde_yaml_ng::from_str(yaml).map_err(|err| {
            let line = err.location().map(|l| l.line() + 1);
            (line, format!("broken front matter: {err}"))
        })?,
        _ => FrontMatter::default(),
    };
    let mut body = body.to_string();
    let mut title = front.title.filter(|t| !t.trim().is_empty());
    if title.is_none() {
        // The first `# ` heading is the title; it leaves the body (it is not a section).
        let mut fence = false;
        let mut offset = 0;
        for line in body.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                fence = !fence;
            }
            if !fence
                && line.starts_with("# ")
                && let Some((heading, _)) = crate::article::parse_heading(line.trim_end())
            {
                title = Some(heading);
                body.replace_range(offset..offset + line.len(), "");
                break;
            }
            offset += line.len();
        }
    }
    let title = title.unwrap_or_else(|| file_title.to_string());
    let lang = front
        .lang
        .filter(|l| !l.trim().is_empty())
        .unwrap_or_else(|| detect_lang(&format!("{title} {body}")).to_string());
    let tags = front
        .tags
        .into_iter()
        .filter_map(|v| match v {
            serde_yaml_ng::Value::String(s) => Some(s),
            serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
            serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
        .collect();
    let updated_at = front.updated_at.and_then(|v| match v {
        serde_yaml_ng::Value::String(s) => Some(s),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let article = Article {
        id: id.to_string(),
        title: title.trim().to_string(),
        body,
        lang: Some(lang),
        product: front.product.filter(|p| !p.trim().is_empty()),
        category: front.category.filter(|c| !c.trim().is_empty()),
        url: front.url.filter(|u| !u.trim().is_empty()),
        tags,
        updated_at,
    };
    validate(&article).map_err(|message| (Some(body_line), message))?;
    if !has_words(&article.body) {
        return Err((
            Some(body_line),
            "empty article: no text after the title".into(),
        ));
    }
    Ok(article)
}

/// A problem inside one file: 1-based line (when known) and message.
type FileError = (Option<usize>, String);

/// Front matter (if any), body, and the 1-based line where the body starts.
type FrontMatterSplit<'a> = (Option<&'a str>, &'a str, usize);

/// `---\nyaml\n---\nbody` → (yaml, body, 1-based line where the body starts).
fn split_front_matter(text: &str) -> Result<FrontMatterSplit<'_>, FileError> {
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return Ok((None, text, 1));
    };
    let mut offset = 0;
    for (i, line) in rest.split_inclusive('\n').enumerate() {
        if matches!(line.trim_end(), "---" | "...") {
            let yaml = &rest[..offset];
            let body = &rest[offset + line.len()..];
            return Ok((Some(yaml), body, i + 3));
        }
        offset += line.len();
    }
    Err((Some(1), "broken front matter: no closing `---`".into()))
}

/// Reads one HTML article: `<title>`/`<h1>` title, `kefu-lang`/`kefu-product` metas, headings
/// turned into `## text {#id}` lines so sections and anchors work as for Markdown.
pub fn read_html(root: &Path, path: &Path) -> Result<Article, IngestProblem> {
    let bytes = std::fs::read(path).map_err(|err| problem(path, None, err.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|err| {
        let line = line_of_byte(err.as_bytes(), err.utf8_error().valid_up_to());
        problem(path, Some(line), "invalid UTF-8".into())
    })?;
    let file_title = path
        .file_stem()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let article = html_to_article(&relative_id(root, path), &text, &file_title);
    validate(&article).map_err(|message| problem(path, None, message))?;
    Ok(article)
}

fn html_to_article(id: &str, html: &str, file_title: &str) -> Article {
    use scraper::{ElementRef, Html, Selector};
    let document = Html::parse_document(html);
    let select = |css: &str| Selector::parse(css).expect("static selector");
    let text_of = |el: ElementRef<'_>| -> String {
        el.text()
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let meta = |name: &str| {
        document
            .select(&select(&format!("meta[name=\"{name}\"]")))
            .next()
            .and_then(|m| m.value().attr("content"))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let h1 = document.select(&select("h1")).next().map(text_of);
    let title = document
        .select(&select("title"))
        .next()
        .map(text_of)
        .filter(|t| !t.is_empty())
        .or(h1.clone())
        .unwrap_or_else(|| file_title.to_string());
    let url = document
        .select(&select("link[rel=\"canonical\"]"))
        .next()
        .and_then(|l| l.value().attr("href"))
        .map(str::to_string);
    let blocks = "h1, h2, h3, h4, h5, h6, p, li, pre, td, th, dt, dd, blockquote";
    let block = select(blocks);
    let mut body = String::new();
    for el in document.select(&block) {
        // Nested blocks (a <p> inside an <li>) are part of their outer block's text.
        let nested = el
            .ancestors()
            .filter_map(ElementRef::wrap)
            .any(|a| block.matches(&a));
        if nested {
            continue;
        }
        let name = el.value().name();
        let text = if name == "pre" {
            el.text().collect::<String>()
        } else {
            text_of(el)
        };
        if text.trim().is_empty() {
            continue;
        }
        match name {
            "h1" if Some(&text) == h1.as_ref() && body.is_empty() => continue,
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                let level = name[1..].parse::<usize>().unwrap_or(2).max(2);
                body.push_str(&"#".repeat(level));
                body.push(' ');
                body.push_str(&text);
                if let Some(anchor) = el.value().attr("id") {
                    body.push_str(&format!(" {{#{anchor}}}"));
                }
                body.push_str("\n\n");
            }
            "pre" => {
                body.push_str("```\n");
                body.push_str(text.trim_end());
                body.push_str("\n```\n\n");
            }
            "li" => {
                body.push_str("- ");
                body.push_str(&text);
                body.push('\n');
            }
            _ => {
                body.push_str(&text);
                body.push_str("\n\n");
            }
        }
    }
    let lang = meta("kefu-lang").unwrap_or_else(|| detect_lang(&format!("{title} {body}")).into());
    let tags = meta("keywords")
        .map(|k| {
            k.split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Article {
        id: id.to_string(),
        title,
        body,
        lang: Some(lang),
        product: meta("kefu-product"),
        category: meta("kefu-category"),
        url,
        tags,
        updated_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_title_from_front_matter_heading_or_file_name() {
        let a = parse_markdown("a.md", "---\ntitle: T\nlang: en\n---\n# H\nbody\n", "a").unwrap();
        assert_eq!(a.title, "T");
        let b = parse_markdown("b.md", "intro\n# 标题 {#x}\n正文\n", "b").unwrap();
        assert_eq!(b.title, "标题");
        assert!(!b.body.contains("标题"));
        assert_eq!(b.lang.as_deref(), Some("zh"));
        let c = parse_markdown("c.md", "just text here\n", "c-name").unwrap();
        assert_eq!(c.title, "c-name");
    }

    #[test]
    fn broken_front_matter_is_a_problem_with_a_line() {
        let err = parse_markdown("a.md", "---\ntitle: [oops\n---\nbody\n", "a").unwrap_err();
        assert!(err.1.contains("front matter"), "{err:?}");
        assert!(err.0.is_some());
        let err = parse_markdown("a.md", "---\ntitle: x\nbody without end\n", "a").unwrap_err();
        assert_eq!(err.0, Some(1));
    }

    #[test]
    fn category_comes_from_each_format_and_blank_is_none() {
        let md = "---\nproduct: billing\ncategory: billing\n---\nbody\n";
        let a = parse_markdown("a.md", md, "a").unwrap();
        assert_eq!(a.category.as_deref(), Some("billing"));
        let b = parse_markdown("b.md", "---\ncategory: \"  \"\n---\nbody\n", "b").unwrap();
        assert_eq!(b.category, None);
        let jsonl = r#"{"id":"a","title":"A","body":"x","category":"network"}
{"id":"b","title":"B","body":"x","category":""}"#;
        let ingested = parse_articles_json(jsonl, "f.jsonl");
        let categories: Vec<_> = ingested
            .articles
            .iter()
            .map(|a| a.category.clone())
            .collect();
        assert_eq!(categories, vec![Some("network".to_string()), None]);
    }

    #[test]
    fn numeric_tags_stay_strings() {
        let a = parse_markdown("a.md", "---\ntags: [502, cdn]\n---\nbody\n", "a").unwrap();
        assert_eq!(a.tags, vec!["502".to_string(), "cdn".to_string()]);
    }

    #[test]
    fn jsonl_reports_line_numbers() {
        let text = "{\"id\":\"a\",\"title\":\"A\",\"body\":\"x\"}\n\n{bad\n{\"id\":\"b\",\"title\":\"\",\"body\":\"x\"}\n";
        let ingested = parse_articles_json(text, "f.jsonl");
        assert_eq!(ingested.articles.len(), 1);
        let lines: Vec<_> = ingested.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![Some(3), Some(4)]);
    }

    #[test]
    fn json_array_is_accepted() {
        let ingested = parse_articles_json(r#"[{"id":"a","title":"A"},{"id":"b"}]"#, "<request>");
        assert_eq!(ingested.articles.len(), 1);
        assert_eq!(ingested.problems.len(), 1);
    }

    #[test]
    fn html_headings_become_sections() {
        let html = r#"<html><head><title>T</title><meta name="kefu-lang" content="en">
            <meta name="kefu-product" content="network"><meta name="kefu-category" content="network">
            </head><body><h1>T</h1><p>Intro text.</p>
            <h2 id="one">First</h2><ul><li><p>Item</p></li></ul></body></html>"#;
        let a = html_to_article("x.html", html, "x");
        assert_eq!(a.title, "T");
        assert_eq!(a.product.as_deref(), Some("network"));
        assert_eq!(a.category.as_deref(), Some("network"));
        let sections = a.sections();
        assert_eq!(sections[1].anchor.as_deref(), Some("one"));
        assert!(sections[1].text.contains("- Item"), "{:?}", sections[1]);
    }
}
