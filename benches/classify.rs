//! Routing speed: one ticket through the default router (analyzer → features → model →
//! calibration → rules → explanation), and a batch of tickets over both cores with rayon.
//! Input: the cloud-queues dev questions when `../shared/data` is present (real text), else the
//! built-in tickets below, or `KEFU_BENCH_TICKETS=FILE` (JSON lines with a `text`, e.g. a dev
//! split of the data the model was trained on). Run: `cargo bench --bench classify`
//! (`KEFU_BENCH_MODEL=DIR` for another model directory than `models/router`).

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kefu::route::{Ticket, TicketRouter};
use rayon::prelude::*;

/// The allocator of the `kefu` binary (`src/main.rs`), which the product runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FALLBACK: &[&str] = &[
    "如何申请增值税专用发票？",
    "ECS实例无法通过SSH登录，提示连接超时",
    "SSL证书即将过期，如何续费并重新部署？",
    "OSS上传大文件很慢怎么办",
    "Why is my CDN cache hit ratio so low?",
    "How do I configure a DNS CNAME record for my domain?",
    "The load balancer returns 502 errors for all backend servers",
    "怎么设置云监控报警规则，CPU超过80%时通知我",
];

fn tickets() -> Vec<Ticket> {
    let shared = std::env::var_os("KEFU_BENCH_TICKETS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/data/classify/cloud-queues/dev.jsonl")
        });
    let texts: Vec<String> = match std::fs::read_to_string(&shared) {
        Ok(s) => s
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["text"].as_str().map(str::to_string))
            .collect(),
        Err(_) => FALLBACK.iter().map(|s| s.to_string()).collect(),
    };
    texts
        .into_iter()
        .enumerate()
        .map(|(i, body)| Ticket {
            id: Some(i.to_string()),
            subject: String::new(),
            body,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // `KEFU_BENCH_MODEL=DIR` benches another model directory (e.g. one trained on clinc150).
    let model = std::env::var_os("KEFU_BENCH_MODEL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("models/router"));
    let router =
        TicketRouter::load(&model, Some(&root.join("models/routing.toml"))).expect("default model");
    let tickets = tickets();
    let bytes: usize = tickets.iter().map(|t| t.body.len()).sum();

    let mut g = c.benchmark_group("route");
    let mut i = 0;
    g.bench_function("one_ticket", |b| {
        b.iter(|| {
            i = (i + 1) % tickets.len();
            let d = router.route(black_box(&tickets[i])).unwrap();
            assert!(!d.category.is_empty());
            d
        })
    });
    g.throughput(Throughput::Elements(tickets.len() as u64));
    g.bench_function("batch_rayon", |b| {
        b.iter(|| {
            let n = tickets
                .par_iter()
                .map(|t| router.route(t).unwrap())
                .filter(|d| !d.explanation.is_empty())
                .count();
            assert!(n > tickets.len() / 2);
            n
        })
    });
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("classify_only", |b| {
        let c = router.classifier();
        b.iter(|| {
            let n: usize = tickets.iter().map(|t| c.predict(&t.body).best).sum();
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
