//! `kefu eval classify`: accuracy, macro-F1, per-label precision/recall/F1, confusion matrix,
//! expected calibration error (15 bins), coverage and answered accuracy, and — when the data has
//! the gold label `oos` — in-scope accuracy (abstaining counts as wrong) and out-of-scope recall
//! (abstaining or predicting `oos` counts as right).
//!
//! Gold labels the model does not know are counted as errors (the model cannot predict them) and
//! listed in `unknown_labels`; they are never an error of the command.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use super::calibrate;
use super::classifier::{Classifier, OOS_LABEL};
use super::train::Example;

/// Precision, recall and F1 of one label.
#[derive(Debug, Clone, Serialize)]
pub struct LabelScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// The evaluation report (`--json` prints exactly these keys).
#[derive(Debug, Clone, Serialize)]
pub struct ClassifyReport {
    pub examples: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub ece: f64,
    pub coverage: f64,
    pub answered_accuracy: f64,
    pub in_scope_accuracy: Option<f64>,
    pub oos_recall: Option<f64>,
    pub per_label: BTreeMap<String, LabelScores>,
    /// `confusion[gold][predicted]` = count.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    /// Not part of the JSON keys of the issue: the CLI reports it on stderr.
    #[serde(skip)]
    pub unknown_labels: Vec<String>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Evaluates `classifier` on labelled examples.
pub fn evaluate(classifier: &Classifier, data: &[Example]) -> ClassifyReport {
    let labels = classifier.labels();
    let predictions: Vec<_> = data
        .par_iter()
        .map(|e| classifier.predict(&e.text))
        .collect();
    let n = data.len();
    let mut correct = Vec::with_capacity(n);
    let mut conf = Vec::with_capacity(n);
    let mut confusion: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut unknown: Vec<String> = Vec::new();
    let (mut answered, mut answered_right) = (0, 0);
    let (mut in_scope, mut in_scope_right, mut oos, mut oos_right) = (0, 0, 0, 0);
    for (e, p) in data.iter().zip(&predictions) {
        let predicted = &labels[p.best];
        let right = *predicted == e.label;
        correct.push(right);
        conf.push(p.confidence);
        *confusion
            .entry(e.label.clone())
            .or_default()
            .entry(predicted.clone())
            .or_default() += 1;
        if !labels.contains(&e.label) && !unknown.contains(&e.label) {
            unknown.push(e.label.clone());
        }
        if !p.abstain {
            answered += 1;
            answered_right += right as usize;
        }
        if e.label == OOS_LABEL {
            oos += 1;
            oos_right += (p.abstain || predicted == OOS_LABEL) as usize;
        } else {
            in_scope += 1;
            in_scope_right += (right && !p.abstain) as usize;
        }
    }
    // Per-label scores over every label seen in gold or predictions.
    let mut all: Vec<String> = labels.to_vec();
    for l in confusion.keys() {
        if !all.contains(l) {
            all.push(l.clone());
        }
    }
    all.sort();
    let mut per_label = BTreeMap::new();
    for l in &all {
        let tp = confusion
            .get(l)
            .and_then(|row| row.get(l))
            .copied()
            .unwrap_or(0);
        let support: usize = confusion.get(l).map(|r| r.values().sum()).unwrap_or(0);
        let predicted: usize = confusion
            .values()
            .map(|row| row.get(l).copied().unwrap_or(0))
            .sum();
        if support == 0 && predicted == 0 {
            continue;
        }
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        per_label.insert(
            l.clone(),
            LabelScores {
                precision,
                recall,
                f1,
                support,
            },
        );
    }
    // Macro-F1 over the labels present in the gold data (scikit-learn's default also counts
    // labels only predicted; these are the same when predictions stay within gold labels).
    let macro_f1 = {
        let scores: Vec<f64> = per_label.values().map(|s| s.f1).collect();
        scores.iter().sum::<f64>() / scores.len().max(1) as f64
    };
    unknown.sort();
    let has_oos = oos > 0;
    ClassifyReport {
        examples: n,
        accuracy: ratio(correct.iter().filter(|&&c| c).count(), n),
        macro_f1,
        ece: calibrate::ece(&conf, &correct, 15),
        coverage: ratio(answered, n),
        answered_accuracy: ratio(answered_right, answered),
        in_scope_accuracy: has_oos.then(|| ratio(in_scope_right, in_scope)),
        oos_recall: has_oos.then(|| ratio(oos_right, oos)),
        per_label,
        confusion,
        unknown_labels: unknown,
    }
}

impl ClassifyReport {
    /// A human-readable summary.
    pub fn text(&self) -> String {
        let mut s = format!(
            "examples {}\naccuracy {:.4}\nmacro_f1 {:.4}\nece {:.4}\ncoverage {:.4}\nanswered_accuracy {:.4}\n",
            self.examples,
            self.accuracy,
            self.macro_f1,
            self.ece,
            self.coverage,
            self.answered_accuracy
        );
        if let (Some(a), Some(r)) = (self.in_scope_accuracy, self.oos_recall) {
            s += &format!("in_scope_accuracy {a:.4}\noos_recall {r:.4}\n");
        }
        if !self.unknown_labels.is_empty() {
            s += &format!(
                "gold labels the model does not know: {}\n",
                self.unknown_labels.join(", ")
            );
        }
        s += "\nlabel                     precision  recall     f1  support\n";
        for (l, sc) in &self.per_label {
            s += &format!(
                "{l:24}  {:9.3}  {:6.3}  {:5.3}  {:7}\n",
                sc.precision, sc.recall, sc.f1, sc.support
            );
        }
        s
    }
}
