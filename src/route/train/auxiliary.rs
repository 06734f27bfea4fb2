//! An auxiliary training target (multi-task learning): a second softmax head on the member's
//! pooled vector over another field of the training rows paired with the label (cloud-queues'
//! `product`, the Alibaba product a question comes from: the classes are the (queue, product)
//! pairs, the product within the queue). Its loss, times [`super::TrainOptions::aux_weight`], is
//! added to the label's, so the shared embeddings learn to tell the products apart within each
//! queue as well; the head is then discarded: classifying never needs the field (tickets do not
//! have it). Measured numbers: [`super::AUX_WEIGHT`].
//!
//! Rows without the field (help articles, data sets without it) add no auxiliary loss. Only the
//! shapes [`super::backprop`] trains without candle's graph and that have a pooled vector of
//! their own ([`crate::route::model::Arch::Embedding`] and `Attention`) take the head; the
//! sparse linear member ignores it.
//!
//! Owns: the auxiliary targets, the head's weights, gradients and updates (the field is read
//! with the examples, [`super::read_examples_with_field`]). Must never: change the saved model.

use std::collections::{BTreeMap, BTreeSet};

use super::backprop::{axpy, dot};
use super::{LazyAdamW, SplitMix, xavier};

/// The auxiliary class index of each training row (`None`: no auxiliary loss) and the number
/// of classes.
#[derive(Debug, Clone, Default)]
pub struct AuxTargets {
    pub targets: Vec<Option<u32>>,
    pub classes: usize,
}

impl AuxTargets {
    /// Indexes the values (sorted, so the result does not depend on the row order). `None` when
    /// fewer than two distinct values occur: there is nothing to tell apart.
    pub fn new<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Option<AuxTargets> {
        let values: Vec<Option<&str>> = values.collect();
        let distinct: BTreeSet<&str> = values.iter().flatten().copied().collect();
        if distinct.len() < 2 {
            return None;
        }
        let index: BTreeMap<&str, u32> = distinct
            .into_iter()
            .enumerate()
            .map(|(i, v)| (v, i as u32))
            .collect();
        Some(AuxTargets {
            targets: values.iter().map(|v| v.map(|v| index[v])).collect(),
            classes: index.len(),
        })
    }
}

/// The auxiliary head during training: `logits = W · pooled + b`, its gradient over a batch,
/// and AdamW on its weights.
pub struct AuxHead {
    pub(super) w: Vec<f32>,
    pub(super) b: Vec<f32>,
    width: usize,
    weight: f32,
    grad_w: Vec<f32>,
    grad_b: Vec<f32>,
    adam_w: LazyAdamW,
    adam_b: LazyAdamW,
    logits: Vec<f32>,
    /// Summed auxiliary loss since the last [`AuxHead::step`] (before the weight).
    pub loss_sum: f64,
}

impl AuxHead {
    /// A head over `width`-wide pooled vectors with `classes` outputs whose loss counts `weight`
    /// times; Xavier-initialized from `rng`.
    pub fn new(classes: usize, width: usize, weight: f64, rng: &mut SplitMix) -> AuxHead {
        AuxHead {
            w: xavier(rng, classes, width),
            b: vec![0.0; classes],
            width,
            weight: weight as f32,
            grad_w: vec![0.0; classes * width],
            grad_b: vec![0.0; classes],
            adam_w: LazyAdamW::new(1, classes * width),
            adam_b: LazyAdamW::new(1, classes),
            logits: vec![0.0; classes],
            loss_sum: 0.0,
        }
    }

    /// One example: adds `weight · scale ·` the gradient of its auxiliary cross-entropy (class
    /// `target`) to `dpooled` and to the head's gradients.
    pub fn add(&mut self, target: u32, pooled: &[f32], dpooled: &mut [f32], scale: f32) {
        let width = self.width;
        for (k, l) in self.logits.iter_mut().enumerate() {
            *l = self.b[k] + dot(&self.w[k * width..(k + 1) * width], pooled);
        }
        let max = self
            .logits
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        let log_z = max
            + self
                .logits
                .iter()
                .map(|l| (l - max).exp())
                .sum::<f32>()
                .ln();
        let target = target as usize;
        self.loss_sum += (log_z - self.logits[target]) as f64;
        for k in 0..self.logits.len() {
            let p = (self.logits[k] - log_z).exp();
            let dz = (p - if k == target { 1.0 } else { 0.0 }) * self.weight * scale;
            self.grad_b[k] += dz;
            let row = k * width..(k + 1) * width;
            axpy(dz, pooled, &mut self.grad_w[row.clone()]);
            axpy(dz, &self.w[row], dpooled);
        }
    }

    /// AdamW on the head with the batch's gradients, which it then clears.
    pub fn step(&mut self, lr: f32, wd: f32) {
        self.adam_w.step(&mut self.w, &[0], &self.grad_w, lr, wd);
        self.adam_b.step(&mut self.b, &[0], &self.grad_b, lr, wd);
        self.grad_w.fill(0.0);
        self.grad_b.fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Loss;
    use super::super::backprop::{Head, Scratch, gradients, gradients_with_loss};
    use super::*;
    use crate::route::model::{Arch, ModelConfig, Pooling};

    /// The total loss (label + weight × auxiliary) of a batch, and its gradients with respect to
    /// the embedding table and the auxiliary head, agree with finite differences; rows without
    /// an auxiliary class add nothing.
    #[test]
    fn auxiliary_gradients_match_finite_differences() {
        for arch in [Arch::Embedding, Arch::Attention] {
            let cfg = ModelConfig {
                rows: 10,
                dim: 3,
                hidden: 0,
                labels: 3,
                pooling: Pooling::Tfidf,
                arch,
                group_split: Some(6),
                max_pool: false,
                conv: 0,
                heads: 2,
            };
            let width = cfg.dim * if arch == Arch::Attention { 2 } else { 1 };
            let mut rng = SplitMix::new(9);
            let mut r = |n: usize| -> Vec<f32> {
                (0..n).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect()
            };
            let mut table = r(cfg.rows * cfg.dim);
            let head = [
                r(cfg.labels * width),
                r(cfg.labels),
                if arch == Arch::Attention {
                    r(2 * cfg.dim)
                } else {
                    Vec::new()
                },
            ];
            let weight: Vec<f32> = (0..cfg.rows).map(|i| 1.0 + i as f32 / 5.0).collect();
            let batch = vec![
                (vec![0, 1, 7, 7], vec![0, 0, 1, 2]),
                (vec![2, 8, 9, 3], vec![0, 1, 1, 2]),
                (vec![4, 6], vec![0, 1]),
            ];
            let targets = [1, 2, 0];
            let aux_targets = [Some(3), None, Some(1)];
            let mut aux = AuxHead::new(4, width, 0.5, &mut SplitMix::new(2));
            let run = |table: &[f32], aux: &mut AuxHead| {
                aux.loss_sum = 0.0;
                aux.grad_w.fill(0.0);
                aux.grad_b.fill(0.0);
                let g = gradients_with_loss(
                    Loss::Softmax,
                    &cfg,
                    table,
                    &Head::from_params(&head),
                    &weight,
                    &batch,
                    &targets,
                    None,
                    0.0,
                    &mut Scratch::new(cfg.rows),
                    Some((aux, &aux_targets)),
                );
                let total = (g.loss_sum + 0.5 * aux.loss_sum) / batch.len() as f64;
                (total, g)
            };
            let (_, g) = run(&table, &mut aux);
            let mut table_grad = vec![0f32; table.len()];
            for (k, &row) in g.rows.iter().enumerate() {
                let d = cfg.dim;
                table_grad[row as usize * d..(row as usize + 1) * d]
                    .copy_from_slice(&g.row_grads[k * d..(k + 1) * d]);
            }
            let aux_grad_w = aux.grad_w.clone();
            let h = 1e-2f32;
            let close = |numeric: f32, a: f32| (numeric - a).abs() <= 2e-3 + 2e-2 * a.abs();
            for i in 0..table.len() {
                let keep = table[i];
                table[i] = keep + h;
                let up = run(&table, &mut aux).0;
                table[i] = keep - h;
                let down = run(&table, &mut aux).0;
                table[i] = keep;
                let numeric = ((up - down) / (2.0 * h as f64)) as f32;
                assert!(
                    close(numeric, table_grad[i]),
                    "{arch:?}: table[{i}]: analytic {}, numeric {numeric}",
                    table_grad[i]
                );
            }
            for (i, &analytic) in aux_grad_w.iter().enumerate() {
                let keep = aux.w[i];
                aux.w[i] = keep + h;
                let up = run(&table, &mut aux).0;
                aux.w[i] = keep - h;
                let down = run(&table, &mut aux).0;
                aux.w[i] = keep;
                let numeric = ((up - down) / (2.0 * h as f64)) as f32;
                assert!(
                    close(numeric, analytic),
                    "{arch:?}: aux w[{i}]: analytic {analytic}, numeric {numeric}"
                );
            }
            // The auxiliary loss changes the embedding gradients, and without any auxiliary
            // class the gradients are those of `gradients`.
            let plain = gradients(
                &cfg,
                &table,
                &Head::from_params(&head),
                &weight,
                &batch,
                &targets,
                None,
                0.0,
                &mut Scratch::new(cfg.rows),
            );
            assert_ne!(plain.row_grads, g.row_grads);
            let none = [None; 3];
            let without = gradients_with_loss(
                Loss::Softmax,
                &cfg,
                &table,
                &Head::from_params(&head),
                &weight,
                &batch,
                &targets,
                None,
                0.0,
                &mut Scratch::new(cfg.rows),
                Some((&mut aux, &none)),
            );
            assert_eq!(plain.row_grads, without.row_grads);
        }
    }

    /// Training with the auxiliary field changes the weights (and still learns the labels);
    /// without any value it trains exactly as without the field; a field of another length is
    /// an error.
    #[test]
    fn training_with_the_field_changes_the_model_only_when_it_has_values() {
        use super::super::{Example, TrainOptions, train, train_with_aux, two_queue_rows};
        let (train_rows, dev_rows) = (two_queue_rows(0, 20), two_queue_rows(20, 26));
        let products: Vec<Option<String>> = (0..train_rows.len())
            .map(|i| (i % 5 != 0).then(|| ["ecs", "oss", "slb"][i % 3].to_string()))
            .collect();
        let opts = TrainOptions {
            progress: false,
            epochs: 3,
            ..TrainOptions::default()
        };
        assert!(opts.aux_weight > 0.0);
        let dir = tempfile::tempdir().unwrap();
        let weights = |d: &std::path::Path| std::fs::read(d.join("model.safetensors")).unwrap();
        let [plain, none, with, held] =
            ["plain", "none", "with", "held"].map(|n| dir.path().join(n));
        train(&train_rows, Some(&dev_rows), &opts, &plain).unwrap();
        let nothing = vec![None; train_rows.len()];
        train_with_aux(&train_rows, &nothing, &[], Some(&dev_rows), &opts, &none).unwrap();
        assert_eq!(weights(&plain), weights(&none));
        train_with_aux(&train_rows, &products, &[], Some(&dev_rows), &opts, &with).unwrap();
        assert_ne!(weights(&plain), weights(&with));
        let classifier = crate::route::classifier::Classifier::load(&with).unwrap();
        let p = classifier.predict("refund this invoice please");
        assert_eq!(classifier.labels()[p.best], "billing");
        // Without a dev file the held-back slice leaves training with its field values.
        let all: Vec<Example> = train_rows.iter().chain(&dev_rows).cloned().collect();
        let all_products: Vec<Option<String>> = (0..all.len())
            .map(|i| Some(["ecs", "oss"][i % 2].to_string()))
            .collect();
        train_with_aux(&all, &all_products, &[], None, &opts, &held).unwrap();
        let err = train_with_aux(&train_rows, &products[1..], &[], None, &opts, &held)
            .unwrap_err()
            .to_string();
        assert!(err.contains("auxiliary values"), "{err}");
    }

    #[test]
    fn aux_targets_index_values_and_need_two() {
        let t = AuxTargets::new([Some("oss"), None, Some("ecs"), Some("oss")].into_iter()).unwrap();
        assert_eq!(t.classes, 2);
        assert_eq!(t.targets, vec![Some(1), None, Some(0), Some(1)]);
        assert!(AuxTargets::new([Some("oss"), None].into_iter()).is_none());
    }

    #[test]
    fn the_field_is_read_with_the_examples_and_must_be_a_string() {
        use super::super::read_examples_with_field;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        std::fs::write(
            &path,
            "{\"text\":\"a\",\"label\":\"x\",\"product\":\"oss\"}\n\n{\"text\":\"b\",\"label\":\"y\"}\n",
        )
        .unwrap();
        assert_eq!(
            read_examples_with_field(&path, Some("product")).unwrap().1,
            vec![Some("oss".to_string()), None]
        );
        std::fs::write(&path, "{\"text\":\"a\",\"label\":\"x\",\"product\":3}\n").unwrap();
        let err = read_examples_with_field(&path, Some("product"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(":1:") && err.contains("product"), "{err}");
    }
}
