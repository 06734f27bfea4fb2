//! The trained classifier as loaded from a model directory: features → plain-array copy of the
//! candle model → calibrated probabilities, abstention and an explanation.
//!
//! Model directory: `model.safetensors`, `tokenizer.json`, `labels.json`, `config.json`
//! (features, shape, temperature, abstain threshold), `report.md`, and `aliases.txt` when it was
//! trained with product aliases ([`super::aliases`]: each text is expanded by them first).
//! Owns: loading (every missing or inconsistent file is a clear [`RouteError::Model`]) and
//! prediction. Must never: know about queues or priorities (that is `rules.rs`).

use std::path::Path;
use std::rc::Rc;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::aliases::{ALIASES_FILE, ProductAliases};
use super::calibrate::{self, argmax, combine_members, softmax};
use super::features::{
    FeatureConfig, Features, Featurizer, MAX_ANALYZED_BYTES, analyzed_tokens, prefix,
};
use super::model::{Forward, ModelConfig, PlainModel, RouterModel};
use super::train::member_prefix;
use super::{LabelProb, RouteError, TokenWeight};
use crate::analyzer::analyzer;

/// The out-of-scope label of the data sets (`clinc150`): predicting it means "not ours".
pub const OOS_LABEL: &str = "oos";

/// Identifies the model directory format. Version 2 saves the linear members' tables in 8 bits
/// (`model::ROW_SCALE`), which a version-1 reader would take for f32 values: it must refuse
/// them. Version-1 directories (f32 or f16 tables) still load.
const FORMAT: &str = "kefu-router-2";

/// Formats this version reads.
const READABLE_FORMATS: [&str; 2] = ["kefu-router-1", FORMAT];

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
    /// Further ensemble members (weights under the prefix `m1.`, `m2.`… in
    /// `model.safetensors`); the classifier averages all members' log-probabilities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<MemberConfig>,
    /// Each ensemble member's own temperature (fitted on dev), applied before averaging the
    /// log-probabilities so that a sharper member does not outvote the others (empty: 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_temperatures: Vec<f32>,
    /// With an `oos` label: also abstain when the top label's calibrated log-probability exceeds
    /// that of `oos` by less than this ([`calibrate::oos_margin`]; set by training when, on dev,
    /// it beats the confidence threshold alone at the required out-of-scope recall).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oos_margin: Option<f32>,
    /// Also abstain when more than this share of a ticket is words the model never saw
    /// ([`Prediction::novelty`]) and the confidence is under [`RouterConfig::novelty_confidence`]:
    /// a question about a product or topic no queue was trained on borrows its confidence from
    /// the few generic words it shares with the training data. Set by training from the dev
    /// split's own novelty (see `TrainOptions::novelty_share`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub novelty_limit: Option<f32>,
    /// A prediction this confident is kept however unfamiliar the rest of the ticket is: known
    /// words that decide it this clearly are not borrowed confidence ("Our site is under a DDoS
    /// attack right now" has four words training never saw).
    #[serde(default = "novelty_confidence")]
    pub novelty_confidence: f32,
}

/// Default [`RouterConfig::novelty_confidence`]. On cloud-queues dev, predictions at least this
/// confident are right 95% of the time.
pub const NOVELTY_CONFIDENCE: f32 = 0.9;

fn novelty_confidence() -> f32 {
    NOVELTY_CONFIDENCE
}

/// Features and shape of one further ensemble member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberConfig {
    pub features: FeatureConfig,
    pub model: ModelConfig,
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
            extra: Vec::new(),
            member_temperatures: Vec::new(),
            oos_margin: None,
            novelty_limit: None,
            novelty_confidence: NOVELTY_CONFIDENCE,
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
    /// Below the threshold, the out-of-scope label, too close to it ([`RouterConfig::oos_margin`]),
    /// or unfamiliar and not sure ([`RouterConfig::novelty_limit`]): a human should look.
    pub abstain: bool,
    /// Share of the ticket's words (each weighing its training IDF) that the model never saw in
    /// training, 0 to 1; words with a digit (order numbers, addresses, error codes) left out.
    pub novelty: f32,
    /// Calibrated probabilities of all labels.
    pub probs: Vec<f32>,
}

/// A loaded classifier; `Send + Sync`.
pub struct Classifier {
    /// The ensemble members (one for a single network), all over the same vocabulary.
    members: Vec<(Featurizer, PlainModel)>,
    labels: Vec<String>,
    config: RouterConfig,
    oos: Option<usize>,
    /// What a word never seen in training weighs in [`Prediction::novelty`]: as much as the
    /// rarest word that was seen (the largest IDF of the vocabulary).
    unseen_weight: f32,
    /// For each member, an earlier member with the same features whose pooling coefficients it
    /// shares ([`PlainModel::same_coefficients`]): the embedding and the linear member of a
    /// default router both pool TF-IDF over one vocabulary.
    shared_coefficients: Vec<Option<usize>>,
    /// Product aliases the model was trained with ([`ALIASES_FILE`]): each text is expanded by
    /// them before its features are computed.
    aliases: Option<ProductAliases>,
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
        if !READABLE_FORMATS.contains(&config.format.as_str()) {
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
        // Features look words up one by one (`Featurizer::features_of`), which a normalizer
        // would not see: kefu's vocabularies never have one.
        if tokenizer.get_normalizer().is_some() {
            return Err(model_err(
                dir,
                "tokenizer.json",
                "has a normalizer: kefu's vocabulary is a plain WordLevel model over the analyzer's tokens",
            ));
        }
        let weights = dir.join("model.safetensors");
        let bytes = std::fs::read(&weights).map_err(|e| model_err(dir, "model.safetensors", e))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)
            .map_err(|e| model_err(dir, "model.safetensors", e))?;
        let shapes = std::iter::once((&config.features, &config.model))
            .chain(config.extra.iter().map(|m| (&m.features, &m.model)));
        let mut members = Vec::new();
        for (k, (features, model_cfg)) in shapes.enumerate() {
            let featurizer = Featurizer::new(tokenizer.clone(), features.clone());
            if featurizer.rows() != model_cfg.rows || model_cfg.labels != labels.len() {
                return Err(model_err(
                    dir,
                    "config.json",
                    format!(
                        "member {k}: the vocabulary gives {} embedding rows and labels.json {} labels, the config says {} and {}",
                        featurizer.rows(),
                        labels.len(),
                        model_cfg.rows,
                        model_cfg.labels
                    ),
                ));
            }
            let prefix = member_prefix(k);
            let member_vb = if prefix.is_empty() {
                vb.clone()
            } else {
                vb.pp(prefix.trim_end_matches('.'))
            };
            let model = RouterModel::new(model_cfg, member_vb)
                .and_then(|m| m.to_plain())
                .map_err(|e| model_err(dir, "model.safetensors", e))?;
            members.push((featurizer, model));
        }
        let aliases_file = dir.join(ALIASES_FILE);
        let aliases = aliases_file
            .exists()
            .then(|| ProductAliases::load(&aliases_file))
            .transpose()?;
        Ok(Classifier::from_members(members, labels, config).with_aliases(aliases))
    }

    pub fn from_parts(
        featurizer: Featurizer,
        model: PlainModel,
        labels: Vec<String>,
        config: RouterConfig,
    ) -> Classifier {
        Classifier::from_members(vec![(featurizer, model)], labels, config)
    }

    /// An ensemble (`members` non-empty; the first one's featurizer holds the vocabulary).
    pub fn from_members(
        members: Vec<(Featurizer, PlainModel)>,
        labels: Vec<String>,
        config: RouterConfig,
    ) -> Classifier {
        assert!(!members.is_empty(), "a classifier needs a network");
        let oos = labels.iter().position(|l| l == OOS_LABEL);
        let (featurizer, model) = &members[0];
        let vocab = (featurizer.vocab_size() as usize).min(model.weight.len());
        let unseen_weight = model.weight[..vocab]
            .iter()
            .copied()
            .fold(0f32, f32::max)
            .max(1.0);
        let shared_coefficients = (0..members.len())
            .map(|k| {
                (0..k).find(|&j| {
                    members[j].0.config() == members[k].0.config()
                        && members[j].1.same_coefficients(&members[k].1)
                })
            })
            .collect();
        Classifier {
            members,
            labels,
            config,
            oos,
            unseen_weight,
            shared_coefficients,
            aliases: None,
        }
    }

    /// The same classifier expanding every text by `aliases` first.
    pub fn with_aliases(mut self, aliases: Option<ProductAliases>) -> Classifier {
        self.aliases = aliases;
        self
    }

    /// The product aliases texts are expanded by, if any.
    pub fn aliases(&self) -> Option<&ProductAliases> {
        self.aliases.as_ref()
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// The first member's featurizer (all members share its vocabulary).
    pub fn featurizer(&self) -> &Featurizer {
        &self.members[0].0
    }

    /// Each member's features of `text` (the analyzer runs once).
    fn member_features(&self, text: &str) -> Vec<Rc<Features>> {
        let expanded = match &self.aliases {
            Some(aliases) => aliases.expand(text),
            None => std::borrow::Cow::Borrowed(text),
        };
        let text = prefix(&expanded, MAX_ANALYZED_BYTES);
        let tokens = analyzed_tokens(text);
        let mut out: Vec<Rc<Features>> = Vec::with_capacity(self.members.len());
        for (k, (f, _)) in self.members.iter().enumerate() {
            // Members with the same feature configuration share one computation (not a copy).
            let same = (0..k).find(|&j| self.members[j].0.config() == f.config());
            out.push(match same {
                Some(j) => Rc::clone(&out[j]),
                None => Rc::new(f.features_of(text, &tokens)),
            });
        }
        out
    }

    /// Raw (uncalibrated) logits: the network's, or the mean of the members' log-probabilities.
    pub fn logits(&self, text: &str) -> Vec<f32> {
        let features = self.member_features(text);
        self.combine_logits(&self.logits_of(&features))
    }

    /// Each member's raw logits.
    pub fn member_logits(&self, text: &str) -> Vec<Vec<f32>> {
        self.logits_of(&self.member_features(text))
    }

    /// Each member's raw logits from its features.
    fn logits_of(&self, features: &[Rc<Features>]) -> Vec<Vec<f32>> {
        self.members
            .iter()
            .zip(self.forwards(features))
            .map(|((_, model), forward)| model.forward_logits(&forward))
            .collect()
    }

    /// Each member's forward pass over its features; a member whose pooling coefficients are
    /// another's ([`Classifier::shared_coefficients`]) takes them instead of computing them again.
    fn forwards(&self, features: &[Rc<Features>]) -> Vec<Forward> {
        let mut out: Vec<Forward> = Vec::with_capacity(self.members.len());
        for (k, ((_, model), f)) in self.members.iter().zip(features).enumerate() {
            let shared = self.shared_coefficients[k].and_then(|j| out[j].coefficients());
            let forward = model.forward(&f.ids, &f.token_of, shared);
            out.push(forward);
        }
        out
    }

    /// Sets the members' own temperatures (see [`RouterConfig::member_temperatures`]).
    pub fn set_member_temperatures(&mut self, temperatures: Vec<f32>) {
        self.config.member_temperatures = temperatures;
    }

    /// The ensemble's logits from its members' raw logits: the mean of their log-probabilities,
    /// each at its own temperature.
    pub fn combine_logits(&self, member_logits: &[Vec<f32>]) -> Vec<f32> {
        combine_members(member_logits, &self.config.member_temperatures)
    }

    /// [`Prediction::novelty`] of the first member's features (all members share its vocabulary).
    fn novelty_of(&self, features: &Features) -> f32 {
        let (featurizer, model) = &self.members[0];
        let vocab = featurizer.vocab_size();
        // Each word's weight: the largest IDF among its own and its sub-words' vocabulary ids
        // (a Chinese compound seen only in parts is known through them); None when none is known.
        let mut known: Vec<Option<f32>> = vec![None; features.tokens.len()];
        for (&id, &t) in features.ids.iter().zip(&features.token_of) {
            if id != 0 && id < vocab {
                let w = model.weight.get(id as usize).copied().unwrap_or(0.0);
                let slot = &mut known[t as usize];
                *slot = Some(slot.map_or(w, |v| v.max(w)));
            }
        }
        let (mut novel, mut total) = (0f32, 0f32);
        for (word, weight) in features.tokens.iter().zip(known) {
            if word.chars().any(|c| c.is_ascii_digit()) {
                continue;
            }
            match weight {
                Some(w) => total += w,
                None => {
                    novel += self.unseen_weight;
                    total += self.unseen_weight;
                }
            }
        }
        if total > 0.0 { novel / total } else { 0.0 }
    }

    /// [`Prediction::novelty`] of `text`.
    pub fn novelty(&self, text: &str) -> f32 {
        let text = prefix(text, MAX_ANALYZED_BYTES);
        let features = self.members[0].0.features_of(text, &analyzed_tokens(text));
        self.novelty_of(&features)
    }

    fn decide(&self, logits: &[f32], novelty: f32) -> Prediction {
        let probs = softmax(logits, self.config.temperature);
        let (best, confidence) = argmax(&probs);
        let near_oos = match (self.oos, self.config.oos_margin) {
            (Some(oos), Some(m)) => {
                calibrate::oos_margin(logits, self.config.temperature, best, oos) < m
            }
            _ => false,
        };
        let unfamiliar = self
            .config
            .novelty_limit
            .is_some_and(|limit| novelty > limit)
            && confidence < self.config.novelty_confidence;
        Prediction {
            best,
            confidence,
            abstain: confidence < self.config.threshold
                || Some(best) == self.oos
                || near_oos
                || unfamiliar,
            novelty,
            probs,
        }
    }

    /// Calibrated prediction.
    pub fn predict(&self, text: &str) -> Prediction {
        let features = self.member_features(text);
        let logits = self.combine_logits(&self.logits_of(&features));
        self.decide(&logits, self.novelty_of(&features[0]))
    }

    /// Prediction plus the `k` tokens that pushed the top label most (summed contributions of
    /// each word's features to the top label's logit minus the mean logit).
    pub fn explain(&self, text: &str, k: usize) -> (Prediction, Vec<TokenWeight>) {
        let features = self.member_features(text);
        let forwards = self.forwards(&features);
        let member_logits: Vec<Vec<f32>> = (self.members.iter().zip(&forwards))
            .map(|((_, model), forward)| model.forward_logits(forward))
            .collect();
        let prediction = self.decide(
            &self.combine_logits(&member_logits),
            self.novelty_of(&features[0]),
        );
        // A log-probability minus the mean over labels is the logit minus the mean logit, so
        // the members' contrast contributions average exactly like their log-probabilities.
        let tokens = features[0].tokens.clone();
        let share = 1.0 / self.members.len() as f32;
        let mut per_token = vec![0f32; tokens.len()];
        for (((_, model), f), forward) in self.members.iter().zip(&features).zip(&forwards) {
            let contributions =
                model.forward_contrast_contributions(forward, &f.ids, prediction.best);
            for (c, &t) in contributions.iter().zip(&f.token_of) {
                per_token[t as usize] += share * c;
            }
        }

        // The same word twice counts once, with its summed weight.
        let mut merged: Vec<(String, f32)> = Vec::new();
        for (tok, w) in tokens.into_iter().zip(per_token) {
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
