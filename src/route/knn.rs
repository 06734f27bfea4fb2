//! The k-nearest-neighbour member ([`Arch::Knn`](super::model::Arch::Knn)): the training rows'
//! sparse TF-IDF vectors (the linear member's features and weights) and labels, searched by
//! cosine through an inverted index; the top [`KNN_K`] rows vote for their labels, each with its
//! cosine, and the smoothed vote shares' logarithms are the member's logits, so calibration,
//! member selection and abstention treat it like the trained members.
//!
//! Why a memory member: the trained members smooth a label over all of its rows; a ticket worded
//! like a few training rows of a label that most of its rows do not resemble (a queue is many
//! products' topics) is what they miss and a neighbour search catches.
//!
//! The same member over help articles instead of training rows (`kefu train --kb`,
//! `TrainOptions::knn_kb`): a ticket's nearest articles vote for their categories.
//!
//! Owns: building the stored vectors, their storage in `model.safetensors` (`knn.offsets`
//! `[rows + 1]` u32, `knn.ids` `[nnz]` u32, `knn.weights` `[nnz]` f16, `knn.labels` `[rows]` u32:
//! compressed sparse rows; the help articles' weights in u8 with `knn.row_scale` `[rows]` f32,
//! their vote prior `knn.prior` `[1]` f32 and query feature limit `knn.query_features` `[1]`
//! u32), the search, the logits and their explanation.
//!
//! The search is exact but skips most of the work: the postings of the features most rows have
//! (a ticket's common character n-grams: on banking77 about 85% of the postings a query would
//! walk) are bounded instead of walked, and only the rows the bound cannot rule out are scored,
//! from their stored rows, in the exhaustive search's order ([`KnnIndex::pruned_top`]).
//! Must never: depend on anything the query's features and these tensors do not give.

use std::cell::RefCell;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

/// Neighbours that vote. Not tuned here: session 9's measurement on cloud-queues' dev logits gave
/// k 5 / 10 / 30 ensemble accuracy 0.8366 / 0.8350 / 0.8322 (inside seed noise), and session 12's
/// banking77 figures that made this member worth building were at k 10.
pub const KNN_K: usize = 10;

/// Share every label gets before the votes (`p = (votes / Σ votes + ε) / (1 + ε · labels)`): a
/// label no neighbour has is unlikely, not impossible (its log-probability is finite, so the
/// member's temperature can soften it).
pub const KNN_SMOOTHING: f32 = 0.001;

/// Tensor names in `model.safetensors` (under the member's prefix).
const OFFSETS: &str = "knn.offsets";
const IDS: &str = "knn.ids";
const WEIGHTS: &str = "knn.weights";
const LABELS: &str = "knn.labels";
/// Present when the weights are stored in 8 bits ([`knn_tensors`]): each row's largest weight,
/// `[rows]` f32; a stored weight `q` (u8) is `q / 255` of it.
const ROW_SCALE: &str = "knn.row_scale";
/// Present when the votes are smoothed by a fixed mass ([`KnnIndex::logits`]): `[1]` f32.
const PRIOR: &str = "knn.prior";
/// Present when a search scores rows by at most this many of the query's features, its
/// largest (of those some row has): `[1]` u32. A ticket's rarest words carry its cosines; its
/// common ones walk the longest postings for the least score.
const QUERY_FEATURES: &str = "knn.query_features";

/// Whether a member's tensors are a kNN index.
pub fn is_knn(vb: &VarBuilder) -> bool {
    vb.contains_tensor(OFFSETS)
}

/// One text's feature ids and pooling coefficients as a sorted sparse vector (the coefficients
/// of repeated ids summed: together they are the feature's weight in the pooled vector), keeping
/// only ids from `from` on, not normalized.
fn merged(ids: &[u32], coefficients: &[f32], from: u32) -> Vec<(u32, f32)> {
    let mut v: Vec<(u32, f32)> = ids
        .iter()
        .zip(coefficients)
        .filter(|&(&id, &c)| id >= from && c != 0.0)
        .map(|(&id, &c)| (id, c))
        .collect();
    v.sort_unstable_by_key(|&(id, _)| id);
    let mut out: Vec<(u32, f32)> = Vec::with_capacity(v.len());
    for (id, c) in v {
        match out.last_mut() {
            Some((last, w)) if *last == id => *w += c,
            _ => out.push((id, c)),
        }
    }
    out
}

fn norm(v: &[(u32, f32)]) -> f32 {
    v.iter().map(|(_, w)| w * w).sum::<f32>().sqrt()
}

/// Keeps the `n` largest weights of the sparse vector `v` (ties by feature id), in feature
/// order; whether any were dropped.
fn keep_largest(v: &mut Vec<(u32, f32)>, n: usize) -> bool {
    if v.len() <= n {
        return false;
    }
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(n);
    v.sort_by_key(|&(id, _)| id);
    true
}

/// The `n` largest weights of the normalized sparse vector `v` (ties by feature id), normalized
/// again, in feature order.
pub fn largest(mut v: Vec<(u32, f32)>, n: usize) -> Vec<(u32, f32)> {
    if keep_largest(&mut v, n) {
        let n = norm(&v);
        if n > 0.0 {
            v.iter_mut().for_each(|(_, w)| *w /= n);
        }
    }
    v
}

/// [`merged`] L2-normalized (empty when nothing is left): a stored row, or a query.
pub fn sparse_vector(ids: &[u32], coefficients: &[f32], from: u32) -> Vec<(u32, f32)> {
    normalized(ids, coefficients, from).0
}

/// [`sparse_vector`] and the norm it was divided by (0 when it is empty).
fn normalized(ids: &[u32], coefficients: &[f32], from: u32) -> (Vec<(u32, f32)>, f32) {
    let mut v = merged(ids, coefficients, from);
    let n = norm(&v);
    if n > 0.0 {
        v.iter_mut().for_each(|(_, w)| *w /= n);
    } else {
        v.clear();
    }
    (v, n)
}

/// The tensors of a kNN member over `rows` (each a [`sparse_vector`]) with their labels; the
/// weights are rounded to f16 as saved, or with `eight_bit` to 1/255 of their row's largest
/// (a sixth less to store, for the help articles' many rows: [`ROW_SCALE`]). `prior`: the
/// fixed vote mass of [`KnnIndex::logits`], if any; `query_features`: the limit of
/// [`QUERY_FEATURES`], if any.
pub fn knn_tensors(
    rows: &[Vec<(u32, f32)>],
    labels: &[u32],
    eight_bit: bool,
    prior: Option<f32>,
    query_features: Option<u32>,
    dev: &Device,
) -> Result<Vec<(String, Tensor)>> {
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    offsets.push(0u32);
    let mut ids = Vec::new();
    for row in rows {
        ids.extend(row.iter().map(|&(id, _)| id));
        offsets.push(ids.len() as u32);
    }
    let nnz = ids.len();
    // Each row's largest weight, when the weights are stored as shares of it.
    let scales: Option<Vec<f32>> = eight_bit.then(|| {
        rows.iter()
            .map(|row| row.iter().fold(0f32, |m, &(_, w)| m.max(w)))
            .collect()
    });
    let weights = match &scales {
        Some(scales) => {
            let mut quantized = Vec::with_capacity(nnz);
            for (row, &scale) in rows.iter().zip(scales) {
                for &(_, x) in row {
                    let q = if scale > 0.0 {
                        (x / scale * 255.0).round().clamp(0.0, 255.0)
                    } else {
                        0.0
                    };
                    quantized.push(q as u8);
                }
            }
            Tensor::from_vec(quantized, nnz, dev)?
        }
        None => {
            let weights: Vec<f32> = rows.iter().flatten().map(|&(_, w)| w).collect();
            Tensor::from_vec(weights, nnz, dev)?.to_dtype(DType::F16)?
        }
    };
    let mut tensors = vec![
        (
            OFFSETS.into(),
            Tensor::from_vec(offsets, rows.len() + 1, dev)?,
        ),
        (IDS.into(), Tensor::from_vec(ids, nnz, dev)?),
        (WEIGHTS.into(), weights),
        (
            LABELS.into(),
            Tensor::from_vec(labels.to_vec(), rows.len(), dev)?,
        ),
    ];
    if let Some(scales) = scales {
        tensors.push((ROW_SCALE.into(), Tensor::from_vec(scales, rows.len(), dev)?));
    }
    if let Some(prior) = prior {
        tensors.push((PRIOR.into(), Tensor::from_vec(vec![prior], 1, dev)?));
    }
    if let Some(n) = query_features {
        tensors.push((QUERY_FEATURES.into(), Tensor::from_vec(vec![n], 1, dev)?));
    }
    Ok(tensors)
}

/// Rows scanned at once by [`top_rows`]: a block none of whose scores beats the current `k`-th
/// is skipped after one comparison per score that the compiler vectorizes.
const SCAN_BLOCK: usize = 16;

/// The `k` rows of the largest positive scores offered, best first, when the rows are offered
/// in increasing order: ties go to the earlier row.
struct Top {
    k: usize,
    rows: Vec<(u32, f32)>,
    /// A row enters when its score is above it: 0 until `k` rows are in, then the k-th's.
    floor: f32,
}

impl Top {
    fn new(k: usize) -> Top {
        Top {
            k,
            rows: Vec::with_capacity(k + 1),
            floor: 0.0,
        }
    }

    fn offer(&mut self, row: u32, s: f32) {
        if s > self.floor {
            let at = self.rows.partition_point(|&(_, t)| t >= s);
            self.rows.insert(at, (row, s));
            self.rows.truncate(self.k);
            if self.rows.len() == self.k {
                self.floor = self.rows[self.k - 1].1;
            }
        }
    }

    /// The k-th score, once `k` rows are in.
    fn full(&self) -> Option<f32> {
        (self.rows.len() == self.k).then_some(self.floor)
    }
}

/// The `k` rows of the largest positive `scores`, best first; ties go to the earlier row.
fn top_rows(scores: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut top = Top::new(k);
    let blocks = scores.chunks_exact(SCAN_BLOCK);
    let rest = blocks.remainder();
    for (b, block) in blocks.enumerate() {
        if block.iter().fold(false, |any, &s| any | (s > top.floor)) {
            for (i, &s) in block.iter().enumerate() {
                top.offer((b * SCAN_BLOCK + i) as u32, s);
            }
        }
    }
    let first = scores.len() - rest.len();
    for (i, &s) in rest.iter().enumerate() {
        top.offer((first + i) as u32, s);
    }
    top.rows
}

/// The rows whose `scores` are at least `reach`, increasing; `None` past `limit` of them. Blocks
/// of [`SCAN_BLOCK`] none of which reaches it cost one vectorized comparison each.
fn reaching(scores: &[f32], reach: f32, limit: usize) -> Option<Vec<u32>> {
    let mut rows = Vec::new();
    let mut take = |first: usize, block: &[f32]| {
        for (i, &s) in block.iter().enumerate() {
            if s >= reach {
                rows.push((first + i) as u32);
            }
        }
    };
    let blocks = scores.chunks_exact(SCAN_BLOCK);
    let rest = blocks.remainder();
    for (b, block) in blocks.enumerate() {
        if block.iter().fold(false, |any, &s| any | (s >= reach)) {
            take(b * SCAN_BLOCK, block);
        }
    }
    take(scores.len() - rest.len(), rest);
    (rows.len() <= limit).then_some(rows)
}

/// A feature is common when its postings are longer than this share of the rows
/// ([`KnnIndex::pruned_top`] bounds what the common ones add instead of walking them). 4
/// measured on a banking77 index (8,989 rows, 3,248 features, 110 a row; training rows as
/// queries, in Python): walking 48k of a query's 310k postings, 36 rows on average then
/// reach the bound; at 6, 28k postings and 120 rows (one query 1,227); at 3, 69k and 23.
/// Measured after (user time classifying the 1,014 dev tickets ten times): 4, 5 and 6 within
/// noise (1.24–1.37 s), 3 and 8 slower (criterion one_ticket 159 and 210 µs against 139).
const COMMON_SHARE: usize = 4;

/// Postings longer than this are a common feature's, for `rows` stored rows.
fn common_length(rows: usize) -> usize {
    rows / COMMON_SHARE
}

/// [`KnnIndex::pruned_top`] takes the floor from this many times k rows of the largest bounds
/// (banking77, as [`COMMON_SHARE`]: 1× k left 56 rows on average above the floor, 2× 36,
/// as many as the true k-th score leaves).
const PROBE: usize = 2;

/// What a bound may fall short of the cosine it bounds by rounding: both sum at most a few
/// hundred products of a unit query and a unit row (f32 error under 1e-4), so 1e-3 only adds
/// rows to score.
const BOUND_SLACK: f32 = 1e-3;

/// [`KnnIndex::pruned_top`] gives up past this share of the rows to score exactly (each as
/// dear as a few postings of each of its features). Tried and dropped: also giving up when
/// the candidates' weights times c outnumber the postings the exhaustive search walks
/// (criterion one_ticket, cloud-queues' Chinese questions against a banking77 model, which
/// share mostly common features with its rows: c = 1, 3, 8 gave 134–140 µs, all within
/// noise of none; c = 1000, nearly always exhaustive, 218 µs).
const CANDIDATE_SHARE: usize = 8;

thread_local! {
    /// A query's weights by slot for [`KnnIndex::pruned_top`], zero between searches (a search
    /// zeroes the slots it set): zeroing a fresh array of every slot was 40% of routing a
    /// ticket (callgrind, the default router over the cloud-queues dev tickets).
    static DENSE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// [`DENSE`] with a query's weights at `slots`, zeroed again when dropped (on a panic too).
struct QuerySlots<'a> {
    dense: std::cell::RefMut<'a, Vec<f32>>,
    slots: Vec<u32>,
}

impl Drop for QuerySlots<'_> {
    fn drop(&mut self) {
        for &slot in &self.slots {
            self.dense[slot as usize] = 0.0;
        }
    }
}

/// Calls `f(p, w)` for each of a stored row's `terms` `(slot, w)` whose slot is `slots[p]`;
/// both increase. When the row is more than 8 times as long, each slot is searched in it,
/// else the two are merged.
fn shared_terms(slots: &[u32], terms: &[(u32, f32)], mut f: impl FnMut(usize, f32)) {
    if slots.len() * 8 < terms.len() {
        let mut rest = terms;
        for (p, &slot) in slots.iter().enumerate() {
            let at = rest.partition_point(|&(s, _)| s < slot);
            rest = &rest[at..];
            if let Some(&(_, w)) = rest.first().filter(|&&(s, _)| s == slot) {
                f(p, w);
            }
        }
    } else {
        let mut p = 0;
        for &(slot, w) in terms {
            while p < slots.len() && slots[p] < slot {
                p += 1;
            }
            if p == slots.len() {
                break;
            }
            if slots[p] == slot {
                f(p, w);
            }
        }
    }
}

/// The stored rows and an inverted index over them.
#[derive(Debug, Clone)]
pub struct KnnIndex {
    k: usize,
    labels: usize,
    /// The fixed vote mass of [`KnnIndex::logits`], if any.
    prior: Option<f32>,
    /// The most query features a search scores by ([`QUERY_FEATURES`]), if limited.
    query_features: Option<usize>,
    row_label: Vec<u32>,
    /// Inverted index: feature `f`'s postings `(row, weight)` are at
    /// `feature_start[f]..feature_start[f + 1]`, rows increasing; it ends after the largest
    /// stored feature (the features past it are in no row).
    feature_start: Vec<u32>,
    postings: Vec<(u32, f32)>,
    /// Each stored feature's slot (`u32::MAX` for the features in no row): the features some
    /// row has, numbered in id order, so a query fits a dense array of [`KnnIndex::slots`].
    slot: Vec<u32>,
    slots: usize,
    /// The stored rows again, by row: row `r`'s `(slot, weight)` are at
    /// `row_start[r]..row_start[r + 1]`, slots increasing. A candidate's exact cosine and an
    /// explanation's voter weights are read from here.
    row_start: Vec<u32>,
    row_terms: Vec<(u32, f32)>,
    /// Each row's L2 norm over the [common](COMMON_SHARE) features alone: with the query's
    /// norm over them, a bound on what they can add to the row's cosine.
    common_norm: Vec<f32>,
}

/// One ticket's search: its top rows `(row, cosine)`, best first, and the label votes.
#[derive(Debug, Clone)]
pub struct Neighbours {
    pub top: Vec<(u32, f32)>,
    pub votes: Vec<f32>,
    /// The L2 norm of the query's merged coefficients before the search normalized them (1
    /// when they are all 0), for [`KnnIndex::contrast_contributions`].
    pub query_norm: f32,
    /// The query's features the search scored rows by, increasing: those some row has, and
    /// of them at most [`QUERY_FEATURES`]' limit.
    pub features: Vec<u32>,
}

impl KnnIndex {
    /// Reads a kNN member's tensors (`features`: the feature id space, `labels`: label count).
    pub fn load(vb: &VarBuilder, features: usize, labels: usize, k: usize) -> Result<KnnIndex> {
        let u32s = |name: &str| -> Result<Vec<u32>> {
            vb.get_unchecked_dtype(name, DType::U32)?.to_vec1()
        };
        let offsets = u32s(OFFSETS)?;
        let ids = u32s(IDS)?;
        let row_label = u32s(LABELS)?;
        let mut weights: Vec<f32> = vb.get_unchecked_dtype(WEIGHTS, DType::F32)?.to_vec1()?;
        let n = row_label.len();
        let scales: Option<Vec<f32>> = if vb.contains_tensor(ROW_SCALE) {
            Some(vb.get_unchecked_dtype(ROW_SCALE, DType::F32)?.to_vec1()?)
        } else {
            None
        };
        if scales.as_ref().is_some_and(|s| s.len() != n) {
            candle_core::bail!("{ROW_SCALE}: not one scale per row");
        }
        let prior = if vb.contains_tensor(PRIOR) {
            let prior: Vec<f32> = vb.get_unchecked_dtype(PRIOR, DType::F32)?.to_vec1()?;
            match prior.as_slice() {
                &[a] if a.is_finite() && a > 0.0 => Some(a),
                _ => candle_core::bail!("{PRIOR}: one positive number expected"),
            }
        } else {
            None
        };
        let query_features = if vb.contains_tensor(QUERY_FEATURES) {
            let limit: Vec<u32> = vb
                .get_unchecked_dtype(QUERY_FEATURES, DType::U32)?
                .to_vec1()?;
            match limit.as_slice() {
                &[n] if n > 0 => Some(n as usize),
                _ => candle_core::bail!("{QUERY_FEATURES}: one positive count expected"),
            }
        } else {
            None
        };
        if offsets.len() != n + 1
            || offsets.first() != Some(&0)
            || offsets.windows(2).any(|w| w[0] > w[1])
            || offsets[n] as usize != ids.len()
            || weights.len() != ids.len()
        {
            candle_core::bail!(
                "{OFFSETS}: {} offsets, {} ids, {} weights and {n} rows do not fit",
                offsets.len(),
                ids.len(),
                weights.len()
            );
        }
        if let Some(scales) = &scales {
            for (r, w) in offsets.windows(2).enumerate() {
                for x in &mut weights[w[0] as usize..w[1] as usize] {
                    *x = *x / 255.0 * scales[r];
                }
            }
        }
        if ids.iter().any(|&id| id as usize >= features) {
            candle_core::bail!("{IDS}: a feature id at or beyond {features}");
        }
        if row_label.iter().any(|&l| l as usize >= labels) {
            candle_core::bail!("{LABELS}: a label at or beyond {labels}");
        }
        for w in offsets.windows(2) {
            if ids[w[0] as usize..w[1] as usize]
                .windows(2)
                .any(|p| p[0] >= p[1])
            {
                candle_core::bail!("{IDS}: a row's ids must be increasing");
            }
        }
        // Counting sort by feature: postings come out in row order. The features past the
        // largest stored one have no postings and no entry (a member over the words alone, the
        // help articles', never reads an entry for a ticket's character n-grams).
        let stored = ids.iter().max().map_or(0, |&m| m as usize + 1);
        let mut feature_start = vec![0u32; stored + 1];
        for &id in &ids {
            feature_start[id as usize + 1] += 1;
        }
        for f in 0..stored {
            feature_start[f + 1] += feature_start[f];
        }
        let mut next = feature_start.clone();
        let mut postings = vec![(0u32, 0f32); ids.len()];
        for r in 0..n {
            for i in offsets[r] as usize..offsets[r + 1] as usize {
                let slot = &mut next[ids[i] as usize];
                postings[*slot as usize] = (r as u32, weights[i]);
                *slot += 1;
            }
        }
        let mut slot = vec![u32::MAX; stored];
        let mut slots = 0usize;
        for (f, s) in slot.iter_mut().enumerate() {
            if feature_start[f + 1] > feature_start[f] {
                *s = slots as u32;
                slots += 1;
            }
        }
        let long = common_length(n);
        let mut common_norm = vec![0f32; n];
        let mut row_terms = Vec::with_capacity(ids.len());
        for r in 0..n {
            let mut sq = 0f32;
            for i in offsets[r] as usize..offsets[r + 1] as usize {
                let f = ids[i] as usize;
                let w = weights[i];
                row_terms.push((slot[f], w));
                if (feature_start[f + 1] - feature_start[f]) as usize > long {
                    sq += w * w;
                }
            }
            common_norm[r] = sq.sqrt();
        }
        Ok(KnnIndex {
            k: k.max(1),
            labels,
            prior,
            query_features,
            row_label,
            feature_start,
            postings,
            slot,
            slots,
            row_start: offsets,
            row_terms,
            common_norm,
        })
    }

    /// Stored rows.
    pub fn len(&self) -> usize {
        self.row_label.len()
    }

    pub fn is_empty(&self) -> bool {
        self.row_label.is_empty()
    }

    /// The top rows by cosine for a query's ids and pooling coefficients (rows sharing no
    /// feature with the query never vote; ties go to the earlier row, so a search is
    /// deterministic). Exact: [`KnnIndex::pruned_top`] when its bound leaves few rows, else
    /// [`KnnIndex::exhaustive_top`]; both give the same rows and the very same cosines.
    pub fn search(&self, ids: &[u32], coefficients: &[f32]) -> Neighbours {
        let (query, query_norm) = self.query(ids, coefficients);
        let top = self
            .pruned_top(&query)
            .unwrap_or_else(|| self.exhaustive_top(&query));
        let mut votes = vec![0f32; self.labels];
        for &(row, s) in &top {
            votes[self.row_label[row as usize] as usize] += s;
        }
        Neighbours {
            top,
            votes,
            query_norm,
            features: query.into_iter().map(|(id, _)| id).collect(),
        }
    }

    /// The normalized query a search scores by: the features some row has, increasing, and of
    /// them, with a limit, the largest; and the norm it was divided by (1 when it was 0).
    fn query(&self, ids: &[u32], coefficients: &[f32]) -> (Vec<(u32, f32)>, f32) {
        let (mut query, query_norm) = normalized(ids, coefficients, 0);
        query.retain(|&(id, _)| self.postings_of(id).is_some_and(|r| !r.is_empty()));
        if let Some(n) = self.query_features {
            keep_largest(&mut query, n);
        }
        (query, if query_norm > 0.0 { query_norm } else { 1.0 })
    }

    /// The top rows for a normalized query (features some row has, increasing) by walking every
    /// feature's postings into one score per row: the reference [`KnnIndex::pruned_top`] must
    /// agree with, and its fallback. A row's cosine is summed over the query's features in id
    /// order.
    fn exhaustive_top(&self, query: &[(u32, f32)]) -> Vec<(u32, f32)> {
        let mut scores = vec![0f32; self.len()];
        for &(id, q) in query {
            let Some(range) = self.postings_of(id) else {
                continue;
            };
            for &(row, w) in &self.postings[range] {
                scores[row as usize] += q * w;
            }
        }
        top_rows(&scores, self.k)
    }

    /// [`KnnIndex::exhaustive_top`] without walking the common features' postings (those of
    /// more than [`COMMON_SHARE`] of the rows: a ticket's character n-grams like "e" or " th",
    /// most of its postings and the least of its cosines): the other features' postings give
    /// each row part of its cosine, and Cauchy–Schwarz bounds the rest by the query's norm over
    /// its common features times the row's ([`KnnIndex::common_norm`]). The exact cosines of
    /// the [`PROBE`]·k rows of the largest bounds give a k-th score no final k-th is below;
    /// only the rows whose bound reaches it (less [`BOUND_SLACK`]) can be in the top, and they
    /// are scored exactly, from their stored rows, in the same order as the exhaustive search
    /// sums (so the cosines are bit-identical). `None` when the probe finds fewer than k rows
    /// with a positive cosine or the bound leaves more than a [`CANDIDATE_SHARE`] of the rows:
    /// the exhaustive search is then cheaper.
    ///
    /// Tried and dropped (banking77, as [`COMMON_SHARE`]): postings of 4 bytes (u16 row, f16
    /// bits) instead of 8: criterion one_ticket 138/133 µs before, 133/138 after (the walk is
    /// not bound by its bytes); the walk unrolled by four postings: 9% fewer instructions a
    /// ticket (callgrind 1.205M to 1.098M) but the same share of perf samples in the search
    /// (25.1/25.5% before, 24.6/25.4% after: not by its loop's instructions); bounding the common
    /// features by groups (per-row norms over 64 random groups of them: at a share of 8, 18k
    /// postings and 66 rows to score, in Python, but 64 × 9k multiply-adds to bound);
    /// walking a second tier of features only when too many rows reach the bound (15% less
    /// work in Python, not built).
    fn pruned_top(&self, query: &[(u32, f32)]) -> Option<Vec<(u32, f32)>> {
        let n = self.len();
        if query.is_empty() || n == 0 {
            return Some(Vec::new());
        }
        let long = common_length(n);
        let mut bound = vec![0f32; n];
        let mut common_sq = 0f32;
        for &(id, q) in query {
            let range = self.postings_of(id)?;
            if range.len() > long {
                common_sq += q * q;
                continue;
            }
            for &(row, w) in &self.postings[range] {
                bound[row as usize] += q * w;
            }
        }
        let common = common_sq.sqrt();
        if common > 0.0 {
            for (b, &c) in bound.iter_mut().zip(&self.common_norm) {
                *b += common * c;
            }
        }
        DENSE.with(|cell| {
            let mut dense = QuerySlots {
                dense: cell.borrow_mut(),
                slots: query
                    .iter()
                    .map(|&(id, _)| self.slot[id as usize])
                    .collect(),
            };
            if dense.dense.len() < self.slots {
                dense.dense.resize(self.slots, 0.0);
            }
            for (&slot, &(_, q)) in dense.slots.iter().zip(query) {
                dense.dense[slot as usize] = q;
            }
            self.pruned_top_with(&bound, &dense.dense)
        })
    }

    /// [`KnnIndex::pruned_top`] once the rows' bounds and the query's weights by slot are known.
    fn pruned_top_with(&self, bound: &[f32], dense: &[f32]) -> Option<Vec<(u32, f32)>> {
        let n = self.len();
        // The probe's rows, by row, with their cosines (most are candidates: not scored twice).
        let mut probe: Vec<(u32, f32)> = top_rows(bound, PROBE * self.k);
        probe.sort_unstable_by_key(|&(row, _)| row);
        let rows: Vec<u32> = probe.iter().map(|&(row, _)| row).collect();
        let mut floor = Top::new(self.k);
        for ((row, s), cosine) in probe.iter_mut().zip(self.scores(&rows, dense)) {
            *s = cosine;
            floor.offer(*row, cosine);
        }
        // Fewer than k rows with a positive cosine among the probe: no useful floor.
        let reach = floor.full()? - BOUND_SLACK;
        let candidates = reaching(bound, reach, n / CANDIDATE_SHARE)?;
        // The candidates' cosines: the probe's known, the others scored together.
        let mut probed = probe.iter().peekable();
        let mut cosines: Vec<Option<f32>> = Vec::with_capacity(candidates.len());
        let mut unscored = Vec::with_capacity(candidates.len());
        for &row in &candidates {
            while probed.next_if(|&&(r, _)| r < row).is_some() {}
            let known = probed.next_if(|&&(r, _)| r == row).map(|&(_, s)| s);
            if known.is_none() {
                unscored.push(row);
            }
            cosines.push(known);
        }
        let mut scored = self.scores(&unscored, dense).into_iter();
        let mut top = Top::new(self.k);
        for (row, known) in candidates.into_iter().zip(cosines) {
            let s = known.or_else(|| scored.next()).unwrap_or(0.0);
            top.offer(row, s);
        }
        Some(top.rows)
    }

    /// Rows `rows`' cosines with the query `dense` (its weights by slot, 0 for the features it
    /// lacks), each summed in feature order as [`KnnIndex::exhaustive_top`] sums it (a feature
    /// the query lacks adds +0, which changes no sum). Four rows at a time: one row's sum is a
    /// chain of dependent additions, four are independent (perf samples of criterion
    /// one_ticket in the scoring: 6.4–7.4% one row at a time, 5.1–5.6% four; the member's
    /// whole share, 37–38% both ways, did not measurably fall).
    fn scores(&self, rows: &[u32], dense: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows.len());
        let rest = |terms: &[(u32, f32)], mut s: f32| {
            for &(slot, w) in terms {
                s += dense[slot as usize] * w;
            }
            s
        };
        let quads = rows.chunks_exact(4);
        let single = quads.remainder();
        for quad in quads {
            let t = [
                self.terms(quad[0]),
                self.terms(quad[1]),
                self.terms(quad[2]),
                self.terms(quad[3]),
            ];
            let common = t.iter().map(|t| t.len()).min().unwrap_or(0);
            let mut s = [0f32; 4];
            for i in 0..common {
                for (s, t) in s.iter_mut().zip(&t) {
                    let (slot, w) = t[i];
                    *s += dense[slot as usize] * w;
                }
            }
            for (s, t) in s.iter().zip(&t) {
                out.push(rest(&t[common..], *s));
            }
        }
        for &row in single {
            out.push(rest(self.terms(row), 0.0));
        }
        out
    }

    /// Stored row `row`'s `(slot, weight)`, slots increasing.
    fn terms(&self, row: u32) -> &[(u32, f32)] {
        let r = row as usize;
        &self.row_terms[self.row_start[r] as usize..self.row_start[r + 1] as usize]
    }

    fn postings_of(&self, id: u32) -> Option<std::ops::Range<usize>> {
        let f = id as usize;
        (f + 1 < self.feature_start.len())
            .then(|| self.feature_start[f] as usize..self.feature_start[f + 1] as usize)
    }

    /// The member's logits: `ln((votes / Σ votes + ε) / (1 + ε · labels))` ([`KNN_SMOOTHING`]);
    /// uniform when no stored row shares a feature with the query. With a [`PRIOR`] `a` (the
    /// help-article member), `ln((votes + a) / (Σ votes + a · labels))`: votes count against a
    /// fixed mass, so a ticket whose nearest rows are all far (small cosines, as for a question
    /// no article is about) gets nearly uniform logits instead of the shares of weak votes.
    pub fn logits(&self, n: &Neighbours) -> Vec<f32> {
        let total: f32 = n.votes.iter().sum();
        if let Some(prior) = self.prior {
            let z = total + prior * self.labels as f32;
            return n.votes.iter().map(|&v| ((v + prior) / z).ln()).collect();
        }
        let norm = 1.0 + KNN_SMOOTHING * self.labels as f32;
        n.votes
            .iter()
            .map(|&v| {
                let share = if total > 0.0 {
                    v / total
                } else {
                    1.0 / self.labels as f32
                };
                ((share + KNN_SMOOTHING) / norm).ln()
            })
            .collect()
    }

    /// Weight of feature `id` in stored row `row` (0 when the row does not have it), from its
    /// postings.
    #[cfg(test)]
    fn weight(&self, row: u32, id: u32) -> f32 {
        let Some(range) = self.postings_of(id) else {
            return 0.0;
        };
        let postings = &self.postings[range];
        match postings.binary_search_by_key(&row, |&(r, _)| r) {
            Ok(i) => postings[i].1,
            Err(_) => 0.0,
        }
    }

    /// Contribution of each feature occurrence (`ids`, pooling `coefficients`) to logit `label`
    /// minus the mean logit, gradient × input through the cosines of the top rows: a neighbour's
    /// cosine is the sum of the query's and its shared features' products, and each product
    /// moves the contrast by the derivative of the logits with respect to that neighbour's
    /// score. Exact to first order; a feature the voting neighbours do not have gets 0.
    pub fn contrast_contributions(
        &self,
        n: &Neighbours,
        ids: &[u32],
        coefficients: &[f32],
        label: usize,
    ) -> Vec<f32> {
        let mut out = vec![0f32; ids.len()];
        let total: f32 = n.votes.iter().sum();
        if total <= 0.0 {
            return out;
        }
        let labels = self.labels as f32;
        // Relative smoothing: logit_m = ln(v_m + εV) − ln V + const, V = Σ v, so ∂logit_m/∂s_r =
        // ([label r = m] + ε) / (v_m + εV) − 1 / V. A fixed prior a: logit_m = ln(v_m + a) −
        // ln(V + aL), ∂logit_m/∂s_r = [label r = m] / (v_m + a) − 1 / (V + aL). The last terms
        // cancel in the contrast.
        let (smoothing, mass) = match self.prior {
            Some(prior) => (0.0, prior),
            None => (KNN_SMOOTHING, KNN_SMOOTHING * total),
        };
        let a: Vec<f32> = n.votes.iter().map(|&v| 1.0 / (v + mass)).collect();
        let sum_a: f32 = a.iter().sum();
        // Σ over the voters of the derivative times the voter's weight of each searched feature
        // (the others moved no cosine), read from the voter's stored row: both it and the
        // searched features' slots increase, so they are joined ([`shared_terms`]). Each sum
        // takes the voters in order, as a dense array of every slot did. Filling that array for
        // each explanation was 5% of the perf samples of criterion one_ticket (the shipped
        // router's help-article member has tens of thousands of slots); one_ticket went 82.8 /
        // 91.6 → 79.1 / 83.5 µs, interleaved.
        let shared = &n.features;
        let slots: Vec<u32> = shared.iter().map(|&id| self.slot[id as usize]).collect();
        debug_assert!(
            slots.windows(2).all(|w| w[0] < w[1]),
            "a search's features have slots"
        );
        let mut pull = vec![0f32; shared.len()];
        for &(row, _) in &n.top {
            let own = self.row_label[row as usize] as usize;
            let same = if own == label { 1.0 } else { 0.0 };
            let g = (same + smoothing) * a[label] - (a[own] + smoothing * sum_a) / labels;
            shared_terms(&slots, self.terms(row), |p, w| pull[p] += g * w);
        }
        // The query's coefficients were normalized before the search.
        let q = n.query_norm;
        for (o, (&id, &c)) in out.iter_mut().zip(ids.iter().zip(coefficients)) {
            if let Ok(i) = shared.binary_search(&id) {
                *o = pull[i] * c / q;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Three stored rows over features 0..6: rows 0 and 1 labelled 0, row 2 labelled 1.
    fn index(k: usize) -> KnnIndex {
        let rows = vec![
            sparse_vector(&[0, 1], &[1.0, 1.0], 0),
            sparse_vector(&[1, 2], &[1.0, 1.0], 0),
            sparse_vector(&[3, 4, 4], &[1.0, 0.5, 0.5], 0),
        ];
        let tensors: HashMap<String, Tensor> =
            knn_tensors(&rows, &[0, 0, 1], false, None, None, &Device::Cpu)
                .unwrap()
                .into_iter()
                .collect();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        assert!(is_knn(&vb));
        KnnIndex::load(&vb, 6, 2, k).unwrap()
    }

    #[test]
    fn sparse_vector_merges_repeats_keeps_the_group_and_normalizes() {
        let v = sparse_vector(&[5, 2, 5, 9], &[0.5, 3.0, 0.5, 4.0], 3);
        assert_eq!(v.iter().map(|p| p.0).collect::<Vec<_>>(), vec![5, 9]);
        // (1, 4) normalized.
        assert!((v[0].1 - 1.0 / 17f32.sqrt()).abs() < 1e-6);
        assert!((v[1].1 - 4.0 / 17f32.sqrt()).abs() < 1e-6);
        assert!(sparse_vector(&[1, 2], &[1.0, 1.0], 3).is_empty());
    }

    #[test]
    fn nearest_rows_vote_by_cosine() {
        let knn = index(2);
        // Feature 3 only: row 2 alone shares it.
        let n = knn.search(&[3, 5], &[1.0, 1.0]);
        assert_eq!(n.top.len(), 1);
        assert_eq!(n.top[0].0, 2);
        let logits = knn.logits(&n);
        assert!(logits[1] > logits[0] && logits[0].is_finite());
        // Feature 1: rows 0 and 1 tie and both vote for label 0; k = 2 keeps both.
        let n = knn.search(&[1], &[1.0]);
        assert_eq!(n.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![0, 1]);
        assert!((n.votes[0] - 2.0 / 2f32.sqrt()).abs() < 1e-3);
        // k = 1: the tie goes to the earlier row.
        assert_eq!(index(1).search(&[1], &[1.0]).top[0].0, 0);
        // Nothing shared: uniform logits, no neighbour.
        let n = knn.search(&[5], &[1.0]);
        assert!(n.top.is_empty());
        let logits = knn.logits(&n);
        assert_eq!(logits[0], logits[1]);
        assert!((logits[0].exp() - 0.5).abs() < 1e-6);
    }

    #[test]
    fn contributions_credit_the_features_shared_with_the_voters() {
        let knn = index(3);
        let (ids, c) = (vec![0u32, 3, 5], vec![1.0f32, 1.0, 1.0]);
        let n = knn.search(&ids, &c);
        // Rows 0 (label 0, through feature 0) and 2 (label 1, through feature 3) vote.
        let for0 = knn.contrast_contributions(&n, &ids, &c, 0);
        assert!(for0[0] > 0.0 && for0[1] < 0.0 && for0[2] == 0.0);
        let for1 = knn.contrast_contributions(&n, &ids, &c, 1);
        assert!(for1[1] > 0.0 && for1[0] < 0.0);
    }

    /// [`index`]'s rows stored as the help articles' are: 8-bit weights, a fixed vote prior,
    /// with a limit on the query's features if given.
    fn eight_bit_index(k: usize, prior: f32, query_features: Option<u32>) -> KnnIndex {
        let rows = vec![
            sparse_vector(&[0, 1], &[1.0, 1.0], 0),
            sparse_vector(&[1, 2], &[1.0, 1.0], 0),
            sparse_vector(&[3, 4, 4], &[1.0, 0.5, 0.5], 0),
        ];
        let tensors: HashMap<String, Tensor> = knn_tensors(
            &rows,
            &[0, 0, 1],
            true,
            Some(prior),
            query_features,
            &Device::Cpu,
        )
        .unwrap()
        .into_iter()
        .collect();
        assert_eq!(tensors[WEIGHTS].dtype(), DType::U8);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        KnnIndex::load(&vb, 6, 2, k).unwrap()
    }

    #[test]
    fn eight_bit_rows_keep_their_weights_and_neighbours() {
        let (exact, small) = (index(3), eight_bit_index(3, 0.02, None));
        for row in 0..3 {
            for id in 0..6 {
                let (a, b) = (exact.weight(row, id), small.weight(row, id));
                // Half a step of 1/255 of the row's largest weight (at most 1), f16 aside.
                assert!(
                    (a - b).abs() <= 0.5 / 255.0 + 1e-3,
                    "row {row} id {id}: {a} {b}"
                );
            }
        }
        for (ids, c) in [
            (vec![0u32, 3], vec![1.0f32, 1.0]),
            (vec![1, 4], vec![2.0, 1.0]),
        ] {
            let (a, b) = (exact.search(&ids, &c), small.search(&ids, &c));
            let rows = |n: &Neighbours| n.top.iter().map(|t| t.0).collect::<Vec<_>>();
            assert_eq!(rows(&a), rows(&b));
        }
    }

    #[test]
    fn a_prior_leaves_weak_votes_near_uniform() {
        let neighbours = |votes: Vec<f32>| Neighbours {
            top: Vec::new(),
            votes,
            query_norm: 1.0,
            features: Vec::new(),
        };
        let (weak, strong) = (neighbours(vec![0.02, 0.0]), neighbours(vec![1.0, 0.0]));
        let margin = |l: Vec<f32>| l[0] - l[1];
        // Shares alone: the same logits whatever the votes' size.
        let plain = index(3);
        assert!((margin(plain.logits(&weak)) - margin(plain.logits(&strong))).abs() < 1e-5);
        // Against a fixed mass of 0.02: ln(0.04 / 0.02) for the weak votes, ln(1.02 / 0.02)
        // for the strong ones; probabilities still sum to 1.
        let prior = eight_bit_index(3, 0.02, None);
        assert!((margin(prior.logits(&weak)) - 2f32.ln()).abs() < 1e-5);
        assert!((margin(prior.logits(&strong)) - 51f32.ln()).abs() < 1e-4);
        let total: f32 = prior.logits(&weak).iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        // Explanations follow the votes' labels there too.
        let (ids, c) = (vec![0u32, 3, 5], vec![1.0f32, 1.0, 1.0]);
        let n = prior.search(&ids, &c);
        let for0 = prior.contrast_contributions(&n, &ids, &c, 0);
        assert!(for0[0] > 0.0 && for0[1] < 0.0 && for0[2] == 0.0);
    }

    #[test]
    fn shared_terms_finds_each_common_slot_both_ways() {
        let terms: Vec<(u32, f32)> = (0..40).map(|i| (3 * i + 1, i as f32)).collect();
        for slots in [
            vec![],
            vec![1],
            vec![0, 4, 5, 118],
            vec![2, 7, 61, 64, 200],
            (0..130).collect::<Vec<u32>>(),
        ] {
            let mut got = Vec::new();
            shared_terms(&slots, &terms, |p, w| got.push((p, w)));
            let want: Vec<(usize, f32)> = slots
                .iter()
                .enumerate()
                .filter_map(|(p, s)| terms.iter().find(|t| t.0 == *s).map(|t| (p, t.1)))
                .collect();
            assert_eq!(got, want, "{slots:?}");
        }
    }

    #[test]
    fn top_rows_agrees_with_sorting_across_blocks_and_ties() {
        // 75 scores (four whole blocks and a remainder): zeros, repeats and a rising run, so
        // the floor moves inside blocks and ties fall on both sides of block edges.
        let scores: Vec<f32> = (0..75u32)
            .map(|i| match i % 7 {
                0 => 0.0,
                3 => 0.5,
                _ => ((i * 37) % 11) as f32 / 10.0,
            })
            .collect();
        for k in [1, 3, 10, 80] {
            let mut want: Vec<(u32, f32)> = scores
                .iter()
                .enumerate()
                .filter(|&(_, &s)| s > 0.0)
                .map(|(i, &s)| (i as u32, s))
                .collect();
            // Best first; ties to the earlier row.
            want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            want.truncate(k);
            assert_eq!(top_rows(&scores, k), want, "k {k}");
        }
        assert!(top_rows(&[0.0; 40], 5).is_empty());
    }

    #[test]
    fn a_query_feature_limit_scores_by_the_largest_features() {
        // Feature 1 (rows 0 and 1) weighs a third of feature 3 (row 2); feature 9 is in no row.
        let (ids, c) = (vec![1u32, 3, 9], vec![1.0f32, 3.0, 5.0]);
        let all = eight_bit_index(3, 0.02, None).search(&ids, &c);
        assert_eq!(all.top.len(), 3);
        assert_eq!(all.features, vec![1, 3]);
        let limited = eight_bit_index(3, 0.02, Some(1));
        let n = limited.search(&ids, &c);
        assert_eq!(n.features, vec![3]);
        assert_eq!(n.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![2]);
        // The cosine keeps the whole query's norm: 3 / √35 times row 2's 1 / √2.
        assert!((n.top[0].1 - 3.0 / 35f32.sqrt() / 2f32.sqrt()).abs() < 1e-2);
        assert_eq!(n.top[0].1, all.top[0].1);
        // A feature the search left out is credited nothing, though rows 0 and 1 have it.
        let for1 = limited.contrast_contributions(&n, &ids, &c, 1);
        assert!(for1[1] > 0.0 && for1[0] == 0.0 && for1[2] == 0.0);
    }

    /// A small deterministic generator (xorshift) for the random indexes below.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        /// Uniform in `0..n`.
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn unit(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32
        }
    }

    /// The top rows by the definition: each row's cosine summed over the query's features in
    /// id order (its weights looked up in the postings), all rows sorted by cosine and then row.
    fn reference_top(knn: &KnnIndex, query: &[(u32, f32)]) -> Vec<(u32, f32)> {
        let mut all: Vec<(u32, f32)> = (0..knn.len() as u32)
            .map(|row| {
                let mut s = 0f32;
                for &(id, q) in query {
                    let w = knn.weight(row, id);
                    if w != 0.0 {
                        s += q * w;
                    }
                }
                (row, s)
            })
            .filter(|&(_, s)| s > 0.0)
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(knn.k);
        all
    }

    #[test]
    fn the_pruned_search_agrees_with_the_exhaustive_one() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // 700 rows over 300 features: features 0..12 in most rows (common: longer postings
        // than a quarter of the rows), 12..40 in a fifth, the rest rare; some rows repeated a
        // dozen times, so cosines tie across the k-th place.
        let features = 300u32;
        let mut rows: Vec<Vec<(u32, f32)>> = Vec::new();
        let mut labels = Vec::new();
        while rows.len() < 700 {
            let mut ids = Vec::new();
            let mut c = Vec::new();
            for f in 0..features {
                let p = match f {
                    0..12 => 0.8,
                    12..40 => 0.2,
                    _ => 0.03,
                };
                if rng.unit() < p {
                    ids.push(f);
                    c.push(0.05 + rng.unit() * if f < 12 { 0.3 } else { 1.0 });
                }
            }
            let row = sparse_vector(&ids, &c, 0);
            let copies = if rng.below(20) == 0 { 12 } else { 1 };
            let label = rng.below(5) as u32;
            for _ in 0..copies {
                rows.push(row.clone());
                labels.push(label);
            }
        }
        for eight_bit in [false, true] {
            let tensors: HashMap<String, Tensor> =
                knn_tensors(&rows, &labels, eight_bit, None, None, &Device::Cpu)
                    .unwrap()
                    .into_iter()
                    .collect();
            let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
            let knn = KnnIndex::load(&vb, features as usize + 5, 5, KNN_K).unwrap();
            let (mut pruned, mut queries) = (0, 0);
            for i in 0..300 {
                // A stored row with some features dropped, others added and weights jittered
                // (near neighbours exist), a repeated row as it is (ties), random features, the
                // common features alone, or nothing the rows have.
                let (ids, c): (Vec<u32>, Vec<f32>) = match i % 5 {
                    0 | 1 => {
                        let row = &rows[rng.below(rows.len() as u64) as usize];
                        let mut q: Vec<(u32, f32)> = Vec::new();
                        for &(id, w) in row {
                            if rng.below(4) != 0 {
                                q.push((id, w * (0.5 + rng.unit())));
                            }
                        }
                        for _ in 0..rng.below(4) {
                            q.push((rng.below(features as u64) as u32, rng.unit()));
                        }
                        q.into_iter().unzip()
                    }
                    2 => rows[rng.below(rows.len() as u64) as usize]
                        .iter()
                        .copied()
                        .unzip(),
                    3 => (0..1 + rng.below(30))
                        .map(|_| (rng.below(features as u64) as u32, rng.unit()))
                        .unzip(),
                    _ if i % 10 == 4 => (0..12).map(|f| (f, 0.1 + rng.unit())).unzip(),
                    _ => (vec![features + 1, features + 3], vec![1.0, 2.0]),
                };
                let (query, _) = knn.query(&ids, &c);
                let want = reference_top(&knn, &query);
                if let Some(top) = knn.pruned_top(&query) {
                    assert_eq!(top, want, "query {i}, eight-bit {eight_bit}");
                    pruned += 1;
                }
                assert_eq!(knn.exhaustive_top(&query), want, "query {i}");
                assert_eq!(knn.search(&ids, &c).top, want, "query {i}");
                queries += 1;
            }
            // The bound must have cut most searches short, or the agreement proves little.
            assert!(pruned * 2 > queries, "{pruned} of {queries} pruned");
        }
    }

    #[test]
    fn inconsistent_tensors_are_refused() {
        let rows = vec![sparse_vector(&[0, 1], &[1.0, 1.0], 0)];
        let mut tensors: HashMap<String, Tensor> =
            knn_tensors(&rows, &[0], false, None, None, &Device::Cpu)
                .unwrap()
                .into_iter()
                .collect();
        let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
        // Feature 1 is beyond a 1-feature space; label 0 is fine.
        assert!(KnnIndex::load(&vb, 1, 2, 10).is_err());
        assert!(KnnIndex::load(&vb, 2, 2, 10).is_ok());
        tensors.insert(
            OFFSETS.into(),
            Tensor::from_vec(vec![0u32, 3], 2, &Device::Cpu).unwrap(),
        );
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        assert!(KnnIndex::load(&vb, 2, 2, 10).is_err());
        // A prior that is not one positive number, a row scale per row missing.
        let good: HashMap<String, Tensor> =
            knn_tensors(&rows, &[0], true, Some(0.5), Some(2), &Device::Cpu)
                .unwrap()
                .into_iter()
                .collect();
        let vb = VarBuilder::from_tensors(good.clone(), DType::F32, &Device::Cpu);
        assert!(KnnIndex::load(&vb, 2, 2, 10).is_ok());
        for (name, bad) in [
            (
                PRIOR,
                Tensor::from_vec(vec![-1f32], 1, &Device::Cpu).unwrap(),
            ),
            (
                PRIOR,
                Tensor::from_vec(vec![0.1f32, 0.2], 2, &Device::Cpu).unwrap(),
            ),
            (
                ROW_SCALE,
                Tensor::from_vec(vec![1f32, 1.0], 2, &Device::Cpu).unwrap(),
            ),
            (
                QUERY_FEATURES,
                Tensor::from_vec(vec![0u32], 1, &Device::Cpu).unwrap(),
            ),
        ] {
            let mut tensors = good.clone();
            tensors.insert(name.into(), bad);
            let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
            assert!(KnnIndex::load(&vb, 2, 2, 10).is_err(), "{name}");
        }
    }
}
