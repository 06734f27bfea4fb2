//! Indexing the whole `../shared/data/kb/aliyun` (14k articles; the bundled `kb/` when absent)
//! and in-process query latency over it: top 10 with snippets (the product path), top 10
//! without, and the evaluation's ranking path (`rank_ids`, 101 ids). Percentiles over the
//! aliyun-faq dev queries: `cargo run --release --example search_latency`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kefu::search::{SearchEngine, SearchRequest};

/// The allocator of the `kefu` binary (`src/main.rs`), which the product runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn docs() -> PathBuf {
    let aliyun = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/kb/aliyun");
    if aliyun.is_dir() {
        aliyun
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("kb")
    }
}

const QUERIES: &[&str] = &[
    "如何申请退款",
    "ECS实例无法启动",
    "ssh 连接失败",
    "帳單查詢",
    "安全组规则怎么配置",
    "SSL证书 部署 nginx",
    "how to reset the instance password",
    "OSS bucket 403 AccessDenied",
    "DDoS blackhole",
    "load balancer health check failed",
];

fn bench(c: &mut Criterion) {
    let ingested = kefu::ingest::read_paths(&[docs()]);
    let bytes: usize = ingested
        .articles
        .iter()
        .map(|a| a.body.len() + a.title.len())
        .sum();
    let mut group = c.benchmark_group("index");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("upsert_all", |b| {
        b.iter(|| {
            let dir = tempfile::tempdir().unwrap();
            let engine = SearchEngine::open_or_create(dir.path()).unwrap();
            engine.upsert(&ingested.articles).unwrap();
            engine.wait_merges().unwrap();
            assert_eq!(engine.num_articles(), ingested.articles.len() as u64);
        })
    });
    group.finish();

    let dir = tempfile::tempdir().unwrap();
    let engine = SearchEngine::open_or_create(dir.path()).unwrap();
    engine.upsert(&ingested.articles).unwrap();
    engine.wait_merges().unwrap();
    let mut group = c.benchmark_group("query");
    for (name, snippets) in [("top10_with_snippets", true), ("top10_ranking_only", false)] {
        group.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                let request = SearchRequest {
                    query: QUERIES[i % QUERIES.len()].into(),
                    limit: 10,
                    ..Default::default()
                };
                i += 1;
                let options = kefu::search::SearchOptions {
                    snippets,
                    ..Default::default()
                };
                let response = engine.search_with(&request, options).unwrap();
                assert!(!response.hits.is_empty());
            })
        });
    }
    // The ranking path of the evaluation: ids of the top 101 articles.
    group.bench_function("rank_ids_101", |b| {
        let mut i = 0;
        b.iter(|| {
            let ids = engine.rank_ids(QUERIES[i % QUERIES.len()], 101).unwrap();
            i += 1;
            assert!(!ids.is_empty());
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
