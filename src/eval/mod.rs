//! Evaluation: ranking metrics and latency percentiles over judged query sets.
//!
//! Owns: the metric definitions shared by every evaluation (MRR@k, nDCG@k with binary relevance,
//! Recall@k, nearest-rank percentiles), computed the way the anchor scripts in
//! `../shared/anchors/` compute them so numbers compare. Must never: read the data sets at
//! test time (tests use inline data).
//!
//! ```
//! use std::collections::HashSet;
//! use kefu::eval::{reciprocal_rank, recall};
//! let ranked = vec!["b".to_string(), "a".to_string()];
//! let relevant: HashSet<String> = ["a".to_string()].into();
//! assert_eq!(reciprocal_rank(&ranked, &relevant, 10), 0.5);
//! assert_eq!(recall(&ranked, &relevant, 1), 0.0);
//! ```

pub mod search;

use std::collections::HashSet;

/// 1/rank of the first relevant id within the top `k`, else 0.
pub fn reciprocal_rank(ranked: &[String], relevant: &HashSet<String>, k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|id| relevant.contains(id))
        .map_or(0.0, |i| 1.0 / (i as f64 + 1.0))
}

/// nDCG@k with binary gains; the ideal ranking puts every relevant id first.
pub fn ndcg(ranked: &[String], relevant: &HashSet<String>, k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, id)| relevant.contains(*id))
        .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
        .sum();
    let ideal: f64 = (0..relevant.len().min(k))
        .map(|i| 1.0 / (i as f64 + 2.0).log2())
        .sum();
    dcg / ideal
}

/// Share of the relevant ids found in the top `k`.
pub fn recall(ranked: &[String], relevant: &HashSet<String>, k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    let found = ranked
        .iter()
        .take(k)
        .filter(|id| relevant.contains(*id))
        .collect::<HashSet<_>>()
        .len();
    found as f64 / relevant.len() as f64
}

/// The `p` quantile (0..=1) of ascending `sorted` values, as `sorted[floor(p·(n−1))]`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// Mean of `values` (0 when empty).
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn metrics_match_hand_computation() {
        let ranked = ids(&["x", "a", "y", "b"]);
        let relevant: HashSet<String> = ids(&["a", "b", "c"]).into_iter().collect();
        assert_eq!(reciprocal_rank(&ranked, &relevant, 10), 0.5);
        assert_eq!(reciprocal_rank(&ranked, &relevant, 1), 0.0);
        assert!((recall(&ranked, &relevant, 10) - 2.0 / 3.0).abs() < 1e-12);
        let dcg = 1.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let ideal = 1.0 + 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert!((ndcg(&ranked, &relevant, 10) - dcg / ideal).abs() < 1e-12);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
