//! Integration tests of search: ingestion of the bundled `kb/`, golden rankings of real queries,
//! query syntax, snippets, upserts and deletes, bad input, and the analyzer fingerprint.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use kefu::article::Article;
use kefu::ingest::read_paths;
use kefu::search::snippet::snippet;
use kefu::search::{SearchEngine, SearchError, SearchRequest, SearchResponse};
use proptest::prelude::*;

fn kb() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kb")
}

/// One index of `kb/` shared by the read-only tests (indexing in a debug build takes seconds).
static KB: LazyLock<(tempfile::TempDir, SearchEngine)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let engine = SearchEngine::open_or_create(dir.path()).unwrap();
    let ingested = read_paths(&[kb()]);
    assert!(ingested.problems.is_empty(), "{:?}", ingested.problems);
    engine.upsert(&ingested.articles).unwrap();
    (dir, engine)
});

fn engine() -> &'static SearchEngine {
    &KB.1
}

fn search(query: &str) -> SearchResponse {
    search_with(query, None, None)
}

fn search_with(query: &str, lang: Option<&str>, product: Option<&str>) -> SearchResponse {
    engine()
        .search(&SearchRequest {
            query: query.into(),
            lang: lang.map(Into::into),
            product: product.map(Into::into),
            limit: 10,
            ..Default::default()
        })
        .unwrap()
}

fn ids(response: &SearchResponse) -> Vec<&str> {
    response.hits.iter().map(|h| h.id.as_str()).collect()
}

fn assert_in_top(query: &str, id: &str, k: usize) {
    let response = search(query);
    let top: Vec<&str> = ids(&response).into_iter().take(k).collect();
    assert!(top.contains(&id), "{query:?}: {id} not in top {k}: {top:?}");
}

#[test]
fn whole_kb_is_indexed() {
    let ingested = read_paths(&[kb()]);
    assert_eq!(engine().num_articles(), ingested.articles.len() as u64);
    assert!(ingested.articles.len() >= 80);
    // The folder's README describes the KB and is not an article.
    assert!(ingested.articles.iter().all(|a| a.id != "README.md"));
    assert!(
        ingested
            .articles
            .iter()
            .any(|a| a.id == "faq/refund-arrival")
    );
    let html = ingested
        .articles
        .iter()
        .find(|a| a.id == "html/vpc-and-elastic-ip.en.html")
        .unwrap();
    assert_eq!(html.product.as_deref(), Some("network"));
    assert!(
        html.sections()
            .iter()
            .any(|s| s.anchor.as_deref() == Some("attach-eip"))
    );
    let stats = engine().stats();
    assert_eq!(stats.articles, engine().num_articles());
    assert!(stats.sections > stats.articles);
    assert!(stats.size_bytes > 0);
    assert!(stats.last_commit.unwrap().ends_with('Z'));
}

#[test]
fn golden_rankings() {
    assert_in_top("如何申请退款", "billing/refund-policy.zh.md", 3);
    assert_in_top("ssh 连接失败", "compute/ssh-connection-failed.zh.md", 3);
    assert_in_top("refund", "billing/refund-policy.en.md", 3);
    assert_in_top(
        "ERR_CONNECTION_RESET",
        "network/err-connection-reset.zh.md",
        1,
    );
    assert_in_top("invoice", "billing/invoice.en.md", 3);
    assert_in_top("实例无法启动", "compute/instance-fails-to-start.zh.md", 3);
    assert_in_top("有人冒充客服打电话", "support/impersonation-scam.zh.md", 3);
    // Colloquial words from the user dictionary and synonyms (`专票`: a VAT special invoice).
    assert_in_top("开专票", "billing/invoice.zh.md", 1);
}

/// `tests/data/kb-queries.jsonl`: 72 questions as customers and agents type them (colloquial
/// Chinese, English with contractions, error codes), each judged against the bundled KB by
/// hand. At this commit MRR@10 0.936 (zh 0.926, en 0.954) and every answer in the top 10
/// (`kefu eval search --docs kb --queries tests/data/kb-queries.jsonl`); the floors leave room
/// for ranking changes that the dev sets favour.
#[test]
fn bundled_kb_answers_its_question_set() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kb-queries.jsonl");
    let queries = kefu::eval::search::read_queries(&path).unwrap();
    assert_eq!(queries.len(), 72);
    let report = kefu::eval::search::run_queries(engine(), &queries, false).unwrap();
    assert!(report.overall.mrr10 >= 0.90, "{:?}", report.overall);
    assert!(report.overall.recall10 >= 0.97, "{:?}", report.overall);
    for lang in ["zh", "en"] {
        assert!(
            report.by_lang[lang].mrr10 >= 0.88,
            "{lang}: {:?}",
            report.by_lang
        );
    }
}

#[test]
fn traditional_query_finds_simplified_text() {
    let response = search("帳單");
    assert!(response.total >= 2);
    assert!(
        ids(&response).contains(&"billing/billing-dispute.zh.md"),
        "{:?}",
        ids(&response)
    );
    let dispute = response
        .hits
        .iter()
        .find(|h| h.id == "billing/billing-dispute.zh.md")
        .unwrap();
    assert!(
        dispute.snippet.contains("<em>账单</em>"),
        "{}",
        dispute.snippet
    );
}

#[test]
fn synonyms_widen_the_query() {
    assert_in_top("money back", "billing/refund-policy.en.md", 3);
    assert_in_top("怎么退钱", "billing/refund-policy.zh.md", 3);
}

#[test]
fn filters_restrict_results() {
    let en = search_with("退款 refund", Some("en"), None);
    assert!(!en.hits.is_empty());
    assert!(en.hits.iter().all(|h| h.lang == "en"));
    let billing = search_with("password", None, Some("billing"));
    assert!(
        billing
            .hits
            .iter()
            .all(|h| h.product.as_deref() == Some("billing"))
    );
    let account = search_with("password", None, Some("account"));
    assert!(!account.hits.is_empty());
}

#[test]
fn category_filter_keeps_to_one_support_category() {
    let request = |category: Option<&str>| SearchRequest {
        query: "冒充客服 诈骗 scam".into(),
        category: category.map(Into::into),
        limit: 20,
        ..Default::default()
    };
    let all = engine().search(&request(None)).unwrap();
    let security = engine().search(&request(Some("security"))).unwrap();
    // The impersonation articles live under support/ but belong to the security category.
    assert!(ids(&security).contains(&"support/impersonation-scam.zh.md"));
    assert!(
        security
            .hits
            .iter()
            .all(|h| h.category.as_deref() == Some("security")),
        "{:?}",
        ids(&security)
    );
    assert!(
        security.total < all.total,
        "{} vs {}",
        security.total,
        all.total
    );
    let billing = engine().search(&request(Some("billing"))).unwrap();
    assert!(!ids(&billing).contains(&"support/impersonation-scam.zh.md"));
    let none = engine().search(&request(Some("no-such-category"))).unwrap();
    assert_eq!(none.total, 0);
}

#[test]
fn exclusions_remove_articles() {
    let with = search("退款");
    let without = search("退款 -发票");
    assert!(without.total < with.total);
    for hit in &without.hits {
        let article = engine().get(&hit.id).unwrap().unwrap();
        assert!(
            !format!("{} {}", article.title, article.body).contains("发票"),
            "{} mentions 发票",
            hit.id
        );
    }
}

#[test]
fn quoted_phrases_must_match_as_phrases() {
    let response = search("\"security group\"");
    assert!(!response.hits.is_empty());
    for hit in &response.hits {
        let article = engine().get(&hit.id).unwrap().unwrap();
        let text = format!("{} {}", article.title, article.body).to_lowercase();
        assert!(text.contains("security group"), "{}", hit.id);
    }
    assert!(!response.relaxed);
}

#[test]
fn quoted_phrases_no_article_holds_are_searched_as_words() {
    // Both words occur in the KB, but never as this phrase (a pasted message worded a little
    // differently from the article's): the results hold the words, and say so.
    let response = search("\"group security\"");
    assert!(response.relaxed);
    assert!(response.total > 0);
    for hit in &response.hits {
        let article = engine().get(&hit.id).unwrap().unwrap();
        let text = format!("{} {}", article.title, article.body).to_lowercase();
        assert!(!text.contains("group security"), "{}", hit.id);
        assert!(
            text.contains("group") || text.contains("security"),
            "{}",
            hit.id
        );
    }
    assert_eq!(
        engine().rank_ids("\"group security\"", 10).unwrap().len(),
        response.total.min(10),
        "evaluation ranks as search does"
    );
    // Exclusions still hold when the phrase is relaxed.
    let without = search("\"group security\" -firewall");
    assert!(without.relaxed);
    for hit in &without.hits {
        let article = engine().get(&hit.id).unwrap().unwrap();
        let text = format!("{} {}", article.title, article.body).to_lowercase();
        assert!(!text.contains("firewall"), "{}", hit.id);
    }
    assert!(without.total < response.total);
    // A query of nothing but a phrase that matches no word stays empty.
    let none = search("\"zzqx wvvq\"");
    assert_eq!(none.total, 0);
}

#[test]
fn snippets_are_escaped_and_highlighted() {
    let response = search("XSS script alert");
    let hit = response
        .hits
        .iter()
        .find(|h| h.id == "security/waf-xss-blocked.en.md")
        .expect("the WAF article is found");
    assert!(!hit.snippet.contains("<script"), "{}", hit.snippet);
    assert!(hit.snippet.contains("<em>"), "{}", hit.snippet);
    let all: String = response.hits.iter().map(|h| h.snippet.as_str()).collect();
    assert!(all.contains("&lt;"), "{all}");
}

#[test]
fn best_section_gives_anchor_and_heading() {
    let response = search("退款多久到账 到账时间");
    let hit = response
        .hits
        .iter()
        .find(|h| h.id == "billing/refund-policy.zh.md")
        .unwrap();
    assert!(hit.anchor.is_some() && hit.section.is_some(), "{hit:?}");
}

#[test]
fn paging_and_totals() {
    let first = engine()
        .search(&SearchRequest {
            query: "实例".into(),
            limit: 4,
            ..Default::default()
        })
        .unwrap();
    let second = engine()
        .search(&SearchRequest {
            query: "实例".into(),
            limit: 2,
            offset: 2,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&second), ids(&first)[2..4].to_vec());
    assert!(first.total >= 4);
    let unique: HashSet<&str> = ids(&first).into_iter().collect();
    assert_eq!(unique.len(), first.hits.len(), "one hit per article");
}

#[test]
fn invalid_requests_are_refused() {
    let refuse = |request: SearchRequest| {
        matches!(
            engine().search(&request),
            Err(SearchError::InvalidRequest(_))
        )
    };
    assert!(refuse(SearchRequest {
        query: "  ".into(),
        ..Default::default()
    }));
    assert!(refuse(SearchRequest {
        query: "x".repeat(1001),
        ..Default::default()
    }));
    assert!(refuse(SearchRequest {
        query: "ssh".into(),
        limit: 1000,
        ..Default::default()
    }));
    assert!(refuse(SearchRequest {
        query: "ssh".into(),
        lang: Some("fr".into()),
        ..Default::default()
    }));
    // Only stop words: a valid query that matches nothing.
    let response = engine()
        .search(&SearchRequest {
            query: "的 the".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(response.total, 0);
}

#[test]
fn suggestions_complete_prefixes() {
    let titles = |prefix: &str| -> Vec<String> {
        engine()
            .suggest(prefix, 5)
            .unwrap()
            .into_iter()
            .map(|s| s.text)
            .collect()
    };
    assert!(
        titles("如何申").iter().any(|t| t.contains("退款")),
        "{:?}",
        titles("如何申")
    );
    // Traditional input completes simplified titles and vice versa, after a word start.
    assert!(
        titles("帳單").iter().any(|t| t.contains("帳單")),
        "{:?}",
        titles("帳單")
    );
    assert!(
        titles("ｒｅｆｕｎｄ")
            .iter()
            .any(|t| t.starts_with("Refund")),
        "{:?}",
        titles("ｒｅｆｕｎｄ")
    );
    assert!(
        titles("money").iter().any(|t| t.contains("Money Back")),
        "{:?}",
        titles("money")
    );
    assert!(titles("zzzz").is_empty());
    let s = &engine().suggest("如何申", 1).unwrap()[0];
    assert_eq!(s.kind, "title");
    assert!(s.id.is_some());
}

#[test]
fn engine_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SearchEngine>();
}

fn article(id: &str, title: &str, body: &str) -> Article {
    Article::new(id, title, body)
}

#[test]
fn upsert_replaces_delete_removes_reindex_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SearchEngine::open_or_create(dir.path()).unwrap();
    let a = article(
        "a.md",
        "Alpha guide",
        "## Setup {#setup}\nconfigure the zebra gateway",
    );
    let b = article("b.md", "Beta guide", "nothing special here");
    engine.upsert(&[a.clone(), b.clone()]).unwrap();
    engine.upsert(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(engine.num_articles(), 2);
    assert_eq!(engine.get("a.md").unwrap().unwrap(), a);
    let find = |q: &str| {
        engine
            .search(&SearchRequest {
                query: q.into(),
                limit: 10,
                ..Default::default()
            })
            .unwrap()
    };
    assert_eq!(find("zebra").hits[0].anchor.as_deref(), Some("setup"));
    let a2 = article("a.md", "Alpha guide", "now about giraffes");
    engine.upsert(std::slice::from_ref(&a2)).unwrap();
    assert_eq!(find("zebra").total, 0);
    assert_eq!(find("giraffes").total, 1);
    assert_eq!(engine.get("a.md").unwrap().unwrap(), a2);
    assert_eq!(
        engine
            .delete(&["a.md".into(), "missing.md".into()])
            .unwrap(),
        1
    );
    assert_eq!(engine.get("a.md").unwrap(), None);
    assert_eq!(find("giraffes").total, 0);
    assert_eq!(engine.num_articles(), 1);
    // Invalid articles are refused as a whole batch; nothing is lost.
    let bad = article("", "x", "y");
    assert!(matches!(
        engine.upsert(&[article("c.md", "Gamma", "text"), bad]),
        Err(SearchError::InvalidRequest(_))
    ));
    assert_eq!(engine.num_articles(), 1);
    drop(engine);
    // Reopened, the same content is there.
    let engine = SearchEngine::open_or_create(dir.path()).unwrap();
    assert_eq!(engine.num_articles(), 1);
    assert_eq!(engine.get("b.md").unwrap().unwrap(), b);
}

#[test]
fn index_of_another_analyzer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SearchEngine::open_or_create(dir.path()).unwrap());
    std::fs::write(
        dir.path().join(kefu::search::index::FINGERPRINT_FILE),
        "kefu-analyzer-0:0000|kefu-schema-0",
    )
    .unwrap();
    match SearchEngine::open_or_create(dir.path()) {
        Err(err @ SearchError::AnalyzerMismatch(_)) => {
            let message = err.to_string();
            assert!(message.contains("re-index"), "{message}");
            assert!(message.contains("kefu index"), "{message}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("an index of another analyzer was opened"),
    }
}

#[test]
fn bad_input_is_reported_and_skipped() {
    let docs = tempfile::tempdir().unwrap();
    let root = docs.path();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(
        root.join("good.md"),
        "# Good article\nrefund in three days\n",
    )
    .unwrap();
    std::fs::write(
        root.join("sub/好.md"),
        "---\ntitle: 好文章\nlang: zh\n---\n退款三天到账\n",
    )
    .unwrap();
    std::fs::write(root.join("README.md"), "# Not an article\n").unwrap();
    std::fs::write(
        root.join("bad-utf8.md"),
        b"# Title\nok line\n\xff\xfe broken\n",
    )
    .unwrap();
    std::fs::write(
        root.join("bad-front.md"),
        "---\ntitle: [unclosed\n---\nbody\n",
    )
    .unwrap();
    std::fs::write(root.join("empty.md"), "---\ntitle: Empty\n---\n\n").unwrap();
    std::fs::write(root.join("new\nline.md"), "# Odd name\ntext\n").unwrap();
    std::fs::write(root.join("what?.md"), "# Question mark name\ntext\n").unwrap();
    std::fs::write(
        root.join("faq.jsonl"),
        "{\"id\":\"faq/1\",\"title\":\"Refund FAQ\",\"body\":\"money back\"}\n{oops\n\n{\"id\":\"faq/2\"}\n",
    )
    .unwrap();
    let ingested = read_paths(&[root.to_path_buf()]);
    let mut got: Vec<&str> = ingested.articles.iter().map(|a| a.id.as_str()).collect();
    got.sort_unstable();
    assert_eq!(got, vec!["faq/1", "good.md", "sub/好.md", "what?.md"]);
    let problem = |needle: &str| {
        ingested
            .problems
            .iter()
            .find(|p| p.source.contains(needle))
            .unwrap_or_else(|| panic!("no problem for {needle}: {:?}", ingested.problems))
    };
    assert_eq!(problem("bad-utf8").line, Some(3));
    assert!(problem("bad-front").message.contains("front matter"));
    assert!(problem("empty.md").message.contains("empty"));
    assert!(problem("line.md").message.contains("control"));
    let jsonl: Vec<Option<usize>> = ingested
        .problems
        .iter()
        .filter(|p| p.source.ends_with("faq.jsonl"))
        .map(|p| p.line)
        .collect();
    assert_eq!(jsonl, vec![Some(2), Some(4)]);

    // Indexing a batch with bad input keeps what was indexed before.
    let dir = tempfile::tempdir().unwrap();
    let engine = SearchEngine::open_or_create(dir.path()).unwrap();
    engine
        .upsert(&[article("keep.md", "Kept", "earlier content")])
        .unwrap();
    engine.upsert(&ingested.articles).unwrap();
    assert_eq!(engine.num_articles(), 5);
    assert!(engine.get("keep.md").unwrap().is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn snippets_are_valid_and_escaped(text in "\\PC{0,200}", word in "[a-z退款<&]{1,3}", budget in 1usize..80) {
        let terms: HashSet<String> = [word.clone(), "退款".to_string()].into();
        let s = snippet(&text, &terms, budget);
        let visible = s.replace("<em>", "").replace("</em>", "");
        prop_assert!(!visible.contains('<') && !visible.contains('>'), "{}", s);
        prop_assert_eq!(s.matches("<em>").count(), s.matches("</em>").count());
        let unescaped = visible
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
            .replace('…', "");
        prop_assert!(unescaped.chars().count() <= budget, "{} > {}", unescaped.chars().count(), budget);
        prop_assert!(text.contains(unescaped.as_str()) || text.contains('…'), "{:?} not in {:?}", unescaped, text);
    }
}
