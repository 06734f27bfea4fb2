//! Analyzer throughput (MB/s) on real Chinese and English help articles: the Alibaba Cloud docs
//! in `../shared/data/kb/aliyun` when present, else the bundled `kb/`.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kefu::analyzer::analyzer;

/// The allocator of the `kefu` binary (`src/main.rs`), which the product runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// About `budget` bytes of article text of one language.
fn corpus(lang: &str, budget: usize) -> String {
    let aliyun = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/kb/aliyun");
    let root = if aliyun.is_dir() {
        aliyun
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("kb")
    };
    let ingested = kefu::ingest::read_paths(&[root]);
    let mut text = String::new();
    for article in ingested.articles.iter().filter(|a| a.lang() == lang) {
        text.push_str(&article.body);
        text.push('\n');
        if text.len() >= budget {
            break;
        }
    }
    text
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("analyzer");
    for lang in ["zh", "en"] {
        let text = corpus(lang, 2 << 20);
        let expected = analyzer().analyze(&text).len();
        assert!(expected > 1000, "{lang}: too little text to measure");
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.sample_size(10);
        group.bench_function(lang, |b| {
            b.iter(|| {
                let tokens = analyzer().analyze(&text);
                assert_eq!(tokens.len(), expected);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
