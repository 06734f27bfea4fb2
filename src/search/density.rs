//! Hubness of a bank's short questions: how crowded the neighbourhood of each question is in a
//! vector space learned from the bank itself, so that the paraphrase rescoring
//! (`paraphrase::rerank`) can take a little off the questions that sit among many near copies
//! (the hubs, which crowd the top of every query near them) and give a little to those in a
//! sparse region.
//!
//! Owns: the learning of [`Density`] from the forms of the short articles (no labels, nothing
//! specific to one bank or language). Must never: be learned from fewer than
//! [`DENSITY_MIN_ARTICLES`] short articles (a handful of questions has no neighbourhoods), or
//! run on the query path (the engine learns it when it warms, with the contrasts).
//!
//! How: each unit of a form (an ideograph, or a run of other letters and digits,
//! `paraphrase::units`) gets the positive PMI of the units written one or two places around it
//! (context counts smoothed by the power 0.75), reduced to [`DIMS`] dimensions by a truncated
//! SVD (its `U S`, by subspace iteration; a random projection instead, keeping the cosines of
//! the noisy PMI rows, gained nothing in the replay). A question's
//! vector is the mean of its units' vectors weighted by `a / (a + p(unit))` (SIF, `a` =
//! [`SIF_A`]), less its part along the first principal direction of a sample, normalized. Its
//! density is the mean cosine of its [`NEIGHBOURS`] nearest questions among a sample of
//! [`SAMPLE`] questions (exact copies left out), and [`Density::of`] gives it as a z-score over
//! the bank. The rescoring subtracts `DENSITY_WEIGHT × best score × z`: the cross-domain
//! similarity local scaling (CSLS) of Conneau et al. 2018, whose penalty of each target's mean
//! similarity to its nearest neighbours reduces hubness in nearest-neighbour retrieval.
//!
//! Why: on atec-faq dev, the questions ranked above a query's labelled partner are mostly near
//! copies of one another; the hubs among them take the top places of many queries.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::paraphrase::units;

/// Fewest short articles from which a [`Density`] is learned.
pub const DENSITY_MIN_ARTICLES: usize = 1000;
/// Dimensions of the units' vectors (the truncated SVD of their PMI rows); a multiple of 8.
pub const DIMS: usize = 96;
/// Rounds of subspace iteration for the truncated SVD.
const POWER_ITERATIONS: usize = 12;
/// Questions among which each question's nearest neighbours are looked for.
pub const SAMPLE: usize = 2000;
/// Nearest neighbours whose mean cosine is a question's density.
pub const NEIGHBOURS: usize = 3;
/// The SIF weight's smoothing: a unit of probability `p` weighs `a / (a + p)`.
pub const SIF_A: f64 = 1e-3;
/// Cosines above this are copies of the question itself (the same units), not neighbours.
const COPY_COSINE: f32 = 0.9999;

/// The density of each short question of a bank, as a z-score over the bank (empty when the
/// bank is too small to learn from).
#[derive(Default, Debug)]
pub struct Density {
    z: FxHashMap<String, f32>,
}

impl Density {
    /// Learns the densities of a bank's forms (`paraphrase::form`); nothing under
    /// [`DENSITY_MIN_ARTICLES`].
    pub fn learn<'a>(forms: impl IntoIterator<Item = &'a str>) -> Density {
        let forms: Vec<&str> = forms.into_iter().collect();
        let n = forms.len();
        if n < DENSITY_MIN_ARTICLES {
            return Density::default();
        }
        let docs: Vec<Vec<&str>> = forms.iter().map(|f| units(f)).collect();
        // Vocabulary, unit counts and co-occurrence counts (one or two places apart).
        let mut vocab: FxHashMap<&str, usize> = FxHashMap::default();
        let mut ids: Vec<Vec<usize>> = Vec::with_capacity(n);
        for doc in &docs {
            ids.push(
                doc.iter()
                    .map(|u| {
                        let next = vocab.len();
                        *vocab.entry(u).or_insert(next)
                    })
                    .collect(),
            );
        }
        let v = vocab.len();
        let mut unit_count = vec![0f64; v];
        let mut pairs: FxHashMap<(usize, usize), f64> = FxHashMap::default();
        for doc in &ids {
            for (j, &a) in doc.iter().enumerate() {
                unit_count[a] += 1.0;
                for k in [j.wrapping_sub(2), j.wrapping_sub(1), j + 1, j + 2] {
                    if let Some(&b) = doc.get(k) {
                        *pairs.entry((a, b)).or_default() += 1.0;
                    }
                }
            }
        }
        let total: f64 = pairs.values().sum();
        if total == 0.0 {
            return Density::default();
        }
        let mut rows = vec![0f64; v];
        let mut contexts = vec![0f64; v];
        for (&(a, b), &c) in &pairs {
            rows[a] += c;
            contexts[b] += c;
        }
        let smoothed: Vec<f64> = contexts.iter().map(|c| c.powf(0.75)).collect();
        let smoothed_total: f64 = smoothed.iter().sum();
        // The positive PMI matrix, as (row, column, value).
        let ppmi: Vec<(usize, usize, f32)> = pairs
            .iter()
            .filter_map(|(&(a, b), &c)| {
                // (c / total) / ((rows[a] / total) (smoothed[b] / smoothed_total)).
                let pmi = (c * smoothed_total / (rows[a] * smoothed[b])).ln();
                (pmi > 0.0).then_some((a, b, pmi as f32))
            })
            .collect();
        let unit_vectors = truncated_rows(&ppmi, v);
        let tokens: f64 = unit_count.iter().sum();
        let sif: Vec<f32> = unit_count
            .iter()
            .map(|&c| (SIF_A / (SIF_A + c / tokens)) as f32)
            .collect();
        let embed = |doc: &[usize]| -> Vec<f32> {
            let mut out = vec![0f32; DIMS];
            if doc.is_empty() {
                return out;
            }
            for &u in doc {
                for (x, w) in out.iter_mut().zip(&unit_vectors[u * DIMS..(u + 1) * DIMS]) {
                    *x += sif[u] * w;
                }
            }
            let len = doc.len() as f32;
            out.iter_mut().for_each(|x| *x /= len);
            out
        };
        let stride = (n / SAMPLE).max(1);
        let sample_ids: Vec<usize> = (0..n).step_by(stride).take(SAMPLE).collect();
        let raw: Vec<Vec<f32>> = sample_ids.iter().map(|&i| embed(&ids[i])).collect();
        let pc = first_direction(&raw);
        let finish = |mut x: Vec<f32>| -> Vec<f32> {
            let along = dot(&x, &pc);
            for (a, p) in x.iter_mut().zip(&pc) {
                *a -= along * p;
            }
            let norm = dot(&x, &x).sqrt();
            if norm > 0.0 {
                x.iter_mut().for_each(|a| *a /= norm);
            }
            x
        };
        let sample: Vec<Vec<f32>> = raw.into_iter().map(finish).collect();
        let density: Vec<f32> = ids
            .par_iter()
            .map(|doc| {
                let x = finish(embed(doc));
                let mut best = [f32::MIN; NEIGHBOURS];
                for s in &sample {
                    let c = dot(&x, s);
                    if c > COPY_COSINE || c <= best[NEIGHBOURS - 1] {
                        continue;
                    }
                    // Keep the best few, sorted high to low.
                    let mut at = NEIGHBOURS - 1;
                    while at > 0 && best[at - 1] < c {
                        best[at] = best[at - 1];
                        at -= 1;
                    }
                    best[at] = c;
                }
                let found: Vec<f32> = best.iter().copied().filter(|&c| c > f32::MIN).collect();
                if found.is_empty() {
                    0.0
                } else {
                    found.iter().sum::<f32>() / found.len() as f32
                }
            })
            .collect();
        let mean = density.iter().map(|&d| d as f64).sum::<f64>() / n as f64;
        let var = density
            .iter()
            .map(|&d| (d as f64 - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        let std = var.sqrt();
        if std == 0.0 {
            return Density::default();
        }
        let z = forms
            .iter()
            .zip(density)
            .map(|(form, d)| (form.to_string(), ((d as f64 - mean) / std) as f32))
            .collect();
        Density { z }
    }

    /// The density of a form as a z-score over the bank; 0 for a form not learned from.
    pub fn of(&self, form: &str) -> f32 {
        self.z.get(form).copied().unwrap_or(0.0)
    }

    /// Whether nothing was learned.
    pub fn is_empty(&self) -> bool {
        self.z.is_empty()
    }
}

/// A dot product in eight lanes (vectorized), for vectors of [`DIMS`] values.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum()
}

/// The rows of a sparse `size × size` matrix (`(row, column, value)`) in the basis of its top
/// [`DIMS`] right singular vectors (`P Z`, that is `U S` of its truncated SVD, up to a rotation),
/// flattened row by row: subspace iteration from a fixed start, `Z ← orth(Pᵀ P Z)`.
fn truncated_rows(matrix: &[(usize, usize, f32)], size: usize) -> Vec<f32> {
    // Z: size × DIMS, row-major; a fixed, well spread start.
    let mut z: Vec<f32> = (0..size * DIMS)
        .map(|i| (((i as f32 + 1.0) * 0.618_034).fract() - 0.5) * ((i % 7) as f32 + 1.0))
        .collect();
    orthonormalize(&mut z, size);
    for _ in 0..POWER_ITERATIONS {
        z = sparse_product(matrix, &sparse_product(matrix, &z, size, false), size, true);
        orthonormalize(&mut z, size);
    }
    sparse_product(matrix, &z, size, false)
}

/// `P X` (or `Pᵀ X` when `transposed`) of a sparse `size × size` matrix `P` (`(row, column,
/// value)`) and a `size × DIMS` row-major `X`.
fn sparse_product(
    matrix: &[(usize, usize, f32)],
    x: &[f32],
    size: usize,
    transposed: bool,
) -> Vec<f32> {
    let mut out = vec![0f32; size * DIMS];
    for &(a, b, value) in matrix {
        let (to, from) = if transposed { (b, a) } else { (a, b) };
        let (to, from) = (to * DIMS, from * DIMS);
        for d in 0..DIMS {
            out[to + d] += value * x[from + d];
        }
    }
    out
}

/// Makes the [`DIMS`] columns of a `size × DIMS` row-major matrix orthonormal (modified
/// Gram-Schmidt); a column that vanishes stays zero.
fn orthonormalize(z: &mut [f32], size: usize) {
    let mut columns: Vec<Vec<f64>> = (0..DIMS)
        .map(|d| (0..size).map(|r| z[r * DIMS + d] as f64).collect())
        .collect();
    for d in 0..DIMS {
        for e in 0..d {
            let along: f64 = columns[d].iter().zip(&columns[e]).map(|(x, y)| x * y).sum();
            let (before, after) = columns.split_at_mut(d);
            for (x, y) in after[0].iter_mut().zip(&before[e]) {
                *x -= along * y;
            }
        }
        let norm = columns[d].iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-12 {
            columns[d].iter_mut().for_each(|x| *x /= norm);
        } else {
            columns[d].iter_mut().for_each(|x| *x = 0.0);
        }
    }
    for (d, column) in columns.iter().enumerate() {
        for (r, x) in column.iter().enumerate() {
            z[r * DIMS + d] = *x as f32;
        }
    }
}

/// The first principal direction (uncentered) of some vectors, by power iteration.
fn first_direction(vectors: &[Vec<f32>]) -> Vec<f32> {
    let mut v = vec![1.0 / (DIMS as f32).sqrt(); DIMS];
    for _ in 0..30 {
        let mut next = vec![0f32; DIMS];
        for x in vectors {
            let along = dot(x, &v);
            for (n, a) in next.iter_mut().zip(x) {
                *n += along * a;
            }
        }
        let norm = dot(&next, &next).sqrt();
        if norm == 0.0 {
            return vec![0.0; DIMS];
        }
        v = next.into_iter().map(|a| a / norm).collect();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::paraphrase::form;

    /// Questions about a few topics asked many ways (a crowded region), one question in words
    /// no other question uses, and one question asked in words shared with only a few others.
    fn bank() -> Vec<String> {
        let who = ["", "我的", "请问", "你好", "麻烦问下"];
        let topics = ["花呗", "借呗", "余额宝", "信用卡"];
        let asks = [
            "怎么还款",
            "额度多少",
            "能不能分期",
            "为何用不了",
            "逾期了咋办",
            "如何开通",
            "利息高吗",
            "可以提前还吗",
        ];
        let tails = ["", "呢", "啊", "呀", "吧", "哦", "嘛"];
        let mut out = Vec::new();
        for w in who {
            for t in topics {
                for a in asks {
                    for tail in tails {
                        out.push(form(&format!("{w}{t}{a}{tail}")));
                    }
                }
            }
        }
        out.push(form("周末想去山里看瀑布和枫叶"));
        out
    }

    #[test]
    fn crowded_questions_are_denser_than_a_lone_one() {
        let bank = bank();
        assert!(bank.len() >= DENSITY_MIN_ARTICLES);
        let density = Density::learn(bank.iter().map(String::as_str));
        assert!(!density.is_empty());
        let lone = density.of(&form("周末想去山里看瀑布和枫叶"));
        let crowded = density.of(&form("我的花呗怎么还款呢"));
        assert!(crowded > lone, "crowded {crowded}, lone {lone}");
        assert!(lone < 0.0, "{lone}");
        // A form not learned from counts as average.
        assert_eq!(density.of("不在库里的问题"), 0.0);
    }

    #[test]
    fn nothing_is_learned_from_a_small_bank() {
        let bank = bank();
        let few = Density::learn(bank[..DENSITY_MIN_ARTICLES - 1].iter().map(String::as_str));
        assert!(few.is_empty());
        assert_eq!(few.of(&bank[0]), 0.0);
    }

    #[test]
    fn subspace_iteration_finds_the_rows_of_a_low_rank_matrix() {
        // A rank-one matrix: its rows in the top singular basis keep their lengths.
        let u = [1.0f32, 2.0, 0.5];
        let matrix: Vec<(usize, usize, f32)> = (0..3)
            .flat_map(|a| (0..3).map(move |b| (a, b, u[a] * u[b])))
            .collect();
        let rows = truncated_rows(&matrix, 3);
        for a in 0..3 {
            let row = &rows[a * DIMS..(a + 1) * DIMS];
            let length = dot(row, row).sqrt();
            let expected = u[a] * u.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!(
                (length - expected).abs() < 1e-3,
                "{a}: {length} vs {expected}"
            );
        }
    }
}
