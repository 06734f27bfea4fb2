//! Ticket routing: classifier prediction + routing rules → a decision.
//!
//! Map: `features` (analyzer tokens → vocabulary ids + hashed n-grams), `vocab` (the
//! `tokenizer.json`), `model` (the candle network and its plain-array copy), `train` (lazy-AdamW
//! training loop, writes the model directory), `calibrate` (temperature, ECE, abstain threshold),
//! `classifier` (a loaded model directory: predict + explain), `rules` (`routing.toml`: queues,
//! priorities, SLA), `aliases` (other clouds' product names → ours, `models/aliases.txt`),
//! `eval` (`kefu eval classify`). The default model is `models/router`
//! (rebuild: `scripts/train-default.sh`).
//!
//! ```no_run
//! use kefu::route::{Ticket, TicketRouter};
//! let router = TicketRouter::load("models/router".as_ref(), None).unwrap();
//! let d = router.route(&Ticket { id: None, subject: "发票".into(), body: "发票抬头写错了".into() }).unwrap();
//! println!("{} → {} ({}, {:.2})", d.category, d.queue, d.priority, d.confidence);
//! ```
//!
//! Must never: discover a bad model or rules file at the first ticket: both are checked at load.

pub mod aliases;
pub mod calibrate;
pub mod classifier;
pub mod eval;
pub mod features;
pub mod knn;
pub mod model;
pub mod rules;
pub mod train;
pub mod vocab;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What can go wrong when loading or routing.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The ticket is unusable (empty text, too large...).
    #[error("invalid ticket: {0}")]
    InvalidTicket(String),
    /// The model directory is missing or corrupt.
    #[error("model error: {0}")]
    Model(String),
    /// The routing rules file is invalid (message carries the line).
    #[error("routing rules: {0}")]
    Rules(String),
}

/// A ticket as the pipeline sends it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Ticket {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub body: String,
}

/// A label with its calibrated probability.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LabelProb {
    pub label: String,
    pub p: f32,
}

/// A token that pushed the decision, with its weight.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenWeight {
    pub token: String,
    pub weight: f32,
}

/// Response-time targets of a priority level (DESIGN.md's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Sla {
    pub first_response_minutes: u32,
    pub resolution_hours: u32,
}

/// The router's answer for one ticket.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    pub id: Option<String>,
    pub category: String,
    pub confidence: f32,
    pub needs_human: bool,
    pub queue: String,
    /// `P0`…`P3`.
    pub priority: String,
    pub sla: Sla,
    pub top: Vec<LabelProb>,
    pub explanation: Vec<TokenWeight>,
}

/// Explanations list this many tokens.
const EXPLANATION_TOKENS: usize = 5;
/// `top` lists this many labels.
const TOP_LABELS: usize = 3;

/// Classifier + rules, loaded once; `Send + Sync`, share it in an `Arc`.
pub struct TicketRouter {
    classifier: classifier::Classifier,
    rules: rules::RoutingRules,
}

impl TicketRouter {
    /// Loads the model directory (`model.safetensors`, `tokenizer.json`, `labels.json`, config)
    /// and the routing rules (`None`: the rules file beside the model, else `models/routing.toml`).
    pub fn load(model_dir: &Path, rules: Option<&Path>) -> Result<TicketRouter, RouteError> {
        let classifier = classifier::Classifier::load(model_dir)?;
        let rules_path = match rules {
            Some(p) => p.to_path_buf(),
            None => default_rules_path(model_dir),
        };
        let rules = rules::RoutingRules::load(&rules_path)?;
        Ok(TicketRouter { classifier, rules })
    }

    /// Builds a router from parts already loaded.
    pub fn from_parts(classifier: classifier::Classifier, rules: rules::RoutingRules) -> Self {
        TicketRouter { classifier, rules }
    }

    /// Routes one ticket.
    pub fn route(&self, ticket: &Ticket) -> Result<Decision, RouteError> {
        let text = ticket_text(ticket)?;
        let (prediction, explanation) = self
            .classifier
            .explain(&classifier_text(ticket), EXPLANATION_TOKENS);
        let category = self.classifier.labels()[prediction.best].clone();
        let needs_human = prediction.abstain || self.rules.is_abstain_label(&category);
        let priority = self.rules.priority(&text);
        Ok(Decision {
            id: ticket.id.clone(),
            queue: self.rules.queue(&category, needs_human),
            category,
            confidence: prediction.confidence,
            needs_human,
            priority: priority.level.to_string(),
            sla: priority.sla,
            top: self.classifier.top(&prediction, TOP_LABELS),
            explanation,
        })
    }

    /// Labels the model knows.
    pub fn labels(&self) -> &[String] {
        self.classifier.labels()
    }

    /// The classifier alone.
    pub fn classifier(&self) -> &classifier::Classifier {
        &self.classifier
    }

    /// The routing rules.
    pub fn rules(&self) -> &rules::RoutingRules {
        &self.rules
    }
}

/// The rules file used when none is given: `routing.toml` beside the model directory
/// (`models/router` → `models/routing.toml`), else inside it, else `models/routing.toml`.
pub fn default_rules_path(model_dir: &Path) -> PathBuf {
    let beside = model_dir
        .parent()
        .map(|p| p.join("routing.toml"))
        .unwrap_or_else(|| PathBuf::from("routing.toml"));
    let inside = model_dir.join("routing.toml");
    [beside, inside]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("models/routing.toml"))
}

/// A ticket's text: subject, newline, body. Empty (only whitespace) is an invalid ticket.
pub fn ticket_text(ticket: &Ticket) -> Result<String, RouteError> {
    if ticket.subject.trim().is_empty() && ticket.body.trim().is_empty() {
        return Err(RouteError::InvalidTicket(
            "empty ticket: subject and body are both empty".into(),
        ));
    }
    Ok(format!("{}\n{}", ticket.subject, ticket.body))
}

/// What the classifier reads of a ticket: the subject twice, then the body. The subject is the
/// sender's own summary, while a body mixes the question with greetings, context and incidental
/// words; with sublinear term frequencies the repeated subject weighs ≈ 1.7× (1 + ln 2) against
/// any body word, so a ticket titled 发票 is about invoices even when its body mentions servers.
pub fn classifier_text(ticket: &Ticket) -> String {
    if ticket.subject.trim().is_empty() || ticket.body.trim().is_empty() {
        return format!("{}\n{}", ticket.subject, ticket.body);
    }
    format!("{0}\n{0}\n{1}", ticket.subject, ticket.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier_reads_the_subject_twice() {
        let t = |subject: &str, body: &str| Ticket {
            id: None,
            subject: subject.into(),
            body: body.into(),
        };
        assert_eq!(
            classifier_text(&t("发票", "抬头写错了")),
            "发票\n发票\n抬头写错了"
        );
        // A ticket with only one part is read as it is.
        assert_eq!(classifier_text(&t("", "抬头写错了")), "\n抬头写错了");
        assert_eq!(classifier_text(&t("发票", " ")), "发票\n ");
        // Rules still see the ticket once.
        assert_eq!(ticket_text(&t("发票", "抬头")).unwrap(), "发票\n抬头");
    }
}
