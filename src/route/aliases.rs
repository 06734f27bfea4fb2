//! Product aliases (`models/aliases.txt`): other clouds' names for the products a router's
//! queues cover (EC2, S3, CloudFront, Route 53, IAM…) mapped to the names its training data
//! uses (ECS, OSS, CDN, DNS, RAM…), so that a ticket about another vendor's product still holds
//! words the model has weights for, instead of only words it never saw (which make it abstain).
//!
//! Owns: the file format (one group per line, `our names: alias, alias, …`, `#` comments), its
//! validation (every error names its line, at load time) and the expansion of a ticket's text:
//! the names of each group with an alias in the text are put before it, once per group, in
//! the order the aliases first occur. Aliases are matched as routing keywords are
//! ([`super::rules`]): on normalized text (full-width, traditional Chinese and case folded),
//! a Latin edge on a word boundary (`ELB` is not in `elbow`). A text without an alias is
//! returned as it is.
//!
//! A model trained with `kefu train --aliases FILE` keeps the file as `aliases.txt` in its
//! directory ([`ALIASES_FILE`]): its training and dev rows were expanded as every ticket it
//! classifies is, so training and prediction see the same text.
//! Must never: change a text that holds no alias.
//!
//! ```
//! use kefu::route::aliases::ProductAliases;
//! let aliases = ProductAliases::parse("CDN: CloudFront, Azure Front Door\n", "inline").unwrap();
//! assert_eq!(aliases.expand("Cloudfront serves stale files"), "CDN\nCloudfront serves stale files");
//! assert_eq!(aliases.expand("my cloudfronts"), "my cloudfronts");
//! ```

use std::borrow::Cow;
use std::path::Path;

use aho_corasick::AhoCorasick;

use super::RouteError;
use super::features::{MAX_ANALYZED_BYTES, prefix};
use super::rules::Keyword;
use crate::analyzer::Normalized;

/// The aliases' file name in a model directory.
pub const ALIASES_FILE: &str = "aliases.txt";

/// A validated aliases file.
#[derive(Debug, Clone)]
pub struct ProductAliases {
    /// The file as read (a model directory stores it as it is).
    source: String,
    /// Each group's names, as written.
    names: Vec<String>,
    /// Every alias, normalized, with its group.
    aliases: Vec<(Keyword, usize)>,
    /// All aliases in one automaton (pattern `i` is `aliases[i]`).
    matcher: AhoCorasick,
}

impl ProductAliases {
    /// Parses an aliases file; `origin` names it in errors (`origin:line: message`).
    pub fn parse(source: &str, origin: &str) -> Result<ProductAliases, String> {
        let mut names = Vec::new();
        let mut aliases = Vec::new();
        for (i, line) in source.lines().enumerate() {
            let at = |message: &str| format!("{origin}:{}: {message}", i + 1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((ours, theirs)) = line.split_once(':') else {
                return Err(at("expected `our names: alias, alias, ...`"));
            };
            let ours = ours.trim();
            if ours.is_empty() {
                return Err(at("no names before the colon"));
            }
            let group = names.len();
            for alias in theirs.split(',') {
                let keyword = Keyword::new(alias);
                if keyword.text.is_empty() {
                    return Err(at("an empty alias (two commas, or a comma at the end?)"));
                }
                aliases.push((keyword, group));
            }
            names.push(ours.to_string());
        }
        let matcher = AhoCorasick::new(aliases.iter().map(|(k, _)| &k.text))
            .map_err(|e| format!("{origin}: {e}"))?;
        Ok(ProductAliases {
            source: source.to_string(),
            names,
            aliases,
            matcher,
        })
    }

    /// Reads and parses an aliases file.
    pub fn load(path: &Path) -> Result<ProductAliases, RouteError> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| RouteError::Model(format!("{}: {e}", path.display())))?;
        ProductAliases::parse(&source, &path.display().to_string()).map_err(RouteError::Model)
    }

    /// The file as read.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the file has no group.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `text` with the names of each group that has an alias in it (in its first
    /// [`MAX_ANALYZED_BYTES`], the part a model reads) put before it, one group a line.
    pub fn expand<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if self.aliases.is_empty() {
            return Cow::Borrowed(text);
        }
        let normalized = Normalized::new(prefix(text, MAX_ANALYZED_BYTES));
        let norm = normalized.text();
        // (first occurrence, group), one per group.
        let mut found: Vec<(usize, usize)> = Vec::new();
        for m in self.matcher.find_overlapping_iter(norm) {
            let (keyword, group) = &self.aliases[m.pattern().as_usize()];
            if !keyword.accepts(norm, m.start(), m.end()) {
                continue;
            }
            match found.iter_mut().find(|(_, g)| g == group) {
                Some(entry) => entry.0 = entry.0.min(m.start()),
                None => found.push((m.start(), *group)),
            }
        }
        if found.is_empty() {
            return Cow::Borrowed(text);
        }
        found.sort_unstable();
        let mut out = String::with_capacity(text.len() + 32 * found.len());
        for (_, group) in found {
            out.push_str(&self.names[group]);
            out.push('\n');
        }
        out.push_str(text);
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# comment\n\n云服务器 ECS: EC2, 腾讯云服务器, Azure VM\nCDN: CloudFront\n域名 DNS: Route 53\n";

    #[test]
    fn aliases_add_our_names_once_per_group_in_order_of_occurrence() {
        let a = ProductAliases::parse(FILE, "t").unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(
            a.expand("Route 53 points at my EC2 box; the ec2 box is slow"),
            "域名 DNS\n云服务器 ECS\nRoute 53 points at my EC2 box; the ec2 box is slow"
        );
        // Normalized: traditional Chinese, full-width letters, case.
        assert_eq!(
            a.expand("騰訊雲服務器連不上"),
            "云服务器 ECS\n騰訊雲服務器連不上"
        );
        assert_eq!(a.expand("ＥＣ２ down"), "云服务器 ECS\nＥＣ２ down");
        // A Latin alias only on word boundaries; a multi-word alias as written.
        assert!(matches!(a.expand("sec2 and ec2x"), Cow::Borrowed(_)));
        assert!(matches!(a.expand("route 5"), Cow::Borrowed(_)));
        assert_eq!(a.expand("azure vm"), "云服务器 ECS\nazure vm");
        // No alias: the same text, not a copy.
        assert!(matches!(a.expand("发票怎么开"), Cow::Borrowed(_)));
        assert!(matches!(a.expand(""), Cow::Borrowed(_)));
    }

    #[test]
    fn only_the_part_a_model_reads_is_searched() {
        let a = ProductAliases::parse(FILE, "t").unwrap();
        let long = format!("{} CloudFront", "x ".repeat(MAX_ANALYZED_BYTES));
        assert!(matches!(a.expand(&long), Cow::Borrowed(_)));
        let early = format!("CloudFront {}", "x ".repeat(MAX_ANALYZED_BYTES));
        assert!(a.expand(&early).starts_with("CDN\nCloudFront"));
    }

    #[test]
    fn errors_name_the_line() {
        let err = |s: &str| ProductAliases::parse(s, "f.txt").unwrap_err();
        assert_eq!(
            err("CDN: CloudFront\nno colon here\n"),
            "f.txt:2: expected `our names: alias, alias, ...`"
        );
        assert_eq!(err("\n : EC2\n"), "f.txt:2: no names before the colon");
        assert!(err("CDN: CloudFront,\n").starts_with("f.txt:1: an empty alias"));
        assert!(err("CDN:\n").starts_with("f.txt:1: an empty alias"));
    }

    #[test]
    fn the_shipped_file_parses() {
        let a = ProductAliases::parse(include_str!("../../models/aliases.txt"), "models").unwrap();
        assert!(a.len() >= 15);
        assert!(
            a.expand("my S3 bucket")
                .starts_with("对象存储 OSS bucket\n")
        );
        assert!(matches!(
            a.expand("阿里云 ECS 实例无法启动"),
            Cow::Borrowed(_)
        ));
    }
}
