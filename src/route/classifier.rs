//! The trained classifier as loaded from a model directory: features → plain-array copy of the
//! candle model → calibrated probabilities, abstention and an explanation.
//!
//! Model directory: `model.safetensors`, `tokenizer.json`, `labels.json`, `config.json`
//! (features, shape, temperature, abstain threshold), `report.md`.
//! Owns: loading (every missing or inconsistent file is a clear [`RouteError::Model`]) and
//! prediction. Must never: know about queues or priorities (that is `rules.rs`).

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::calibrate::{argmax, softmax};
use super::features::{FeatureConfig, Featurizer};
use super::model::{ModelConfig, PlainModel, RouterModel};
use super::{LabelProb, RouteError, TokenWeight};
use crate::analyzer::analyzer;

/// The out-of-scope label of the data sets (`clinc150`): predicting it means "not ours".
pub const OOS_LABEL: &str = "oos";

/// Identifies the model directory format.
const FORMAT: &str = "kefu-router-1";

/// `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouterConfig {
    pub format: String,
    /// Fingerprint of the analyzer the model was trained with.
    pub analyzer: String,
    pub features: FeatureConfig,
    pub model: ModelConfig,
    pub temperature: f32,
    /// Calibrated confidence below which the ticket needs a human.
    pub threshold: f32,
    pub seed: u64,
    pub epochs: usize,
    pub train_examples: usize,
}

impl RouterConfig {
    pub fn new(features: FeatureConfig, model: ModelConfig) -> RouterConfig {
        RouterConfig {
            format: FORMAT.into(),
            analyzer: analyzer().fingerprint().to_string(),
            features,
            model,
            temperature: 1.0,
            threshold: 0.0,
            seed: 0,
            epochs: 0,
            train_examples: 0,
        }
    }
}

/// One classification.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Index of the top label.
    pub best: usize,
    /// Its calibrated probability.
    pub confidence: f32,
    /// Below the threshold, or the out-of-scope label: a human should look.
    pub abstain: bool,
    /// Calibrated probabilities of all labels.
    pub probs: Vec<f32>,
}

/// A loaded classifier; `Send + Sync`.
pub struct Classifier {
    featurizer: Featurizer,
    model: PlainModel,
    labels: Vec<String>,
    config: RouterConfig,
    oos: Option<usize>,
}

fn model_err(dir: &Path, what: &str, e: impl std::fmt::Display) -> RouteError {
    RouteError::Model(format!("{}: {what}: {e}", dir.display()))
}

impl Classifier {
    /// Loads a model directory.
    pub fn load(dir: &Path) -> Result<Classifier, RouteError> {
        if !dir.is_dir() {
            return Err(RouteError::Model(format!(
                "{}: no such model directory (train one with `kefu train`)",
                dir.display()
            )));
        }
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|e| model_err(dir, name, e))
        };
        let config: RouterConfig = serde_json::from_str(&read("config.json")?)
            .map_err(|e| model_err(dir, "config.json", e))?;
        if config.format != FORMAT {
            return Err(model_err(
                dir,
                "config.json",
                format!("format {:?}, expected {FORMAT:?}", config.format),
            ));
        }
        if config.analyzer != analyzer().fingerprint() {
            tracing::warn!(
                model = %dir.display(),
                trained_with = %config.analyzer,
                current = %analyzer().fingerprint(),
                "model was trained with another analyzer version: retrain it for best accuracy"
            );
        }
        let labels: Vec<String> = serde_json::from_str(&read("labels.json")?)
            .map_err(|e| model_err(dir, "labels.json", e))?;
        if labels.len() != config.model.labels || labels.len() < 2 {
            return Err(model_err(
                dir,
                "labels.json",
                format!(
                    "{} labels, config.json says {}",
                    labels.len(),
                    config.model.labels
                ),
            ));
        }
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| model_err(dir, "tokenizer.json", e))?;
        let featurizer = Featurizer::new(tokenizer, config.features.clone());
        if featurizer.rows() != config.model.rows {
            return Err(model_err(
                dir,
                "tokenizer.json",
                format!(
                    "vocabulary gives {} embedding rows, config.json says {}",
                    featurizer.rows(),
                    config.model.rows
                ),
            ));
        }
        let weights = dir.join("model.safetensors");
        let bytes = std::fs::read(&weights).map_err(|e| model_err(dir, "model.safetensors", e))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)
            .map_err(|e| model_err(dir, "model.safetensors", e))?;
        let model = RouterModel::new(&config.model, vb)
            .and_then(|m| m.to_plain())
            .map_err(|e| model_err(dir, "model.safetensors", e))?;
        Ok(Classifier::from_parts(featurizer, model, labels, config))
    }

    pub fn from_parts(
        featurizer: Featurizer,
        model: PlainModel,
        labels: Vec<String>,
        config: RouterConfig,
    ) -> Classifier {
        let oos = labels.iter().position(|l| l == OOS_LABEL);
        Classifier {
            featurizer,
            model,
            labels,
            config,
            oos,
        }
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    pub fn featurizer(&self) -> &Featurizer {
        &self.featurizer
    }

    /// Raw (uncalibrated) logits.
    pub fn logits(&self, text: &str) -> Vec<f32> {
        self.model.logits(&self.featurizer.features(text).ids)
    }

    fn decide(&self, logits: &[f32]) -> Prediction {
        let probs = softmax(logits, self.config.temperature);
        let (best, confidence) = argmax(&probs);
        Prediction {
            best,
            confidence,
            abstain: confidence < self.config.threshold || Some(best) == self.oos,
            probs,
        }
    }

    /// Calibrated prediction.
    pub fn predict(&self, text: &str) -> Prediction {
        self.decide(&self.logits(text))
    }

    /// Prediction plus the `k` tokens that pushed the top label most (summed contributions of
    /// each word's features to the top label's logit minus the mean logit).
    pub fn explain(&self, text: &str, k: usize) -> (Prediction, Vec<TokenWeight>) {
        let features = self.featurizer.features(text);
        let logits = self.model.logits(&features.ids);
        let prediction = self.decide(&logits);
        let contributions = self
            .model
            .contrast_contributions(&features.ids, prediction.best);
        let mut per_token = vec![0f32; features.tokens.len()];
        for (c, &t) in contributions.iter().zip(&features.token_of) {
            per_token[t as usize] += c;
        }
        // The same word twice counts once, with its summed weight.
        let mut merged: Vec<(String, f32)> = Vec::new();
        for (tok, w) in features.tokens.into_iter().zip(per_token) {
            match merged.iter_mut().find(|(t, _)| *t == tok) {
                Some(entry) => entry.1 += w,
                None => merged.push((tok, w)),
            }
        }
        merged.sort_by(|a, b| b.1.total_cmp(&a.1));
        // Only words that pushed towards the decision (the strongest one even if none did).
        let explanation = merged
            .into_iter()
            .filter(|(t, _)| !t.trim().is_empty())
            .enumerate()
            .filter(|(i, (_, w))| *i == 0 || *w > 0.0)
            .take(k)
            .map(|(_, (token, weight))| TokenWeight { token, weight })
            .collect();
        (prediction, explanation)
    }

    /// The `k` most probable labels.
    pub fn top(&self, prediction: &Prediction, k: usize) -> Vec<LabelProb> {
        let mut order: Vec<usize> = (0..prediction.probs.len()).collect();
        order.sort_by(|&a, &b| prediction.probs[b].total_cmp(&prediction.probs[a]));
        order
            .into_iter()
            .take(k)
            .map(|i| LabelProb {
                label: self.labels[i].clone(),
                p: prediction.probs[i],
            })
            .collect()
    }
}
