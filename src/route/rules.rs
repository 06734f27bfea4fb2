//! Routing rules (`models/routing.toml`): category → queue, urgency keywords and regexes →
//! priority P0–P3 with the SLA table of DESIGN.md, and the triage queue for tickets that need a
//! human.
//!
//! Owns: parsing and validating the rules file (every error carries its line, and all of them
//! surface at load time, never at the first ticket), and matching keywords on normalized text
//! (so traditional, full-width and upper-case input match the simplified lower-case keywords).
//! Must never: look at the classifier.
//!
//! ```
//! let rules = kefu::route::rules::RoutingRules::parse(r#"
//! triage_queue = "triage"
//! default_priority = "P3"
//! [queues]
//! billing = "billing-team"
//! [sla]
//! P0 = { first_response_minutes = 5, resolution_hours = 2 }
//! P1 = { first_response_minutes = 15, resolution_hours = 4 }
//! P2 = { first_response_minutes = 30, resolution_hours = 8 }
//! P3 = { first_response_minutes = 60, resolution_hours = 24 }
//! [[priority]]
//! level = "P0"
//! keywords = ["宕机", "down"]
//! "#, "inline").unwrap();
//! assert_eq!(rules.priority("網站宕機了").level, "P0");
//! assert_eq!(rules.priority("how do I download an invoice").level, "P3");
//! assert_eq!(rules.queue("billing", false), "billing-team");
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use aho_corasick::AhoCorasick;
use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use super::{RouteError, Sla};
use crate::analyzer::Normalized;

/// Rules are matched against at most this much of a ticket.
const MAX_MATCHED_BYTES: usize = 64 * 1024;

const LEVELS: [&str; 4] = ["P0", "P1", "P2", "P3"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    triage_queue: Spanned<String>,
    default_priority: Spanned<String>,
    #[serde(default)]
    abstain_labels: Vec<String>,
    #[serde(default)]
    queues: BTreeMap<String, String>,
    sla: BTreeMap<Spanned<String>, SlaEntry>,
    #[serde(default)]
    priority: Vec<PriorityEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlaEntry {
    first_response_minutes: u32,
    resolution_hours: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorityEntry {
    level: Spanned<String>,
    #[serde(default)]
    keywords: Vec<Spanned<String>>,
    #[serde(default)]
    patterns: Vec<Spanned<String>>,
}

/// A keyword in normalized form; Latin edges must sit on word boundaries (`down` ≠ `download`).
#[derive(Debug, Clone)]
pub(super) struct Keyword {
    pub(super) text: String,
    latin_start: bool,
    latin_end: bool,
}

impl Keyword {
    pub(super) fn new(raw: &str) -> Keyword {
        let text = Normalized::new(raw).text().trim().to_string();
        let latin = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        Keyword {
            latin_start: latin(text.chars().next()),
            latin_end: latin(text.chars().last()),
            text,
        }
    }

    /// Whether an occurrence of the keyword at `start..end` of `text` counts: a Latin edge must
    /// not continue a word.
    pub(super) fn accepts(&self, text: &str, start: usize, end: usize) -> bool {
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        let cut_start = self.latin_start && word(text[..start].chars().next_back());
        let cut_end = self.latin_end && word(text[end..].chars().next());
        !cut_start && !cut_end
    }
}

#[derive(Debug, Clone)]
struct LevelRules {
    level: usize,
    keywords: Vec<Keyword>,
    /// All of `keywords` in one automaton (pattern `i` is `keywords[i]`): one pass over the
    /// text per level instead of one substring search per keyword.
    matcher: AhoCorasick,
    patterns: Vec<Regex>,
}

impl LevelRules {
    fn new(
        level: usize,
        keywords: Vec<Keyword>,
        patterns: Vec<Regex>,
    ) -> Result<LevelRules, aho_corasick::BuildError> {
        Ok(LevelRules {
            level,
            matcher: AhoCorasick::new(keywords.iter().map(|k| &k.text))?,
            keywords,
            patterns,
        })
    }

    /// The first keyword in file order with an accepted occurrence in `text`.
    fn keyword_in(&self, text: &str) -> Option<&Keyword> {
        self.matcher
            .find_overlapping_iter(text)
            .filter(|m| self.keywords[m.pattern()].accepts(text, m.start(), m.end()))
            .map(|m| m.pattern().as_usize())
            .min()
            .map(|i| &self.keywords[i])
    }
}

/// The priority of a ticket and why.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorityMatch {
    /// `P0`…`P3`.
    pub level: &'static str,
    pub sla: Sla,
    /// The keyword or pattern that decided it (`None`: the default priority).
    pub matched: Option<String>,
}

/// Validated routing rules.
#[derive(Debug, Clone)]
pub struct RoutingRules {
    triage_queue: String,
    default_level: usize,
    abstain_labels: Vec<String>,
    queues: BTreeMap<String, String>,
    sla: [Sla; 4],
    levels: Vec<LevelRules>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn level_index(s: &str) -> Option<usize> {
    LEVELS.iter().position(|l| *l == s)
}

impl RoutingRules {
    /// Loads and validates a rules file.
    pub fn load(path: &Path) -> Result<RoutingRules, RouteError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RouteError::Rules(format!("{}: {e}", path.display())))?;
        RoutingRules::parse(&text, &path.display().to_string())
    }

    /// Parses rules text; `origin` names it in error messages (`origin:line: message`).
    pub fn parse(text: &str, origin: &str) -> Result<RoutingRules, RouteError> {
        let at = |offset: usize, msg: String| {
            RouteError::Rules(format!("{origin}:{}: {msg}", line_of(text, offset)))
        };
        let file: RulesFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            RouteError::Rules(format!("{origin}:{line}: {}", e.message().trim()))
        })?;
        let default_level = level_index(file.default_priority.get_ref()).ok_or_else(|| {
            at(
                file.default_priority.span().start,
                format!(
                    "default_priority {:?} is not one of P0, P1, P2, P3",
                    file.default_priority.get_ref()
                ),
            )
        })?;
        if file.triage_queue.get_ref().trim().is_empty() {
            return Err(at(
                file.triage_queue.span().start,
                "triage_queue is empty".into(),
            ));
        }
        let mut sla: [Option<Sla>; 4] = [None; 4];
        for (level, entry) in &file.sla {
            let i = level_index(level.get_ref()).ok_or_else(|| {
                at(
                    level.span().start,
                    format!("unknown SLA level {:?} (P0–P3)", level.get_ref()),
                )
            })?;
            sla[i] = Some(Sla {
                first_response_minutes: entry.first_response_minutes,
                resolution_hours: entry.resolution_hours,
            });
        }
        let missing: Vec<&str> = (0..4)
            .filter(|&i| sla[i].is_none())
            .map(|i| LEVELS[i])
            .collect();
        if !missing.is_empty() {
            let line = text.find("[sla").map(|o| line_of(text, o)).unwrap_or(1);
            return Err(RouteError::Rules(format!(
                "{origin}:{line}: [sla] lacks level(s) {}",
                missing.join(", ")
            )));
        }
        let mut levels = Vec::new();
        for entry in &file.priority {
            let level = level_index(entry.level.get_ref()).ok_or_else(|| {
                at(
                    entry.level.span().start,
                    format!(
                        "priority level {:?} is not one of P0, P1, P2, P3",
                        entry.level.get_ref()
                    ),
                )
            })?;
            let mut keywords = Vec::new();
            for k in &entry.keywords {
                let kw = Keyword::new(k.get_ref());
                if kw.text.is_empty() {
                    return Err(at(k.span().start, "empty keyword".into()));
                }
                keywords.push(kw);
            }
            let mut patterns = Vec::new();
            for p in &entry.patterns {
                let re = Regex::new(p.get_ref()).map_err(|e| {
                    at(
                        p.span().start,
                        format!("invalid regex {:?}: {e}", p.get_ref()),
                    )
                })?;
                patterns.push(re);
            }
            levels.push(
                LevelRules::new(level, keywords, patterns)
                    .map_err(|e| at(entry.level.span().start, format!("keywords: {e}")))?,
            );
        }
        levels.sort_by_key(|l| l.level);
        Ok(RoutingRules {
            triage_queue: file.triage_queue.into_inner(),
            default_level,
            abstain_labels: file.abstain_labels,
            queues: file.queues,
            sla: sla.map(|s| s.expect("checked above")),
            levels,
        })
    }

    /// The priority of a ticket's text: the most urgent level with a matching keyword or
    /// pattern (matched on normalized text), else the default.
    pub fn priority(&self, text: &str) -> PriorityMatch {
        let normalized = Normalized::new(super::features::prefix(text, MAX_MATCHED_BYTES));
        let norm = normalized.text();
        for rules in &self.levels {
            let hit = rules.keyword_in(norm).map(|k| k.text.clone()).or_else(|| {
                rules
                    .patterns
                    .iter()
                    .find(|p| p.is_match(norm))
                    .map(|p| p.as_str().to_string())
            });
            if hit.is_some() {
                return PriorityMatch {
                    level: LEVELS[rules.level],
                    sla: self.sla[rules.level],
                    matched: hit,
                };
            }
        }
        PriorityMatch {
            level: LEVELS[self.default_level],
            sla: self.sla[self.default_level],
            matched: None,
        }
    }

    /// The queue for a predicted category: the triage queue when a human must look, the mapped
    /// queue otherwise (a label with no mapping is its own queue).
    pub fn queue(&self, category: &str, needs_human: bool) -> String {
        if needs_human || self.is_abstain_label(category) {
            return self.triage_queue.clone();
        }
        self.queues
            .get(category)
            .cloned()
            .unwrap_or_else(|| category.to_string())
    }

    /// Labels that mean "none of our queues" (`oos`): predicting one needs a human.
    pub fn is_abstain_label(&self, label: &str) -> bool {
        self.abstain_labels.iter().any(|l| l == label)
    }

    pub fn triage_queue(&self) -> &str {
        &self.triage_queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"triage_queue = "triage"
default_priority = "P3"
[sla]
P0 = { first_response_minutes = 5, resolution_hours = 2 }
P1 = { first_response_minutes = 15, resolution_hours = 4 }
P2 = { first_response_minutes = 30, resolution_hours = 8 }
P3 = { first_response_minutes = 60, resolution_hours = 24 }
"#;

    fn err(text: &str) -> String {
        match RoutingRules::parse(text, "r.toml") {
            Err(RouteError::Rules(m)) => m,
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("accepted bad rules:\n{text}"),
        }
    }

    #[test]
    fn errors_carry_line_numbers() {
        let bad_regex = format!("{BASE}[[priority]]\nlevel = \"P1\"\npatterns = [\"(unclosed\"]\n");
        let m = err(&bad_regex);
        assert!(
            m.starts_with("r.toml:10:") && m.contains("invalid regex"),
            "{m}"
        );
        let bad_level = format!("{BASE}[[priority]]\nlevel = \"P7\"\n");
        assert!(
            err(&bad_level).starts_with("r.toml:9:"),
            "{}",
            err(&bad_level)
        );
        let syntax = format!("{BASE}[queues\n");
        assert!(err(&syntax).starts_with("r.toml:8:"), "{}", err(&syntax));
        let unknown = format!("colour = \"red\"\n{BASE}");
        assert!(err(&unknown).contains("colour"), "{}", err(&unknown));
        let missing_sla = BASE.replace(
            "P2 = { first_response_minutes = 30, resolution_hours = 8 }\n",
            "",
        );
        assert!(err(&missing_sla).contains("P2"));
    }

    #[test]
    fn latin_keywords_respect_word_boundaries() {
        let level = |words: &[&str]| {
            LevelRules::new(0, words.iter().map(|w| Keyword::new(w)).collect(), vec![]).unwrap()
        };
        let found = |rules: &LevelRules, text: &str| rules.keyword_in(text).map(|k| k.text.clone());
        let down = level(&["Down"]);
        assert_eq!(found(&down, "the site is down!").as_deref(), Some("down"));
        assert_eq!(found(&down, "download the invoice"), None);
        assert_eq!(found(&down, "countdown"), None);
        // An occurrence inside a word does not hide a later whole one.
        assert_eq!(
            found(&down, "download failed, site down").as_deref(),
            Some("down")
        );
        let zh = Keyword::new("宕機");
        assert_eq!(zh.text, "宕机");
        assert_eq!(
            found(&level(&["宕機"]), "服务器宕机了").as_deref(),
            Some("宕机")
        );
        // Several keywords match: the first in file order is the one reported.
        let both = level(&["data loss", "宕机", "down"]);
        assert_eq!(found(&both, "down: 服务器宕机").as_deref(), Some("宕机"));
        assert_eq!(
            found(&both, "宕机, data loss").as_deref(),
            Some("data loss")
        );
    }
}
