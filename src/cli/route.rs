//! `kefu train`, `kefu classify`, `kefu route`, `kefu eval classify`.
//!
//! JSONL in, JSONL out: a line that cannot be read (bad JSON, invalid UTF-8, empty ticket) gets
//! an error object `{"line": N, "error": "..."}` in its place and the stream goes on. Lines are
//! classified in parallel (rayon) in batches of what is already buffered, so a pipeline that
//! sends one ticket and waits gets its answer at once.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::{BufRead, BufWriter, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::route::aliases::{ALIASES_FILE, ProductAliases};
use crate::route::classifier::Classifier;
use crate::route::eval;
use crate::route::features::FeatureConfig;
use crate::route::model::{Arch, Pooling};
use crate::route::train::OptimizerKind;
use crate::route::train::articles::{ArticlePart, agreeing_rows, article_examples, kb_examples};
use crate::route::train::{self, Loss, TrainOptions};
use crate::route::{LabelProb, RouteError, Ticket, TicketRouter, TokenWeight, ticket_text};

/// Train a router model.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Classification JSONL (`{"text","label","lang"}`).
    #[arg(long)]
    pub data: PathBuf,
    /// Dev JSONL for calibration (default: the held-back 10% of --data, sha1 ≡ 0 mod 10).
    #[arg(long)]
    pub dev: Option<PathBuf>,
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Embedding width.
    #[arg(long)]
    pub dim: Option<usize>,
    /// Hidden layer width (0: none).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Peak learning rate (AdamW, linear decay to 0).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Hash buckets for word bigrams and character n-grams.
    #[arg(long)]
    pub buckets: Option<u32>,
    /// Share of features dropped at random per example and epoch.
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Shortest character n-gram (over the padded words of the text; `<word>` in the mixed
    /// layout).
    #[arg(long)]
    pub char_ngram_min: Option<usize>,
    /// Longest character n-gram (0: none).
    #[arg(long)]
    pub char_ngram_max: Option<usize>,
    /// Leave out word bigrams.
    #[arg(long)]
    pub no_bigrams: bool,
    /// Leave out the part-of-speech tags of Chinese text (every member).
    #[arg(long)]
    pub no_pos_tags: bool,
    /// Examples per training step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Leave out character n-grams fewer training examples have.
    #[arg(long)]
    pub ngram_min_df: Option<usize>,
    /// Optimizer: `adamw` or `sgd`.
    #[arg(long, value_parser = ["adamw", "sgd"])]
    pub optimizer: Option<String>,
    /// Further ensemble members after the one the flags describe: `linear`
    /// (`TrainOptions::linear_member`), `embedding` (the first member again, its own seed),
    /// `fasttext` (`TrainOptions::fasttext_member`), `attention`
    /// (`TrainOptions::attention_member`), `svm` (`TrainOptions::svm_member`), `knn` and
    /// `knn-chars` (`TrainOptions::knn_member`, all features or character n-grams only);
    /// comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = ["linear", "embedding", "fasttext", "attention", "svm", "knn", "knn-chars"])]
    pub members: Option<Vec<String>>,
    /// Train the embedding network alone, without the sparse linear TF-IDF member
    /// (`TrainOptions::linear_member`) whose log-probabilities it is averaged with by default.
    #[arg(long)]
    pub single: bool,
    /// Do not try the candidate members (the built-in list of `TrainOptions::default`, each
    /// kept by default only when it lowers the ensemble's dev NLL).
    #[arg(long)]
    pub no_candidates: bool,
    /// Grouped feature layout: word bigrams in this many buckets of their own, words and
    /// character n-grams (scikit-learn `char_wb` style) pooled as two groups (0: mixed layout).
    #[arg(long)]
    pub word_buckets: Option<u32>,
    /// Label smoothing of the loss (0: none).
    #[arg(long)]
    pub label_smoothing: Option<f64>,
    /// Pooling of feature embeddings: `mean`, `l2` or `tfidf` (sublinear tf × idf, L2-normalized).
    #[arg(long, value_parser = ["mean", "l2", "tfidf"])]
    pub pooling: Option<String>,
    /// Architecture: `embedding` (fastText) or `linear` (sparse linear model, one weight per
    /// feature and label; use with `--pooling tfidf`).
    #[arg(long, value_parser = ["embedding", "linear"])]
    pub arch: Option<String>,
    /// AdamW weight decay (decoupled; on the embedding rows a step touches).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Fit the ensemble members' temperatures together on dev (weighs the members).
    #[arg(long)]
    pub joint_temperatures: bool,
    /// Do not train the chosen members again with the dev rows after calibrating on them (the
    /// default does, see `TrainOptions::refit`): the model then never saw the dev file, so
    /// `kefu eval classify` on it gives held-out figures (the CI gate uses this)
    #[arg(long)]
    pub no_refit: bool,
    /// Learning rate of the sparse linear member (SGD).
    #[arg(long)]
    pub linear_lr: Option<f64>,
    /// Epochs of the sparse linear member.
    #[arg(long)]
    pub linear_epochs: Option<usize>,
    /// Weight decay of the sparse linear member.
    #[arg(long)]
    pub linear_weight_decay: Option<f64>,
    /// Answered accuracy the abstain threshold aims for on dev (data without `oos`).
    #[arg(long)]
    pub target_accuracy: Option<f64>,
    /// Loss weight of the training examples labelled `oos` (data with that class only).
    #[arg(long)]
    pub oos_weight: Option<f64>,
    /// Embedding member: max pooling of the feature embeddings next to the weighted mean.
    #[arg(long)]
    pub max_pool: bool,
    /// Candidate members, each kept only when it lowers the ensemble's dev NLL (`knn` and
    /// `knn-chars` only when they cost it no dev row either; `calibrate::select_members`):
    /// `fasttext` (`TrainOptions::fasttext_member`), `attention` (`TrainOptions::attention_member`),
    /// `attention-ngrams` (`TrainOptions::attention_ngrams_member`), `svm`
    /// (`TrainOptions::svm_member`), `knn` and `knn-chars` (`TrainOptions::knn_member`, all
    /// features or character n-grams only); comma-separated (default: the built-in list,
    /// `fasttext,attention,svm,knn-chars`).
    #[arg(long, value_delimiter = ',', value_parser = ["fasttext", "attention", "attention-ngrams", "svm", "knn", "knn-chars"])]
    pub candidates: Option<Vec<String>>,
    /// Learning rate of the linear SVM member (`svm` in --candidates or --members).
    #[arg(long)]
    pub svm_lr: Option<f64>,
    /// Attention member: embedding width.
    #[arg(long)]
    pub attention_dim: Option<usize>,
    /// Attention member: filters of its width-3 convolution (0: none).
    #[arg(long)]
    pub attention_conv: Option<usize>,
    /// Attention member: attention heads.
    #[arg(long)]
    pub attention_heads: Option<usize>,
    /// Attention member: max pooling over positions next to attention pooling.
    #[arg(long)]
    pub attention_max_pool: bool,
    /// Attention member: epochs.
    #[arg(long)]
    pub attention_epochs: Option<usize>,
    /// Attention member: examples per training step.
    #[arg(long)]
    pub attention_batch_size: Option<usize>,
    /// Attention member: peak learning rate.
    #[arg(long)]
    pub attention_lr: Option<f64>,
    /// Abstain on tickets more unfamiliar (share of word weight never seen in training) than
    /// all but this share of the in-scope dev rows; 0 turns that abstention off.
    #[arg(long)]
    pub novelty_share: Option<f64>,
    /// Help articles to learn from as well (folders, `.md`, `.jsonl`, `.html`, read as
    /// `kefu index` reads them): each article whose `category` is a label of --data gives
    /// training rows (--article-parts). They only train: never dev, never the held-back slice.
    #[arg(long, num_args = 1..)]
    pub articles: Vec<PathBuf>,
    /// Parts of an article that become rows: `title`, `tags`, `headings` (title + each section
    /// heading), `sentences` (each section's heading + first sentence); comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "title,tags")]
    pub article_parts: Vec<ArticlePart>,
    /// Drop an article row that a model trained first without the articles (same data and
    /// flags) puts under another label with at least this confidence: where the articles file
    /// a topic elsewhere than --data does, --data wins. 1 keeps every row (no first model).
    #[arg(long, default_value_t = 0.8)]
    pub article_agreement: f32,
    /// A string field of the --data rows (cloud-queues' `product`) whose value, paired with the
    /// label, is learnt as an auxiliary target (`train::auxiliary`): rows without it add no
    /// auxiliary loss, data without it trains as before; classifying never needs it.
    #[arg(long, default_value = "product")]
    pub aux_field: String,
    /// Loss weight of the --aux-field target (embedding and attention members; 0: none;
    /// default `train::AUX_WEIGHT`).
    #[arg(long)]
    pub aux_weight: Option<f64>,
    /// Times each article row is repeated in the training data.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub article_repeat: u32,
    /// Help articles (read as `kefu index` reads them) for a candidate member that votes with
    /// a ticket's nearest articles: each article whose `category` is a label of --data is
    /// stored whole (`train::TrainOptions::knn_kb`); kept when it lowers the dev NLL and costs
    /// no dev row.
    #[arg(long, num_args = 1..)]
    pub kb: Vec<PathBuf>,
    /// Product aliases (`models/aliases.txt`: other clouds' product names → ours): every
    /// training, dev, --articles and --kb row is expanded by them, and the model directory keeps
    /// the file so that each ticket it classifies is expanded the same way.
    #[arg(long)]
    pub aliases: Option<PathBuf>,
}

impl TrainArgs {
    /// The --articles rows for the labels of `data`.
    fn article_rows(&self, data: &[train::Example]) -> anyhow::Result<Vec<train::Example>> {
        labelled_article_rows("--articles", &self.articles, data, |articles, labels| {
            article_examples(articles, labels, &self.article_parts)
        })
    }

    /// The --kb articles for the labels of `data`, one row each.
    fn kb_rows(&self, data: &[train::Example]) -> anyhow::Result<Vec<train::Example>> {
        labelled_article_rows("--kb", &self.kb, data, kb_examples)
    }

    pub fn options(&self) -> TrainOptions {
        let d = TrainOptions::default();
        TrainOptions {
            epochs: self.epochs.unwrap_or(d.epochs),
            seed: self.seed,
            dim: self.dim.unwrap_or(d.dim),
            hidden: self.hidden.unwrap_or(d.hidden),
            lr: self.lr.unwrap_or(d.lr),
            feature_dropout: self.dropout.unwrap_or(d.feature_dropout),
            label_smoothing: self.label_smoothing.unwrap_or(d.label_smoothing),
            ngram_min_df: self.ngram_min_df.unwrap_or(d.ngram_min_df),
            batch_size: self.batch_size.unwrap_or(d.batch_size).max(1),
            optimizer: match self.optimizer.as_deref() {
                Some("sgd") => OptimizerKind::Sgd,
                Some(_) => OptimizerKind::AdamW,
                None => d.optimizer,
            },
            pooling: match self.pooling.as_deref() {
                Some("l2") => Pooling::L2,
                Some("tfidf") => Pooling::Tfidf,
                Some(_) => Pooling::Mean,
                None => d.pooling,
            },
            arch: match self.arch.as_deref() {
                Some("linear") => Arch::Linear,
                Some(_) => Arch::Embedding,
                None => d.arch,
            },
            weight_decay: self.weight_decay.unwrap_or(d.weight_decay),
            answered_accuracy_target: self.target_accuracy.unwrap_or(d.answered_accuracy_target),
            oos_weight: self.oos_weight.unwrap_or(d.oos_weight),
            novelty_share: self.novelty_share.unwrap_or(d.novelty_share),
            joint_temperatures: self.joint_temperatures || d.joint_temperatures,
            refit: d.refit && !self.no_refit,
            aux_weight: self.aux_weight.unwrap_or(d.aux_weight),
            max_pool: self.max_pool || d.max_pool,
            features: FeatureConfig {
                buckets: self.buckets.unwrap_or(d.features.buckets).max(1),
                char_ngram_min: self.char_ngram_min.unwrap_or(d.features.char_ngram_min),
                char_ngram_max: self.char_ngram_max.unwrap_or(d.features.char_ngram_max),
                word_bigrams: d.features.word_bigrams && !self.no_bigrams,
                word_buckets: self.word_buckets.unwrap_or(d.features.word_buckets),
                // Off in the first member: `train_with_kb` then trains every member without.
                pos_tags: d.features.pos_tags && !self.no_pos_tags,
                ..d.features.clone()
            },
            ..d
        }
    }

    /// [`TrainOptions::svm_member`] of `first` with `--svm-lr`.
    fn svm_member(&self, first: &TrainOptions) -> TrainOptions {
        let d = first.svm_member();
        TrainOptions {
            lr: self.svm_lr.unwrap_or(d.lr),
            ..d
        }
    }

    /// [`TrainOptions::attention_member`] with the `--attention-*` flags.
    fn attention_member(&self) -> TrainOptions {
        let d = TrainOptions::attention_member();
        TrainOptions {
            aux_weight: self.aux_weight.unwrap_or(d.aux_weight),
            dim: self.attention_dim.unwrap_or(d.dim),
            conv: self.attention_conv.unwrap_or(d.conv),
            heads: self.attention_heads.unwrap_or(d.heads),
            batch_size: self.attention_batch_size.unwrap_or(d.batch_size).max(1),
            max_pool: self.attention_max_pool || d.max_pool,
            epochs: self.attention_epochs.unwrap_or(d.epochs),
            lr: self.attention_lr.unwrap_or(d.lr),
            ..d
        }
    }

    pub fn run(self) -> anyhow::Result<()> {
        let aliases = self
            .aliases
            .as_deref()
            .map(ProductAliases::load)
            .transpose()
            .context("--aliases")?;
        if let Some(w) = self.oos_weight
            && !(w.is_finite() && w > 0.0)
        {
            anyhow::bail!("--oos-weight must be a positive number, not {w}");
        }
        if let Some(s) = self.novelty_share
            && !(0.0..1.0).contains(&s)
        {
            anyhow::bail!("--novelty-share must be at least 0 and below 1, not {s}");
        }
        if let Some(w) = self.aux_weight
            && !(w.is_finite() && w >= 0.0)
        {
            anyhow::bail!("--aux-weight must be a number ≥ 0, not {w}");
        }
        let mut opts = self.options();
        opts.extra.clear();
        let first_options = opts.clone();
        if let Some(names) = &self.candidates {
            opts.candidates = names
                .iter()
                .map(|m| match m.as_str() {
                    "attention" => self.attention_member(),
                    "attention-ngrams" => TrainOptions::attention_ngrams_member(),
                    "svm" => self.svm_member(&first_options),
                    "knn" => first_options.knn_member(false),
                    "knn-chars" => first_options.knn_member(true),
                    _ => TrainOptions::fasttext_member(),
                })
                .collect();
        } else {
            // The built-in list, with the `--attention-*` and `--svm-lr` flags applied.
            for c in &mut opts.candidates {
                if c.arch == Arch::Attention {
                    *c = self.attention_member();
                } else if c.loss == Loss::SquaredHinge {
                    *c = self.svm_member(&first_options);
                } else if c.arch == Arch::Knn {
                    *c = first_options.knn_member(c.knn_chars);
                }
            }
        }
        if self.single || self.no_candidates {
            opts.candidates.clear();
        }
        let first = TrainOptions {
            candidates: Vec::new(),
            ..opts.clone()
        };
        if !self.single {
            for m in self.members.as_deref().unwrap_or(&["linear".to_string()]) {
                opts.extra.push(match m.as_str() {
                    // The first member again (same flags), with its own seed.
                    "embedding" => first.clone(),
                    "fasttext" => TrainOptions::fasttext_member(),
                    "attention" => self.attention_member(),
                    "svm" => self.svm_member(&first),
                    "knn" => first.knn_member(false),
                    "knn-chars" => first.knn_member(true),
                    _ => {
                        let d = opts.linear_member();
                        TrainOptions {
                            lr: self.linear_lr.unwrap_or(d.lr),
                            epochs: self.linear_epochs.unwrap_or(d.epochs),
                            weight_decay: self.linear_weight_decay.unwrap_or(d.weight_decay),
                            ..d
                        }
                    }
                });
            }
        }
        if let Some(w) = self.aux_weight {
            for m in opts.extra.iter_mut().chain(&mut opts.candidates) {
                m.aux_weight = w;
            }
        }
        let (mut data, aux) = train::read_examples_with_field(&self.data, Some(&self.aux_field))?;
        let mut kb = self.kb_rows(&data)?;
        let mut dev = self.dev.as_deref().map(train::read_examples).transpose()?;
        let mut extra = self.article_rows(&data)?;
        if let Some(aliases) = &aliases {
            let mut rows: Vec<&mut train::Example> = (data.iter_mut())
                .chain(dev.iter_mut().flatten())
                .chain(&mut extra)
                .chain(&mut kb)
                .collect();
            let expanded: usize = rows
                .par_iter_mut()
                .map(|row| match aliases.expand(&row.text) {
                    Cow::Owned(text) => {
                        row.text = text;
                        1
                    }
                    Cow::Borrowed(_) => 0,
                })
                .sum();
            eprintln!(
                "--aliases: {} groups; {expanded} rows name another cloud's product",
                aliases.len()
            );
        }
        if !extra.is_empty() && self.article_agreement < 1.0 {
            let probe_dir = tempfile::tempdir().context("temporary folder for the first model")?;
            eprintln!(
                "--articles: training a model without the {} article rows first, to drop the rows it puts under another label with confidence ≥ {}",
                extra.len(),
                self.article_agreement
            );
            // Without part-of-speech tags: one training rather than two for a filter.
            let probe_opts = opts.without_pos_tags();
            train::train_with_aux(
                &data,
                &aux,
                &[],
                dev.as_deref(),
                &probe_opts,
                probe_dir.path(),
            )?;
            let probe = Classifier::load(probe_dir.path())?;
            let before = extra.len();
            extra = agreeing_rows(extra, &probe, self.article_agreement);
            eprintln!(
                "--articles: {} of {before} rows kept, {} dropped",
                extra.len(),
                before - extra.len()
            );
        }
        let repeat = self.article_repeat as usize;
        let extra: Vec<train::Example> = (0..repeat).flat_map(|_| extra.iter().cloned()).collect();
        // After the probe model, which has no articles to vote with.
        if !kb.is_empty() && !self.single {
            opts.candidates.push(first.kb_member());
        }
        let report =
            train::train_with_kb(&data, &aux, &extra, &kb, dev.as_deref(), &opts, &self.out)?;
        // A model trained without aliases must not pick up a file left by an earlier one.
        let aliases_file = self.out.join(ALIASES_FILE);
        match &aliases {
            Some(aliases) => std::fs::write(&aliases_file, aliases.source())
                .with_context(|| format!("writing {}", aliases_file.display()))?,
            None => match std::fs::remove_file(&aliases_file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", aliases_file.display()));
                }
                _ => {}
            },
        }
        eprint!("{}", report.markdown());
        eprintln!("model written to {}", self.out.display());
        Ok(())
    }
}

/// The rows `rows_of` makes of the help articles at `paths` for the labels of `data` (none
/// without paths). An article that cannot be read stops training (a silently smaller set would
/// train another model), and so do articles none of which has a category among the labels;
/// `flag` names the option in the error.
fn labelled_article_rows(
    flag: &str,
    paths: &[PathBuf],
    data: &[train::Example],
    rows_of: impl FnOnce(&[crate::article::Article], &BTreeSet<String>) -> Vec<train::Example>,
) -> anyhow::Result<Vec<train::Example>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let ingested = crate::ingest::read_paths(paths);
    if let Some(p) = ingested.problems.first() {
        let line = p.line.map(|l| format!(":{l}")).unwrap_or_default();
        anyhow::bail!("{flag}: {}{line}: {}", p.source, p.message);
    }
    let labels: BTreeSet<String> = data.iter().map(|e| e.label.clone()).collect();
    let rows = rows_of(&ingested.articles, &labels);
    if rows.is_empty() {
        anyhow::bail!(
            "{flag}: none of the {} articles has a category among the training labels",
            ingested.articles.len()
        );
    }
    Ok(rows)
}

/// Classify one ticket (argument) or JSONL tickets on stdin.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[arg(long, env = "KEFU_MODEL", default_value = "models/router")]
    pub model: PathBuf,
    #[arg(long)]
    pub json: bool,
    pub text: Option<String>,
}

/// A ticket line: `{"id","subject","body"}`, or `{"id","text"}` for convenience.
#[derive(Debug, Deserialize)]
struct TicketLine {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    text: Option<String>,
}

impl TicketLine {
    fn into_ticket(self) -> Ticket {
        let id = self.id.map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
        let body = match self.text {
            Some(t) if self.body.is_empty() => t,
            Some(t) => format!("{}\n{t}", self.body),
            None => self.body,
        };
        Ticket {
            id,
            subject: self.subject,
            body,
        }
    }
}

#[derive(Serialize)]
struct ClassifyAnswer {
    id: Option<String>,
    category: String,
    confidence: f32,
    needs_human: bool,
    top: Vec<LabelProb>,
    explanation: Vec<TokenWeight>,
}

#[derive(Serialize)]
struct LineError {
    line: usize,
    error: String,
}

fn classify(classifier: &Classifier, ticket: &Ticket) -> Result<ClassifyAnswer, RouteError> {
    let text = ticket_text(ticket)?;
    let (p, explanation) = classifier.explain(&text, 5);
    Ok(ClassifyAnswer {
        id: ticket.id.clone(),
        category: classifier.labels()[p.best].clone(),
        confidence: p.confidence,
        needs_human: p.abstain,
        top: classifier.top(&p, 3),
        explanation,
    })
}

fn human(answer: &ClassifyAnswer) -> String {
    let top: Vec<String> = answer
        .top
        .iter()
        .map(|l| format!("{} {:.3}", l.label, l.p))
        .collect();
    let why: Vec<String> = answer
        .explanation
        .iter()
        .map(|t| format!("{} {:+.2}", t.token, t.weight))
        .collect();
    format!(
        "{}{} {:.3}{}\n  top: {}\n  why: {}",
        answer
            .id
            .as_deref()
            .map(|i| format!("{i}: "))
            .unwrap_or_default(),
        answer.category,
        answer.confidence,
        if answer.needs_human {
            " (needs a human)"
        } else {
            ""
        },
        top.join(", "),
        why.join(", ")
    )
}

/// Reads JSONL from `input` in batches of what is already buffered, answers each line with
/// `answer` in parallel, and writes one line per input line (blank lines are skipped).
fn stream_jsonl<R, F>(input: R, out: &mut dyn Write, answer: F) -> anyhow::Result<()>
where
    R: Read,
    F: Fn(usize, Result<Ticket, String>) -> String + Sync,
{
    let mut reader = std::io::BufReader::with_capacity(1 << 16, input);
    let mut line_no = 0usize;
    let mut batch: Vec<(usize, Vec<u8>)> = Vec::new();
    loop {
        let mut buf = Vec::new();
        let n = reader
            .read_until(b'\n', &mut buf)
            .context("reading stdin")?;
        if n > 0 {
            line_no += 1;
            if !buf.trim_ascii().is_empty() {
                batch.push((line_no, buf));
            }
        }
        let flush = n == 0 || reader.buffer().is_empty() || batch.len() >= 4096;
        if flush && !batch.is_empty() {
            let lines: Vec<String> = batch
                .par_iter()
                .map(|(no, bytes)| {
                    let ticket = std::str::from_utf8(bytes)
                        .map_err(|e| format!("invalid UTF-8: {e}"))
                        .and_then(|s| {
                            serde_json::from_str::<TicketLine>(s)
                                .map(TicketLine::into_ticket)
                                .map_err(|e| format!("bad ticket JSON: {e}"))
                        });
                    answer(*no, ticket)
                })
                .collect();
            for l in lines {
                out.write_all(l.as_bytes())?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            batch.clear();
        }
        if n == 0 {
            return Ok(());
        }
    }
}

fn error_line(line: usize, error: String) -> String {
    serde_json::to_string(&LineError { line, error }).expect("serializable")
}

impl ClassifyArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let classifier = Classifier::load(&self.model)?;
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        if let Some(text) = &self.text {
            let ticket = Ticket {
                id: None,
                subject: String::new(),
                body: text.clone(),
            };
            let answer = classify(&classifier, &ticket)?;
            if self.json {
                writeln!(out, "{}", serde_json::to_string(&answer)?)?;
            } else {
                writeln!(out, "{}", human(&answer))?;
            }
            out.flush()?;
            return Ok(());
        }
        let json = self.json;
        stream_jsonl(std::io::stdin().lock(), &mut out, |no, ticket| match ticket
            .and_then(|t| classify(&classifier, &t).map_err(|e| e.to_string()))
        {
            Ok(a) if json => serde_json::to_string(&a).expect("serializable"),
            Ok(a) => human(&a),
            Err(e) => error_line(no, e),
        })
    }
}

/// Route JSONL tickets from stdin to JSONL decisions on stdout.
#[derive(Debug, Args)]
pub struct RouteArgs {
    #[arg(long, env = "KEFU_MODEL", default_value = "models/router")]
    pub model: PathBuf,
    #[arg(long, env = "KEFU_RULES")]
    pub rules: Option<PathBuf>,
}

impl RouteArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let router = TicketRouter::load(&self.model, self.rules.as_deref())?;
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        stream_jsonl(std::io::stdin().lock(), &mut out, |no, ticket| match ticket
            .and_then(|t| router.route(&t).map_err(|e| e.to_string()))
        {
            Ok(d) => serde_json::to_string(&d).expect("serializable"),
            Err(e) => error_line(no, e),
        })
    }
}

/// Evaluate a model on labelled JSONL.
#[derive(Debug, Args)]
pub struct EvalClassifyArgs {
    #[arg(long, default_value = "models/router")]
    pub model: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub json: bool,
    /// Evaluate only the held-back 10% of --data (sha1 ≡ 0 mod 10), the dev split of data sets
    /// without one (banking77), as `kefu train` without --dev holds it back.
    #[arg(long)]
    pub holdout: bool,
}

impl EvalClassifyArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let classifier = Classifier::load(&self.model)?;
        let mut data = train::read_examples(&self.data)?;
        if self.holdout {
            data.retain(|e| train::is_held_back(&e.text));
        }
        let report = eval::evaluate(&classifier, &data);
        if !report.unknown_labels.is_empty() {
            eprintln!(
                "kefu: {} gold label(s) the model does not know (counted as errors): {}",
                report.unknown_labels.len(),
                report.unknown_labels.join(", ")
            );
        }
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", report.text());
        }
        Ok(())
    }
}
