//! Calibration and abstention: temperature scaling fitted on dev, the abstain threshold chosen on
//! dev, expected calibration error, and the coverage vs answered-accuracy curve.
//!
//! Owns: numbers about confidences. Must never: look at text.

use serde::{Deserialize, Serialize};

/// Softmax of `logits / temperature`.
pub fn softmax(logits: &[f32], temperature: f32) -> Vec<f32> {
    let t = temperature.max(1e-3);
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| ((l - max) / t).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Index and value of the largest element.
pub fn argmax(xs: &[f32]) -> (usize, f32) {
    xs.iter()
        .cloned()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, x)| {
            if x > best.1 { (i, x) } else { best }
        })
}

/// Mean negative log-likelihood of the gold labels at temperature `t`.
pub fn nll(logits: &[Vec<f32>], gold: &[usize], t: f32) -> f64 {
    logits
        .iter()
        .zip(gold)
        .map(|(l, &g)| -(softmax(l, t)[g].max(1e-12) as f64).ln())
        .sum::<f64>()
        / gold.len().max(1) as f64
}

/// The temperature minimizing dev NLL (golden-section search over log T in [1/20, 20]).
pub fn fit_temperature(logits: &[Vec<f32>], gold: &[usize]) -> f32 {
    if gold.is_empty() {
        return 1.0;
    }
    let f = |log_t: f64| nll(logits, gold, log_t.exp() as f32);
    golden_min(f, (0.05f64).ln(), (20f64).ln(), 60).exp() as f32
}

/// The temperature at which `logits` are as confident as the probabilities `reference` (row by
/// row): the one minimizing the cross-entropy of `softmax(logits / T)` against `reference`
/// (golden-section search over log T in [1/20, 20]).
pub fn match_temperature(reference: &[Vec<f32>], logits: &[Vec<f32>]) -> f32 {
    if logits.is_empty() {
        return 1.0;
    }
    let f = |log_t: f64| {
        let t = log_t.exp() as f32;
        reference
            .iter()
            .zip(logits)
            .map(|(r, l)| {
                let lp = log_softmax(&l.iter().map(|x| x / t).collect::<Vec<_>>());
                -r.iter().zip(lp).map(|(&p, q)| (p * q) as f64).sum::<f64>()
            })
            .sum::<f64>()
    };
    golden_min(f, (0.05f64).ln(), (20f64).ln(), 60).exp() as f32
}

/// The refit's calibration (`kefu train`'s default refit, which trains the chosen members again
/// with the dev rows after calibrating them on dev): the first fit's member temperatures and
/// ensemble temperature, each scaled so that the refit is as confident as the first fit at
/// them ([`match_temperature`]) on rows both learned from (the training rows). `first[i][k]`
/// and `second[i][k]`: member `k`'s raw logits of row `i` in the first fit and in the refit.
/// Returns the member temperatures (empty for one network) and the ensemble's.
///
/// Trained on 20% more rows (cloud-queues with its dev split) for the same epochs, the refit
/// is surer of itself, and keeping the first fit's temperatures sent fewer questions about
/// products without a queue to a human. Session 11, cloud-queues as `scripts/train-default.sh`
/// trains it: see `TrainOptions::refit` for the figures and the out-of-fold alternative.
pub fn refit_temperatures(
    first: &[Vec<Vec<f32>>],
    second: &[Vec<Vec<f32>>],
    member_temperatures: &[f32],
    temperature: f32,
) -> (Vec<f32>, f32) {
    let members: Vec<f32> = (0..member_temperatures.len())
        .map(|k| {
            let reference: Vec<Vec<f32>> = (first.iter())
                .map(|m| softmax(&m[k], member_temperatures[k]))
                .collect();
            let logits: Vec<Vec<f32>> = second.iter().map(|m| m[k].clone()).collect();
            match_temperature(&reference, &logits)
        })
        .collect();
    let reference: Vec<Vec<f32>> = (first.iter())
        .map(|m| softmax(&combine_members(m, member_temperatures), temperature))
        .collect();
    let logits: Vec<Vec<f32>> = (second.iter())
        .map(|m| combine_members(m, &members))
        .collect();
    (members, match_temperature(&reference, &logits))
}

/// How far the top label `best` is ahead of the out-of-scope label `oos`: `ln p(best) − ln p(oos)`
/// at temperature `t`, i.e. `(logits[best] − logits[oos]) / t` (`f32::MIN` when `oos` is the top
/// label, so any threshold abstains). A sentence the `oos` class nearly claims is out of scope more often than a merely
/// unsure one: on clinc150 (seed 42) abstaining below a margin keeps in-scope dev accuracy 0.918
/// at out-of-scope recall 0.90, against 0.902 with the top probability.
pub fn oos_margin(logits: &[f32], t: f32, best: usize, oos: usize) -> f32 {
    if best == oos {
        return f32::MIN;
    }
    (logits[best] - logits[oos]) / t.max(1e-3)
}

/// `log softmax(logits)`.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
    logits.iter().map(|l| l - lse).collect()
}

/// An ensemble's logits from its members' raw logits: the mean of their log-probabilities, each
/// member at its own temperature (missing temperatures are 1). One member: its logits.
pub fn combine_members(member_logits: &[Vec<f32>], temperatures: &[f32]) -> Vec<f32> {
    if let [only] = member_logits {
        return only.clone();
    }
    let labels = member_logits.first().map_or(0, Vec::len);
    let mut out = vec![0f32; labels];
    let share = 1.0 / member_logits.len() as f32;
    for (k, logits) in member_logits.iter().enumerate() {
        let t = temperatures.get(k).copied().unwrap_or(1.0).max(1e-3);
        let scaled: Vec<f32> = logits.iter().map(|l| l / t).collect();
        for (o, lp) in out.iter_mut().zip(log_softmax(&scaled)) {
            *o += share * lp;
        }
    }
    out
}

/// The ensemble of `members` on the dev rows (indices into each row of `member_logits`, at
/// their own `temperatures`, combined by [`combine_members`]): its NLL after its own temperature
/// is fitted as well, and the rows it puts under their gold label (its top label; no
/// temperature changes which label is on top).
fn ensemble_fit(
    member_logits: &[Vec<Vec<f32>>],
    gold: &[usize],
    temperatures: &[f32],
    members: &[usize],
) -> (f64, usize) {
    let temps: Vec<f32> = members.iter().map(|&k| temperatures[k]).collect();
    let combined: Vec<Vec<f32>> = member_logits
        .iter()
        .map(|m| {
            let sub: Vec<Vec<f32>> = members.iter().map(|&k| m[k].clone()).collect();
            combine_members(&sub, &temps)
        })
        .collect();
    let t = fit_temperature(&combined, gold);
    let right = combined
        .iter()
        .zip(gold)
        .filter(|(l, g)| argmax(l).0 == **g)
        .count();
    (nll(&combined, gold, t), right)
}

/// One candidate member's trial (see [`select_members`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberTrial {
    pub member: usize,
    pub nll_without: f64,
    pub nll_with: f64,
    /// Dev rows the ensemble gets right without and with the candidate ([`ensemble_fit`]).
    #[serde(default)]
    pub right_without: usize,
    #[serde(default)]
    pub right_with: usize,
    pub kept: bool,
}

/// Greedy member selection on dev: members `0..base` are always in; each further member (in
/// order) joins when it lowers the calibrated ensemble's dev NLL ([`ensemble_fit`]), and a member
/// with `guarded[k]` only when the ensemble also gets no fewer dev rows right with it
/// ([`ensemble_fit`]). Returns the chosen member indices (ascending) and each candidate's
/// trial. `member_logits[i][k]`: example `i`, member `k`; `temperatures[k]`: member `k`'s own
/// temperature; `guarded` shorter than the members: the rest unguarded.
///
/// The guard is for the nearest-neighbour members ([`crate::route::knn`], see `train`): their
/// votes are near one-hot wherever a ticket's neighbours agree, so they lower the NLL on rows
/// the trained members get confidently wrong even where they move more top labels to a wrong
/// label than to the right one (cloud-queues, session 12). The trained members are not guarded:
/// measured guarded too (session 18, `TrainOptions::default`'s doc), the guard dropped them on
/// differences of one or two of 610 rows, costing cloud-queues accuracy later in the greedy order.
pub fn select_members(
    member_logits: &[Vec<Vec<f32>>],
    gold: &[usize],
    temperatures: &[f32],
    guarded: &[bool],
    base: usize,
) -> (Vec<usize>, Vec<MemberTrial>) {
    let all = temperatures.len();
    let mut chosen: Vec<usize> = (0..base.min(all)).collect();
    if gold.is_empty() {
        return (chosen, Vec::new());
    }
    let (mut current, mut right) = ensemble_fit(member_logits, gold, temperatures, &chosen);
    let mut trials = Vec::new();
    for k in base..all {
        let mut with = chosen.clone();
        with.push(k);
        let (n, r) = ensemble_fit(member_logits, gold, temperatures, &with);
        let kept = n < current && (r >= right || !guarded.get(k).copied().unwrap_or(false));
        trials.push(MemberTrial {
            member: k,
            nll_without: current,
            nll_with: n,
            right_without: right,
            right_with: r,
            kept,
        });
        if kept {
            chosen = with;
            current = n;
            right = r;
        }
    }
    (chosen, trials)
}

/// Golden-section search of the minimum of `f` over `[a, b]`.
fn golden_min(f: impl Fn(f64) -> f64, mut a: f64, mut b: f64, iterations: usize) -> f64 {
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - phi * (b - a);
    let mut d = a + phi * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..iterations {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - phi * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + phi * (b - a);
            fd = f(d);
        }
    }
    (a + b) / 2.0
}

/// The members' temperatures fitted together: starting from `start` (each member's own fitted
/// temperature), rounds of coordinate descent on each member's log temperature minimizing the dev
/// NLL of the combined ensemble ([`combine_members`]). This weighs the members by what they add
/// to the ensemble, not by how good each is alone. `member_logits[i][k]`: example `i`, member `k`.
pub fn fit_member_temperatures(
    member_logits: &[Vec<Vec<f32>>],
    gold: &[usize],
    start: &[f32],
) -> Vec<f32> {
    let mut temps = start.to_vec();
    if gold.is_empty() || temps.len() < 2 {
        return temps;
    }
    let loss = |temps: &[f32]| -> f64 {
        member_logits
            .iter()
            .zip(gold)
            .map(|(m, &g)| -(softmax(&combine_members(m, temps), 1.0)[g].max(1e-12) as f64).ln())
            .sum::<f64>()
            / gold.len() as f64
    };
    for _round in 0..3 {
        for k in 0..temps.len() {
            let here = (temps[k].max(1e-3) as f64).ln();
            let best = golden_min(
                |log_t| {
                    let mut t = temps.clone();
                    t[k] = log_t.exp() as f32;
                    loss(&t)
                },
                here - 2.5,
                here + 2.5,
                30,
            );
            temps[k] = best.exp() as f32;
        }
    }
    temps
}

/// Expected calibration error with `bins` equal-width bins over (0, 1] (the anchors' definition).
pub fn ece(conf: &[f32], correct: &[bool], bins: usize) -> f64 {
    let n = conf.len().max(1) as f64;
    let mut e = 0.0;
    for b in 0..bins {
        let lo = b as f32 / bins as f32;
        let hi = (b + 1) as f32 / bins as f32;
        let members: Vec<usize> = (0..conf.len())
            .filter(|&i| conf[i] > lo && conf[i] <= hi)
            .collect();
        if members.is_empty() {
            continue;
        }
        let m = members.len() as f64;
        let avg_conf = members.iter().map(|&i| conf[i] as f64).sum::<f64>() / m;
        let acc = members.iter().filter(|&&i| correct[i]).count() as f64 / m;
        e += m / n * (avg_conf - acc).abs();
    }
    e
}

/// One point of the coverage vs answered-accuracy curve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurvePoint {
    pub threshold: f32,
    pub coverage: f64,
    pub answered_accuracy: f64,
}

/// Coverage and answered accuracy at the thresholds that keep 100%, 95%, … 50% of `conf`.
pub fn coverage_curve(conf: &[f32], correct: &[bool]) -> Vec<CurvePoint> {
    let mut sorted: Vec<f32> = conf.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    (0..=10)
        .filter_map(|k| {
            let keep = ((1.0 - k as f64 * 0.05) * sorted.len() as f64).round() as usize;
            let threshold = *sorted.get(keep.max(1) - 1)?;
            Some(point(conf, correct, threshold))
        })
        .collect()
}

fn point(conf: &[f32], correct: &[bool], threshold: f32) -> CurvePoint {
    let answered: Vec<usize> = (0..conf.len()).filter(|&i| conf[i] >= threshold).collect();
    CurvePoint {
        threshold,
        coverage: answered.len() as f64 / conf.len().max(1) as f64,
        answered_accuracy: answered.iter().filter(|&&i| correct[i]).count() as f64
            / answered.len().max(1) as f64,
    }
}

/// The smallest of `values` that at most `share` of them exceed (None when there are none, or
/// `share` is not in `0..1`).
pub fn upper_limit(values: &[f32], share: f64) -> Option<f32> {
    if values.is_empty() || !(0.0..1.0).contains(&share) || share == 0.0 {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let allowed = (share * sorted.len() as f64).floor() as usize;
    Some(sorted[sorted.len() - 1 - allowed.min(sorted.len() - 1)])
}

/// Whether an abstention rule scoring `after` (in-scope accuracy, out-of-scope recall on dev)
/// is better than one scoring `before`: reaching the required recall comes first, then in-scope
/// accuracy; below it both, the larger sum.
pub fn better_abstention(before: (f64, f64), after: (f64, f64), recall_target: f64) -> bool {
    let ((a0, r0), (a1, r1)) = (before, after);
    if r1 >= recall_target {
        r0 < recall_target || a1 > a0
    } else {
        r0 < recall_target && a1 + r1 > a0 + r0
    }
}

/// In-scope accuracy (abstaining counts as wrong) and out-of-scope recall (abstaining counts as
/// right; `correct` is never true for those rows) of an abstention decision per row.
pub fn scope_scores(abstain: &[bool], correct: &[bool], in_scope: &[bool]) -> (f64, f64) {
    let n_in = in_scope.iter().filter(|&&s| s).count();
    let n_out = in_scope.len() - n_in;
    let right_in = (0..in_scope.len())
        .filter(|&i| in_scope[i] && correct[i] && !abstain[i])
        .count();
    let caught = (0..in_scope.len())
        .filter(|&i| !in_scope[i] && abstain[i])
        .count();
    (
        right_in as f64 / n_in.max(1) as f64,
        caught as f64 / n_out.max(1) as f64,
    )
}

/// How the abstain threshold was chosen, for the training report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdChoice {
    pub threshold: f32,
    pub rule: String,
}

/// Chooses the abstain threshold on dev.
///
/// `in_scope[i]`: the dev row has a label the model answers with (not `oos`, not unknown);
/// `correct[i]`: the top label is right (never for out-of-scope rows); `conf[i]`: calibrated top
/// probability, where a top label of `oos` counts as abstaining already (pass 0 then).
///
/// With out-of-scope rows: the highest in-scope accuracy (abstaining counts as wrong) among
/// thresholds reaching `oos_recall_target`, else the best balanced mean of the two.
/// Without: the lowest threshold whose answered accuracy reaches `answered_accuracy_target`
/// while keeping at least `min_coverage` (else the threshold at `min_coverage`).
pub fn choose_threshold(
    conf: &[f32],
    correct: &[bool],
    in_scope: &[bool],
    answered_accuracy_target: f64,
    min_coverage: f64,
    oos_recall_target: f64,
) -> ThresholdChoice {
    let mut candidates: Vec<f32> = conf.to_vec();
    candidates.push(0.0);
    candidates.sort_by(|a, b| a.total_cmp(b));
    candidates.dedup();
    let n_in = in_scope.iter().filter(|&&s| s).count();
    let n_oos = in_scope.len() - n_in;
    if n_oos > 0 && n_in > 0 {
        let eval = |t: f32| {
            let in_acc = (0..conf.len())
                .filter(|&i| in_scope[i] && correct[i] && conf[i] >= t)
                .count() as f64
                / n_in as f64;
            let oos_rec = (0..conf.len())
                .filter(|&i| !in_scope[i] && conf[i] < t)
                .count() as f64
                / n_oos as f64;
            (in_acc, oos_rec)
        };
        let mut best: Option<(f64, f32, f64)> = None;
        for &t in &candidates {
            let (in_acc, rec) = eval(t);
            if rec >= oos_recall_target && best.is_none_or(|b| in_acc > b.0) {
                best = Some((in_acc, t, rec));
            }
        }
        if let Some((in_acc, t, rec)) = best {
            return ThresholdChoice {
                threshold: t,
                rule: format!(
                    "best dev in-scope accuracy ({in_acc:.3}) with out-of-scope recall ≥ {oos_recall_target} ({rec:.3})"
                ),
            };
        }
        let (t, score) = candidates
            .iter()
            .map(|&t| {
                let (a, r) = eval(t);
                (t, (a + r) / 2.0)
            })
            .fold((0.0, f64::MIN), |b, x| if x.1 > b.1 { x } else { b });
        return ThresholdChoice {
            threshold: t,
            rule: format!(
                "out-of-scope recall {oos_recall_target} unreachable: best balanced dev score {score:.3}"
            ),
        };
    }
    let mut floor = 0.0;
    for &t in &candidates {
        let p = point(conf, correct, t);
        if p.coverage < min_coverage {
            break;
        }
        floor = t;
        if p.answered_accuracy >= answered_accuracy_target {
            return ThresholdChoice {
                threshold: t,
                rule: format!(
                    "lowest dev threshold with answered accuracy ≥ {answered_accuracy_target} (coverage {:.3})",
                    p.coverage
                ),
            };
        }
    }
    ThresholdChoice {
        threshold: floor,
        rule: format!(
            "answered accuracy {answered_accuracy_target} unreachable above coverage {min_coverage}: threshold at that coverage"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::train::SplitMix;

    #[test]
    fn matched_temperature_undoes_a_sharper_copy() {
        let mut rng = SplitMix::new(3);
        let base: Vec<Vec<f32>> = (0..50)
            .map(|_| (0..4).map(|_| (rng.unit() * 4.0) as f32).collect())
            .collect();
        let reference: Vec<Vec<f32>> = base.iter().map(|l| softmax(l, 0.8)).collect();
        let sharper: Vec<Vec<f32>> = base
            .iter()
            .map(|l| l.iter().map(|x| x * 3.0).collect())
            .collect();
        let t = match_temperature(&reference, &sharper);
        assert!((t - 2.4).abs() < 0.01, "{t}");
    }

    #[test]
    fn refit_temperatures_follow_each_member_and_the_ensemble() {
        let mut rng = SplitMix::new(5);
        // Two members; in the refit, the first is twice as sharp, the second unchanged.
        let first: Vec<Vec<Vec<f32>>> = (0..60)
            .map(|_| {
                (0..2)
                    .map(|_| (0..3).map(|_| (rng.unit() * 3.0) as f32).collect())
                    .collect()
            })
            .collect();
        let second: Vec<Vec<Vec<f32>>> = first
            .iter()
            .map(|m| vec![m[0].iter().map(|x| x * 2.0).collect(), m[1].clone()])
            .collect();
        let (members, t) = refit_temperatures(&first, &second, &[1.5, 0.7], 1.2);
        assert!((members[0] - 3.0).abs() < 0.01, "{members:?}");
        assert!((members[1] - 0.7).abs() < 0.01, "{members:?}");
        assert!((t - 1.2).abs() < 0.01, "{t}");
        // One network: no member temperatures, the ensemble's scaled.
        let one: Vec<Vec<Vec<f32>>> = first.iter().map(|m| vec![m[0].clone()]).collect();
        let sharper: Vec<Vec<Vec<f32>>> = second.iter().map(|m| vec![m[0].clone()]).collect();
        let (members, t) = refit_temperatures(&one, &sharper, &[], 1.2);
        assert!(members.is_empty());
        assert!((t - 2.4).abs() < 0.01, "{t}");
    }

    #[test]
    fn reaching_the_recall_target_comes_before_in_scope_accuracy() {
        assert!(better_abstention((0.95, 0.85), (0.90, 0.90), 0.9));
        assert!(!better_abstention((0.92, 0.90), (0.89, 0.91), 0.9));
        assert!(better_abstention((0.92, 0.90), (0.93, 0.90), 0.9));
        assert!(!better_abstention((0.92, 0.90), (0.99, 0.89), 0.9));
        assert!(better_abstention((0.90, 0.80), (0.90, 0.85), 0.9));
    }

    #[test]
    fn upper_limit_is_exceeded_by_at_most_the_share() {
        let values: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let limit = upper_limit(&values, 0.03).unwrap();
        assert_eq!(values.iter().filter(|&&v| v > limit).count(), 3);
        // Ties: all of them stay at or under the limit.
        let ties = [0.0, 0.5, 0.5, 0.5];
        assert_eq!(upper_limit(&ties, 0.3), Some(0.5));
        assert_eq!(upper_limit(&[], 0.03), None);
        assert_eq!(upper_limit(&values, 0.0), None);
        assert_eq!(upper_limit(&values, 1.0), None);
    }

    #[test]
    fn temperature_softens_overconfident_logits() {
        // Half right at logit margin 10: calibrated confidence should drop towards 0.5.
        let logits: Vec<Vec<f32>> = (0..100).map(|_| vec![10.0, 0.0]).collect();
        let gold: Vec<usize> = (0..100).map(|i| i % 2).collect();
        let t = fit_temperature(&logits, &gold);
        assert!(t > 10.0, "temperature {t}");
        let p = softmax(&logits[0], t)[0];
        assert!(p < 0.7, "{p}");
    }

    #[test]
    fn joint_member_temperatures_weigh_down_a_useless_member() {
        // Member 0 knows the label, member 1 is confidently random.
        let mut rng = SplitMix::new(12345);
        let gold: Vec<usize> = (0..200).map(|i| i % 3).collect();
        let logits: Vec<Vec<Vec<f32>>> = gold
            .iter()
            .map(|&g| {
                let mut good = vec![0.0; 3];
                good[g] = 2.0;
                let mut noise = vec![0.0; 3];
                noise[rng.below(3)] = 2.0;
                vec![good, noise]
            })
            .collect();
        let loss = |t: &[f32]| -> f64 {
            logits
                .iter()
                .zip(&gold)
                .map(|(m, &g)| -(softmax(&combine_members(m, t), 1.0)[g] as f64).ln())
                .sum::<f64>()
        };
        let start = [1.0, 1.0];
        let fitted = fit_member_temperatures(&logits, &gold, &start);
        assert!(fitted[1] > 2.0 * fitted[0], "{fitted:?}");
        assert!(loss(&fitted) < loss(&start));
    }

    /// Logits of three labels: `m` on label `k`, 0 elsewhere.
    fn onehot(k: usize, m: f32) -> Vec<f32> {
        let mut v = vec![0.0; 3];
        v[k] = m;
        v
    }

    #[test]
    fn member_selection_keeps_what_helps_and_drops_noise() {
        // Members 0 and 1 are right 70% of the time on different rows; member 2 knows the
        // rows where both are wrong; member 3 is confidently random.
        let mut rng = SplitMix::new(99);
        let gold: Vec<usize> = (0..300).map(|i| i % 3).collect();
        let logits: Vec<Vec<Vec<f32>>> = gold
            .iter()
            .enumerate()
            .map(|(i, &g)| {
                let a = if i % 10 < 7 { g } else { (g + 1) % 3 };
                let b = if (i + 5) % 10 < 7 { g } else { (g + 2) % 3 };
                vec![
                    onehot(a, 2.0),
                    onehot(b, 2.0),
                    onehot(g, 1.0),
                    onehot(rng.below(3), 3.0),
                ]
            })
            .collect();
        let temps = [1.0, 1.0, 1.0, 1.0];
        let (chosen, trials) = select_members(&logits, &gold, &temps, &[true; 4], 2);
        assert_eq!(chosen, vec![0, 1, 2], "{trials:?}");
        assert_eq!(trials.len(), 2);
        assert!(trials[0].kept && trials[0].nll_with < trials[0].nll_without);
        assert!(!trials[1].kept);
        // Without dev labels nothing beyond the base joins.
        assert_eq!(select_members(&logits, &[], &temps, &[], 2).0, vec![0, 1]);
    }

    #[test]
    fn member_selection_drops_a_guarded_member_that_lowers_nll_but_costs_accuracy() {
        // Members 0 and 1 agree and are confidently wrong on 20% of the rows. Member 2 leans
        // towards the gold label on those rows (not enough to change the top label: the NLL
        // falls) but confidently claims another label on 6 rows the others get right (those
        // rows' top label changes to a wrong one).
        let gold: Vec<usize> = (0..300).map(|i| i % 3).collect();
        let logits: Vec<Vec<Vec<f32>>> = gold
            .iter()
            .enumerate()
            .map(|(i, &g)| {
                let wrong = i % 10 >= 8;
                let a = if wrong { (g + 1) % 3 } else { g };
                let c = if wrong {
                    onehot(g, 3.0)
                } else if i % 50 == 0 {
                    onehot((g + 2) % 3, 6.0)
                } else {
                    vec![0.0; 3]
                };
                vec![onehot(a, 2.0), onehot(a, 2.0), c]
            })
            .collect();
        let temps = [1.0, 1.0, 1.0];
        let (chosen, trials) = select_members(&logits, &gold, &temps, &[false, false, true], 2);
        let t = &trials[0];
        assert!(t.nll_with < t.nll_without, "{t:?}");
        assert_eq!((t.right_without, t.right_with), (240, 234), "{t:?}");
        assert!(!t.kept, "{t:?}");
        assert_eq!(chosen, vec![0, 1]);
        // Unguarded, the NLL alone decides.
        let (chosen, trials) = select_members(&logits, &gold, &temps, &[false; 3], 2);
        assert!(trials[0].kept);
        assert_eq!(chosen, vec![0, 1, 2]);
        // The same member without the 6 claims lowers the NLL and costs no row: kept.
        let fixed: Vec<Vec<Vec<f32>>> = logits
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut m = m.clone();
                if i % 10 < 8 {
                    m[2] = vec![0.0; 3];
                }
                m
            })
            .collect();
        let (chosen, trials) = select_members(&fixed, &gold, &temps, &[true; 3], 2);
        assert_eq!(chosen, vec![0, 1, 2], "{trials:?}");
        assert_eq!(trials[0].right_with, 240);
    }

    #[test]
    fn oos_margin_and_scope_scores() {
        // Labels: a, b, oos. The margin is the calibrated log-probability lead over `oos`.
        let logits = [3.0, 1.0, 2.0];
        assert!((oos_margin(&logits, 1.0, 0, 2) - 1.0).abs() < 1e-6);
        assert!((oos_margin(&logits, 2.0, 0, 2) - 0.5).abs() < 1e-6);
        let p = softmax(&logits, 2.0);
        assert!((oos_margin(&logits, 2.0, 0, 2) - (p[0].ln() - p[2].ln())).abs() < 1e-5);
        assert_eq!(oos_margin(&[0.0, 1.0, 5.0], 1.0, 2, 2), f32::MIN);
        // Rows: two in-scope (one right, one wrong), two out-of-scope.
        let correct = [true, false, false, false];
        let scope = [true, true, false, false];
        let (acc, rec) = scope_scores(&[false, false, true, false], &correct, &scope);
        assert_eq!((acc, rec), (0.5, 0.5));
        let (acc, rec) = scope_scores(&[true, true, true, true], &correct, &scope);
        assert_eq!((acc, rec), (0.0, 1.0));
    }

    #[test]
    fn ece_is_zero_when_confidence_matches_accuracy() {
        let conf = vec![0.8; 10];
        let correct: Vec<bool> = (0..10).map(|i| i < 8).collect();
        assert!(ece(&conf, &correct, 15) < 1e-6);
        let all_right = vec![true; 10];
        assert!((ece(&conf, &all_right, 15) - 0.2).abs() < 1e-6);
    }

    #[test]
    fn threshold_trades_coverage_for_accuracy() {
        let conf = vec![0.9, 0.8, 0.7, 0.6, 0.5, 0.4];
        let correct = vec![true, true, true, false, true, false];
        let scope = vec![true; 6];
        let c = choose_threshold(&conf, &correct, &scope, 0.99, 0.3, 0.9);
        assert_eq!(c.threshold, 0.7);
        let curve = coverage_curve(&conf, &correct);
        assert_eq!(curve[0].coverage, 1.0);
        // With out-of-scope rows (last two): abstain below them.
        let scope = vec![true, true, true, true, false, false];
        let c = choose_threshold(&conf, &correct, &scope, 0.9, 0.5, 0.9);
        assert_eq!(c.threshold, 0.6);
    }
}
