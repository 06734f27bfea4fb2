//! `kefu eval classify`: accuracy, macro-F1, per-label precision/recall/F1, confusion matrix,
//! expected calibration error (15 bins), coverage and answered accuracy, and — when the data has
//! the gold label `oos` — in-scope accuracy (abstaining counts as wrong) and out-of-scope recall
//! (abstaining or predicting `oos` counts as right). With `oos` rows it also scores the issue's
//! anchor protocol, which ignores the model's own abstention: a threshold at the 10th percentile of
//! the in-scope rows' confidence, below which a row counts as out-of-scope.
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
    /// The anchors' protocol (`shared/anchors/classify_anchors.py`), for side-by-side numbers:
    /// in-scope accuracy and out-of-scope recall when every row whose top confidence is below
    /// the 10th percentile of the in-scope rows' confidence counts as out-of-scope (the model's
    /// own threshold and margin are not used; a top label `oos` is out-of-scope as well).
    pub percentile_in_scope_accuracy: Option<f64>,
    pub percentile_oos_recall: Option<f64>,
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
    let is_oos: Vec<bool> = data.iter().map(|e| e.label == OOS_LABEL).collect();
    let predicted_oos: Vec<bool> = predictions
        .iter()
        .map(|p| labels[p.best] == OOS_LABEL)
        .collect();
    let percentile = has_oos.then(|| percentile_scores(&conf, &correct, &predicted_oos, &is_oos));
    ClassifyReport {
        examples: n,
        accuracy: ratio(correct.iter().filter(|&&c| c).count(), n),
        macro_f1,
        ece: calibrate::ece(&conf, &correct, 15),
        coverage: ratio(answered, n),
        answered_accuracy: ratio(answered_right, answered),
        in_scope_accuracy: has_oos.then(|| ratio(in_scope_right, in_scope)),
        oos_recall: has_oos.then(|| ratio(oos_right, oos)),
        percentile_in_scope_accuracy: percentile.map(|p| p.0),
        percentile_oos_recall: percentile.map(|p| p.1),
        per_label,
        confusion,
        unknown_labels: unknown,
    }
}

/// The `q`-quantile of `values` with linear interpolation between the sorted values (numpy's
/// default `percentile`); `None` when there are none.
fn quantile(values: &[f32], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().map(|&v| v as f64).collect();
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len().checked_sub(1)?;
    let pos = q.clamp(0.0, 1.0) * last as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

/// In-scope accuracy and out-of-scope recall under the anchors' protocol (see
/// [`ClassifyReport::percentile_in_scope_accuracy`]): rows with confidence below the 10th
/// percentile of the in-scope rows' confidence, or whose top label is `oos`, count as
/// out-of-scope. `is_oos[i]`: gold label `oos`.
fn percentile_scores(
    conf: &[f32],
    correct: &[bool],
    predicted_oos: &[bool],
    is_oos: &[bool],
) -> (f64, f64) {
    let in_scope: Vec<f32> = (0..conf.len())
        .filter(|&i| !is_oos[i])
        .map(|i| conf[i])
        .collect();
    let Some(threshold) = quantile(&in_scope, 0.1) else {
        return (
            0.0,
            ratio(predicted_oos.iter().filter(|&&p| p).count(), conf.len()),
        );
    };
    let out = |i: usize| predicted_oos[i] || (conf[i] as f64) < threshold;
    let right_in = (0..conf.len())
        .filter(|&i| !is_oos[i] && correct[i] && !out(i))
        .count();
    let caught = (0..conf.len()).filter(|&i| is_oos[i] && out(i)).count();
    let n_oos = is_oos.iter().filter(|&&o| o).count();
    (ratio(right_in, in_scope.len()), ratio(caught, n_oos))
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
        if let (Some(a), Some(r)) = (
            self.percentile_in_scope_accuracy,
            self.percentile_oos_recall,
        ) {
            s += &format!(
                "anchor protocol (out-of-scope below the 10th percentile of in-scope confidence): in_scope_accuracy {a:.4}, oos_recall {r:.4}\n"
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_as_numpy() {
        // numpy.percentile([1, 2, 3, 4, 5], 10) == 1.4; [7] -> 7.
        let q = quantile(&[5.0, 1.0, 3.0, 2.0, 4.0], 0.1).unwrap();
        assert!((q - 1.4).abs() < 1e-9, "{q}");
        assert_eq!(quantile(&[7.0], 0.1), Some(7.0));
        assert_eq!(quantile(&[], 0.1), None);
    }

    #[test]
    fn percentile_protocol_counts_low_confidence_rows_as_out_of_scope() {
        // Ten in-scope rows at confidence 0.1..1.0 (threshold 0.19: only the 0.1 row falls
        // under it), the 0.5 one wrong; three out-of-scope rows: one under the threshold, one
        // predicted `oos`, one confidently in scope.
        let mut conf: Vec<f32> = (1..=10).map(|i| i as f32 / 10.0).collect();
        let mut correct: Vec<bool> = (1..=10).map(|i| i != 5).collect();
        let mut predicted_oos = vec![false; 10];
        let mut is_oos = vec![false; 10];
        for (c, p) in [(0.05, false), (0.9, true), (0.95, false)] {
            conf.push(c);
            correct.push(false);
            predicted_oos.push(p);
            is_oos.push(true);
        }
        let (acc, recall) = percentile_scores(&conf, &correct, &predicted_oos, &is_oos);
        assert!((acc - 0.8).abs() < 1e-12, "{acc}");
        assert!((recall - 2.0 / 3.0).abs() < 1e-12, "{recall}");
    }
}
