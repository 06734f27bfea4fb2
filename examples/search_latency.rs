//! In-process search latency over a judged query set: p50/p95/p99 of the product path (top 10
//! with snippets, `SearchEngine::search`) and of the ranking path (`rank_ids`, 101 hits).
//!
//! ```sh
//! cargo run --release --example search_latency -- \
//!     ../shared/data/search/aliyun-faq/docs ../shared/data/search/aliyun-faq/queries.dev.jsonl \
//!     [--index DIR] [--rounds N] [--dump FILE] [--reference] [--one-phase] [--pool N] [--slowest N]
//!     [--only search|rank]
//! ```
//!
//! `--index DIR` keeps the index between runs (built there when absent); `--dump FILE` writes
//! every query's ranked ids and the hits' sections and snippets, to check that a speed change
//! left the results as they were; `--reference` finds best
//! sections by plain tantivy queries (what the default must agree with); `--one-phase` scores every
//! match with the whole query instead of ranking in two phases; `--pool N` sets how many articles the
//! first phase keeps; `--only search` (or `rank`) times one path alone (profiling); `--slowest N` lists the N queries of the most CPU time on each path. With
//! several rounds, it also gives the percentiles of each query's least CPU time over the rounds
//! (steadier on a shared machine).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kefu::search::{SearchEngine, SearchRequest};

/// The allocator of the `kefu` binary (`src/main.rs`), which `kefu serve` searches with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn percentiles(mut ms: Vec<f64>) -> String {
    if ms.is_empty() {
        return "(not run)".to_string();
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:.3} p95 {:.3} p99 {:.3} max {:.3} (n={})",
        at(0.5),
        at(0.95),
        at(0.99),
        at(1.0),
        ms.len()
    )
}

/// CPU time of this thread, in ms: unlike wall time, it leaves out the time other processes of a
/// shared machine held the core.
fn thread_cpu_ms() -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut positional, mut index, mut rounds, mut dump) = (Vec::new(), None, 3usize, None);
    let (mut probe, mut two_phase, mut pool, mut slowest) = (true, true, None, 0usize);
    let (mut product_path, mut ranking_path) = (true, true);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--index" => index = args.next().map(PathBuf::from),
            "--rounds" => rounds = args.next().context("--rounds N")?.parse()?,
            "--dump" => dump = args.next().map(PathBuf::from),
            "--reference" => probe = false,
            "--one-phase" => two_phase = false,
            "--pool" => pool = Some(args.next().context("--pool N")?.parse()?),
            "--slowest" => slowest = args.next().context("--slowest N")?.parse()?,
            "--only" => match args.next().as_deref() {
                Some("search") => ranking_path = false,
                Some("rank") => product_path = false,
                _ => bail!("--only search|rank"),
            },
            _ => positional.push(arg),
        }
    }
    let [docs, queries] = positional.as_slice() else {
        bail!("usage: search_latency DOCS QUERIES.jsonl [--index DIR] [--rounds N] [--dump FILE]");
    };
    let temp;
    let dir = match index {
        Some(dir) => dir,
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let mut engine = SearchEngine::open_or_create(&dir)?;
    engine.set_probe_sections(probe);
    engine.set_two_phase(two_phase);
    if let Some(pool) = pool {
        engine.set_rerank_pool(pool);
    }
    if engine.num_articles() == 0 {
        let started = Instant::now();
        let ingested = kefu::ingest::read_paths(&[PathBuf::from(docs)]);
        engine.upsert(&ingested.articles)?;
        engine.wait_merges()?;
        eprintln!(
            "indexed {} articles in {:.1} s",
            ingested.articles.len(),
            started.elapsed().as_secs_f64()
        );
    }
    let queries: Vec<String> = std::fs::read_to_string(queries)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            Ok(v["query"].as_str().unwrap_or_default().to_string())
        })
        .collect::<Result<_>>()?;
    let mut out = match &dump {
        Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => None,
    };
    // Warm-up (page cache, lazily loaded dictionaries), then timed rounds.
    for q in queries.iter().take(50) {
        let _ = engine.rank_ids(q, 101)?;
    }
    let (mut product, mut ranking) = (Vec::new(), Vec::new());
    let (mut product_cpu, mut ranking_cpu) = (Vec::new(), Vec::new());
    // (CPU ms, query index) of every run, per path.
    let (mut product_by_query, mut ranking_by_query) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for (qi, q) in queries.iter().enumerate() {
            let request = SearchRequest {
                query: q.clone(),
                limit: 10,
                ..Default::default()
            };
            let response = if product_path {
                let cpu = thread_cpu_ms();
                let t = Instant::now();
                let response = engine.search(&request)?;
                product.push(t.elapsed().as_secs_f64() * 1000.0);
                if let (Some(before), Some(after)) = (cpu, thread_cpu_ms()) {
                    product_cpu.push(after - before);
                    product_by_query.push((after - before, qi));
                }
                Some(response)
            } else {
                None
            };
            let ids = if ranking_path {
                let cpu = thread_cpu_ms();
                let t = Instant::now();
                let ids = engine.rank_ids(q, 101)?;
                ranking.push(t.elapsed().as_secs_f64() * 1000.0);
                if let (Some(before), Some(after)) = (cpu, thread_cpu_ms()) {
                    ranking_cpu.push(after - before);
                    ranking_by_query.push((after - before, qi));
                }
                ids
            } else {
                Vec::new()
            };
            if round == 0
                && let Some(out) = out.as_mut()
            {
                let ids: Vec<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
                let (total, hits) = response.map_or((0, Vec::new()), |r| (r.total, r.hits));
                writeln!(out, "Q\t{q}\ttotal={total}\t{}", ids.join("|"))?;
                for hit in &hits {
                    writeln!(
                        out,
                        "H\t{}\t{:?}\t{:?}\t{}",
                        hit.id, hit.anchor, hit.section, hit.snippet
                    )?;
                }
            }
        }
    }
    println!("search top 10 with snippets: {}", percentiles(product));
    println!("rank_ids 101:                {}", percentiles(ranking));
    if !product_cpu.is_empty() || !ranking_cpu.is_empty() {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "CPU time, search top 10:     {} mean {:.3}",
            percentiles(product_cpu.clone()),
            mean(&product_cpu)
        );
        println!(
            "CPU time, rank_ids 101:      {} mean {:.3}",
            percentiles(ranking_cpu.clone()),
            mean(&ranking_cpu)
        );
    }
    // Each query's least CPU time over the rounds: on a shared machine, the runs that other
    // processes slowed (cache and memory contention still count in CPU time) drop out.
    if rounds > 1 {
        for (name, runs) in [
            ("search top 10", &product_by_query),
            ("rank_ids 101", &ranking_by_query),
        ] {
            let mut least = vec![f64::INFINITY; queries.len()];
            for &(ms, qi) in runs {
                least[qi] = least[qi].min(ms);
            }
            println!(
                "least CPU time of {rounds} rounds, {name}: {}",
                percentiles(least.into_iter().filter(|ms| ms.is_finite()).collect())
            );
        }
    }
    for (name, mut runs) in [
        ("search top 10", product_by_query),
        ("rank_ids 101", ranking_by_query),
    ] {
        runs.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (ms, qi) in runs.into_iter().take(slowest) {
            let q = &queries[qi];
            println!(
                "slowest {name}: {ms:.3} ms, {} chars: {q}",
                q.chars().count()
            );
        }
    }
    Ok(())
}
