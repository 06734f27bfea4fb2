//! The HTTP service, driven in-process through `server::router` with `tower::ServiceExt::oneshot`
//! over a small index of inline articles in a temp dir (not the whole kb/: tests stay fast).
//!
//! Every bad input of issue 4 gets a 4xx in the one error shape, the service keeps serving, and
//! nothing stored is lost; writes are visible to search when they return; keys are enforced;
//! feedback reaches analytics; the OpenAPI document lists every route; `/metrics` parses.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use kefu::analytics::Analytics;
use kefu::article::Article;
use kefu::route::TicketRouter;
use kefu::search::SearchEngine;
use kefu::server::auth::ApiKeys;
use kefu::server::{self, AppState, ServiceConfig};
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

const ADMIN_KEY: &str = "test-admin-key-0123456789";
const SEARCH_KEY: &str = "test-search-key-abcdef";

fn sample_articles() -> Vec<Article> {
    let mut refund = Article::new(
        "billing/refund.zh.md",
        "如何申请退款",
        "退款说明。\n\n## 申请条件 {#conditions}\n\n未使用的包年包月实例可以申请退款。\n\n## 到账时间 {#refund-time}\n\n退款在 3 个工作日内原路退回。\n",
    );
    refund.product = Some("billing".into());
    refund.category = Some("billing".into());
    refund.lang = Some("zh".into());
    let mut invoice = Article::new(
        "billing/invoice.zh.md",
        "开具发票",
        "## 申请发票\n\n在费用中心的账单页面申请增值税发票。\n",
    );
    invoice.product = Some("billing".into());
    let mut boot = Article::new(
        "compute/instance-fails-to-start.en.md",
        "ECS instance fails to start",
        "## Symptoms {#symptoms}\n\nThe instance stays in the Starting state.\n\n## Fix\n\nCheck the system disk and the security group.\n",
    );
    boot.product = Some("compute".into());
    let mut waf = Article::new(
        "security/waf-xss.en.md",
        "WAF blocks script injection",
        "## Example\n\nA request containing <script>alert(1)</script> is blocked by the WAF.\n",
    );
    waf.product = Some("security".into());
    vec![refund, invoice, boot, waf]
}

struct Service {
    app: Router,
    state: AppState,
    _dir: TempDir,
}

fn model_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models"))
}

fn service(keys: ApiKeys, config: ServiceConfig, with_model: bool) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    let engine = SearchEngine::open_or_create(&index).unwrap();
    engine.upsert(&sample_articles()).unwrap();
    // Where `kefu serve` keeps it: inside the index directory, beside tantivy's files.
    let analytics = Analytics::open(&kefu::analytics::default_path(&index)).unwrap();
    let mut state = AppState::new(Arc::new(engine), Arc::new(analytics))
        .with_keys(keys)
        .with_config(config);
    if with_model {
        let rules = model_dir().join("routing.toml");
        state = state.with_router(TicketRouter::load(
            &model_dir().join("router"),
            rules.is_file().then_some(rules.as_path()),
        ));
        assert!(
            state.router.is_some(),
            "models/router did not load: {:?}",
            state.router_error
        );
    }
    Service {
        app: server::router(state.clone()),
        state,
        _dir: dir,
    }
}

fn default_service() -> Service {
    service(
        ApiKeys::new([ADMIN_KEY.to_string()], []),
        ServiceConfig::default(),
        false,
    )
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts the status and the error shape, returns the code.
    fn error(&self, status: StatusCode) -> String {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            self.content_type().starts_with("application/json"),
            "error content type {:?}",
            self.content_type()
        );
        let v = self.json();
        let err = v["error"]
            .as_object()
            .unwrap_or_else(|| panic!("no error object: {v}"));
        let code = err["code"].as_str().expect("error.code").to_string();
        let message = err["message"].as_str().expect("error.message");
        assert!(!code.is_empty() && !message.is_empty(), "{v}");
        code
    }
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

fn json_request(method: Method, uri: &str, body: &Value, key: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

fn raw_request(
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
    key: Option<&str>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        builder = builder.header(header::CONTENT_TYPE, ct);
    }
    if let Some(key) = key {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    builder.body(Body::from(body)).unwrap()
}

fn enc(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hit_ids(v: &Value) -> Vec<String> {
    v["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits: {v}"))
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect()
}

async fn search_ids(app: &Router, q: &str) -> Vec<String> {
    let r = get(app, &format!("/v1/search?q={}", enc(q))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    hit_ids(&r.json())
}

async fn top_queries(app: &Router, kind: &str) -> Vec<Value> {
    let r = get(app, &format!("/v1/analytics/queries?kind={kind}&limit=100")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["kind"], kind);
    v["queries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn search_answers_with_snippets_anchors_and_is_logged() {
    let s = default_service();
    let r = get(
        &s.app,
        &format!("/v1/search?q={}&limit=5", enc("退款多久到账")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.content_type().starts_with("application/json"));
    let v = r.json();
    assert_eq!(v["query"], "退款多久到账");
    assert!(v["took_ms"].as_f64().is_some());
    assert!(v["total"].as_u64().unwrap() >= 1);
    // A 60-article knowledge base is counted exactly.
    assert_eq!(v["total_is_lower_bound"], false);
    let first = &v["hits"][0];
    assert_eq!(first["id"], "billing/refund.zh.md");
    for field in ["title", "lang", "snippet", "score"] {
        assert!(!first[field].is_null(), "hit lacks {field}: {first}");
    }
    assert!(
        first["snippet"].as_str().unwrap().contains("<em>"),
        "{first}"
    );

    // Filters pass through.
    let r = get(
        &s.app,
        &format!("/v1/search?q={}&product=compute", enc("退款")),
    )
    .await;
    assert!(!hit_ids(&r.json()).contains(&"billing/refund.zh.md".to_string()));
    for (category, found) in [("billing", true), ("network", false)] {
        let r = get(
            &s.app,
            &format!("/v1/search?q={}&category={category}", enc("退款")),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let v = r.json();
        assert_eq!(
            hit_ids(&v).contains(&"billing/refund.zh.md".to_string()),
            found,
            "{v}"
        );
        if found {
            assert_eq!(v["hits"][0]["category"], "billing", "{v}");
        }
    }

    // POST with a JSON body answers the same.
    let r = send(
        &s.app,
        json_request(
            Method::POST,
            "/v1/search",
            &json!({"q": "ECS instance start", "limit": 3}),
            None,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        hit_ids(&r.json())[0],
        "compute/instance-fails-to-start.en.md"
    );

    // The snippet of an article showing markup is escaped: only <em> is markup.
    let r = get(&s.app, "/v1/search?q=script%20alert").await;
    let v = r.json();
    let waf = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == "security/waf-xss.en.md")
        .expect("WAF article found");
    let rest = waf["snippet"]
        .as_str()
        .unwrap()
        .replace("<em>", "")
        .replace("</em>", "");
    assert!(!rest.contains('<'), "unescaped markup in {rest}");

    let top = top_queries(&s.app, "top").await;
    let names: Vec<&str> = top.iter().map(|q| q["query"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"退款多久到账") && names.contains(&"ecs instance start"),
        "{names:?}"
    );
}

#[tokio::test]
async fn every_bad_input_gets_a_4xx_in_the_error_shape_and_nothing_is_lost() {
    let s = default_service();
    let app = &s.app;
    let long_query = "退".repeat(100_000);
    let ten_mb = vec![b'a'; 10 * 1024 * 1024];
    let mut big_json = br#"{"query":"x","article_id":"a.md","event":"click","pad":""#.to_vec();
    big_json.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
    big_json.extend(br#""}"#);
    let cases: Vec<(&str, Request<Body>, StatusCode, Option<&str>)> = vec![
        (
            "limit=-1",
            Request::get("/v1/search?q=x&limit=-1")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some("invalid_parameter"),
        ),
        (
            "limit too big",
            Request::get("/v1/search?q=x&limit=100000")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some("invalid_parameter"),
        ),
        (
            "limit not a number",
            Request::get("/v1/search?q=x&limit=ten")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some("invalid_query_string"),
        ),
        (
            "offset=-5",
            Request::get("/v1/search?q=x&offset=-5")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some("invalid_parameter"),
        ),
        (
            "no q",
            Request::get("/v1/search").body(Body::empty()).unwrap(),
            StatusCode::BAD_REQUEST,
            Some("missing_query"),
        ),
        (
            "7,000-character query (GET: the most a URI carries)",
            // `http` (and hyper on the wire, with 414) refuse URIs over 64 KiB before any app
            // sees them: percent-encoded, that is about 7,000 Chinese characters.
            Request::get(format!("/v1/search?q={}", enc(&long_query[..21_000])))
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some("query_too_long"),
        ),
        (
            "100,000-character query, POST",
            json_request(Method::POST, "/v1/search", &json!({"q": long_query}), None),
            StatusCode::BAD_REQUEST,
            Some("query_too_long"),
        ),
        (
            "7,000-character suggest",
            Request::get(format!("/v1/suggest?q={}", enc(&long_query[..21_000])))
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some("query_too_long"),
        ),
        (
            "invalid UTF-8 in the query string",
            Request::get("/v1/search?q=%FF%FE")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some("invalid_utf8"),
        ),
        (
            "malformed JSON",
            raw_request(
                Method::POST,
                "/v1/route",
                Some("application/json"),
                b"{\"subject\": \"x\",".to_vec(),
                None,
            ),
            StatusCode::BAD_REQUEST,
            Some("malformed_json"),
        ),
        (
            "malformed JSON search",
            raw_request(
                Method::POST,
                "/v1/search",
                Some("application/json"),
                b"not json".to_vec(),
                None,
            ),
            StatusCode::BAD_REQUEST,
            Some("malformed_json"),
        ),
        (
            "wrong field types",
            json_request(
                Method::POST,
                "/v1/feedback",
                &json!({"query": 5, "article_id": [], "event": "click"}),
                None,
            ),
            StatusCode::BAD_REQUEST,
            Some("invalid_body"),
        ),
        (
            "unknown feedback event",
            json_request(
                Method::POST,
                "/v1/feedback",
                &json!({"query": "x", "article_id": "a.md", "event": "like"}),
                None,
            ),
            StatusCode::BAD_REQUEST,
            Some("invalid_body"),
        ),
        (
            "feedback without event",
            json_request(
                Method::POST,
                "/v1/feedback",
                &json!({"query": "x", "article_id": "a.md"}),
                None,
            ),
            StatusCode::BAD_REQUEST,
            Some("missing_event"),
        ),
        (
            "invalid UTF-8 JSON body",
            raw_request(
                Method::POST,
                "/v1/feedback",
                Some("application/json"),
                b"{\"query\":\"\xff\xfe\",\"article_id\":\"a.md\",\"event\":\"click\"}".to_vec(),
                None,
            ),
            StatusCode::BAD_REQUEST,
            Some("malformed_json"),
        ),
        (
            "wrong content type",
            raw_request(
                Method::POST,
                "/v1/feedback",
                Some("text/plain"),
                br#"{"query":"x","article_id":"a.md","event":"click"}"#.to_vec(),
                None,
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type"),
        ),
        (
            "no content type",
            raw_request(
                Method::POST,
                "/v1/classify",
                None,
                br#"{"subject":"x"}"#.to_vec(),
                None,
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type"),
        ),
        (
            "10 MB JSON body",
            raw_request(
                Method::POST,
                "/v1/feedback",
                Some("application/json"),
                big_json,
                None,
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("payload_too_large"),
        ),
        (
            "10 MB bulk upload",
            raw_request(
                Method::POST,
                "/v1/articles",
                Some("application/x-ndjson"),
                ten_mb.clone(),
                Some(ADMIN_KEY),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("payload_too_large"),
        ),
        (
            "10 MB article",
            raw_request(
                Method::PUT,
                "/v1/articles/big.md",
                Some("application/json"),
                ten_mb,
                Some(ADMIN_KEY),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("payload_too_large"),
        ),
        (
            "bulk upload of text/plain",
            raw_request(
                Method::POST,
                "/v1/articles",
                Some("text/plain"),
                b"{}".to_vec(),
                Some(ADMIN_KEY),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type"),
        ),
        (
            "bulk upload of invalid UTF-8",
            raw_request(
                Method::POST,
                "/v1/articles",
                Some("application/x-ndjson"),
                b"{\"id\":\"a\xff.md\"}".to_vec(),
                Some(ADMIN_KEY),
            ),
            StatusCode::BAD_REQUEST,
            Some("invalid_utf8"),
        ),
        (
            "id with ../",
            Request::get("/v1/articles/billing/../../etc/passwd")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some("invalid_id"),
        ),
        (
            "id with encoded ../",
            Request::get("/v1/articles/%2E%2E/%2E%2E/etc/passwd")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some("invalid_id"),
        ),
        (
            "put an id with ../",
            json_request(
                Method::PUT,
                "/v1/articles/..%2Fescape.md",
                &json!({"title": "t", "body": "b"}),
                Some(ADMIN_KEY),
            ),
            StatusCode::BAD_REQUEST,
            Some("invalid_id"),
        ),
        (
            "delete an id with ../",
            raw_request(
                Method::DELETE,
                "/v1/articles/billing/../refund.zh.md",
                None,
                vec![],
                Some(ADMIN_KEY),
            ),
            StatusCode::BAD_REQUEST,
            Some("invalid_id"),
        ),
        (
            "id with a control character",
            Request::get("/v1/articles/a%0Ab.md")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some("invalid_id"),
        ),
        (
            "absurdly long id",
            Request::get(format!("/v1/articles/{}", "a".repeat(5000)))
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some("invalid_id"),
        ),
        (
            "id with invalid UTF-8",
            Request::get("/v1/articles/%FF.md")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some("invalid_path"),
        ),
        (
            "feedback on a ../ id",
            json_request(
                Method::POST,
                "/v1/feedback",
                &json!({"query": "x", "article_id": "../x", "event": "click"}),
                None,
            ),
            StatusCode::BAD_REQUEST,
            Some("invalid_id"),
        ),
        (
            "unknown route",
            Request::get("/v2/nothing").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
            Some("not_found"),
        ),
        (
            "unknown article",
            Request::get("/v1/articles/no/such.md")
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
            Some("article_not_found"),
        ),
        (
            "wrong method",
            Request::delete("/v1/search").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            Some("method_not_allowed"),
        ),
        (
            "write without a key",
            json_request(
                Method::PUT,
                "/v1/articles/billing/refund.zh.md",
                &json!({"title": "hijack", "body": "x"}),
                None,
            ),
            StatusCode::UNAUTHORIZED,
            Some("missing_api_key"),
        ),
        (
            "write with a wrong key",
            json_request(
                Method::PUT,
                "/v1/articles/billing/refund.zh.md",
                &json!({"title": "hijack", "body": "x"}),
                Some("not-the-key"),
            ),
            StatusCode::UNAUTHORIZED,
            Some("invalid_api_key"),
        ),
        (
            "delete with a wrong key",
            raw_request(
                Method::DELETE,
                "/v1/articles/billing/refund.zh.md",
                None,
                vec![],
                Some("nope"),
            ),
            StatusCode::UNAUTHORIZED,
            Some("invalid_api_key"),
        ),
        (
            "bulk with a wrong key",
            raw_request(
                Method::POST,
                "/v1/articles",
                Some("application/json"),
                b"[]".to_vec(),
                Some("nope"),
            ),
            StatusCode::UNAUTHORIZED,
            Some("invalid_api_key"),
        ),
        (
            "not a Bearer header",
            {
                let mut r = json_request(
                    Method::PUT,
                    "/v1/articles/x.md",
                    &json!({"title": "t", "body": "b"}),
                    None,
                );
                r.headers_mut().insert(
                    header::AUTHORIZATION,
                    format!("Basic {ADMIN_KEY}").parse().unwrap(),
                );
                r
            },
            StatusCode::UNAUTHORIZED,
            Some("invalid_api_key"),
        ),
        (
            "bad analytics kind",
            Request::get("/v1/analytics/queries?kind=best")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some("invalid_query_string"),
        ),
        (
            "bad analytics since",
            Request::get("/v1/analytics/queries?since=yesterday")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some("invalid_parameter"),
        ),
        (
            "empty ticket",
            json_request(
                Method::POST,
                "/v1/assist",
                &json!({"subject": " ", "body": ""}),
                None,
            ),
            StatusCode::BAD_REQUEST,
            Some("invalid_ticket"),
        ),
        (
            "assist limit=-1",
            json_request(
                Method::POST,
                "/v1/assist",
                &json!({"subject": "退款", "limit": -1}),
                None,
            ),
            StatusCode::BAD_REQUEST,
            Some("invalid_parameter"),
        ),
    ];
    let before = s.state.engine.num_articles();
    for (name, request, status, code) in cases {
        let r = send(app, request).await;
        let got = r.error(status);
        if let Some(code) = code {
            assert_eq!(got, code, "{name}: {}", r.text());
        }
        if status == StatusCode::UNAUTHORIZED {
            assert!(r.headers.contains_key(header::WWW_AUTHENTICATE), "{name}");
        }
    }
    // Still serving, and nothing stored was lost or changed.
    assert_eq!(s.state.engine.num_articles(), before);
    let r = get(app, "/v1/articles/billing/refund.zh.md").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["title"], "如何申请退款");
    assert_eq!(search_ids(app, "退款").await[0], "billing/refund.zh.md");
    assert_eq!(get(app, "/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn upserts_are_visible_to_search_and_deletes_remove() {
    let s = default_service();
    let app = &s.app;
    let id = "storage/oss-lifecycle.zh.md";
    assert!(
        !search_ids(app, "生命周期规则")
            .await
            .contains(&id.to_string())
    );

    let article = json!({
        "title": "OSS 生命周期规则",
        "body": "用生命周期规则自动删除过期对象。\n\n## 配置步骤 {#steps}\n\n在 Bucket 设置里添加生命周期规则。\n",
        "product": "storage",
        "tags": ["oss"],
    });
    let r = send(
        app,
        json_request(
            Method::PUT,
            &format!("/v1/articles/{id}"),
            &article,
            Some(ADMIN_KEY),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["upserted"], 1);
    assert_eq!(search_ids(app, "生命周期规则").await[0], id);

    let r = get(app, &format!("/v1/articles/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["id"], id);
    assert_eq!(v["lang"], "zh");
    assert_eq!(v["product"], "storage");
    assert_eq!(v["tags"], json!(["oss"]));
    let sections = v["sections"].as_array().unwrap();
    assert!(
        sections
            .iter()
            .any(|s| s["anchor"] == "steps" && s["heading"] == "配置步骤"),
        "{v}"
    );

    // Replace: the old text is gone from search, the new one is found.
    let replaced = json!({"id": id, "title": "OSS 对象归档", "body": "把冷数据转为归档存储。"});
    let r = send(
        app,
        json_request(
            Method::PUT,
            &format!("/v1/articles/{id}"),
            &replaced,
            Some(ADMIN_KEY),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        !search_ids(app, "生命周期规则")
            .await
            .contains(&id.to_string())
    );
    assert_eq!(search_ids(app, "归档存储").await[0], id);

    // The body's id must agree with the path's.
    let r = send(
        app,
        json_request(
            Method::PUT,
            &format!("/v1/articles/{id}"),
            &json!({"id": "other.md", "title": "t", "body": "b"}),
            Some(ADMIN_KEY),
        ),
    )
    .await;
    assert_eq!(r.error(StatusCode::BAD_REQUEST), "id_mismatch");

    let r = send(
        app,
        raw_request(
            Method::DELETE,
            &format!("/v1/articles/{id}"),
            None,
            vec![],
            Some(ADMIN_KEY),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["deleted"], 1);
    assert!(!search_ids(app, "归档存储").await.contains(&id.to_string()));
    get(app, &format!("/v1/articles/{id}"))
        .await
        .error(StatusCode::NOT_FOUND);
    let r = send(
        app,
        raw_request(
            Method::DELETE,
            &format!("/v1/articles/{id}"),
            None,
            vec![],
            Some(ADMIN_KEY),
        ),
    )
    .await;
    assert_eq!(r.error(StatusCode::NOT_FOUND), "article_not_found");
    assert_eq!(s.state.engine.num_articles(), 4);

    // tantivy's commits and garbage collection left the analytics database alone.
    let db = kefu::analytics::default_path(&s._dir.path().join("index"));
    assert!(kefu::analytics::exists(&db));
    let (searches, _) = s.state.analytics.counts().unwrap();
    assert!(searches >= 4, "{searches}");
}

#[tokio::test]
async fn bulk_upload_stores_good_records_and_reports_bad_ones() {
    let s = default_service();
    let app = &s.app;
    let jsonl = [
        json!({"id": "faq/bulk-one", "title": "配额提升申请", "body": "在配额中心提交配额提升申请。", "lang": "zh"}).to_string(),
        "{\"id\": \"faq/broken\", \"title\": ".to_string(),
        json!({"id": "../faq/escape", "title": "escape", "body": "should not be stored"}).to_string(),
        json!({"id": "faq/bulk-two", "title": "Quota increase", "body": "Request a quota increase in the quota center."}).to_string(),
    ]
    .join("\n");
    let r = send(
        app,
        raw_request(
            Method::POST,
            "/v1/articles",
            Some("application/x-ndjson"),
            jsonl.into_bytes(),
            Some(ADMIN_KEY),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["upserted"], 2, "{v}");
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{v}");
    assert!(
        problems.iter().any(|p| p["line"] == 2),
        "the malformed line is named: {v}"
    );
    assert!(
        search_ids(app, "配额提升")
            .await
            .contains(&"faq/bulk-one".to_string())
    );
    assert!(
        search_ids(app, "quota increase")
            .await
            .contains(&"faq/bulk-two".to_string())
    );
    get(app, "/v1/articles/faq/escape")
        .await
        .error(StatusCode::NOT_FOUND);

    // A JSON array works too.
    let array = json!([{"id": "faq/bulk-three", "title": "备案须知", "body": "网站备案需要提交主体资料。"}]);
    let r = send(
        app,
        json_request(Method::POST, "/v1/articles", &array, Some(ADMIN_KEY)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["upserted"], 1);
    assert_eq!(search_ids(app, "网站备案").await[0], "faq/bulk-three");

    // Nothing valid at all: 400 with the per-record problems, nothing changed.
    let before = s.state.engine.num_articles();
    let r = send(
        app,
        raw_request(
            Method::POST,
            "/v1/articles",
            Some("application/x-ndjson"),
            b"{oops\n[1,2]\n".to_vec(),
            Some(ADMIN_KEY),
        ),
    )
    .await;
    assert_eq!(r.error(StatusCode::BAD_REQUEST), "invalid_articles");
    assert!(!r.json()["error"]["problems"].as_array().unwrap().is_empty());
    assert_eq!(s.state.engine.num_articles(), before);
    assert_eq!(before, 7);
}

#[tokio::test]
async fn keys_guard_writes_and_optionally_reads() {
    // No keys configured: reads are open, writes refused.
    let open = service(ApiKeys::default(), ServiceConfig::default(), false);
    assert_eq!(
        get(&open.app, "/v1/search?q=ecs").await.status,
        StatusCode::OK
    );
    let r = send(
        &open.app,
        json_request(
            Method::PUT,
            "/v1/articles/x.md",
            &json!({"title": "t", "body": "b"}),
            Some("anything"),
        ),
    )
    .await;
    assert_eq!(r.error(StatusCode::FORBIDDEN), "writes_disabled");

    // Search keys configured: reads need a search or admin key; a search key cannot write.
    let keyed = service(
        ApiKeys::new([ADMIN_KEY.to_string()], [SEARCH_KEY.to_string()]),
        ServiceConfig::default(),
        false,
    );
    let app = &keyed.app;
    assert_eq!(
        get(app, "/v1/search?q=ecs")
            .await
            .error(StatusCode::UNAUTHORIZED),
        "missing_api_key"
    );
    for key in [SEARCH_KEY, ADMIN_KEY] {
        let r = send(
            app,
            Request::get("/v1/search?q=ecs")
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{key}: {}", r.text());
    }
    let r = send(
        app,
        Request::get("/v1/search?q=ecs")
            .header(header::AUTHORIZATION, format!("Bearer {SEARCH_KEY}x"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.error(StatusCode::UNAUTHORIZED), "invalid_api_key");
    let r = send(
        app,
        json_request(
            Method::PUT,
            "/v1/articles/x.md",
            &json!({"title": "t", "body": "b"}),
            Some(SEARCH_KEY),
        ),
    )
    .await;
    assert_eq!(r.error(StatusCode::UNAUTHORIZED), "invalid_api_key");
    let r = send(
        app,
        json_request(
            Method::PUT,
            "/v1/articles/x.md",
            &json!({"title": "Keyed write", "body": "allowed with the admin key"}),
            Some(ADMIN_KEY),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Pages, health, metrics and the API description stay open.
    for path in [
        "/",
        "/widget.js",
        "/console",
        "/kb/x.md",
        "/healthz",
        "/metrics",
        "/openapi.json",
    ] {
        assert_eq!(get(app, path).await.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn feedback_reaches_analytics_joined_to_the_typed_query() {
    let s = default_service();
    let app = &s.app;
    // The widget types letter by letter: only the end of the burst counts.
    for q in ["如", "如何", "如何申请", "如何申请退款"] {
        let r = send(
            app,
            Request::get(format!("/v1/search?q={}", enc(q)))
                .header(header::USER_AGENT, "widget-test/1")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // Later pages of the same query are not new searches.
    let r = send(
        app,
        Request::get(format!("/v1/search?q={}&offset=1", enc("如何申请退款")))
            .header(header::USER_AGENT, "widget-test/1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // The widget sends the query as it was typed (spacing, width and case may differ).
    for body in [
        json!({"query": " 如何申请退款 ", "article_id": "billing/refund.zh.md", "event": "click"}),
        json!({"query": "如何申请退款", "article_id": "billing/refund.zh.md", "event": "helpful"}),
        json!({"query": "如何申请退款", "article_id": "billing/invoice.zh.md", "helpful": false}),
    ] {
        let r = send(app, json_request(Method::POST, "/v1/feedback", &body, None)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json(), json!({"ok": true}));
    }
    let top = top_queries(app, "top").await;
    let entry = top
        .iter()
        .find(|q| q["query"] == "如何申请退款")
        .unwrap_or_else(|| panic!("{top:?}"));
    assert_eq!(
        (
            entry["count"].as_i64(),
            entry["clicks"].as_i64(),
            entry["helpful"].as_i64(),
            entry["not_helpful"].as_i64()
        ),
        (Some(1), Some(1), Some(1), Some(1)),
        "{entry}"
    );
    assert!(entry["last_seen"].as_str().unwrap().ends_with('Z'));
    assert!(
        !top.iter()
            .any(|q| q["query"] == "如何" || q["query"] == "如"),
        "prefixes counted: {top:?}"
    );

    // A query that finds nothing is a content gap.
    search_ids(app, "qwxzvbnmkjh").await;
    let gaps = top_queries(app, "zero_results").await;
    assert!(gaps.iter().any(|q| q["query"] == "qwxzvbnmkjh"), "{gaps:?}");
    assert!(!gaps.iter().any(|q| q["query"] == "如何申请退款"));

    // `since` filters.
    let r = get(
        app,
        "/v1/analytics/queries?kind=top&since=2999-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["queries"].as_array().unwrap().is_empty());
    let r = get(
        app,
        "/v1/analytics/queries?since=2000-01-01T00:00:00%2B08:00&limit=1",
    )
    .await;
    assert_eq!(r.json()["queries"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn suggest_offers_titles_and_popular_past_queries() {
    let s = default_service();
    let app = &s.app;
    for _ in 0..2 {
        search_ids(app, "退款多久到账").await;
    }
    // Suggestions read without waiting for the analytics queue; a test must not race it.
    s.state.analytics.flush().unwrap();
    let r = get(app, &format!("/v1/suggest?q={}&limit=8", enc("退款"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["query"], "退款");
    let suggestions = v["suggestions"].as_array().unwrap();
    assert!(
        suggestions
            .iter()
            .any(|x| x["kind"] == "query" && x["text"] == "退款多久到账"),
        "{v}"
    );
    let r = get(app, &format!("/v1/suggest?q={}", enc("如何"))).await;
    let v = r.json();
    let titles: Vec<&Value> = v["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["kind"] == "title")
        .collect();
    assert!(
        titles.iter().any(|t| t["id"] == "billing/refund.zh.md"),
        "{v}"
    );
    let r = get(app, "/v1/suggest?q=").await;
    assert_eq!(r.json()["suggestions"], json!([]));
    assert_eq!(
        get(app, "/v1/suggest?q=x&limit=0")
            .await
            .error(StatusCode::BAD_REQUEST),
        "invalid_parameter"
    );
}

#[tokio::test]
async fn without_a_model_route_is_503_and_assist_still_finds_articles() {
    let s = default_service();
    let app = &s.app;
    let ticket = json!({"subject": "退款还没到账", "body": "申请退款一周了还没有到账"});
    for path in ["/v1/route", "/v1/classify"] {
        let r = send(app, json_request(Method::POST, path, &ticket, None)).await;
        assert_eq!(
            r.error(StatusCode::SERVICE_UNAVAILABLE),
            "model_unavailable"
        );
    }
    let r = send(app, json_request(Method::POST, "/v1/assist", &ticket, None)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert!(v["decision"].is_null());
    assert_eq!(v["articles"][0]["id"], "billing/refund.zh.md");
    let h = get(app, "/healthz").await.json();
    assert_eq!(
        (
            h["status"].as_str(),
            h["model_labels"].as_u64(),
            h["articles"].as_u64()
        ),
        (Some("degraded"), Some(0), Some(4))
    );
}

#[tokio::test]
async fn with_the_committed_model_route_classify_and_assist_decide() {
    if !model_dir().join("router").is_dir() {
        panic!("models/router is not committed yet");
    }
    let s = service(ApiKeys::default(), ServiceConfig::default(), true);
    let app = &s.app;
    let ticket = json!({"id": "T-1", "subject": "ECS 实例全部宕机", "body": "我们的ECS实例全部宕机了，网站无法访问，数据可能丢失"});
    for path in ["/v1/route", "/v1/classify"] {
        let r = send(app, json_request(Method::POST, path, &ticket, None)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
        let d = r.json();
        assert_eq!(d["id"], "T-1");
        assert!(d["category"].as_str().is_some_and(|c| !c.is_empty()), "{d}");
        assert!(
            ["P0", "P1", "P2", "P3"].contains(&d["priority"].as_str().unwrap()),
            "{d}"
        );
        assert!(d["sla"]["first_response_minutes"].as_u64().is_some(), "{d}");
        assert!(!d["top"].as_array().unwrap().is_empty(), "{d}");
    }
    let r = send(app, json_request(Method::POST, "/v1/assist", &json!({"subject": "ECS instance fails to start", "body": "stuck in Starting", "limit": 2}), None)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert!(v["decision"]["category"].is_string(), "{v}");
    assert_eq!(
        v["articles"][0]["id"],
        "compute/instance-fails-to-start.en.md"
    );
    assert!(v["articles"].as_array().unwrap().len() <= 2);
    let h = get(app, "/healthz").await.json();
    assert_eq!(h["status"], "ok");
    assert!(h["model_labels"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let s = default_service();
    let r = get(&s.app, "/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/v1/search", "get"),
        ("/v1/search", "post"),
        ("/v1/suggest", "get"),
        ("/v1/classify", "post"),
        ("/v1/route", "post"),
        ("/v1/assist", "post"),
        ("/v1/articles", "post"),
        ("/v1/articles/{id}", "get"),
        ("/v1/articles/{id}", "put"),
        ("/v1/articles/{id}", "delete"),
        ("/v1/feedback", "post"),
        ("/v1/analytics/queries", "get"),
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
        // ...and the router really serves it (anything but 404/405 for a bare request).
        let uri = path.replace("{id}", "billing/refund.zh.md");
        let r = send(
            &s.app,
            Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert!(
            r.status != StatusCode::NOT_FOUND || uri.starts_with("/v1/articles/"),
            "{method} {uri}: {}",
            r.status
        );
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
    }
    assert!(doc["components"]["schemas"]["SearchResponse"].is_object());
    assert!(doc["components"]["schemas"]["Decision"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}

#[tokio::test]
async fn metrics_text_parses_and_counts_requests_per_route() {
    let s = default_service();
    let app = &s.app;
    search_ids(app, "退款").await;
    search_ids(app, "发票").await;
    get(app, "/nowhere").await;
    let r = get(app, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.content_type().contains("openmetrics-text") || r.content_type().starts_with("text/plain")
    );
    let text = r.text();
    assert_eq!(text.lines().last(), Some("# EOF"));
    let mut samples = std::collections::HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels in {line:?}"
            );
        }
        samples.insert(series.to_string(), value);
    }
    let search_count = samples
        .iter()
        .find(|(k, _)| {
            k.starts_with("kefu_http_requests_total{")
                && k.contains("route=\"/v1/search\"")
                && k.contains("status=\"200\"")
        })
        .map(|(_, v)| *v);
    assert_eq!(search_count, Some(2.0), "{text}");
    assert!(
        samples
            .keys()
            .any(|k| k.starts_with("kefu_http_requests_total{")
                && k.contains("route=\"unmatched\"")
                && k.contains("status=\"404\"")),
        "{text}"
    );
    assert!(
        samples.keys().any(
            |k| k.starts_with("kefu_http_request_duration_seconds_bucket{")
                && k.contains("route=\"/v1/search\"")
        ),
        "{text}"
    );
    assert_eq!(samples.get("kefu_index_articles"), Some(&4.0), "{text}");
    assert!(
        samples
            .get("kefu_index_size_bytes")
            .is_some_and(|v| *v > 0.0),
        "{text}"
    );
    assert!(
        samples.contains_key("kefu_index_last_commit_timestamp_seconds"),
        "{text}"
    );
    assert_eq!(samples.get("kefu_model_labels"), Some(&0.0));
    // No search is running or waiting while /metrics renders.
    assert_eq!(samples.get("kefu_cpu_work_running"), Some(&0.0), "{text}");
    assert_eq!(samples.get("kefu_cpu_work_waiting"), Some(&0.0), "{text}");
}

#[tokio::test]
async fn pages_are_served_with_their_content_types() {
    let s = default_service();
    for (path, ct, marker) in [
        ("/", "text/html", "widget.js"),
        ("/console", "text/html", "/v1/assist"),
        ("/kb/billing/refund.zh.md", "text/html", "/v1/articles/"),
        ("/widget.js", "application/javascript", "/v1/search"),
    ] {
        let r = get(&s.app, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(
            r.content_type().starts_with(ct),
            "{path}: {}",
            r.content_type()
        );
        assert!(r.text().contains(marker), "{path} lacks {marker}");
    }
}

#[tokio::test]
async fn cors_lets_any_origin_read_by_default_and_only_configured_ones_otherwise() {
    let preflight = |origin: &str, method: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/feedback")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap()
    };
    let s = default_service();
    let r = send(&s.app, preflight("https://help.example.com", "POST")).await;
    assert_eq!(
        r.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
        "*"
    );
    let r = send(
        &s.app,
        Request::get("/v1/search?q=ecs")
            .header(header::ORIGIN, "https://a.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
        "*"
    );

    let config = ServiceConfig {
        cors_origins: Some(vec!["https://help.example.com".into()]),
        ..ServiceConfig::default()
    };
    let s = service(ApiKeys::default(), config, false);
    let r = send(&s.app, preflight("https://help.example.com", "POST")).await;
    assert_eq!(
        r.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
        "https://help.example.com"
    );
    let r = send(&s.app, preflight("https://evil.example", "POST")).await;
    assert!(r.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[tokio::test]
async fn serves_over_tcp_and_smaller_limits_apply() {
    let config = ServiceConfig {
        max_body_bytes: 1024,
        max_query_chars: 10,
        ..ServiceConfig::default()
    };
    let s = service(ApiKeys::default(), config, false);
    let r = get(
        &s.app,
        &format!("/v1/search?q={}", enc("一二三四五六七八九十一")),
    )
    .await;
    assert_eq!(r.error(StatusCode::BAD_REQUEST), "query_too_long");
    let r = send(
        &s.app,
        raw_request(
            Method::POST,
            "/v1/feedback",
            Some("application/json"),
            vec![b' '; 2048],
            None,
        ),
    )
    .await;
    assert_eq!(r.error(StatusCode::PAYLOAD_TOO_LARGE), "payload_too_large");

    // The real socket path: serve() with connection info.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(server::serve(listener, s.state.clone()));
    let reply = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .write_all(
                b"GET /v1/search?q=ECS%20start HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("compute/instance-fails-to-start.en.md"),
        "{reply}"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_wait_their_turn_for_cpu_while_writes_go_ahead_and_all_are_logged() {
    let config = ServiceConfig {
        cpu_concurrency: 1,
        ..ServiceConfig::default()
    };
    let s = service(ApiKeys::new([ADMIN_KEY.to_string()], []), config, false);
    assert_eq!(s.state.cpu.threads(), 1);
    // Occupy the only CPU thread until released.
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let busy = tokio::spawn({
        let cpu = s.state.cpu.clone();
        async move { cpu.run(move || hold.recv().unwrap()).await }
    });
    while s.state.cpu.running() == 0 {
        tokio::task::yield_now().await;
    }
    // Searches queue behind it...
    let queries = [
        "退款",
        "发票",
        "instance start",
        "script",
        "申请条件",
        "WAF",
    ];
    let searches: Vec<_> = queries
        .iter()
        .map(|q| {
            let app = s.app.clone();
            let uri = format!("/v1/search?q={}", enc(q));
            tokio::spawn(async move { get(&app, &uri).await })
        })
        .collect();
    // ...while an article write does not wait for them.
    let article = json!({"title": "OSS 生命周期规则", "body": "用生命周期规则自动删除过期对象。"});
    let r = send(
        &s.app,
        json_request(
            Method::PUT,
            "/v1/articles/storage/oss-lifecycle.zh.md",
            &article,
            Some(ADMIN_KEY),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(searches.iter().all(|t| !t.is_finished()));
    release.send(()).unwrap();
    busy.await.unwrap().unwrap();
    for task in searches {
        let r = task.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(r.json()["total"].as_u64().unwrap() >= 1, "{}", r.text());
    }
    // Every search reached analytics (the writer batches; the report flushes first).
    let top = top_queries(&s.app, "top").await;
    let logged: Vec<&str> = top.iter().map(|q| q["query"].as_str().unwrap()).collect();
    for q in queries {
        assert!(
            logged.contains(&q.to_lowercase().as_str()),
            "{q}: {logged:?}"
        );
    }
}
