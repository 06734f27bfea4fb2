//! The candle model: a fastText-style bag of feature embeddings, pooled as a weighted mean (each
//! feature weighs its training IDF, so rare, telling words and n-grams count more than `the` and
//! `如何`; features never seen in training weigh 0, their rows hold nothing learned), then an
//! optional hidden layer (ReLU) and a linear layer to the label logits. Two other architectures
//! share the embedding table and its storage: a sparse linear model ([`Arch::Linear`]) and an
//! attention network over the text's words in order ([`Arch::Attention`]: word vectors built
//! from their features, an optional width-3 convolution, attention pooling with one or more
//! heads); see [`Arch`].
//!
//! Owns: the layers (`new(vb)` with names via `vb.pp`), `forward`, and [`PlainModel`], the same
//! weights copied into plain `Vec<f32>` at load time so one ticket costs microseconds, not a
//! candle graph. Must never: train (that is `train.rs`).
//!
//! Weights in `model.safetensors`: `embedding.weight` `[rows, dim]` (stored as f16 to keep the
//! model directory small; an [`Arch::Linear`] table in 8 bits with per-row scales
//! `embedding.scale`, see [`stored_table`]; f32 and f16 tables of older models load as well),
//! `feature_weight` `[rows]`, `hidden.weight`/`hidden.bias` (when `hidden > 0`),
//! `out.weight`/`out.bias`; [`Arch::Attention`] adds `query` `[heads, width]` and `conv.weight`/`conv.bias` (when `conv > 0`).
//! Saved sparse ([`SPARSE_ROWS`]): `embedding.rows` lists the rows stored, the only ones a training
//! example has (most hash buckets are empty); a model without it is read as dense.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::knn::{KnnIndex, Neighbours};

/// How feature embeddings are pooled into one vector.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// `Σ wᵢ eᵢ / Σ wᵢ` (fastText's mean, IDF-weighted).
    #[default]
    Mean,
    /// `Σ wᵢ eᵢ / √Σ wᵢ²` (the L2 normalization of TF-IDF: longer texts weigh more).
    L2,
    /// Scikit-learn's `TfidfVectorizer(sublinear_tf=True)`: a feature occurring `tf` times weighs
    /// `(1 + ln tf) · idf`, and the vector of those weights is L2-normalized.
    Tfidf,
}

impl Pooling {
    /// The pooling coefficient of each occurrence in `ids` (`weights[id]`: the feature's IDF;
    /// ids at or beyond `weights.len()` weigh 0). Duplicates share their feature's coefficient, so
    /// the coefficients of one feature add up to its weight in the pooled vector. All zeros when no
    /// feature is known.
    ///
    /// With a `split`, ids below it and ids from it on are two groups pooled each on its own
    /// (as two vectorizers stacked side by side), and the coefficients add up.
    pub fn coefficients(self, ids: &[u32], weights: &[f32], split: Option<u32>) -> Vec<f32> {
        let Some(split) = split else {
            return self.group_coefficients(ids, weights);
        };
        let mut out = vec![0f32; ids.len()];
        for low in [true, false] {
            let at: Vec<usize> = (0..ids.len())
                .filter(|&i| (ids[i] < split) == low)
                .collect();
            let group: Vec<u32> = at.iter().map(|&i| ids[i]).collect();
            for (i, c) in at.into_iter().zip(self.group_coefficients(&group, weights)) {
                out[i] = c;
            }
        }
        out
    }

    fn group_coefficients(self, ids: &[u32], weights: &[f32]) -> Vec<f32> {
        let w = |id: u32| weights.get(id as usize).copied().unwrap_or(0.0);
        let mut out: Vec<f32> = ids.iter().map(|&id| w(id)).collect();
        let total = match self {
            Pooling::Mean => out.iter().sum::<f32>(),
            Pooling::L2 => out.iter().map(|w| w * w).sum::<f32>().sqrt(),
            Pooling::Tfidf => {
                // Term counts from the positions sorted by id (each position under its id, id
                // high, position low: one sort of plain numbers): the norm's summation order
                // must not depend on a hash map's (training is deterministic for a seed). Each
                // run of one id is scaled once; a binary search and a logarithm per occurrence
                // (before session 17) made routing a ticket 5% dearer (callgrind, shipped
                // router: 539k → 514k instructions a ticket, decisions byte-identical).
                let mut keyed: Vec<u64> = (0u64..)
                    .zip(ids)
                    .map(|(i, &id)| u64::from(id) << 32 | i)
                    .collect();
                keyed.sort_unstable();
                let mut squares: Vec<f32> = Vec::with_capacity(keyed.len());
                for run in keyed.chunk_by(|a, b| a >> 32 == b >> 32) {
                    let id = (run[0] >> 32) as u32;
                    let n = run.len() as f32;
                    // Each of the n occurrences carries 1/n of (1 + ln n) · idf.
                    let (scale, x) = if run.len() == 1 {
                        (1.0, w(id))
                    } else {
                        ((1.0 + n.ln()) / n, (1.0 + n.ln()) * w(id))
                    };
                    for &k in run {
                        out[k as u32 as usize] *= scale;
                    }
                    squares.push(x * x);
                }
                squares.iter().sum::<f32>().sqrt()
            }
        };
        if total > 0.0 {
            out.iter_mut().for_each(|c| *c /= total);
        } else {
            out.iter_mut().for_each(|c| *c = 0.0);
        }
        out
    }
}

/// The network's architecture.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// fastText: pooled `dim`-wide feature embeddings, then (hidden layer and) a linear layer.
    #[default]
    Embedding,
    /// A sparse linear model, as TF-IDF + logistic regression: each feature row holds one weight
    /// per label (`dim` = labels) and the logits are the pooled rows plus a bias, no bottleneck.
    Linear,
    /// Attention pooling over the text's tokens, in order: each token's vector is the IDF-weighted
    /// mean of its features' embeddings (as fastText builds a word vector from the word and its
    /// n-grams), then optionally one convolution of width 3 (`conv` filters, ReLU) over the
    /// sequence, then a learned query scores each position and the softmax of the scores weighs
    /// the positions into one vector (with `max_pool`, the maximum over positions next to it),
    /// then a linear layer. Reads the first [`MAX_TOKENS`] tokens that have a known feature.
    Attention,
    /// k nearest neighbours ([`knn`](super::knn)): the training rows' TF-IDF vectors (pooled as
    /// [`Pooling::Tfidf`] over the member's features) searched by cosine; the top `dim` rows vote.
    /// Nothing is trained. A reader that predates it refuses the model directory: `config.json`
    /// does not parse (`knn` is not an architecture it knows).
    Knn,
}

/// Tokens an [`Arch::Attention`] network reads: the first ones with a feature seen in training.
pub const MAX_TOKENS: usize = 64;

/// Attention priors per position and `(position, index into ids, coefficient)` per feature
/// occurrence: see [`token_sequence`].
pub type TokenSequence = (Vec<f32>, Vec<(usize, usize, f32)>);

/// The token sequence of one text for [`Arch::Attention`]: each position's attention prior, the
/// log of its features' summed pooling weight (IDF), so that attention starts as the IDF-weighted
/// mean of the bag (at least one position: a text without a known feature is one zero vector
/// with prior 0), and, for each feature occurrence that counts, `(position, index into ids,
/// coefficient)`; a position's coefficients add up to 1.
pub fn token_sequence(ids: &[u32], token_of: &[u32], weights: &[f32]) -> TokenSequence {
    let w = |id: u32| weights.get(id as usize).copied().unwrap_or(0.0);
    let mut tokens: Vec<u32> = (0..ids.len())
        .filter(|&i| w(ids[i]) > 0.0)
        .map(|i| token_of[i])
        .collect();
    tokens.sort_unstable();
    tokens.dedup();
    tokens.truncate(MAX_TOKENS);
    let mut total = vec![0f32; tokens.len()];
    let mut out = Vec::new();
    for (i, (&id, t)) in ids.iter().zip(token_of).enumerate() {
        let weight = w(id);
        if weight <= 0.0 {
            continue;
        }
        if let Ok(pos) = tokens.binary_search(t) {
            total[pos] += weight;
            out.push((pos, i, weight));
        }
    }
    for entry in &mut out {
        entry.2 /= total[entry.0];
    }
    let prior = if total.is_empty() {
        vec![0.0]
    } else {
        total.iter().map(|t| t.ln()).collect()
    };
    (prior, out)
}

/// Shape of the network; saved in `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelConfig {
    /// Embedding rows: vocabulary + hash buckets.
    pub rows: usize,
    /// Embedding width ([`Arch::Knn`]: the neighbours that vote).
    pub dim: usize,
    /// Hidden layer width (0: none, the pooled vector feeds the output layer directly).
    pub hidden: usize,
    /// Number of labels.
    pub labels: usize,
    #[serde(default)]
    pub pooling: Pooling,
    #[serde(default)]
    pub arch: Arch,
    /// Pool feature ids below this and from this on as two groups (grouped feature layout).
    #[serde(default)]
    pub group_split: Option<u32>,
    /// [`Arch::Embedding`]: the head sees the pooled mean and, next to it, the element-wise
    /// maximum over the embeddings of the features that count (pooling coefficient > 0), so
    /// `2 · dim` values: max pooling adds a non-linearity the weighted mean lacks.
    #[serde(default)]
    pub max_pool: bool,
    /// [`Arch::Attention`]: filters of the width-3 convolution over the token sequence (0: none).
    #[serde(default)]
    pub conv: usize,
    /// [`Arch::Attention`]: attention heads, each a query of its own and a pooled vector of its
    /// own; the head sees them side by side.
    #[serde(default = "one_head")]
    pub heads: usize,
}

fn one_head() -> usize {
    1
}

impl ModelConfig {
    /// Width of one position of an [`Arch::Attention`] network's sequence.
    pub fn token_width(&self) -> usize {
        if self.conv > 0 { self.conv } else { self.dim }
    }

    /// Width of the pooled vector the head sees.
    pub fn pooled_width(&self) -> usize {
        let one = match self.arch {
            Arch::Linear | Arch::Knn => return self.labels,
            Arch::Embedding => self.dim,
            Arch::Attention => {
                return self.token_width() * (self.heads.max(1) + self.max_pool as usize);
            }
        };
        if self.max_pool { 2 * one } else { one }
    }
}

/// The network, candle style: a struct of layers.
pub struct RouterModel {
    pub pooling: Pooling,
    pub group_split: Option<u32>,
    pub max_pool: bool,
    pub embedding: Tensor,
    /// Pooling weight of each feature row (IDF on the training data).
    pub feature_weight: Tensor,
    pub hidden: Option<Linear>,
    /// The output layer (`None` for [`Arch::Linear`]: the pooled vector is the logits, plus `bias`).
    pub out: Option<Linear>,
    /// `out.bias` of [`Arch::Linear`].
    pub bias: Option<Tensor>,
    /// [`Arch::Attention`]: the convolution (`[filters, 3·dim]`, over the previous, the current
    /// and the next position) and the queries `[heads, token width]`.
    pub attention: Option<(Option<Linear>, Tensor)>,
    /// [`Arch::Knn`]: the stored rows (`embedding` is then `[0, labels]`).
    pub knn: Option<KnnIndex>,
}

impl RouterModel {
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<RouterModel> {
        if cfg.arch == Arch::Knn {
            let feature_weight = if vb.contains_tensor(SPARSE_ROWS) {
                sparse_weights(cfg.rows, &vb)?
            } else {
                vb.get(cfg.rows, "feature_weight")?
            };
            return Ok(RouterModel {
                pooling: Pooling::Tfidf,
                group_split: cfg.group_split,
                max_pool: false,
                embedding: Tensor::zeros((0, cfg.labels), DType::F32, vb.device())?,
                feature_weight,
                hidden: None,
                out: None,
                bias: None,
                attention: None,
                knn: Some(KnnIndex::load(&vb, cfg.rows, cfg.labels, cfg.dim)?),
            });
        }
        let width = if cfg.arch == Arch::Linear {
            cfg.labels
        } else {
            cfg.dim
        };
        let (embedding, feature_weight) = if vb.contains_tensor(SPARSE_ROWS) {
            sparse_table(cfg.rows, width, &vb)?
        } else {
            (
                stored_rows(&vb, cfg.rows, width)?,
                vb.get(cfg.rows, "feature_weight")?,
            )
        };
        if cfg.arch == Arch::Linear {
            let bias = vb.pp("out").get(cfg.labels, "bias")?;
            return Ok(RouterModel {
                pooling: cfg.pooling,
                group_split: cfg.group_split,
                max_pool: false,
                embedding,
                feature_weight,
                hidden: None,
                out: None,
                bias: Some(bias),
                attention: None,
                knn: None,
            });
        }
        let pooled = cfg.pooled_width();
        let (hidden, head_in) = if cfg.hidden > 0 {
            (
                Some(candle_nn::linear(pooled, cfg.hidden, vb.pp("hidden"))?),
                cfg.hidden,
            )
        } else {
            (None, pooled)
        };
        let out = candle_nn::linear(head_in, cfg.labels, vb.pp("out"))?;
        let attention = if cfg.arch == Arch::Attention {
            let conv = (cfg.conv > 0)
                .then(|| candle_nn::linear(3 * cfg.dim, cfg.conv, vb.pp("conv")))
                .transpose()?;
            Some((
                conv,
                vb.get((cfg.heads.max(1), cfg.token_width()), "query")?,
            ))
        } else {
            None
        };
        Ok(RouterModel {
            attention,
            pooling: cfg.pooling,
            group_split: cfg.group_split,
            max_pool: cfg.max_pool,
            embedding,
            feature_weight,
            hidden,
            out: Some(out),
            bias: None,
            knn: None,
        })
    }

    /// Logits from pooled vectors `[batch, dim]`.
    pub fn head(&self, pooled: &Tensor) -> Result<Tensor> {
        let x = match &self.hidden {
            Some(h) => h.forward(pooled)?.relu()?,
            None => pooled.clone(),
        };
        match (&self.out, &self.bias) {
            (Some(out), _) => out.forward(&x),
            (None, Some(b)) => x.broadcast_add(b),
            (None, None) => Ok(x),
        }
    }

    /// Pooled vectors `[batch, pooled width]` of a batch laid out by [`batch_layout`], from the
    /// embeddings `[n, dim]` of its rows (`layout.rows`).
    pub fn pooled(&self, layout: &BatchLayout, row_embeddings: &Tensor) -> Result<Tensor> {
        let mean = layout.pool.matmul(row_embeddings)?;
        let Some(max) = &layout.max else {
            return Ok(mean);
        };
        let (batch, len) = max.mask.dims2()?;
        let dim = row_embeddings.dim(1)?;
        let gathered = row_embeddings
            .index_select(&max.index, 0)?
            .reshape((batch, len, dim))?
            .broadcast_add(&max.mask.unsqueeze(2)?)?
            .max(1)?
            .broadcast_mul(&max.any)?;
        Tensor::cat(&[&mean, &gathered], 1)
    }

    /// [`Arch::Attention`]: pooled vectors `[batch, pooled width]` of a batch laid out by
    /// [`token_layout`], from the embeddings `[n, dim]` of its rows (`layout.rows`).
    pub fn attention_pooled(
        &self,
        layout: &TokenLayout,
        row_embeddings: &Tensor,
    ) -> Result<Tensor> {
        let Some((conv, query)) = &self.attention else {
            candle_core::bail!("not an attention network");
        };
        let (batch, len) = layout.mask.dims2()?;
        let dim = row_embeddings.dim(1)?;
        let parts = row_embeddings
            .index_select(&layout.feature, 0)?
            .broadcast_mul(&layout.coefficient)?;
        let tokens = Tensor::zeros((batch * len, dim), parts.dtype(), parts.device())?
            .index_add(&layout.position, &parts, 0)?
            .reshape((batch, len, dim))?;
        let seq = match conv {
            Some(conv) => {
                let prev = tokens.pad_with_zeros(1, 1, 0)?.narrow(1, 0, len)?;
                let next = tokens.pad_with_zeros(1, 0, 1)?.narrow(1, 1, len)?;
                let x =
                    Tensor::cat(&[&prev, &tokens, &next], 2)?.reshape((batch * len, 3 * dim))?;
                conv.forward(&x)?.relu()?.reshape((batch, len, ()))?
            }
            None => tokens,
        };
        let width = seq.dim(2)?;
        let heads = query.dim(0)?;
        let scores = seq
            .reshape((batch * len, width))?
            .matmul(&query.t()?)?
            .reshape((batch, len, heads))?
            .broadcast_add(&layout.mask.unsqueeze(2)?)?;
        // [batch, heads, len] · [batch, len, width] → [batch, heads · width].
        let attention = candle_nn::ops::softmax(&scores, 1)?
            .transpose(1, 2)?
            .contiguous()?;
        let pooled = attention
            .matmul(&seq.contiguous()?)?
            .reshape((batch, heads * width))?;
        if !self.max_pool {
            return Ok(pooled);
        }
        let max = seq.broadcast_add(&layout.padding.unsqueeze(2)?)?.max(1)?;
        Tensor::cat(&[&pooled, &max], 1)
    }

    /// [`Arch::Attention`] logits for `(feature ids, token of each)` lists, the reference the
    /// plain copy is tested against.
    pub fn forward_tokens(&self, batch: &[(Vec<u32>, Vec<u32>)]) -> Result<Tensor> {
        let dev = self.embedding.device();
        let weights: Vec<f32> = self.feature_weight.to_dtype(DType::F32)?.to_vec1()?;
        let layout = token_layout(batch, &weights, dev)?;
        let e = self.embedding.index_select(&layout.rows, 0)?;
        self.head(&self.attention_pooled(&layout, &e)?)
    }

    /// Logits for feature-id lists, the reference the plain copy is tested against.
    pub fn forward(&self, batch: &[Vec<u32>]) -> Result<Tensor> {
        let dev = self.embedding.device();
        let weights: Vec<f32> = self.feature_weight.to_dtype(DType::F32)?.to_vec1()?;
        let layout = batch_layout(
            batch,
            &weights,
            self.pooling,
            self.group_split,
            self.max_pool,
            dev,
        )?;
        let e = self.embedding.index_select(&layout.rows, 0)?;
        self.head(&self.pooled(&layout, &e)?)
    }

    /// Copies the weights into plain vectors for fast inference.
    pub fn to_plain(&self) -> Result<PlainModel> {
        let emb = self.embedding.to_dtype(DType::F32)?;
        let (rows, dim) = emb.dims2()?;
        // A kNN member has no table: its rows are the feature weights'.
        let rows = if self.knn.is_some() {
            self.feature_weight.dim(0)?
        } else {
            rows
        };
        let linear = |l: &Linear| -> Result<(Vec<f32>, Vec<f32>, usize)> {
            let w = l.weight().to_dtype(DType::F32)?;
            let (out, _) = w.dims2()?;
            let b = match l.bias() {
                Some(b) => b.to_dtype(DType::F32)?.to_vec1()?,
                None => vec![0.0; out],
            };
            Ok((w.flatten_all()?.to_vec1()?, b, out))
        };
        let hidden = self.hidden.as_ref().map(linear).transpose()?;
        let direct = self.out.is_none();
        let (out_w, out_b, labels) = match &self.out {
            Some(out) => linear(out)?,
            None => {
                // Identity output rows: explanations treat both architectures alike.
                let b: Vec<f32> = match &self.bias {
                    Some(b) => b.to_dtype(DType::F32)?.to_vec1()?,
                    None => vec![0.0; dim],
                };
                let mut w = vec![0f32; dim * dim];
                (0..dim).for_each(|i| w[i * dim + i] = 1.0);
                (w, b, dim)
            }
        };
        let attention = match &self.attention {
            Some((conv, query)) => Some(PlainAttention {
                conv: conv.as_ref().map(linear).transpose()?,
                query: query.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
            }),
            None => None,
        };
        Ok(PlainModel {
            pooling: self.pooling,
            group_split: self.group_split,
            max_pool: self.max_pool,
            attention,
            dim,
            rows,
            embedding: emb.flatten_all()?.to_vec1()?,
            weight: self.feature_weight.to_dtype(DType::F32)?.to_vec1()?,
            hidden,
            direct,
            out_w,
            out_b,
            labels,
            knn: self.knn.clone(),
            contrast_products: ContrastProducts::default(),
        }
        .with_contrast_products())
    }
}

/// Name of the sparse storage's row index (`[n]` u32, strictly increasing): when present,
/// `embedding.weight` `[n, width]` and `feature_weight` `[n]` hold only these rows, every other
/// row is zero (a feature no training example had, or one below `min_df`: its pooling weight is
/// 0, so it never counts). Keeps the model directory small, whatever the hash space.
pub const SPARSE_ROWS: &str = "embedding.rows";

/// The full `[rows, width]` table and `[rows]` pooling weights from sparse storage.
fn sparse_table(rows: usize, width: usize, vb: &VarBuilder) -> Result<(Tensor, Tensor)> {
    let index = sparse_rows(rows, vb)?;
    let stored = stored_rows(vb, index.dim(0)?, width)?;
    let table =
        Tensor::zeros((rows, width), DType::F32, stored.device())?.index_add(&index, &stored, 0)?;
    Ok((table, scattered_weights(rows, &index, vb)?))
}

/// The `[rows]` pooling weights of sparse storage without a table ([`Arch::Knn`]).
fn sparse_weights(rows: usize, vb: &VarBuilder) -> Result<Tensor> {
    scattered_weights(rows, &sparse_rows(rows, vb)?, vb)
}

/// The stored row ids of sparse storage ([`SPARSE_ROWS`]), checked: increasing, below `rows`.
fn sparse_rows(rows: usize, vb: &VarBuilder) -> Result<Tensor> {
    let index = vb.get_unchecked_dtype(SPARSE_ROWS, DType::U32)?;
    let ids: Vec<u32> = index.to_vec1()?;
    if ids.windows(2).any(|w| w[0] >= w[1]) || ids.last().is_some_and(|&r| r as usize >= rows) {
        candle_core::bail!("{SPARSE_ROWS}: row ids must be increasing and below {rows}");
    }
    Ok(index)
}

/// The stored rows' `feature_weight` values put back at their ids (`index`) of `[rows]` zeros.
fn scattered_weights(rows: usize, index: &Tensor, vb: &VarBuilder) -> Result<Tensor> {
    let weight = vb
        .get(index.dim(0)?, "feature_weight")?
        .to_dtype(DType::F32)?;
    Tensor::zeros(rows, DType::F32, weight.device())?.index_add(index, &weight, 0)
}

/// Name of the per-row scales of an 8-bit table ([`stored_table`]): when present,
/// `embedding.weight` is u8 and value `j` of row `r` is `(q[r][j] − 128) · scale[r]`.
pub const ROW_SCALE: &str = "embedding.scale";

/// The embedding table `[rows, width]` as saved (the values a loaded model sees are these, so
/// training calibrates on them): an [`Arch::Linear`] table, one weight per feature and label,
/// in 8 bits per weight with one f32 scale per row ([`ROW_SCALE`]: symmetric, the row's
/// largest magnitude maps to ±127, zeros stay zero), every other table as f16. Returns
/// `embedding.weight` and, for the 8-bit table, its scales.
///
/// Why 8 bits for the linear tables: they are the wide ones (a row per feature and a weight per
/// label, clinc150 29,673 × 151 for each of the linear and SVM members, 9 MB each in f16), and
/// the model directory must stay under 20 MB. Measured (session 11): the default's dev figures
/// (`--no-refit`, seeds 42/7/1234, clinc150, banking77 hold-back, cloud-queues with `--articles
/// kb`, smp2017) all came out the same as with f16 tables; clinc150's model directory 16.4 →
/// 12.0 MB, banking77 6.2 → 4.7 MB (seed 42). The same f16 model with its two linear tables
/// re-stored in 8 bits (same calibration) changed no label of clinc150's 3,100 dev rows and one
/// abstention, the largest confidence by 0.002. All tables in 8 bits (the 32-wide embedding
/// tables too) would save as much again (clinc150 with the SVM 16.8 → 14.1 MB, cloud-queues 8.5
/// → 5.7 MB; re-stored that way no label changed on either dev set, one abstention on
/// clinc150), not needed for the 20 MB and not measured retrained, so not done.
pub fn stored_table(
    arch: Arch,
    table: Vec<f32>,
    rows: usize,
    width: usize,
    dev: &Device,
) -> Result<Vec<(String, Tensor)>> {
    if arch != Arch::Linear {
        let t = Tensor::from_vec(table, (rows, width), dev)?.to_dtype(DType::F16)?;
        return Ok(vec![("embedding.weight".into(), t)]);
    }
    let (q, scale) = quantize_rows(&table, width);
    Ok(vec![
        (
            "embedding.weight".into(),
            Tensor::from_vec(q, (rows, width), dev)?,
        ),
        (ROW_SCALE.into(), Tensor::from_vec(scale, rows, dev)?),
    ])
}

/// Symmetric 8-bit quantization of each `width`-long row of `table`: `(q + 128, scale)` with
/// `q = round(x / scale)` in −127..=127 and `scale = max |x| / 127` (0 for a row of zeros).
fn quantize_rows(table: &[f32], width: usize) -> (Vec<u8>, Vec<f32>) {
    let mut q = Vec::with_capacity(table.len());
    let mut scales = Vec::with_capacity(table.len() / width.max(1));
    for row in table.chunks(width.max(1)) {
        let max = row.iter().fold(0f32, |m, x| m.max(x.abs()));
        let scale = max / 127.0;
        scales.push(scale);
        q.extend(row.iter().map(|&x| {
            let v = if scale > 0.0 {
                (x / scale).round().clamp(-127.0, 127.0)
            } else {
                0.0
            };
            (v as i32 + 128) as u8
        }));
    }
    (q, scales)
}

/// The first `n` rows of the stored table as f32 `[n, width]`: f32 or f16 as they are, 8-bit
/// rows ([`ROW_SCALE`]) widened with their scales.
fn stored_rows(vb: &VarBuilder, n: usize, width: usize) -> Result<Tensor> {
    if !vb.contains_tensor(ROW_SCALE) {
        return vb
            .pp("embedding")
            .get((n, width), "weight")?
            .to_dtype(DType::F32);
    }
    let q = vb
        .pp("embedding")
        .get_unchecked_dtype("weight", DType::U8)?;
    if q.dims() != [n, width] {
        candle_core::bail!(
            "embedding.weight: 8-bit rows of shape {:?}, expected [{n}, {width}]",
            q.dims()
        );
    }
    let scale = vb.get(n, ROW_SCALE)?.to_dtype(DType::F32)?;
    q.to_dtype(DType::F32)?
        .affine(1.0, -128.0)?
        .broadcast_mul(&scale.unsqueeze(1)?)
}

/// The sparse storage of one network's tensors (see [`SPARSE_ROWS`]): only the rows whose pooling
/// weight is not 0. Other tensors are kept as they are.
pub fn sparse_tensors(
    tensors: &std::collections::HashMap<String, Tensor>,
) -> Result<std::collections::HashMap<String, Tensor>> {
    let mut out = tensors.clone();
    let Some(weight) = tensors.get("feature_weight") else {
        return Ok(out);
    };
    let table = tensors.get("embedding.weight");
    if table.is_none() && !tensors.contains_key("knn.offsets") {
        return Ok(out);
    }
    let w: Vec<f32> = weight.to_dtype(DType::F32)?.to_vec1()?;
    let ids: Vec<u32> = (0..w.len() as u32)
        .filter(|&i| w[i as usize] != 0.0)
        .collect();
    let index = Tensor::from_vec(ids.clone(), ids.len(), weight.device())?;
    if let Some(table) = table {
        out.insert("embedding.weight".into(), table.index_select(&index, 0)?);
    }
    out.insert("feature_weight".into(), weight.index_select(&index, 0)?);
    if let Some(scale) = tensors.get(ROW_SCALE) {
        out.insert(ROW_SCALE.into(), scale.index_select(&index, 0)?);
    }
    out.insert(SPARSE_ROWS.into(), index);
    Ok(out)
}

/// A batch of id lists as tensors: see [`batch_layout`].
pub struct BatchLayout {
    /// Pooling matrix `[batch, n]` over `rows`.
    pub pool: Tensor,
    /// The batch's unique embedding rows `[n]`.
    pub rows: Tensor,
    /// For max pooling: which of `rows` each example has.
    pub max: Option<MaxLayout>,
}

/// The positions max pooling reads.
pub struct MaxLayout {
    /// `[batch · len]` indices into the batch's rows, example by example (padded).
    pub index: Tensor,
    /// `[batch, len]`: 0 where a feature counts, a large negative number at padding.
    pub mask: Tensor,
    /// `[batch, 1]`: 1 when an example has a feature that counts, else 0 (its maximum is 0).
    pub any: Tensor,
}

/// A training batch laid out for a network's pooling.
pub enum Layout {
    Bag(BatchLayout),
    Tokens(TokenLayout),
}

impl Layout {
    /// The batch's unique embedding rows.
    pub fn rows(&self) -> &Tensor {
        match self {
            Layout::Bag(l) => &l.rows,
            Layout::Tokens(l) => &l.rows,
        }
    }
}

/// A batch of `(feature ids, token of each)` lists as tensors for [`Arch::Attention`].
pub struct TokenLayout {
    /// The batch's unique embedding rows `[n]`.
    pub rows: Tensor,
    /// `[m]`: for each feature occurrence that counts, its index into `rows`…
    pub feature: Tensor,
    /// …`[m, 1]` its coefficient in its token's vector…
    pub coefficient: Tensor,
    /// …`[m]` and its position, `example · len + token`.
    pub position: Tensor,
    /// `[batch, len]`: an example's attention priors at its positions, a large negative number
    /// at padding.
    pub mask: Tensor,
    /// `[batch, len]`: 0 at an example's positions, a large negative number at padding.
    pub padding: Tensor,
}

/// The [`TokenLayout`] of a batch (`weights[id]`: the pooling weight of a feature row; features
/// of weight 0 do not count), see [`token_sequence`].
pub fn token_layout(
    batch: &[(Vec<u32>, Vec<u32>)],
    weights: &[f32],
    dev: &Device,
) -> Result<TokenLayout> {
    let sequences: Vec<TokenSequence> = batch
        .iter()
        .map(|(ids, token_of)| token_sequence(ids, token_of, weights))
        .collect();
    let len = sequences.iter().map(|s| s.0.len()).max().unwrap_or(1);
    let mut index = std::collections::HashMap::new();
    let mut rows: Vec<u32> = Vec::new();
    let (mut feature, mut coefficient, mut position) = (Vec::new(), Vec::new(), Vec::new());
    let mut mask = vec![-1e4f32; batch.len() * len];
    let mut padding = vec![-1e4f32; batch.len() * len];
    for (j, ((ids, _), (prior, entries))) in batch.iter().zip(&sequences).enumerate() {
        mask[j * len..j * len + prior.len()].copy_from_slice(prior);
        padding[j * len..j * len + prior.len()].fill(0.0);
        for &(pos, i, c) in entries {
            let local = *index.entry(ids[i]).or_insert_with(|| {
                rows.push(ids[i]);
                rows.len() - 1
            });
            feature.push(local as u32);
            coefficient.push(c);
            position.push((j * len + pos) as u32);
        }
    }
    if rows.is_empty() {
        // No feature counts anywhere: one zero-weighted read keeps the shapes valid.
        rows.push(0);
        feature.push(0);
        coefficient.push(0.0);
        position.push(0);
    }
    let m = feature.len();
    Ok(TokenLayout {
        rows: Tensor::from_vec(rows.clone(), rows.len(), dev)?,
        feature: Tensor::from_vec(feature, m, dev)?,
        coefficient: Tensor::from_vec(coefficient, (m, 1), dev)?,
        position: Tensor::from_vec(position, m, dev)?,
        mask: Tensor::from_vec(mask, (batch.len(), len), dev)?,
        padding: Tensor::from_vec(padding, (batch.len(), len), dev)?,
    })
}

/// [`pooling_matrix`], plus the max-pooling positions when `max_pool`.
pub fn batch_layout(
    batch: &[Vec<u32>],
    weights: &[f32],
    pooling: Pooling,
    split: Option<u32>,
    max_pool: bool,
    dev: &Device,
) -> Result<BatchLayout> {
    let (pool, rows) = pooling_matrix(batch, weights, pooling, split, dev)?;
    if !max_pool {
        return Ok(BatchLayout {
            pool,
            rows,
            max: None,
        });
    }
    let row_list: Vec<u32> = rows.to_vec1()?;
    let local: std::collections::HashMap<u32, u32> = row_list
        .iter()
        .enumerate()
        .map(|(i, &r)| (r, i as u32))
        .collect();
    let counted: Vec<Vec<u32>> = batch
        .iter()
        .map(|ids| {
            let mut seen: Vec<u32> = ids
                .iter()
                .copied()
                .filter(|&id| weights.get(id as usize).copied().unwrap_or(0.0) > 0.0)
                .collect();
            seen.sort_unstable();
            seen.dedup();
            seen.into_iter().map(|id| local[&id]).collect()
        })
        .collect();
    let len = counted.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut index = vec![0u32; batch.len() * len];
    let mut mask = vec![-1e4f32; batch.len() * len];
    let mut any = vec![0f32; batch.len()];
    for (j, ids) in counted.iter().enumerate() {
        for (i, &r) in ids.iter().enumerate() {
            index[j * len + i] = r;
            mask[j * len + i] = 0.0;
        }
        if ids.is_empty() {
            // Nothing counts: the maximum is read from one padding position and zeroed by `any`.
            mask[j * len] = 0.0;
        } else {
            any[j] = 1.0;
        }
    }
    Ok(BatchLayout {
        pool,
        rows,
        max: Some(MaxLayout {
            index: Tensor::from_vec(index, batch.len() * len, dev)?,
            mask: Tensor::from_vec(mask, (batch.len(), len), dev)?,
            any: Tensor::from_vec(any, (batch.len(), 1), dev)?,
        }),
    })
}

/// Weighted-mean pooling matrix `[batch, unique rows]` and the unique rows, for a batch of id
/// lists (`weights[id]`: the pooling weight of a feature row).
pub fn pooling_matrix(
    batch: &[Vec<u32>],
    weights: &[f32],
    pooling: Pooling,
    split: Option<u32>,
    dev: &Device,
) -> Result<(Tensor, Tensor)> {
    let mut index = std::collections::HashMap::new();
    let mut rows: Vec<u32> = Vec::new();
    for ids in batch {
        for &id in ids {
            index.entry(id).or_insert_with(|| {
                rows.push(id);
                rows.len() - 1
            });
        }
    }
    let n = rows.len().max(1);
    if rows.is_empty() {
        rows.push(0);
    }
    let mut pool = vec![0f32; batch.len() * n];
    for (j, ids) in batch.iter().enumerate() {
        for (&id, c) in ids.iter().zip(pooling.coefficients(ids, weights, split)) {
            pool[j * n + index[&id]] += c;
        }
    }
    Ok((
        Tensor::from_vec(pool, (batch.len(), n), dev)?,
        Tensor::from_vec(rows, n, dev)?,
    ))
}

/// The same network as plain vectors (row-major, `weight[out][in]` as in candle's `Linear`).
#[derive(Debug, Clone)]
pub struct PlainModel {
    pub pooling: Pooling,
    pub group_split: Option<u32>,
    /// The pooled vector is the weighted mean and the element-wise maximum (see
    /// [`ModelConfig::max_pool`]).
    pub max_pool: bool,
    /// [`Arch::Attention`]'s convolution and query.
    pub attention: Option<PlainAttention>,
    pub dim: usize,
    pub rows: usize,
    pub embedding: Vec<f32>,
    /// Pooling weight of each row.
    pub weight: Vec<f32>,
    /// `(weight [hidden×dim], bias, hidden)`.
    pub hidden: Option<(Vec<f32>, Vec<f32>, usize)>,
    /// [`Arch::Linear`]: `out_w` is the identity, logits are the pooled vector plus `out_b`.
    pub direct: bool,
    pub out_w: Vec<f32>,
    pub out_b: Vec<f32>,
    pub labels: usize,
    /// [`Arch::Knn`]: the stored rows searched instead of a table and a head.
    pub knn: Option<KnnIndex>,
    /// Each row's product with each label's contrast row, as explanations meet them: see
    /// [`PlainModel::with_contrast_products`].
    pub contrast_products: ContrastProducts,
}

/// Per label, a slot per row for that row's product with the label's contrast row (its output
/// row less the mean output row), each computed the first time an explanation needs it; no
/// labels when the model explains otherwise ([`PlainModel::with_contrast_products`]).
#[derive(Debug, Default)]
pub struct ContrastProducts {
    /// The label's slots (allocated on its first explanation): `f32` bits, [`NOT_YET`] until
    /// computed. Threads that race on a slot compute and store the same value.
    labels: Vec<OnceLock<Vec<AtomicU32>>>,
}

/// A slot not computed yet: a NaN that the products of finite rows never are (if one were, it
/// would only be computed again each time).
const NOT_YET: u32 = 0x7fc0_0de5;

impl Clone for ContrastProducts {
    /// A copy starts empty, for the same labels: the products are a cache.
    fn clone(&self) -> ContrastProducts {
        ContrastProducts {
            labels: (0..self.labels.len()).map(|_| OnceLock::new()).collect(),
        }
    }
}

/// [`Arch::Attention`]'s layers as plain vectors.
#[derive(Debug, Clone)]
pub struct PlainAttention {
    /// `(weight [filters × 3·dim], bias, filters)`.
    pub conv: Option<(Vec<f32>, Vec<f32>, usize)>,
    /// `[heads × width]`.
    pub query: Vec<f32>,
}

/// One text's positions after the attention network's convolution, and where each came from.
struct Sequence {
    /// `[positions × width]`.
    values: Vec<f32>,
    width: usize,
    /// Softmax weight of each position, head after head (`[heads × positions]`).
    attention: Vec<f32>,
    /// `(position, index into ids, coefficient)`, see [`token_sequence`].
    entries: Vec<(usize, usize, f32)>,
}

/// One text's forward pass up to the pooled vector (or the attention sequence), kept so that the
/// logits and an explanation of them are computed from the same work instead of twice
/// ([`PlainModel::forward`]).
pub struct Forward(ForwardState);

enum ForwardState {
    /// A bag-of-features network: each occurrence's pooling coefficient and the pooled vector.
    Bag {
        coefficients: Vec<f32>,
        pooled: Vec<f32>,
    },
    /// [`Arch::Attention`].
    Sequence(Sequence),
    /// [`Arch::Knn`]: the query's pooling coefficients and its neighbours.
    Knn {
        coefficients: Vec<f32>,
        neighbours: Neighbours,
    },
}

impl Forward {
    /// The pooling coefficients of a bag-of-features network (`None` for [`Arch::Attention`]).
    pub fn coefficients(&self) -> Option<&[f32]> {
        match &self.0 {
            ForwardState::Bag { coefficients, .. } | ForwardState::Knn { coefficients, .. } => {
                Some(coefficients)
            }
            ForwardState::Sequence(_) => None,
        }
    }
}

/// `a · b` summed in eight lanes (then the lanes, then the tail), which the compiler turns into
/// vector instructions; a plain `sum()` must add one product after another. Explanations only:
/// the sums differ from the forward pass's in the last bits, so the logits keep the plain one.
fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn affine(w: &[f32], b: &[f32], x: &[f32]) -> Vec<f32> {
    b.iter()
        .enumerate()
        .map(|(o, &bias)| {
            let row = &w[o * x.len()..(o + 1) * x.len()];
            bias + row.iter().zip(x).map(|(a, b)| a * b).sum::<f32>()
        })
        .collect()
}

impl PlainModel {
    fn row(&self, id: u32) -> &[f32] {
        let id = id as usize;
        &self.embedding[id * self.dim..(id + 1) * self.dim]
    }

    /// Pooling coefficient of each id (0 for unknown ids).
    fn coefficients(&self, ids: &[u32]) -> Vec<f32> {
        self.pooling
            .coefficients(ids, &self.weight[..self.rows], self.group_split)
    }

    /// Weighted mean of the feature embeddings (zeros when no feature is known).
    pub fn pool(&self, ids: &[u32]) -> Vec<f32> {
        self.pool_with(ids, &self.coefficients(ids))
    }

    /// [`PlainModel::pool`] with the pooling coefficients already computed.
    fn pool_with(&self, ids: &[u32], coefficients: &[f32]) -> Vec<f32> {
        let d = self.dim;
        let mut pooled = vec![0f32; if self.max_pool { 2 * d } else { d }];
        let (mean, max) = pooled.split_at_mut(d);
        let mut any = false;
        for (&id, &w) in ids.iter().zip(coefficients) {
            if w == 0.0 {
                continue;
            }
            for (p, e) in mean.iter_mut().zip(self.row(id)) {
                *p += w * e;
            }
            if self.max_pool {
                if any {
                    max.iter_mut()
                        .zip(self.row(id))
                        .for_each(|(m, &e)| *m = m.max(e));
                } else {
                    max.copy_from_slice(self.row(id));
                    any = true;
                }
            }
        }
        pooled
    }

    /// Logits for a pooled vector.
    pub fn head(&self, pooled: &[f32]) -> Vec<f32> {
        if self.direct {
            return pooled.iter().zip(&self.out_b).map(|(p, b)| p + b).collect();
        }
        match &self.hidden {
            Some((w, b, _)) => {
                let mut h = affine(w, b, pooled);
                h.iter_mut().for_each(|x| *x = x.max(0.0));
                affine(&self.out_w, &self.out_b, &h)
            }
            None => affine(&self.out_w, &self.out_b, pooled),
        }
    }

    /// Logits for feature ids (a network that reads tokens, [`Arch::Attention`], needs
    /// [`PlainModel::logits_of`]).
    pub fn logits(&self, ids: &[u32]) -> Vec<f32> {
        self.head(&self.pool(ids))
    }

    /// Logits for feature ids and the token each belongs to (`token_of`, as in
    /// [`Features`](super::features::Features)).
    pub fn logits_of(&self, ids: &[u32], token_of: &[u32]) -> Vec<f32> {
        self.forward_logits(&self.forward(ids, token_of, None))
    }

    /// The forward pass of one text up to the pooled vector: [`PlainModel::forward_logits`]
    /// finishes it, [`PlainModel::forward_contrast_contributions`] explains it.
    /// `coefficients`: the pooling coefficients of `ids` when already known (another member
    /// with the same features, pooling and weights computed them; see
    /// [`PlainModel::same_coefficients`]); ignored by [`Arch::Attention`].
    pub fn forward(&self, ids: &[u32], token_of: &[u32], coefficients: Option<&[f32]>) -> Forward {
        Forward(match &self.attention {
            Some(attention) => ForwardState::Sequence(self.sequence(attention, ids, token_of)),
            None => {
                let coefficients = match coefficients {
                    Some(c) => c.to_vec(),
                    None => self.coefficients(ids),
                };
                if let Some(knn) = &self.knn {
                    let neighbours = knn.search(ids, &coefficients);
                    return Forward(ForwardState::Knn {
                        coefficients,
                        neighbours,
                    });
                }
                let pooled = self.pool_with(ids, &coefficients);
                ForwardState::Bag {
                    coefficients,
                    pooled,
                }
            }
        })
    }

    /// The logits of a forward pass.
    pub fn forward_logits(&self, forward: &Forward) -> Vec<f32> {
        match &forward.0 {
            ForwardState::Bag { pooled, .. } => self.head(pooled),
            ForwardState::Sequence(seq) => self.head(&self.attention_pool(seq)),
            ForwardState::Knn { neighbours, .. } => match &self.knn {
                Some(knn) => knn.logits(neighbours),
                None => vec![0.0; self.labels],
            },
        }
    }

    /// Whether `other` computes the same pooling coefficients as this model for the same feature
    /// ids: both pool a bag of features the same way over the same weights.
    pub fn same_coefficients(&self, other: &PlainModel) -> bool {
        self.attention.is_none()
            && other.attention.is_none()
            && self.pooling == other.pooling
            && self.group_split == other.group_split
            && self.rows == other.rows
            && self.weight[..self.rows] == other.weight[..other.rows]
    }

    /// The positions of [`Arch::Attention`] and their softmax weights.
    fn sequence(&self, attention: &PlainAttention, ids: &[u32], token_of: &[u32]) -> Sequence {
        let d = self.dim;
        let (prior, entries) = token_sequence(ids, token_of, &self.weight[..self.rows]);
        let n = prior.len();
        let mut tokens = vec![0f32; n * d];
        for &(pos, i, c) in &entries {
            for (t, e) in tokens[pos * d..(pos + 1) * d]
                .iter_mut()
                .zip(self.row(ids[i]))
            {
                *t += c * e;
            }
        }
        let (values, width) = match &attention.conv {
            None => (tokens, d),
            Some((w, b, filters)) => {
                let mut out = Vec::with_capacity(n * filters);
                for pos in 0..n {
                    for (f, &bias) in b.iter().enumerate() {
                        let row = &w[f * 3 * d..(f + 1) * 3 * d];
                        let mut z = bias;
                        for (k, at) in [pos.checked_sub(1), Some(pos), Some(pos + 1)]
                            .into_iter()
                            .enumerate()
                        {
                            if let Some(at) = at.filter(|&at| at < n) {
                                let x = &tokens[at * d..(at + 1) * d];
                                z += row[k * d..(k + 1) * d]
                                    .iter()
                                    .zip(x)
                                    .map(|(a, b)| a * b)
                                    .sum::<f32>();
                            }
                        }
                        out.push(z.max(0.0));
                    }
                }
                (out, *filters)
            }
        };
        let mut weights = Vec::with_capacity(attention.query.len() / width * n);
        for query in attention.query.chunks(width) {
            let scores: Vec<f32> = values
                .chunks(width)
                .zip(&prior)
                .map(|(u, p)| p + u.iter().zip(query).map(|(a, b)| a * b).sum::<f32>())
                .collect();
            let top = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f32> = scores.iter().map(|s| (s - top).exp()).collect();
            let total: f32 = exp.iter().sum();
            weights.extend(exp.into_iter().map(|e| e / total));
        }
        Sequence {
            values,
            width,
            attention: weights,
            entries,
        }
    }

    /// Each head's attention-weighted sum of the positions (and their maximum with `max_pool`).
    fn attention_pool(&self, seq: &Sequence) -> Vec<f32> {
        let w = seq.width;
        let n = seq.values.len() / w;
        let heads = seq.attention.len() / n;
        let mut pooled = vec![0f32; w * (heads + self.max_pool as usize)];
        let (sums, max) = pooled.split_at_mut(heads * w);
        for (sum, weights) in sums.chunks_mut(w).zip(seq.attention.chunks(n)) {
            for (u, &a) in seq.values.chunks(w).zip(weights) {
                sum.iter_mut().zip(u).for_each(|(s, &x)| *s += a * x);
            }
        }
        if self.max_pool {
            max.iter_mut().for_each(|m| *m = f32::NEG_INFINITY);
            for u in seq.values.chunks(w) {
                max.iter_mut().zip(u).for_each(|(m, &x)| *m = m.max(x));
            }
        }
        pooled
    }

    /// [`Arch::Attention`]: `out_row · pooled` split over the features exactly: position `j`
    /// contributed `a_j · out_row · u_j` (plus `out_row[w + k] · u_jk` for each maximum `k` it
    /// holds), shared among its features by their coefficients.
    fn attention_contributions(&self, seq: &Sequence, ids: &[u32], out_row: &[f32]) -> Vec<f32> {
        let w = seq.width;
        let positions = seq.values.len() / w;
        let heads = seq.attention.len() / positions;
        let mut per_position = vec![0f32; positions];
        for (h, weights) in seq.attention.chunks(positions).enumerate() {
            let row = &out_row[h * w..(h + 1) * w];
            for ((p, u), &a) in per_position
                .iter_mut()
                .zip(seq.values.chunks(w))
                .zip(weights)
            {
                *p += a * lane_dot(u, row);
            }
        }
        if self.max_pool {
            let out_row = &out_row[(heads - 1) * w..];
            for k in 0..w {
                let holder = (0..positions)
                    .max_by(|&i, &j| {
                        seq.values[i * w + k]
                            .total_cmp(&seq.values[j * w + k])
                            .then(j.cmp(&i))
                    })
                    .unwrap_or(0);
                per_position[holder] += out_row[w + k] * seq.values[holder * w + k];
            }
        }
        let mut out = vec![0f32; ids.len()];
        for &(pos, i, c) in &seq.entries {
            out[i] += c * per_position[pos];
        }
        out
    }

    /// Gradient with respect to the pooled vector of `out_row · hidden(pooled)` (a logit when
    /// `out_row` is a row of the output layer): exact for the linear head, the local
    /// linearization through the ReLU otherwise. Feature `f` then contributed
    /// `grad · E[f] · w[f] / Σw`
    /// ("gradient × input").
    fn gradient_for_row(&self, pooled: &[f32], out_row: &[f32]) -> Vec<f32> {
        let d = pooled.len();
        match &self.hidden {
            None => out_row.to_vec(),
            Some((w, b, h)) => {
                let z = affine(w, b, pooled);
                let mut g = vec![0f32; d];
                for k in 0..*h {
                    if z[k] <= 0.0 {
                        continue;
                    }
                    for (gi, wi) in g.iter_mut().zip(&w[k * d..(k + 1) * d]) {
                        *gi += out_row[k] * wi;
                    }
                }
                g
            }
        }
    }

    fn out_row(&self, label: usize) -> &[f32] {
        let width = self.out_w.len() / self.labels;
        &self.out_w[label * width..(label + 1) * width]
    }

    fn contributions_for_row(
        &self,
        ids: &[u32],
        coefficients: &[f32],
        pooled: &[f32],
        out_row: &[f32],
    ) -> Vec<f32> {
        let g = self.gradient_for_row(pooled, out_row);
        let d = self.dim;
        let mut out: Vec<f32> = ids
            .iter()
            .zip(coefficients)
            .map(|(&id, &w)| {
                if w == 0.0 {
                    return 0.0;
                }
                w * lane_dot(self.row(id), &g)
            })
            .collect();
        if self.max_pool {
            // Each maximum is credited to the first feature holding it.
            for k in 0..d {
                let holder = (0..ids.len())
                    .find(|&i| coefficients[i] != 0.0 && self.row(ids[i])[k] == pooled[d + k]);
                if let Some(i) = holder {
                    out[i] += pooled[d + k] * g[d + k];
                }
            }
        }
        out
    }

    /// Contribution of each feature to logit `label`.
    pub fn contributions(&self, ids: &[u32], token_of: &[u32], label: usize) -> Vec<f32> {
        self.contributions_of(ids, token_of, self.out_row(label))
    }

    fn contributions_of(&self, ids: &[u32], token_of: &[u32], row: &[f32]) -> Vec<f32> {
        self.forward_contributions(&self.forward(ids, token_of, None), ids, row)
    }

    fn forward_contributions(&self, forward: &Forward, ids: &[u32], row: &[f32]) -> Vec<f32> {
        match &forward.0 {
            ForwardState::Sequence(seq) => self.attention_contributions(seq, ids, row),
            ForwardState::Bag {
                coefficients,
                pooled,
            } => self.contributions_for_row(ids, coefficients, pooled, row),
            // Logits of a kNN member are not a row of weights: see
            // [`PlainModel::forward_contrast_contributions`].
            ForwardState::Knn { .. } => vec![0.0; ids.len()],
        }
    }

    /// Contribution of each feature (ids and the token each belongs to) to logit `label` minus
    /// the mean logit, so features that raise every label alike get no credit.
    pub fn contrast_contributions(&self, ids: &[u32], token_of: &[u32], label: usize) -> Vec<f32> {
        self.forward_contrast_contributions(&self.forward(ids, token_of, None), ids, label)
    }

    /// [`PlainModel::contrast_contributions`] of a forward pass of `ids`.
    pub fn forward_contrast_contributions(
        &self,
        forward: &Forward,
        ids: &[u32],
        label: usize,
    ) -> Vec<f32> {
        if let (
            Some(knn),
            ForwardState::Knn {
                coefficients,
                neighbours,
            },
        ) = (&self.knn, &forward.0)
        {
            return knn.contrast_contributions(neighbours, ids, coefficients, label);
        }
        if let (Some(slots), ForwardState::Bag { coefficients, .. }) =
            (self.contrast_slots(label), &forward.0)
        {
            // What `contributions_for_row` computes with the contrast row as the gradient
            // (no hidden layer), each row's product taken once instead of once per ticket.
            let mut row: Option<Vec<f32>> = None;
            return ids
                .iter()
                .zip(coefficients)
                .map(|(&id, &w)| {
                    if w == 0.0 {
                        return 0.0;
                    }
                    let slot = &slots[id as usize];
                    let bits = slot.load(Ordering::Relaxed);
                    let product = if bits == NOT_YET {
                        let row = row.get_or_insert_with(|| self.contrast_row(label));
                        let product = lane_dot(self.row(id), row);
                        slot.store(product.to_bits(), Ordering::Relaxed);
                        product
                    } else {
                        f32::from_bits(bits)
                    };
                    w * product
                })
                .collect();
        }
        self.forward_contributions(forward, ids, &self.contrast_row(label))
    }

    /// Output row `label` less the mean output row: the gradient of a logit minus the mean
    /// logit with respect to the pooled vector, when there is no hidden layer.
    fn contrast_row(&self, label: usize) -> Vec<f32> {
        let mut row = self.out_row(label).to_vec();
        for l in 0..self.labels {
            for (r, w) in row.iter_mut().zip(self.out_row(l)) {
                *r -= w / self.labels as f32;
            }
        }
        debug_assert_eq!(row.len(), self.out_w.len() / self.labels);
        row
    }

    /// A bag network without a hidden layer or max pooling explains a ticket with one product
    /// of a row and the label's contrast row per feature; those products are the same for
    /// every ticket, so each is computed once, the first time a ticket has the feature, and
    /// kept ([`ContrastProducts`]). Kept to networks whose labels are no more than their width,
    /// so that the products never take more memory than the table itself (the shipped router:
    /// 9 labels, 32 wide). The linear member (an identity head) and the kNN member explain
    /// cheaply as they are.
    fn with_contrast_products(mut self) -> PlainModel {
        let applies = self.hidden.is_none()
            && !self.max_pool
            && !self.direct
            && self.knn.is_none()
            && self.attention.is_none()
            && self.labels <= self.dim;
        self.contrast_products = ContrastProducts {
            labels: if applies {
                (0..self.labels).map(|_| OnceLock::new()).collect()
            } else {
                Vec::new()
            },
        };
        self
    }

    /// `label`'s product slots, one per row ([`ContrastProducts`]); `None` when the model does
    /// not keep them.
    fn contrast_slots(&self, label: usize) -> Option<&[AtomicU32]> {
        let cell = self.contrast_products.labels.get(label)?;
        Some(cell.get_or_init(|| (0..self.rows).map(|_| AtomicU32::new(NOT_YET)).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    /// The lane-split dot product is the dot product (to rounding) at every length, the
    /// remainder of the eight lanes included.
    #[test]
    fn lane_dot_is_the_dot_product() {
        for n in 0..40 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 1.3 + 0.5).cos()).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((lane_dot(&a, &b) as f64 - plain).abs() < 1e-5, "length {n}");
            assert_eq!(
                lane_dot(&a, &b[..n / 2]),
                lane_dot(&a[..n / 2], &b[..n / 2])
            );
        }
    }

    #[test]
    fn plain_copy_matches_candle_forward() {
        for (hidden, max_pool) in [(0, false), (8, false), (0, true), (8, true)] {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let cfg = ModelConfig {
                rows: 50,
                dim: 6,
                hidden,
                labels: 3,
                arch: Arch::Embedding,
                group_split: None,
                max_pool,
                conv: 0,
                heads: 1,
                pooling: if hidden == 0 {
                    Pooling::Mean
                } else {
                    Pooling::L2
                },
            };
            let model = RouterModel::new(&cfg, vb).unwrap();
            // Deterministic, non-trivial embeddings.
            let emb = Tensor::arange(0f32, 300f32, &Device::Cpu)
                .unwrap()
                .affine(0.01, -1.5)
                .unwrap()
                .sin()
                .unwrap()
                .reshape((50, 6))
                .unwrap();
            let weight = Tensor::arange(0f32, 50f32, &Device::Cpu)
                .unwrap()
                .affine(0.1, 0.5)
                .unwrap();
            let model = RouterModel {
                embedding: emb,
                feature_weight: weight,
                ..model
            };
            let batch = vec![vec![1, 2, 3, 3], vec![40, 7]];
            let logits: Vec<Vec<f32>> = model.forward(&batch).unwrap().to_vec2().unwrap();
            let plain = model.to_plain().unwrap();
            for (ids, want) in batch.iter().zip(&logits) {
                let got = plain.logits(ids);
                for (a, b) in got.iter().zip(want) {
                    assert!((a - b).abs() < 1e-4, "{a} vs {b}");
                }
            }
            if hidden == 0 {
                // Linear head: contributions add up to logit − bias exactly.
                let ids = &batch[0];
                let c: f32 = plain
                    .contributions(ids, &vec![0; ids.len()], 1)
                    .iter()
                    .sum();
                assert!((c + plain.out_b[1] - logits[0][1]).abs() < 1e-4);
                // The products kept per label explain as the per-ticket products do, bit for
                // bit (max pooling explains without them).
                assert_eq!(
                    plain.contrast_products.labels.len(),
                    if max_pool { 0 } else { 3 }
                );
                let general = PlainModel {
                    contrast_products: ContrastProducts::default(),
                    ..plain.clone()
                };
                let forward = plain.forward(ids, &vec![0; ids.len()], None);
                for label in 0..3 {
                    let want = general.forward_contrast_contributions(&forward, ids, label);
                    assert!(want.iter().any(|&c| c != 0.0));
                    // Computed, then read back.
                    for _ in 0..2 {
                        let kept = plain.forward_contrast_contributions(&forward, ids, label);
                        assert_eq!(kept, want);
                    }
                }
            }
        }
    }

    #[test]
    fn tfidf_coefficients_are_sublinear_and_l2_normalized() {
        let weights = [0.0, 1.0, 2.0, 3.0];
        // Feature 1 twice, feature 2 once, 9 is unknown.
        let c = Pooling::Tfidf.coefficients(&[1, 2, 1, 9], &weights, None);
        let x1 = 1.0 + 2f32.ln();
        let norm = (x1 * x1 + 4.0).sqrt();
        assert!((c[0] + c[2] - x1 / norm).abs() < 1e-6, "{c:?}");
        assert!((c[1] - 2.0 / norm).abs() < 1e-6);
        assert_eq!(c[3], 0.0);
        let mean = Pooling::Mean.coefficients(&[1, 2, 1], &weights, None);
        assert!((mean.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(
            Pooling::Tfidf.coefficients(&[0, 9], &weights, None),
            vec![0.0, 0.0]
        );
        // Two groups (ids < 2, ids ≥ 2): each L2-normalized on its own.
        let g = Pooling::Tfidf.coefficients(&[1, 2, 3], &weights, Some(2));
        assert!((g[0] - 1.0).abs() < 1e-6, "{g:?}");
        assert!((g[1] * g[1] + g[2] * g[2] - 1.0).abs() < 1e-6, "{g:?}");
    }

    #[test]
    fn linear_arch_plain_copy_matches_candle_forward() {
        let cfg = ModelConfig {
            rows: 20,
            dim: 4,
            hidden: 0,
            labels: 4,
            pooling: Pooling::Tfidf,
            arch: Arch::Linear,
            group_split: Some(10),
            max_pool: false,
            conv: 0,
            heads: 1,
        };
        let dev = Device::Cpu;
        let mut tensors = std::collections::HashMap::new();
        let w = Tensor::arange(0f32, 80f32, &dev)
            .and_then(|t| t.affine(0.37, 0.1))
            .and_then(|t| t.sin())
            .and_then(|t| t.reshape((20, 4)))
            .unwrap();
        tensors.insert("embedding.weight".to_string(), w);
        tensors.insert(
            "feature_weight".to_string(),
            Tensor::arange(0f32, 20f32, &dev)
                .and_then(|t| t.affine(0.1, 1.0))
                .unwrap(),
        );
        tensors.insert(
            "out.bias".to_string(),
            Tensor::new(&[0.5f32, -0.5, 0.0, 1.0], &dev).unwrap(),
        );
        // Rows 3..=8 were never seen in training (pooling weight 0).
        let mut w: Vec<f32> = (0..20).map(|i| 1.0 + 0.1 * i as f32).collect();
        w[3..=8].iter_mut().for_each(|x| *x = 0.0);
        tensors.insert(
            "feature_weight".to_string(),
            Tensor::from_vec(w, 20, &dev).unwrap(),
        );
        let sparse = sparse_tensors(&tensors).unwrap();
        assert_eq!(sparse["embedding.weight"].dims(), &[14, 4]);
        assert_eq!(sparse["feature_weight"].dims(), &[14]);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &dev);
        let model = RouterModel::new(&cfg, vb).unwrap();
        let vb = VarBuilder::from_tensors(sparse, DType::F32, &dev);
        let stored = RouterModel::new(&cfg, vb).unwrap().to_plain().unwrap();
        let batch = vec![vec![1, 2, 2, 5], vec![19]];
        // Sparse storage gives the very same predictions (unseen rows count 0 either way).
        for ids in batch.iter().chain([&vec![3, 4, 12]]) {
            assert_eq!(stored.logits(ids), model.to_plain().unwrap().logits(ids));
        }
        let logits: Vec<Vec<f32>> = model.forward(&batch).unwrap().to_vec2().unwrap();
        let plain = model.to_plain().unwrap();
        assert!(plain.direct);
        for (ids, want) in batch.iter().zip(&logits) {
            let got = plain.logits(ids);
            for (a, b) in got.iter().zip(want) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
            // Contributions add up to logit − bias.
            for (label, (logit, bias)) in got.iter().zip(&plain.out_b).enumerate() {
                let c: f32 = plain.contributions(ids, &[], label).iter().sum();
                assert!((c + bias - logit).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn linear_table_is_saved_in_8_bits_and_reads_back_within_half_a_step() {
        let (rows, labels) = (12, 5);
        let cfg = ModelConfig {
            rows,
            dim: labels,
            hidden: 0,
            labels,
            pooling: Pooling::Tfidf,
            arch: Arch::Linear,
            group_split: None,
            max_pool: false,
            conv: 0,
            heads: 1,
        };
        let dev = Device::Cpu;
        // Rows of mixed magnitude, some weights exactly 0 (as the SVM member's), row 4 all 0.
        let table: Vec<f32> = (0..rows * labels)
            .map(|i| match (i / labels, i % 3) {
                (4, _) => 0.0,
                (_, 0) => 0.0,
                (r, _) => ((i as f32) * 0.71).sin() * (1.0 + r as f32),
            })
            .collect();
        let saved: std::collections::HashMap<String, Tensor> =
            stored_table(Arch::Linear, table.clone(), rows, labels, &dev)
                .unwrap()
                .into_iter()
                .collect();
        assert_eq!(saved["embedding.weight"].dtype(), DType::U8);
        let scale: Vec<f32> = saved[ROW_SCALE].to_vec1().unwrap();
        assert_eq!(scale[4], 0.0);
        let mut tensors = saved.clone();
        let mut w = vec![1.0f32; rows];
        w[7] = 0.0; // never seen in training: left out of the sparse storage
        tensors.insert(
            "feature_weight".to_string(),
            Tensor::from_vec(w, rows, &dev).unwrap(),
        );
        tensors.insert(
            "out.bias".to_string(),
            Tensor::zeros(labels, DType::F32, &dev).unwrap(),
        );
        let sparse = sparse_tensors(&tensors).unwrap();
        assert_eq!(sparse[ROW_SCALE].dims(), &[rows - 1]);
        // Through the file format: what `Classifier::load` reads.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        candle_core::safetensors::save(&sparse, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &dev).unwrap();
        let loaded = RouterModel::new(&cfg, vb).unwrap();
        let got: Vec<Vec<f32>> = loaded.embedding.to_vec2().unwrap();
        for (r, row) in got.iter().enumerate() {
            for (j, &x) in row.iter().enumerate() {
                let want = if r == 7 { 0.0 } else { table[r * labels + j] };
                assert!(
                    (x - want).abs() <= scale[r] / 2.0 + 1e-6,
                    "row {r}: {x} vs {want}"
                );
                if want == 0.0 {
                    assert_eq!(x, 0.0);
                }
            }
        }
        // The same tensors unsaved (as training calibrates) give the very same model.
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &dev);
        let unsaved = RouterModel::new(&cfg, vb).unwrap();
        let ids = vec![0, 2, 2, 9, 11];
        assert_eq!(
            unsaved.to_plain().unwrap().logits(&ids),
            loaded.to_plain().unwrap().logits(&ids)
        );
        // Saving what was read back stores the same bytes again.
        let flat: Vec<f32> = got.concat();
        let again: std::collections::HashMap<String, Tensor> =
            stored_table(Arch::Linear, flat, rows, labels, &dev)
                .unwrap()
                .into_iter()
                .collect();
        let q = |t: &std::collections::HashMap<String, Tensor>| -> Vec<u8> {
            t["embedding.weight"]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let mut first = q(&saved);
        first[7 * labels..8 * labels].fill(128);
        assert_eq!(q(&again), first);
        // Other architectures keep f16 tables.
        let f16 = stored_table(Arch::Embedding, table, rows, labels, &dev).unwrap();
        assert_eq!(f16.len(), 1);
        assert_eq!(f16[0].1.dtype(), DType::F16);
    }

    #[test]
    fn attention_plain_copy_matches_candle_forward() {
        let dev = Device::Cpu;
        for (conv, max_pool, heads) in [(0, false, 1), (5, false, 2), (5, true, 1), (0, true, 3)] {
            let cfg = ModelConfig {
                rows: 30,
                dim: 4,
                hidden: 0,
                labels: 3,
                pooling: Pooling::Tfidf,
                arch: Arch::Attention,
                group_split: None,
                max_pool,
                conv,
                heads,
            };
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
            let model = RouterModel::new(&cfg, vb).unwrap();
            // Non-trivial values for every parameter (the query starts at zero otherwise).
            for (k, (name, var)) in varmap.data().lock().unwrap().iter().enumerate() {
                let n = var.elem_count();
                let t = Tensor::arange(0f32, n as f32, &dev)
                    .and_then(|t| t.affine(0.37 + 0.05 * name.len() as f64, k as f64))
                    .and_then(|t| t.sin())
                    .and_then(|t| t.reshape(var.dims()))
                    .unwrap();
                var.set(&t).unwrap();
            }
            let emb = Tensor::arange(0f32, 120f32, &dev)
                .and_then(|t| t.affine(0.013, -0.7))
                .and_then(|t| t.cos())
                .and_then(|t| t.reshape((30, 4)))
                .unwrap();
            // Rows 20.. were never seen in training.
            let w: Vec<f32> = (0..30)
                .map(|i| if i < 20 { 1.0 + 0.1 * i as f32 } else { 0.0 })
                .collect();
            let model = RouterModel {
                embedding: emb,
                feature_weight: Tensor::from_vec(w, 30, &dev).unwrap(),
                ..model
            };
            let batch = vec![
                (vec![1, 2, 3, 4, 5, 25, 6], vec![0, 0, 1, 2, 2, 3, 1]),
                (vec![7, 8], vec![1, 0]),
                // Nothing known: one zero position.
                (vec![21, 22], vec![0, 1]),
            ];
            let logits: Vec<Vec<f32>> = model.forward_tokens(&batch).unwrap().to_vec2().unwrap();
            let plain = model.to_plain().unwrap();
            for ((ids, token_of), want) in batch.iter().zip(&logits) {
                let got = plain.logits_of(ids, token_of);
                for (a, b) in got.iter().zip(want) {
                    assert!((a - b).abs() < 1e-4, "conv {conv}: {a} vs {b}");
                }
                // Contributions add up to logit − bias (when a feature is known: else the one
                // zero position has no feature to credit); unknown features get none.
                let known = ids.iter().any(|&id| id < 20);
                for (label, (logit, bias)) in got.iter().zip(&plain.out_b).enumerate() {
                    let c = plain.contributions(ids, token_of, label);
                    let sum = c.iter().sum::<f32>();
                    assert!(!known || (sum + bias - logit).abs() < 1e-4, "conv {conv}");
                    for (&id, c) in ids.iter().zip(&c) {
                        assert!(id < 20 || *c == 0.0);
                    }
                }
            }
            // Word order counts once there is a convolution.
            let (ids, token_of) = &batch[0];
            let reversed: Vec<u32> = token_of.iter().map(|t| 3 - t).collect();
            let differs = plain
                .logits_of(ids, token_of)
                .iter()
                .zip(plain.logits_of(ids, &reversed))
                .any(|(a, b)| (a - b).abs() > 1e-4);
            assert_eq!(differs, conv > 0);
        }
    }
}
