//! Plain-Rust forward and backward pass of one training batch for the shapes the default members
//! have: [`Arch::Linear`], [`Arch::Embedding`] without hidden layer or max pooling, and
//! [`Arch::Attention`] without convolution or max pooling. A batch touches a few hundred
//! embedding rows and a head of a few thousand weights: candle's graph (a dense pooling matrix,
//! allocations for every node) costs far more than the arithmetic, so these shapes skip it.
//! Other shapes train through candle (`fit` in `train.rs`); a test checks that both paths give
//! the same gradients.
//!
//! Owns: the loss (cross-entropy with optional per-example weights and label smoothing, as
//! `smoothed_cross_entropy`) and its gradient. Must never: update weights (the optimizers in
//! `train.rs` do).

use crate::route::model::{Arch, ModelConfig, token_sequence};

/// Whether [`gradients`] handles this shape.
pub fn supports(cfg: &ModelConfig) -> bool {
    match cfg.arch {
        Arch::Linear => true,
        Arch::Embedding => cfg.hidden == 0 && !cfg.max_pool,
        Arch::Attention => cfg.hidden == 0 && !cfg.max_pool && cfg.conv == 0,
    }
}

/// The head's weights, row-major as candle's `Linear` (`out_w` `[labels, in]`; empty for
/// [`Arch::Linear`]) and the attention queries `[heads, dim]` (empty unless [`Arch::Attention`]).
pub struct Head<'a> {
    pub out_w: &'a [f32],
    pub out_b: &'a [f32],
    pub query: &'a [f32],
}

/// Gradients of one batch's loss.
#[derive(Debug, Default)]
pub struct Gradients {
    /// Summed loss (each example's, before dividing by the batch size).
    pub loss_sum: f64,
    /// The batch's embedding rows (first occurrence order) and the gradient of each, `dim` wide.
    pub rows: Vec<u32>,
    pub row_grads: Vec<f32>,
    pub out_w: Vec<f32>,
    pub out_b: Vec<f32>,
    pub query: Vec<f32>,
}

/// Reusable scratch: the local index of each embedding row in the current batch.
pub struct Scratch {
    slot: Vec<u32>,
}

impl Scratch {
    pub fn new(rows: usize) -> Scratch {
        Scratch {
            slot: vec![u32::MAX; rows],
        }
    }
}

/// The batch's training loss and its gradients. `batch[j]` is an example's `(feature ids,
/// token of each)`, `targets[j]` its label, `example_weight[j]` its loss weight;
/// `feature_weight[row]` the pooling weight (IDF); `table` the `[rows, dim]` embedding.
/// The loss is `(1 − ε) · Σ wⱼ · (−log pⱼ) / batch + ε · mean(−log p)` (see
/// `smoothed_cross_entropy`).
#[allow(clippy::too_many_arguments)]
pub fn gradients(
    cfg: &ModelConfig,
    table: &[f32],
    head: &Head,
    feature_weight: &[f32],
    batch: &[(Vec<u32>, Vec<u32>)],
    targets: &[u32],
    example_weight: Option<&[f32]>,
    label_smoothing: f64,
    scratch: &mut Scratch,
) -> Gradients {
    let d = cfg.dim;
    let labels = cfg.labels;
    let heads = cfg.heads.max(1);
    let attention = cfg.arch == Arch::Attention;
    let linear = cfg.arch == Arch::Linear;
    let pooled_width = if attention { heads * d } else { d };
    let mut g = Gradients {
        out_w: vec![0.0; head.out_w.len()],
        out_b: vec![0.0; labels],
        query: vec![0.0; head.query.len()],
        ..Gradients::default()
    };
    let scale = 1.0 / batch.len().max(1) as f32;
    let eps = label_smoothing as f32;
    let mut local = |row: u32, g: &mut Gradients| -> usize {
        let s = &mut scratch.slot[row as usize];
        if *s == u32::MAX {
            *s = g.rows.len() as u32;
            g.rows.push(row);
            g.row_grads.extend(std::iter::repeat_n(0.0, d));
        }
        *s as usize
    };
    let mut pooled = vec![0f32; pooled_width];
    let mut dpooled = vec![0f32; pooled_width];
    let mut logits = vec![0f32; labels];
    for (j, (ids, token_of)) in batch.iter().enumerate() {
        pooled.fill(0.0);
        // Forward to the pooled vector.
        let (coefficients, tokens) = if attention {
            let (prior, entries) = token_sequence(ids, token_of, feature_weight);
            let n = prior.len();
            let mut x = vec![0f32; n * d];
            for &(pos, i, c) in &entries {
                let row = ids[i] as usize;
                for (xv, &e) in x[pos * d..(pos + 1) * d]
                    .iter_mut()
                    .zip(&table[row * d..(row + 1) * d])
                {
                    *xv += c * e;
                }
            }
            let mut a = vec![0f32; heads * n];
            for h in 0..heads {
                let q = &head.query[h * d..(h + 1) * d];
                let s = &mut a[h * n..(h + 1) * n];
                for (t, st) in s.iter_mut().enumerate() {
                    *st = prior[t] + dot(q, &x[t * d..(t + 1) * d]);
                }
                softmax_in_place(s);
                let p = &mut pooled[h * d..(h + 1) * d];
                for (t, &at) in s.iter().enumerate() {
                    axpy(at, &x[t * d..(t + 1) * d], p);
                }
            }
            (Vec::new(), Some((entries, x, a, n)))
        } else {
            let c = cfg
                .pooling
                .coefficients(ids, feature_weight, cfg.group_split);
            for (&id, &cv) in ids.iter().zip(&c) {
                if cv != 0.0 {
                    let row = id as usize;
                    axpy(cv, &table[row * d..(row + 1) * d], &mut pooled);
                }
            }
            (c, None)
        };
        // Head and loss.
        if linear {
            for (l, (&p, &b)) in logits.iter_mut().zip(pooled.iter().zip(head.out_b)) {
                *l = p + b;
            }
        } else {
            for (k, l) in logits.iter_mut().enumerate() {
                *l = head.out_b[k]
                    + dot(
                        &head.out_w[k * pooled_width..(k + 1) * pooled_width],
                        &pooled,
                    );
            }
        }
        let target = targets[j] as usize;
        let w = example_weight.map_or(1.0, |w| w[j]);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_z = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
        let nll = log_z - logits[target];
        let mean_nll = log_z - logits.iter().sum::<f32>() / labels as f32;
        g.loss_sum += ((1.0 - eps) * w * nll + eps * mean_nll) as f64;
        // dlogits, kept in `logits`.
        for (k, l) in logits.iter_mut().enumerate() {
            let p = (*l - log_z).exp();
            let y = if k == target { 1.0 } else { 0.0 };
            *l = ((1.0 - eps) * w * (p - y) + eps * (p - 1.0 / labels as f32)) * scale;
        }
        for (gb, &dz) in g.out_b.iter_mut().zip(&logits) {
            *gb += dz;
        }
        if linear {
            dpooled.copy_from_slice(&logits);
        } else {
            dpooled.fill(0.0);
            for (k, &dz) in logits.iter().enumerate() {
                let range = k * pooled_width..(k + 1) * pooled_width;
                axpy(dz, &pooled, &mut g.out_w[range.clone()]);
                axpy(dz, &head.out_w[range], &mut dpooled);
            }
        }
        // Back to the embedding rows.
        match tokens {
            None => {
                for (&id, &cv) in ids.iter().zip(&coefficients) {
                    let at = local(id, &mut g);
                    if cv != 0.0 {
                        axpy(cv, &dpooled, &mut g.row_grads[at * d..(at + 1) * d]);
                    }
                }
            }
            Some((entries, x, a, n)) => {
                let mut dx = vec![0f32; n * d];
                let mut ds = vec![0f32; n];
                for h in 0..heads {
                    let dp = &dpooled[h * d..(h + 1) * d];
                    let q = &head.query[h * d..(h + 1) * d];
                    let ah = &a[h * n..(h + 1) * n];
                    let mut mean = 0.0;
                    for t in 0..n {
                        ds[t] = dot(dp, &x[t * d..(t + 1) * d]);
                        mean += ah[t] * ds[t];
                    }
                    for t in 0..n {
                        ds[t] = ah[t] * (ds[t] - mean);
                        axpy(
                            ds[t],
                            &x[t * d..(t + 1) * d],
                            &mut g.query[h * d..(h + 1) * d],
                        );
                        let dxt = &mut dx[t * d..(t + 1) * d];
                        axpy(ah[t], dp, dxt);
                        axpy(ds[t], q, dxt);
                    }
                }
                for &(pos, i, c) in &entries {
                    let at = local(ids[i], &mut g);
                    axpy(
                        c,
                        &dx[pos * d..(pos + 1) * d],
                        &mut g.row_grads[at * d..(at + 1) * d],
                    );
                }
            }
        }
    }
    for &r in &g.rows {
        scratch.slot[r as usize] = u32::MAX;
    }
    g
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `y += a · x`.
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

fn softmax_in_place(s: &mut [f32]) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0;
    for v in s.iter_mut() {
        *v = (*v - max).exp();
        total += *v;
    }
    for v in s.iter_mut() {
        *v /= total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::model::Pooling;
    use crate::route::train::SplitMix;

    fn config(arch: Arch, pooling: Pooling) -> ModelConfig {
        ModelConfig {
            rows: 12,
            dim: if arch == Arch::Linear { 4 } else { 3 },
            hidden: 0,
            labels: 4,
            pooling,
            arch,
            group_split: (pooling == Pooling::Tfidf).then_some(6),
            max_pool: false,
            conv: 0,
            heads: 2,
        }
    }

    /// Every analytic gradient agrees with the loss's finite difference.
    #[test]
    fn gradients_match_finite_differences() {
        for (arch, pooling) in [
            (Arch::Linear, Pooling::Tfidf),
            (Arch::Embedding, Pooling::Mean),
            (Arch::Embedding, Pooling::Tfidf),
            (Arch::Attention, Pooling::Tfidf),
        ] {
            let cfg = config(arch, pooling);
            let mut rng = SplitMix::new(3);
            let mut r = |n: usize| -> Vec<f32> {
                (0..n).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect()
            };
            let mut params = vec![
                r(cfg.rows * cfg.dim),
                if arch == Arch::Linear {
                    Vec::new()
                } else {
                    r(cfg.labels * cfg.dim * if arch == Arch::Attention { 2 } else { 1 })
                },
                r(cfg.labels),
                if arch == Arch::Attention {
                    r(2 * cfg.dim)
                } else {
                    Vec::new()
                },
            ];
            // Row 5 weighs 0 (unseen in training): it gets no gradient.
            let weight: Vec<f32> = (0..cfg.rows)
                .map(|i| if i == 5 { 0.0 } else { 1.0 + i as f32 / 4.0 })
                .collect();
            let batch = vec![
                (vec![0, 1, 7, 7, 5], vec![0, 0, 1, 2, 2]),
                (vec![2, 8, 9, 3], vec![0, 1, 1, 2]),
                (vec![5], vec![0]),
            ];
            let targets = [1, 3, 0];
            let example_weight = [1.0, 3.0, 1.0];
            let run = |p: &[Vec<f32>]| {
                let mut scratch = Scratch::new(cfg.rows);
                gradients(
                    &cfg,
                    &p[0],
                    &Head {
                        out_w: &p[1],
                        out_b: &p[2],
                        query: &p[3],
                    },
                    &weight,
                    &batch,
                    &targets,
                    Some(&example_weight),
                    0.1,
                    &mut scratch,
                )
            };
            let g = run(&params);
            assert!(!g.rows.contains(&5) || arch != Arch::Attention);
            let mut table_grad = vec![0f32; cfg.rows * cfg.dim];
            for (k, &row) in g.rows.iter().enumerate() {
                let d = cfg.dim;
                table_grad[row as usize * d..(row as usize + 1) * d]
                    .copy_from_slice(&g.row_grads[k * d..(k + 1) * d]);
            }
            let analytic = [table_grad, g.out_w, g.out_b, g.query];
            let h = 1e-2f32;
            let mut checked = 0;
            for which in 0..4 {
                for i in 0..params[which].len() {
                    let keep = params[which][i];
                    params[which][i] = keep + h;
                    let up = run(&params).loss_sum / 3.0;
                    params[which][i] = keep - h;
                    let down = run(&params).loss_sum / 3.0;
                    params[which][i] = keep;
                    let numeric = ((up - down) / (2.0 * h as f64)) as f32;
                    let a = analytic[which][i];
                    assert!(
                        (numeric - a).abs() <= 2e-3 + 2e-2 * a.abs(),
                        "{arch:?} {pooling:?}: parameter {which}[{i}]: analytic {a}, numeric {numeric}"
                    );
                    checked += (a.abs() > 1e-4) as usize;
                }
            }
            assert!(checked > 10, "{arch:?}: only {checked} non-zero gradients");
        }
    }
}
