//! Ticket routing end to end: rules, a tiny model trained here, the shipped default model, bad
//! input, and the `kefu route` / `kefu classify` streams. No shared data: everything is inline
//! or shipped in `models/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kefu::route::classifier::Classifier;
use kefu::route::features::FeatureConfig;
use kefu::route::model::{Arch, Pooling};
use kefu::route::rules::RoutingRules;
use kefu::route::train::{self, Example, TrainOptions};
use kefu::route::{RouteError, Ticket, TicketRouter};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn ticket(subject: &str, body: &str) -> Ticket {
    Ticket {
        id: Some("t1".into()),
        subject: subject.into(),
        body: body.into(),
    }
}

fn default_router() -> TicketRouter {
    TicketRouter::load(&repo("models/router"), Some(&repo("models/routing.toml")))
        .expect("the shipped default model loads")
}

// ---------------------------------------------------------------- rules

#[test]
fn shipped_rules_load_and_set_priorities_in_both_languages() {
    let rules = RoutingRules::load(&repo("models/routing.toml")).unwrap();
    let p = |t: &str| rules.priority(t).level;
    assert_eq!(p("生产环境服务器宕机了"), "P0");
    assert_eq!(p("生產環境伺服器宕機了，數據丟失"), "P0"); // traditional
    assert_eq!(p("Our whole site is DOWN since 10:00"), "P0");
    assert_eq!(p("ＤＯＷＮ again"), "P0"); // full-width
    assert_eq!(p("We may have data loss on the bucket"), "P0");
    assert_eq!(p("控制台无法访问"), "P1");
    assert_eq!(p("I cannot access my instance"), "P1");
    assert_eq!(p("上传文件报错"), "P2");
    assert_eq!(p("how do I download my invoice?"), "P3");
    assert_eq!(p("如何开发票"), "P3");
    let sla = rules.priority("宕机").sla;
    assert_eq!(
        (sla.first_response_minutes, sla.resolution_hours),
        (5, 2),
        "DESIGN.md: P0 5 min / 2 h"
    );
    let sla = rules.priority("如何开发票").sla;
    assert_eq!((sla.first_response_minutes, sla.resolution_hours), (60, 24));
    assert_eq!(rules.queue("billing", false), "billing");
    assert_eq!(rules.queue("billing", true), "triage");
    assert_eq!(rules.queue("oos", false), "triage");
}

#[test]
fn rules_errors_name_the_line_at_load_time() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(repo("models/routing.toml")).unwrap();
    let lines = good.lines().count();
    let bad = format!("{good}\n[[priority]]\nlevel = \"P1\"\npatterns = ['(unclosed']\n");
    let path = dir.path().join("routing.toml");
    std::fs::write(&path, bad).unwrap();
    match RoutingRules::load(&path) {
        Err(RouteError::Rules(m)) => {
            assert!(m.contains(&format!(":{}:", lines + 4)), "{m}");
            assert!(m.contains("invalid regex"), "{m}");
        }
        other => panic!("bad regex accepted: {:?}", other.map(|_| ())),
    }
    // The router refuses to load with bad rules (never at the first ticket).
    match TicketRouter::load(&repo("models/router"), Some(&path)) {
        Err(RouteError::Rules(_)) => {}
        other => panic!("router loaded bad rules: {:?}", other.map(|_| ())),
    }
    std::fs::write(&path, "triage_queue = \"t\"\ndefault_priority = \"P9\"\n").unwrap();
    let m = RoutingRules::load(&path)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(m.contains(":2:") || m.contains("sla"), "{m}");
}

// ---------------------------------------------------------------- training

fn tiny_data() -> Vec<Example> {
    let rows: &[(&str, &str)] = &[
        ("如何申请发票", "billing"),
        ("发票抬头怎么修改", "billing"),
        ("账单金额不对", "billing"),
        ("退款多久到账", "billing"),
        ("how do i get an invoice", "billing"),
        ("refund for my order", "billing"),
        ("my bill is too high", "billing"),
        ("invoice title is wrong", "billing"),
        ("SSL证书怎么安装", "security"),
        ("证书过期了怎么办", "security"),
        ("WAF拦截了正常请求", "security"),
        ("DDoS防护如何开启", "security"),
        ("how to install an ssl certificate", "security"),
        ("certificate expired on my site", "security"),
        ("waf blocks my requests", "security"),
        ("enable ddos protection", "security"),
        ("云盘扩容失败", "storage"),
        ("OSS上传文件很慢", "storage"),
        ("快照如何回滚", "storage"),
        ("NAS挂载不上", "storage"),
        ("resize my cloud disk", "storage"),
        ("upload to oss bucket is slow", "storage"),
        ("roll back a snapshot", "storage"),
        ("mount nas file system", "storage"),
    ];
    rows.iter()
        .map(|(t, l)| Example {
            text: t.to_string(),
            label: l.to_string(),
        })
        .collect()
}

fn tiny_options(seed: u64) -> TrainOptions {
    TrainOptions {
        epochs: 2,
        seed,
        dim: 16,
        lr: 0.05,
        batch_size: 4,
        features: FeatureConfig {
            buckets: 2048,
            word_buckets: 512,
            ..FeatureConfig::default()
        },
        progress: false,
        // The default ensemble's second member, on the same small tables.
        extra: vec![
            TrainOptions {
                features: FeatureConfig {
                    buckets: 2048,
                    word_buckets: 512,
                    ..FeatureConfig::default()
                },
                ..TrainOptions::embedding_member()
            }
            .linear_member(),
        ],
        candidates: Vec::new(),
        ..TrainOptions::default()
    }
}

/// The default candidate member (`TrainOptions::fasttext_member`) on small tables.
fn tiny_candidate() -> TrainOptions {
    let f = TrainOptions::fasttext_member();
    TrainOptions {
        epochs: 8,
        dim: 16,
        lr: 0.05,
        batch_size: 4,
        features: FeatureConfig {
            buckets: 2048,
            ..f.features.clone()
        },
        ..f
    }
}

#[test]
fn candidate_member_is_tried_on_dev_and_the_model_matches_the_choice() {
    let data = tiny_data();
    let mut opts = tiny_options(3);
    opts.epochs = 8;
    opts.candidates = vec![tiny_candidate()];
    let dir = tempfile::tempdir().unwrap();
    let report = train::train(&data, Some(&data), &opts, dir.path()).unwrap();
    assert_eq!(report.member_trials.len(), 1);
    let (what, trial) = &report.member_trials[0];
    assert!(what.contains("in-word character n-grams"), "{what}");
    assert_eq!(trial.member, 2);
    assert_eq!(trial.kept, trial.nll_with < trial.nll_without, "{trial:?}");
    let md = report.markdown();
    assert!(md.contains("candidate member 2"), "{md}");
    // The saved ensemble holds exactly the chosen members, each with its temperature.
    let c = Classifier::load(dir.path()).unwrap();
    let members = 2 + trial.kept as usize;
    assert_eq!(c.config().extra.len(), members - 1);
    assert_eq!(c.config().member_temperatures.len(), members);
    assert_eq!(c.member_logits("发票抬头怎么修改").len(), members);
    assert_eq!(
        c.labels()[c.predict("请问发票什么时候寄出").best],
        "billing"
    );
    // Without dev labels the model knows, nothing is tried: the candidate stays out.
    let dev: Vec<Example> = data
        .iter()
        .map(|e| Example {
            text: e.text.clone(),
            label: "unknown".into(),
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let report = train::train(&data, Some(&dev), &opts, dir.path()).unwrap();
    assert!(report.member_trials.is_empty());
    assert_eq!(
        Classifier::load(dir.path()).unwrap().config().extra.len(),
        1
    );
}

#[test]
fn part_of_speech_tags_are_kept_only_when_they_lower_the_dev_nll() {
    let data = tiny_data();
    let opts = tiny_options(5);
    let dir = tempfile::tempdir().unwrap();
    let (auto, plain) = (dir.path().join("auto"), dir.path().join("plain"));
    let report = train::train(&data, Some(&data), &opts, &auto).unwrap();
    let choice = report
        .pos_tags
        .clone()
        .expect("Chinese rows: tried both ways");
    let without = train::train(&data, Some(&data), &opts.without_pos_tags(), &plain).unwrap();
    assert_eq!(without.pos_tags, None);
    assert!(!without.markdown().contains("part-of-speech"));
    // The message gives both NLLs; the tags stay when they lower it by the margin.
    let nll = |after: &str| -> f64 {
        let rest = &choice[choice.find(after).unwrap() + after.len()..];
        rest.split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches(',')
            .parse()
            .unwrap()
    };
    let (with_nll, without_nll) = (nll("dev NLL "), nll("them, "));
    assert_eq!(
        format!("{:.4}", without.dev_nll),
        format!("{without_nll:.4}")
    );
    let kept = with_nll < without_nll * (1.0 - train::POS_TAGS_MIN_GAIN);
    assert_eq!(choice.starts_with("kept"), kept, "{choice}");
    let chosen_nll = if kept { with_nll } else { without_nll };
    assert_eq!(format!("{:.4}", report.dev_nll), format!("{chosen_nll:.4}"));
    let c = Classifier::load(&auto).unwrap();
    assert_eq!(c.config().features.pos_tags, kept);
    let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(weights(&auto) == weights(&plain), !kept);
    assert!(
        report
            .markdown()
            .contains("part-of-speech tags of Chinese text")
    );
    // English rows only: nothing to tag, trained once, without.
    let english: Vec<Example> = data.iter().filter(|e| e.text.is_ascii()).cloned().collect();
    let dir = tempfile::tempdir().unwrap();
    let report = train::train(&english, Some(&english), &opts, dir.path()).unwrap();
    assert_eq!(report.pos_tags, None);
    assert!(
        !Classifier::load(dir.path())
            .unwrap()
            .config()
            .features
            .pos_tags
    );
}

#[test]
fn tiny_model_learns_and_training_is_deterministic() {
    let data = tiny_data();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut opts = tiny_options(7);
    opts.epochs = 8;
    let report = train::train(&data, Some(&data), &opts, dirs[0].path()).unwrap();
    assert!(
        report.epoch_loss.last() < report.epoch_loss.first(),
        "loss did not fall: {:?}",
        report.epoch_loss
    );
    // It learned the training data…
    assert!(report.dev_accuracy >= 0.9, "{}", report.dev_accuracy);
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "labels.json",
        "config.json",
        "report.md",
    ] {
        assert!(dirs[0].path().join(f).is_file(), "{f} missing");
    }
    let c = Classifier::load(dirs[0].path()).unwrap();
    assert_eq!(c.labels(), ["billing", "security", "storage"]);
    // Two members, each calibrated on its own before the ensemble.
    assert_eq!(c.config().extra.len(), 1);
    assert_eq!(c.config().member_temperatures.len(), 2);
    let members = c.member_logits("发票抬头怎么修改");
    assert_eq!(members.len(), 2);
    assert_eq!(c.combine_logits(&members), c.logits("发票抬头怎么修改"));
    // …and generalizes to unseen wordings through shared words and n-grams.
    let label = |t: &str| c.labels()[c.predict(t).best].clone();
    assert_eq!(label("请问发票什么时候寄出"), "billing");
    assert_eq!(label("ssl certificate renewal"), "security");

    // Same seed → byte-identical weights; another seed → different ones.
    train::train(&data, Some(&data), &opts, dirs[1].path()).unwrap();
    let weights =
        |d: &tempfile::TempDir| std::fs::read(d.path().join("model.safetensors")).unwrap();
    assert_eq!(weights(&dirs[0]), weights(&dirs[1]));
    opts.seed = 8;
    train::train(&data, Some(&data), &opts, dirs[2].path()).unwrap();
    assert_ne!(weights(&dirs[0]), weights(&dirs[2]));
}

#[test]
fn tickets_made_of_words_training_never_saw_go_to_a_human() {
    let data = tiny_data();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = tiny_options(3);
    opts.epochs = 8;
    // Dev = train: every dev word is known, so the limit is the floor.
    train::train(&data, Some(&data), &opts, dir.path()).unwrap();
    let c = Classifier::load(dir.path()).unwrap();
    assert_eq!(c.config().novelty_limit, Some(train::MIN_NOVELTY_LIMIT));
    let known = c.predict("how do i get an invoice");
    assert_eq!(known.novelty, 0.0);
    // Order numbers are new in every ticket: words with digits do not count.
    assert_eq!(
        c.predict("refund for my order 20261123 invoice 8841")
            .novelty,
        0.0
    );
    let foreign = c.predict("kubernetes pod stuck in crashloopbackoff");
    assert!(foreign.novelty > 0.9, "{}", foreign.novelty);
    // Unfamiliar, it goes to a human unless the model is very sure (a tiny model calibrated on
    // its own training data may be): with no confidence exempt, it does.
    assert!(foreign.abstain || foreign.confidence >= c.config().novelty_confidence);
    let mut config = c.config().clone();
    config.novelty_confidence = 1.01;
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    let c = Classifier::load(dir.path()).unwrap();
    assert!(
        c.predict("kubernetes pod stuck in crashloopbackoff")
            .abstain
    );
    assert!(!c.predict("how do i get an invoice").abstain);
    // One new word among known ones is not enough.
    let mostly_known =
        c.predict("my invoice title is wrong, my bill is too high, refund my order soon");
    assert!(mostly_known.novelty < 0.25, "{}", mostly_known.novelty);

    // Turned off, the same ticket is decided by its confidence alone.
    let off = tempfile::tempdir().unwrap();
    opts.novelty_share = 0.0;
    train::train(&data, Some(&data), &opts, off.path()).unwrap();
    let c = Classifier::load(off.path()).unwrap();
    assert_eq!(c.config().novelty_limit, None);
    let p = c.predict("kubernetes pod stuck in crashloopbackoff");
    assert_eq!(p.abstain, p.confidence < c.config().threshold);
}

#[test]
fn linear_arch_learns_and_reloads() {
    let data = tiny_data();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = tiny_options(7);
    opts.epochs = 8;
    opts.arch = Arch::Linear;
    opts.pooling = Pooling::Tfidf;
    let report = train::train(&data, Some(&data), &opts, dir.path()).unwrap();
    assert!(
        report.epoch_loss.last() < report.epoch_loss.first(),
        "loss did not fall: {:?}",
        report.epoch_loss
    );
    assert!(report.dev_accuracy >= 0.9, "{}", report.dev_accuracy);
    let c = Classifier::load(dir.path()).unwrap();
    let label = |t: &str| c.labels()[c.predict(t).best].clone();
    assert_eq!(label("请问发票什么时候寄出"), "billing");
    assert_eq!(label("ssl certificate renewal"), "security");
    assert_eq!(label("快照回滚失败"), "storage");
}

#[test]
fn attention_member_learns_reloads_and_explains() {
    let data = tiny_data();
    let mut opts = tiny_options(5);
    opts.epochs = 8;
    // The attention network as the ensemble's first member, as a plain network: alone, it has
    // to learn the tiny data set itself.
    opts.extra.clear();
    opts.arch = Arch::Attention;
    opts.heads = 2;
    opts.conv = 8;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let report = train::train(&data, Some(&data), &opts, dirs[0].path()).unwrap();
    assert!(
        report.epoch_loss.last() < report.epoch_loss.first(),
        "loss did not fall: {:?}",
        report.epoch_loss
    );
    assert!(report.dev_accuracy >= 0.9, "{}", report.dev_accuracy);
    let c = Classifier::load(dirs[0].path()).unwrap();
    assert_eq!(c.config().model.arch, Arch::Attention);
    let label = |t: &str| c.labels()[c.predict(t).best].clone();
    assert_eq!(label("请问发票什么时候寄出"), "billing");
    assert_eq!(label("ssl certificate renewal"), "security");
    // Explanations credit the words the attention network read.
    let (p, words) = c.explain("发票抬头写错了", 3);
    assert_eq!(c.labels()[p.best], "billing");
    assert!(!words.is_empty() && words[0].weight > 0.0, "{words:?}");
    // Deterministic for a seed.
    train::train(&data, Some(&data), &opts, dirs[1].path()).unwrap();
    let weights =
        |d: &tempfile::TempDir| std::fs::read(d.path().join("model.safetensors")).unwrap();
    assert_eq!(weights(&dirs[0]), weights(&dirs[1]));
}

#[test]
fn diverging_training_is_an_error_not_a_broken_model() {
    let data = tiny_data();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let mut opts = tiny_options(7);
    opts.extra.clear();
    opts.arch = Arch::Linear;
    opts.pooling = Pooling::Tfidf;
    opts.optimizer = train::OptimizerKind::Sgd;
    opts.lr = 1e39; // infinite as f32
    let e = train::train(&data, Some(&data), &opts, &out).unwrap_err();
    assert!(matches!(e, train::TrainError::Diverged(_)), "{e}");
    assert!(e.to_string().contains("lower the learning rate"), "{e}");
    assert!(!out.exists());
}

#[test]
fn dev_labels_unknown_to_training_are_reported_not_fatal() {
    let data = tiny_data();
    let mut dev = data.clone();
    dev.push(Example {
        text: "what is the weather tomorrow".into(),
        label: "oos".into(),
    });
    let dir = tempfile::tempdir().unwrap();
    let report = train::train(&data, Some(&dev), &tiny_options(1), dir.path()).unwrap();
    assert_eq!(report.dev_unknown_rows, 1);
    assert!(report.dev_unknown_labels.contains("oos"));
    assert!(report.markdown().contains("labels the training data lacks"));
}

#[test]
fn oos_class_abstention_on_dev_is_what_the_classifier_does() {
    // Tiny data with an `oos` class; dev holds unseen out-of-scope questions as well.
    let mut data = tiny_data();
    let oos = [
        "what is the weather tomorrow",
        "tell me a joke",
        "今天吃什么",
        "who won the football game",
        "明天会下雨吗",
        "play some music",
    ];
    data.extend(oos.iter().map(|t| Example {
        text: t.to_string(),
        label: "oos".into(),
    }));
    let mut dev = data.clone();
    dev.extend(
        [
            "what time is it in paris",
            "给我讲个笑话",
            "book a table for two",
        ]
        .iter()
        .map(|t| Example {
            text: t.to_string(),
            label: "oos".into(),
        }),
    );
    let mut opts = tiny_options(5);
    opts.epochs = 8;
    let dir = tempfile::tempdir().unwrap();
    let report = train::train(&data, Some(&dev), &opts, dir.path()).unwrap();
    let c = Classifier::load(dir.path()).unwrap();
    // Either rule: the margin over `oos` replaces the confidence threshold.
    match c.config().oos_margin {
        Some(m) => {
            assert_eq!(c.config().threshold, 0.0);
            assert_eq!(report.oos_margin, Some(m));
            assert!(
                report.threshold_rule.contains("leads `oos`"),
                "{}",
                report.threshold_rule
            );
        }
        None => assert!(
            report.threshold_rule.contains("`oos` margin gave"),
            "{}",
            report.threshold_rule
        ),
    }
    // The saved model abstains on dev exactly as training measured.
    let r = kefu::route::eval::evaluate(&c, &dev);
    assert!(
        (r.coverage - report.dev_coverage).abs() < 1e-9,
        "{} vs {}",
        r.coverage,
        report.dev_coverage
    );
    assert!(r.oos_recall.is_some() && r.in_scope_accuracy.is_some());
    // A margin no label can reach sends every ticket to a human.
    let mut config = c.config().clone();
    config.oos_margin = Some(1e6);
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    let strict = Classifier::load(dir.path()).unwrap();
    assert!(dev.iter().all(|e| strict.predict(&e.text).abstain));
}

#[test]
fn training_data_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    std::fs::write(
        &path,
        "{\"text\":\"a\",\"label\":\"x\"}\n\n{\"text\":\"b\"}\n",
    )
    .unwrap();
    let m = train::read_examples(&path).unwrap_err().to_string();
    assert!(m.contains("train.jsonl:3:"), "{m}");
}

/// Rows that look like nothing in `tiny_data`, for `billing`; at least one of them would be in
/// the held-back slice (sha1 ≡ 0 mod 10) if it were part of the training file.
fn article_like_rows() -> Vec<Example> {
    let mut rows: Vec<Example> = (0..40)
        .map(|i| Example {
            text: format!("quuxbill statement zorblax {i}"),
            label: "billing".into(),
        })
        .collect();
    let first_held = rows
        .iter()
        .position(|e| train::is_held_back(&e.text))
        .unwrap();
    rows.truncate(first_held + 1);
    rows
}

#[test]
fn extra_rows_train_but_never_join_the_held_back_dev_slice() {
    // Five variants of each tiny row: enough for a held-back slice.
    let data: Vec<Example> = (0..5)
        .flat_map(|i| {
            tiny_data().into_iter().map(move |e| Example {
                text: format!("{} {i}", e.text),
                label: e.label,
            })
        })
        .collect();
    let held = data.iter().filter(|e| train::is_held_back(&e.text)).count();
    assert!(held > 0);
    let extra = article_like_rows();
    let opts = tiny_options(3);
    let with = tempfile::tempdir().unwrap();
    let report = train::train_with_extra(&data, &extra, None, &opts, with.path()).unwrap();
    assert_eq!(report.dev_examples, held);
    assert_eq!(report.train_examples, data.len() - held + extra.len());
    assert_eq!(report.extra_examples, extra.len());
    assert!(report.markdown().contains("from help articles"));
    let without = tempfile::tempdir().unwrap();
    let plain = train::train(&data, None, &opts, without.path()).unwrap();
    assert_eq!(plain.extra_examples, 0);
    // The extra rows' words are known to the model trained with them (they trained it), not
    // to the other.
    let text = "quuxbill zorblax";
    let known = Classifier::load(with.path()).unwrap().novelty(text);
    let unknown = Classifier::load(without.path()).unwrap().novelty(text);
    assert!(known < 0.5 && unknown > 0.99, "{known} {unknown}");
}

#[test]
fn article_rows_that_the_probe_confidently_files_elsewhere_are_dropped() {
    use kefu::route::train::articles::agreeing_rows;
    let probe = Classifier::load(&repo("models/router")).unwrap();
    let text = "发票怎么开";
    let p = probe.predict(text);
    let best = probe.labels()[p.best].clone();
    let other = probe.labels().iter().find(|l| **l != best).unwrap().clone();
    let rows = vec![
        Example {
            text: text.into(),
            label: other,
        },
        Example {
            text: text.into(),
            label: best.clone(),
        },
    ];
    // At its own confidence the probe contradicts the first row: dropped; the second agrees.
    let kept = agreeing_rows(rows.clone(), &probe, p.confidence);
    assert_eq!(kept, rows[1..]);
    // Asked for more confidence than it has, it contradicts nothing.
    let kept = agreeing_rows(rows.clone(), &probe, p.confidence + 1e-3);
    assert_eq!(kept, rows);
}

/// `kefu train` arguments over `tiny_data` (written to `dir`, and used as dev too) into
/// `dir/model`, two epochs, no default candidates, then `more`; and that model directory.
fn tiny_train_args(dir: &Path, more: &[&str]) -> (Vec<String>, PathBuf) {
    let data = dir.join("train.jsonl");
    let lines: String = tiny_data()
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(&data, lines).unwrap();
    let out = dir.join("model");
    let (data, model) = (data.to_str().unwrap(), out.to_str().unwrap());
    let args = [
        "train",
        "--data",
        data,
        "--dev",
        data,
        "--out",
        model,
        "--epochs",
        "2",
        "--no-candidates",
    ];
    let args = args.iter().chain(more).map(|a| a.to_string()).collect();
    (args, out)
}

/// [`kefu`] with owned arguments.
fn kefu_owned(args: &[String], stdin: &[u8]) -> (String, String, bool) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kefu(&args, stdin)
}

#[test]
fn train_learns_from_help_articles_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (mut args, out) = tiny_train_args(dir.path(), &["--articles", "kb"]);
    let (_, err, ok) = kefu_owned(&args, b"");
    assert!(ok, "{err}");
    // tiny_data's labels are billing, security and storage: the bundled kb's articles of
    // those categories give their title and tags, after the first model's vetting.
    let kept: usize = err
        .lines()
        .find_map(|l| {
            l.strip_prefix("--articles: ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{err}"));
    assert!(kept > 20, "{err}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains(&format!(
            "train examples: {} ({kept} of them from help articles",
            tiny_data().len() + kept
        )),
        "{report}"
    );
    // A folder with no article of those labels is an error, not a silent no-op.
    *args.last_mut().unwrap() = "kb/network".into();
    let (_, err, ok) = kefu_owned(&args, b"");
    assert!(
        !ok && err.contains("category among the training labels"),
        "{err}"
    );
}

#[test]
fn train_votes_with_help_articles_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (mut args, out) = tiny_train_args(dir.path(), &["--kb", "kb"]);
    let (_, err, ok) = kefu_owned(&args, b"");
    assert!(ok, "{err}");
    // The help-article member is the one candidate, kept or not by the dev NLL.
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("candidate member 2 (knn,"), "{report}");
    let (out_text, err, ok) = kefu(
        &[
            "classify",
            "--model",
            out.to_str().unwrap(),
            "--json",
            "refund my invoice",
        ],
        b"",
    );
    assert!(ok && out_text.contains("\"category\""), "{out_text} {err}");
    // Articles none of which has one of the labels: an error, not a silent no-op.
    *args.last_mut().unwrap() = "kb/network".into();
    let (_, err, ok) = kefu_owned(&args, b"");
    assert!(
        !ok && err.contains("--kb: none of the")
            && err.contains("category among the training labels"),
        "{err}"
    );
}

#[test]
fn train_with_product_aliases_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let aliases = dir.path().join("aliases.txt");
    std::fs::write(&aliases, "# ours: theirs\nOSS bucket: S3, Blob Storage\n").unwrap();
    let (args, out) = tiny_train_args(dir.path(), &["--aliases", aliases.to_str().unwrap()]);
    let (_, err, ok) = kefu_owned(&args, b"");
    assert!(ok, "{err}");
    assert!(err.contains("--aliases: 1 groups; 0 rows name"), "{err}");
    // The model keeps the file and expands every ticket by it: an S3 ticket is an OSS one.
    let kept = std::fs::read_to_string(out.join("aliases.txt")).unwrap();
    assert_eq!(kept, std::fs::read_to_string(&aliases).unwrap());
    let c = Classifier::load(&out).unwrap();
    assert_eq!(c.aliases().map(|a| a.len()), Some(1));
    let aliased = c.predict("S3 upload is slow");
    let plain = Classifier::load(&out).unwrap().with_aliases(None);
    assert_eq!(
        aliased.probs,
        plain.predict("OSS bucket\nS3 upload is slow").probs
    );
    assert_ne!(aliased.probs, plain.predict("S3 upload is slow").probs);
    // Text without an alias is classified as without the file.
    assert_eq!(
        c.predict("发票抬头怎么修改").probs,
        plain.predict("发票抬头怎么修改").probs
    );
    let (json, err, ok) = kefu(
        &[
            "classify",
            "--model",
            out.to_str().unwrap(),
            "--json",
            "my blob storage",
        ],
        b"",
    );
    assert!(
        ok && json.contains("\"category\":\"storage\""),
        "{json} {err}"
    );

    // Trained again into the same folder without --aliases: no stale file is left to apply.
    let (args, _) = tiny_train_args(dir.path(), &[]);
    let (_, err, ok) = kefu_owned(&args, b"");
    assert!(ok, "{err}");
    assert!(!out.join("aliases.txt").exists());
    assert!(Classifier::load(&out).unwrap().aliases().is_none());

    // A broken aliases file stops training before it starts, naming the line.
    std::fs::write(&aliases, "OSS: S3\nno colon\n").unwrap();
    let (args, _) = tiny_train_args(dir.path(), &["--aliases", aliases.to_str().unwrap()]);
    let (_, err, ok) = kefu_owned(&args, b"");
    assert!(!ok && err.contains("aliases.txt:2: expected"), "{err}");
    // So does a model directory whose aliases file is broken, at load.
    std::fs::copy(&aliases, out.join("aliases.txt")).unwrap();
    let Err(e) = Classifier::load(&out) else {
        panic!("a broken aliases.txt loaded")
    };
    assert!(e.to_string().contains("aliases.txt:2: expected"), "{e}");
}

// ---------------------------------------------------------------- default model

#[test]
fn default_model_routes_obvious_tickets() {
    let router = default_router();
    assert!(router.labels().len() == 9, "{:?}", router.labels());
    let route = |s: &str, b: &str| router.route(&ticket(s, b)).unwrap();
    // Tickets whose queue the training data (cloud-queues) makes plain.
    let d = route("发票", "我要开发票，发票抬头写错了");
    assert_eq!(d.category, "billing");
    assert_eq!(d.id.as_deref(), Some("t1"));
    let d = route("SSL证书", "SSL证书怎么部署到网站上");
    assert_eq!(d.category, "security");
    let d = route("", "How do I transfer a domain name?");
    assert_eq!(d.category, "domain");
    let d = route("CDN", "CDN缓存刷新不生效");
    assert_eq!(d.category, "cdn");
    let d = route("负载均衡", "负载均衡健康检查失败");
    assert_eq!(d.category, "network");
    assert_eq!(d.priority, "P2");
    // Every decision is complete and consistent.
    let d = route("服务器宕机", "ECS实例宕机，网站全部无法访问");
    assert_eq!(d.priority, "P0");
    assert_eq!(d.sla.first_response_minutes, 5);
    assert!(!d.explanation.is_empty());
    assert!(d.top.len() == 3 && d.top[0].label == d.category);
    assert!((d.top[0].p - d.confidence).abs() < 1e-6);
    assert!(d.top.windows(2).all(|w| w[0].p >= w[1].p));
    assert_eq!(
        d.queue,
        if d.needs_human {
            "triage"
        } else {
            d.category.as_str()
        }
    );
}

#[test]
fn default_model_sends_questions_about_products_without_a_queue_to_a_human() {
    // Sixty questions we wrote about products none of the nine queues covers (databases,
    // Kubernetes, big data, AI, messaging, media…). The confidence threshold alone let 32% of
    // them through; with the unfamiliar-words abstention, 18%.
    let data = train::read_examples(&repo("tests/data/no-queue-products.jsonl")).unwrap();
    assert_eq!(data.len(), 60);
    let c = Classifier::load(&repo("models/router")).unwrap();
    let human = data.iter().filter(|e| c.predict(&e.text).abstain).count();
    assert!(human >= 45, "only {human} of 60 go to a human");
    // Questions of the kinds its queues were trained for are not unfamiliar.
    let limit = c
        .config()
        .novelty_limit
        .expect("the default model has a novelty limit");
    for t in [
        "How do I transfer a domain name to another account?",
        "ECS实例无法启动，控制台一直显示启动中",
        "负载均衡健康检查失败",
        "How do I request a refund for a subscription?",
        "CDN缓存刷新不生效",
    ] {
        let p = c.predict(t);
        assert!(p.novelty <= limit, "{t}: novelty {} > {limit}", p.novelty);
    }
}

#[test]
fn default_model_knows_other_clouds_product_names() {
    // Sixty questions that a teammate wrote for other clouds' products (AWS, Azure, Google
    // Cloud, Tencent Cloud, Huawei Cloud) without seeing models/aliases.txt: 45 for our queues,
    // 15 about products no queue covers. Without the aliases the router answered 10 of the 45
    // right (in-scope accuracy 0.222) and sent 12 of the 15 to a human; with them, 23 and 12.
    let data = train::read_examples(&repo("tests/data/other-clouds-blind.jsonl")).unwrap();
    assert_eq!(data.len(), 60);
    let c = Classifier::load(&repo("models/router")).unwrap();
    assert!(
        c.aliases().is_some(),
        "the default router keeps its aliases"
    );
    let (mut in_scope, mut right, mut oos, mut human) = (0, 0, 0, 0);
    for e in &data {
        let p = c.predict(&e.text);
        if e.label == "oos" {
            oos += 1;
            human += usize::from(p.abstain);
        } else {
            in_scope += 1;
            right += usize::from(!p.abstain && c.labels()[p.best] == e.label);
        }
    }
    assert_eq!((in_scope, oos), (45, 15));
    assert!(right >= 20, "only {right} of 45 routed right");
    assert!(human >= 11, "only {human} of 15 sent to a human");
    // The alias brings our product's name: a CloudFront ticket is a CDN ticket.
    let router = default_router();
    let d = router
        .route(&ticket(
            "",
            "CloudFront keeps serving the old files after I updated them",
        ))
        .unwrap();
    assert_eq!(d.category, "cdn", "{d:?}");
}

#[test]
fn explanation_names_the_deciding_words() {
    let router = default_router();
    // With its subject line, as the pipeline sends it (the body alone is a close call between
    // billing and compute for the TF-IDF ensemble: 我要 occurs only in compute tickets).
    let d = router
        .route(&ticket("发票", "我要开发票，发票抬头写错了"))
        .unwrap();
    assert_eq!(d.category, "billing");
    assert!(!d.explanation.is_empty());
    assert!(
        d.explanation
            .iter()
            .take(2)
            .any(|t| t.token.contains("发票")),
        "{:?}",
        d.explanation
    );
    assert!(d.explanation[0].weight > 0.0);
}

#[test]
fn bad_tickets_get_clear_answers() {
    let router = default_router();
    match router.route(&ticket("  ", "\n")) {
        Err(RouteError::InvalidTicket(_)) => {}
        other => panic!("empty ticket: {:?}", other.map(|d| d.category)),
    }
    // 1 MB of text: answered (analysis looks at a prefix).
    let big = "我的云服务器无法连接，".repeat(100_000 / 10) + &"x".repeat(700_000);
    assert!(big.len() > 1_000_000);
    let d = router.route(&ticket("big", &big)).unwrap();
    assert!(d.confidence > 0.0 && d.confidence <= 1.0);
}

#[test]
fn corrupt_model_directories_are_model_errors() {
    let missing = Path::new("/nonexistent/kefu-model");
    assert!(matches!(
        TicketRouter::load(missing, Some(&repo("models/routing.toml"))),
        Err(RouteError::Model(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "labels.json",
        "config.json",
    ] {
        std::fs::copy(repo("models/router").join(f), dir.path().join(f)).unwrap();
    }
    assert!(Classifier::load(dir.path()).is_ok());
    // Truncated weights.
    let w = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), &w[..w.len() / 2]).unwrap();
    let err = Classifier::load(dir.path()).map(|_| ()).unwrap_err();
    assert!(
        matches!(&err, RouteError::Model(m) if m.contains("model.safetensors")),
        "{err}"
    );
    std::fs::write(dir.path().join("model.safetensors"), &w).unwrap();
    // Garbage config, then labels that disagree with the weights.
    let config = std::fs::read(dir.path().join("config.json")).unwrap();
    std::fs::write(dir.path().join("config.json"), b"{not json").unwrap();
    let err = Classifier::load(dir.path()).map(|_| ()).unwrap_err();
    assert!(
        matches!(&err, RouteError::Model(m) if m.contains("config.json")),
        "{err}"
    );
    // A format this version does not know (a newer kefu's) is refused, not misread.
    let text = String::from_utf8(config.clone()).unwrap();
    let format = serde_json::from_str::<serde_json::Value>(&text).unwrap()["format"]
        .as_str()
        .unwrap()
        .to_string();
    // Version 1 (f32 or f16 tables; the reader goes by the tensors present) still loads.
    let v1 = text.replacen(&format, "kefu-router-1", 1);
    std::fs::write(dir.path().join("config.json"), v1).unwrap();
    assert!(Classifier::load(dir.path()).is_ok());
    let future = text.replacen(&format, "kefu-router-99", 1);
    std::fs::write(dir.path().join("config.json"), future).unwrap();
    let err = Classifier::load(dir.path()).map(|_| ()).unwrap_err();
    assert!(
        matches!(&err, RouteError::Model(m) if m.contains("kefu-router-99")),
        "{err}"
    );
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    // A vocabulary with a normalizer: features look words up one by one, past it.
    let tokenizer = std::fs::read_to_string(dir.path().join("tokenizer.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&tokenizer).unwrap();
    json["normalizer"] = serde_json::json!({"type": "Lowercase"});
    std::fs::write(dir.path().join("tokenizer.json"), json.to_string()).unwrap();
    let err = Classifier::load(dir.path()).map(|_| ()).unwrap_err();
    assert!(
        matches!(&err, RouteError::Model(m) if m.contains("tokenizer.json") && m.contains("normalizer")),
        "{err}"
    );
    std::fs::write(dir.path().join("tokenizer.json"), tokenizer).unwrap();
    assert!(Classifier::load(dir.path()).is_ok());
    std::fs::write(dir.path().join("labels.json"), b"[\"a\",\"b\"]").unwrap();
    let err = Classifier::load(dir.path()).map(|_| ()).unwrap_err();
    assert!(
        matches!(&err, RouteError::Model(m) if m.contains("labels.json")),
        "{err}"
    );
}

// ---------------------------------------------------------------- CLI streams

fn kefu(args: &[&str], stdin: &[u8]) -> (String, String, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kefu"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[test]
fn route_stream_reports_bad_lines_and_goes_on() {
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"id\":\"a\",\"subject\":\"\xe5\x8f\x91\xe7\xa5\xa8\",\"body\":\"how to get an invoice\"}\n");
    input.extend_from_slice(b"not json\n");
    input.extend_from_slice(b"{\"id\":\"c\",\"body\":\"\xff\xfe bad utf8\"}\n");
    input.extend_from_slice(b"\n{\"id\":\"d\",\"subject\":\"\",\"body\":\"\"}\n");
    input.extend_from_slice(
        b"{\"id\":\"e\",\"subject\":\"SSL\",\"body\":\"certificate expired, site down\"}\n",
    );
    let (out, err, ok) = kefu(&["route"], &input);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(lines[0]["id"], "a");
    assert_eq!(lines[0]["category"], "billing");
    for key in [
        "confidence",
        "needs_human",
        "queue",
        "priority",
        "sla",
        "top",
        "explanation",
    ] {
        assert!(lines[0].get(key).is_some(), "{key} missing");
    }
    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1]["error"].as_str().unwrap().contains("JSON"));
    assert_eq!(lines[2]["line"], 3);
    assert!(lines[2]["error"].as_str().unwrap().contains("UTF-8"));
    assert_eq!(lines[3]["line"], 5);
    assert!(lines[3]["error"].as_str().unwrap().contains("empty"));
    assert_eq!(lines[4]["id"], "e");
    assert_eq!(lines[4]["priority"], "P0");
    assert_eq!(lines[4]["sla"]["resolution_hours"], 2);
}

#[test]
fn classify_takes_an_argument_or_jsonl() {
    let (out, err, ok) = kefu(&["classify", "--json", "怎么开发票"], b"");
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["category"], "billing");
    let (out, _, ok) = kefu(
        &["classify", "--json"],
        b"{\"id\":1,\"subject\":\"Domain\",\"body\":\"How do I transfer a domain name?\"}\n",
    );
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["id"], "1");
    assert_eq!(v["category"], "domain");
    let (_, err, ok) = kefu(&["classify", "--model", "/nonexistent", "x"], b"");
    assert!(!ok && err.contains("model"), "{err}");
}
