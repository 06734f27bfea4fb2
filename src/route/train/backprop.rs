//! Plain-Rust forward and backward pass of one training batch for the shapes the default members
//! have: [`Arch::Linear`], [`Arch::Embedding`] without hidden layer or max pooling, and
//! [`Arch::Attention`] without convolution or max pooling. A batch touches a few hundred
//! embedding rows and a head of a few thousand weights: candle's graph (a dense pooling matrix,
//! allocations for every node) costs far more than the arithmetic, so these shapes skip it.
//! Other shapes train through candle (`candle_step` in `train.rs`, which `fit` calls). Tests check
//! that both paths give the same loss and gradients for each of these shapes (with and without
//! per-example weights and label smoothing), and that the gradients match finite differences.
//!
//! Owns: the loss (cross-entropy with optional per-example weights and label smoothing, as
//! `smoothed_cross_entropy`, or the one-vs-rest squared hinge of `Loss::SquaredHinge`, which
//! only this path trains) and its gradient. Must never: update weights (the optimizers in
//! `train.rs` do).

use super::Loss;
use super::auxiliary::AuxHead;
use crate::route::model::{Arch, ModelConfig, token_sequence};

/// Whether [`gradients`] handles this shape.
pub fn supports(cfg: &ModelConfig) -> bool {
    match cfg.arch {
        Arch::Linear => true,
        Arch::Embedding => cfg.hidden == 0 && !cfg.max_pool,
        Arch::Attention => cfg.hidden == 0 && !cfg.max_pool && cfg.conv == 0,
        Arch::Knn => false,
    }
}

/// The head's weights, row-major as candle's `Linear` (`out_w` `[labels, in]`; empty for
/// [`Arch::Linear`]) and the attention queries `[heads, dim]` (empty unless [`Arch::Attention`]).
pub struct Head<'a> {
    pub out_w: &'a [f32],
    pub out_b: &'a [f32],
    pub query: &'a [f32],
}

impl<'a> Head<'a> {
    /// The head in the training loop's parameter order: `[out_w, out_b, query]`.
    pub fn from_params(params: &'a [Vec<f32>]) -> Head<'a> {
        Head {
            out_w: &params[0],
            out_b: &params[1],
            query: &params[2],
        }
    }
}

/// Gradients of one batch's loss.
#[derive(Debug, Default)]
pub struct Gradients {
    /// Summed loss (each example's, before dividing by the batch size).
    pub loss_sum: f64,
    /// The batch's embedding rows (first occurrence order; for [`Arch::Attention`] only features
    /// whose pooling weight is not 0) and the gradient of each, `dim` wide.
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
#[cfg(test)]
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
    gradients_with_loss(
        Loss::Softmax,
        cfg,
        table,
        head,
        feature_weight,
        batch,
        targets,
        example_weight,
        label_smoothing,
        scratch,
        None,
    )
}

/// [`gradients`] with another [`Loss`] and an auxiliary head. [`Loss::SquaredHinge`] is
/// `Σ wⱼ · Σₖ max(0, 1 − yⱼₖ zⱼₖ)² / batch` (`yⱼₖ` is +1 for the example's label, −1 for the
/// others; label smoothing unused). With an auxiliary head ([`AuxHead`]) on the pooled vector,
/// example `j` with `aux.1[j]` a class adds that head's weighted loss (its gradient flows into
/// the embedding rows; the head keeps its own). Not for [`Arch::Linear`], whose pooled vector
/// is its logits.
#[allow(clippy::too_many_arguments)]
pub fn gradients_with_loss(
    loss: Loss,
    cfg: &ModelConfig,
    table: &[f32],
    head: &Head,
    feature_weight: &[f32],
    batch: &[(Vec<u32>, Vec<u32>)],
    targets: &[u32],
    example_weight: Option<&[f32]>,
    label_smoothing: f64,
    scratch: &mut Scratch,
    mut aux: Option<(&mut AuxHead, &[Option<u32>])>,
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
        if loss == Loss::SquaredHinge {
            let mut sum = 0f32;
            for (k, l) in logits.iter_mut().enumerate() {
                let y = if k == target { 1.0 } else { -1.0 };
                let m = (1.0 - y * *l).max(0.0);
                sum += m * m;
                // dlogits, kept in `logits`.
                *l = -2.0 * w * y * m * scale;
            }
            g.loss_sum += (w * sum) as f64;
        } else {
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
        if let Some((aux_head, aux_targets)) = aux.as_mut()
            && let Some(t) = aux_targets[j]
        {
            aux_head.add(t, &pooled, &mut dpooled, scale);
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

pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `y += a · x`.
pub(super) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
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
        for (arch, pooling, loss) in [
            (Arch::Linear, Pooling::Tfidf, Loss::Softmax),
            (Arch::Linear, Pooling::Tfidf, Loss::SquaredHinge),
            (Arch::Embedding, Pooling::Mean, Loss::Softmax),
            (Arch::Embedding, Pooling::Tfidf, Loss::Softmax),
            (Arch::Attention, Pooling::Tfidf, Loss::Softmax),
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
                gradients_with_loss(
                    loss,
                    &cfg,
                    &p[0],
                    &Head::from_params(&p[1..]),
                    &weight,
                    &batch,
                    &targets,
                    Some(&example_weight),
                    0.1,
                    &mut scratch,
                    None,
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
                        "{arch:?} {pooling:?} {loss:?}: parameter {which}[{i}]: analytic {a}, numeric {numeric}"
                    );
                    checked += (a.abs() > 1e-4) as usize;
                }
            }
            assert!(checked > 10, "{arch:?}: only {checked} non-zero gradients");
        }
    }

    /// The candle path (`candle_step`, the graph `fit` trains every other shape with: the model's
    /// candle forward pass and `smoothed_cross_entropy`) and [`gradients`] agree on the loss and
    /// on every gradient for the same weights and batch, with IDF pooling weights (some 0),
    /// repeated features, an example without a feature that counts, per-example weights and
    /// label smoothing, and without the last two.
    #[test]
    fn gradients_match_candle_autodiff() {
        use crate::route::model::RouterModel;
        use crate::route::train::{CandleStep, candle_step, idf};
        use candle_core::{DType, Device, Tensor};
        use candle_nn::{VarBuilder, VarMap};

        let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * a.abs().max(b.abs()) + 1e-6;
        for (arch, pooling) in [
            (Arch::Linear, Pooling::Tfidf),
            (Arch::Embedding, Pooling::Mean),
            (Arch::Embedding, Pooling::Tfidf),
            (Arch::Attention, Pooling::Tfidf),
            (Arch::Attention, Pooling::Mean),
        ] {
            let labels = 5;
            let cfg = ModelConfig {
                rows: 30,
                dim: if arch == Arch::Linear { labels } else { 4 },
                labels,
                group_split: (pooling == Pooling::Tfidf).then_some(18),
                ..config(arch, pooling)
            };
            assert!(supports(&cfg));
            let mut rng = SplitMix::new(11);
            let mut r = |n: usize| -> Vec<f32> {
                (0..n).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect()
            };
            let table = r(cfg.rows * cfg.dim);
            // The candle model's head, seeded as in `fit` (the embedding is `table`).
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let model = RouterModel::new(&cfg, vb).unwrap();
            let names = ["out.weight", "out.bias", "query"];
            let head: Vec<Vec<f32>> = {
                let data = varmap.data().lock().unwrap();
                names
                    .iter()
                    .map(|n| match data.get(*n) {
                        Some(var) => {
                            let w = r(var.elem_count());
                            var.set(
                                &Tensor::from_vec(w.clone(), var.dims(), &Device::Cpu).unwrap(),
                            )
                            .unwrap();
                            w
                        }
                        None => Vec::new(),
                    })
                    .collect()
            };
            assert_eq!(head[2].is_empty(), arch != Arch::Attention);
            assert_eq!(head[0].is_empty(), arch == Arch::Linear);
            // Random examples over rows 0..28 (words in order, a word's features together,
            // repeats allowed); rows 28 and 29 no training document has (weight 0).
            let mut rng = SplitMix::new(5);
            let mut batch: Vec<(Vec<u32>, Vec<u32>)> = (0..7)
                .map(|_| {
                    let n = 1 + rng.below(9);
                    let mut token = 0;
                    (0..n)
                        .map(|_| {
                            token += (rng.unit() < 0.4) as u32;
                            (rng.below(cfg.rows - 2) as u32, token)
                        })
                        .unzip()
                })
                .collect();
            let train_docs: Vec<&[u32]> = batch.iter().map(|(ids, _)| ids.as_slice()).collect();
            let rare_from = cfg.group_split.unwrap_or(cfg.rows as u32 / 2);
            let feature_weight = idf(train_docs.into_iter(), cfg.rows, rare_from, 2);
            batch[0].0.push(29);
            batch[0].1.push(0);
            batch.push((vec![28, 29, 28], vec![0, 1, 1]));
            assert!(feature_weight.iter().filter(|&&w| w == 0.0).count() > 2);
            // The batch's rows that count.
            let mut counted: Vec<u32> = batch.iter().flat_map(|(ids, _)| ids.clone()).collect();
            counted.retain(|&id| feature_weight[id as usize] > 0.0);
            counted.sort_unstable();
            counted.dedup();
            let counted = counted.len();
            assert!(counted > 10, "{counted}");
            let targets: Vec<u32> = (0..batch.len()).map(|j| (j % labels) as u32).collect();
            let example_weight: Vec<f32> = (0..batch.len()).map(|j| 1.0 + (j % 3) as f32).collect();

            for (weights, eps) in [(Some(example_weight.as_slice()), 0.1), (None, 0.0)] {
                let what = format!("{arch:?} {pooling:?} weights {} ε {eps}", weights.is_some());
                let mut scratch = Scratch::new(cfg.rows);
                let g = gradients(
                    &cfg,
                    &table,
                    &Head::from_params(&head),
                    &feature_weight,
                    &batch,
                    &targets,
                    weights,
                    eps,
                    &mut scratch,
                );
                let CandleStep {
                    rows,
                    rows_var,
                    loss,
                    grads,
                } = candle_step(
                    &model,
                    &cfg,
                    &table,
                    &feature_weight,
                    batch.clone(),
                    targets.clone(),
                    weights.map(<[f32]>::to_vec),
                    eps,
                )
                .unwrap();
                let loss = loss.to_scalar::<f32>().unwrap();
                let plain_loss = (g.loss_sum / batch.len() as f64) as f32;
                assert!(
                    close(plain_loss, loss),
                    "{what}: loss {plain_loss} vs candle {loss}"
                );

                // Embedding gradients, scattered into the full table on both sides.
                let d = cfg.dim;
                let dense = |rows: &[u32], grads: &[f32]| {
                    let mut t = vec![0f32; cfg.rows * d];
                    for (k, &row) in rows.iter().enumerate() {
                        for (tv, &gv) in t[row as usize * d..(row as usize + 1) * d]
                            .iter_mut()
                            .zip(&grads[k * d..(k + 1) * d])
                        {
                            *tv += gv;
                        }
                    }
                    t
                };
                let candle_rows: Vec<f32> = grads
                    .get(rows_var.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let mut compared = vec![(
                    "embedding",
                    dense(&g.rows, &g.row_grads),
                    dense(&rows, &candle_rows),
                )];
                let data = varmap.data().lock().unwrap();
                for (name, plain) in names.iter().zip([&g.out_w, &g.out_b, &g.query]) {
                    match data.get(*name) {
                        Some(var) => {
                            let candle: Vec<f32> = grads
                                .get(var.as_tensor())
                                .unwrap()
                                .flatten_all()
                                .unwrap()
                                .to_vec1()
                                .unwrap();
                            compared.push((name, plain.clone(), candle));
                        }
                        None => assert!(plain.is_empty(), "{what}: {name} has no weights"),
                    }
                }
                for (name, plain, candle) in &compared {
                    assert_eq!(plain.len(), candle.len(), "{what}: {name}");
                    for (i, (&a, &b)) in plain.iter().zip(candle).enumerate() {
                        assert!(close(a, b), "{what}: {name}[{i}]: plain {a}, candle {b}");
                    }
                    // Not a comparison of zeros: most of the batch's weights get a gradient.
                    let nonzero = candle.iter().filter(|v| v.abs() > 1e-4).count();
                    let touched = if *name == "embedding" {
                        counted * d
                    } else {
                        candle.len()
                    };
                    assert!(2 * nonzero > touched, "{what}: {name}: {nonzero} non-zero");
                }
                // Rows of weight 0 get no gradient.
                for row in [28, 29] {
                    assert!(
                        compared[0].1[row * d..(row + 1) * d]
                            .iter()
                            .all(|&v| v == 0.0)
                    );
                }
            }
        }
    }
}
