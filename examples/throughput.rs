use std::time::Instant;
fn main() {
    let mut texts = Vec::new();
    let mut total = 0;
    for entry in std::fs::read_dir(std::env::args().nth(1).unwrap()).unwrap() {
        let p = entry.unwrap().path();
        if let Ok(t) = std::fs::read_to_string(&p) { total += t.len(); texts.push(t); }
    }
    let a = kefu::analyzer::analyzer();
    let t0 = Instant::now();
    let mut n = 0;
    for t in &texts { n += a.analyze(t).len(); }
    let s = t0.elapsed().as_secs_f64();
    println!("{} files {:.1} MB {} tokens {:.2}s {:.1} MB/s", texts.len(), total as f64/1e6, n, s, total as f64/1e6/s);
    let t0 = Instant::now();
    for t in &texts { let _ = kefu::analyzer::Normalized::new(t); }
    println!("normalize only {:.2}s", t0.elapsed().as_secs_f64());
}
