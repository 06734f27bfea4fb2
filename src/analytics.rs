//! Search analytics: what people search for, what finds nothing, what they click and whether it
//! helped — the content-gap report KB editors work from. Stored in SQLite (rusqlite, bundled).
//!
//! Owns: the analytics database (searches, feedback events, query popularity) and the reports
//! over it. Must never: block a search on a disk write. Writes go through a bounded channel to one
//! writer thread that gathers them for up to [`BATCH_WINDOW`] and writes each batch in one
//! transaction with cached statements, so a busy service pays one commit per window rather than
//! one per search; when the channel is full an event is dropped and counted
//! ([`Analytics::dropped`]) rather than slowing search down. [`Analytics::flush`] wakes the writer
//! and waits until everything sent so far is written (reports call it, so they read their own
//! writes); [`Analytics::shutdown`] (and drop) writes whatever is still queued.
//!
//! Search-as-you-type sends one search per pause in typing: `如`, `如何申`, `如何申请退款`. Counting
//! every prefix would bury the real questions under fragments, so each client's searches form
//! *typing bursts*: a search that extends (or backs up over) the same client's previous search
//! within [`BURST_WINDOW_MS`] supersedes it, and only the last search of a burst is *final*. All
//! searches are kept; reports and suggestions count final ones, plus any query that received a
//! click or a vote. Clients are told apart by an opaque in-memory key (the server hashes address
//! and user agent); no client identity is written to disk.
//!
//! Queries are stored normalized ([`normalize_query`]: NFKC, lower case, collapsed whitespace) so
//! a search and the feedback on its results join on the same text.
//!
//! ```
//! use kefu::analytics::{Analytics, FeedbackEvent, ReportKind};
//! let store = Analytics::open_in_memory().unwrap();
//! store.record_search("如何申请退款", 3, Some(1));
//! store.record_feedback(" 如何申请退款 ", "billing/refund-policy.zh.md", FeedbackEvent::Click);
//! let top = store.queries(ReportKind::Top, 0, 10).unwrap();
//! assert_eq!((top[0].query.as_str(), top[0].count, top[0].clicks), ("如何申请退款", 1, 1));
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use utoipa::ToSchema;

/// Two searches of one client this close together (ms), one extending the other, are one burst.
pub const BURST_WINDOW_MS: i64 = 5_000;
/// A past query is offered as a suggestion only once this many final searches asked it (so one
/// person's query — maybe with an order number in it — is not shown to everyone else).
pub const SUGGEST_MIN_SEARCHES: i64 = 2;
/// Longest query kept (characters); longer ones are cut.
pub const MAX_QUERY_CHARS: usize = 256;
/// Events waiting for the writer before new ones are dropped.
const QUEUE_CAPACITY: usize = 16_384;
/// How long the writer gathers events after the first one of a batch before writing them (a
/// flush or shutdown writes at once). At 1,000 searches/s that is ≈ 50 events per transaction.
pub const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Most events written in one transaction.
const MAX_BATCH: usize = 4096;
/// Schema version in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

/// What can go wrong in the analytics store.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// SQLite failed (open, schema, query).
    #[error("analytics database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer kefu.
    #[error("analytics database has schema version {0}, this kefu knows {SCHEMA_VERSION}")]
    Schema(i64),
    /// The writer thread is gone (it panicked or the store was shut down).
    #[error("analytics writer stopped")]
    WriterStopped,
}

/// A reaction to a search result, sent by the widget, the article page or the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackEvent {
    /// The result was opened.
    Click,
    /// "Was this helpful?" — yes.
    Helpful,
    /// "Was this helpful?" — no.
    NotHelpful,
}

impl FeedbackEvent {
    fn as_str(self) -> &'static str {
        match self {
            FeedbackEvent::Click => "click",
            FeedbackEvent::Helpful => "helpful",
            FeedbackEvent::NotHelpful => "not_helpful",
        }
    }
}

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// Most asked queries (final searches), with their clicks and votes.
    Top,
    /// Queries whose final searches found nothing: the content gaps.
    ZeroResults,
}

impl ReportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Top => "top",
            ReportKind::ZeroResults => "zero_results",
        }
    }
}

/// One line of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueryStat {
    /// The normalized query.
    pub query: String,
    /// Final searches (for `zero_results`: final searches that found nothing).
    pub count: i64,
    pub clicks: i64,
    pub helpful: i64,
    pub not_helpful: i64,
    /// RFC 3339 time of the latest search or feedback.
    pub last_seen: String,
}

/// A popular past query starting with a prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct PopularQuery {
    pub query: String,
    pub searches: i64,
}

/// What the writer is sent; queries as the caller gave them (the writer normalizes them).
enum Event {
    Search {
        at: i64,
        query: String,
        hits: i64,
        client: Option<u64>,
    },
    Feedback {
        at: i64,
        query: String,
        article_id: String,
        event: FeedbackEvent,
    },
    Prune {
        before: i64,
    },
    Flush(mpsc::Sender<()>),
}

/// The analytics store: a writer thread fed by a channel, and a reader connection for reports.
/// `Send + Sync`; share it in an `Arc`.
pub struct Analytics {
    tx: Mutex<Option<SyncSender<Event>>>,
    reader: Mutex<Connection>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The writer thread, to wake it early (flush, shutdown).
    writer_thread: std::thread::Thread,
    dropped: Arc<AtomicU64>,
}

/// NFKC, lower case, whitespace runs to one space, trimmed, at most [`MAX_QUERY_CHARS`].
pub fn normalize_query(query: &str) -> String {
    let folded: String = query.nfkc().flat_map(char::to_lowercase).collect();
    let mut out = String::with_capacity(folded.len());
    for word in folded.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    match out.char_indices().nth(MAX_QUERY_CHARS) {
        Some((cut, _)) => out[..cut].trim_end().to_string(),
        None => out,
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 (UTC) for milliseconds since the epoch.
pub fn format_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Milliseconds since the epoch for an RFC 3339 time (`2026-01-02T03:04:05Z`).
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

impl Analytics {
    /// Opens (creating if needed) the database at `path` and starts the writer thread.
    pub fn open(path: &Path) -> Result<Analytics, AnalyticsError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
        let writer = Connection::open(path)?;
        writer.busy_timeout(Duration::from_secs(5))?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        init_schema(&writer)?;
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(Duration::from_secs(5))?;
        Ok(Analytics::start(writer, reader))
    }

    /// A private in-memory store (tests, doc examples); nothing persists.
    pub fn open_in_memory() -> Result<Analytics, AnalyticsError> {
        // Both connections must see the same database: a named shared-cache memory database.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let uri = format!(
            "file:kefu-analytics-{}-{}?mode=memory&cache=shared",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI;
        let writer = Connection::open_with_flags(&uri, flags)?;
        init_schema(&writer)?;
        let reader = Connection::open_with_flags(&uri, flags)?;
        reader.pragma_update(None, "read_uncommitted", true)?;
        Ok(Analytics::start(writer, reader))
    }

    fn start(writer: Connection, reader: Connection) -> Analytics {
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let handle = std::thread::Builder::new()
            .name("kefu-analytics".into())
            .spawn(move || Writer::new(writer).run(rx))
            .expect("spawn analytics writer thread");
        Analytics {
            tx: Mutex::new(Some(tx)),
            reader: Mutex::new(reader),
            writer_thread: handle.thread().clone(),
            writer: Mutex::new(Some(handle)),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    fn send(&self, event: Event) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = tx.as_ref() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records a search (`hits` = matching articles); `client` groups a client's typing bursts.
    pub fn record_search(&self, query: &str, hits: usize, client: Option<u64>) {
        self.record_search_at(now_ms(), query, hits, client)
    }

    /// [`Analytics::record_search`] at a given time (ms since the epoch).
    /// The query is normalized by the writer thread, off the caller's path.
    pub fn record_search_at(&self, at: i64, query: &str, hits: usize, client: Option<u64>) {
        if query.trim().is_empty() {
            return;
        }
        self.send(Event::Search {
            at,
            query: query.to_owned(),
            hits: hits as i64,
            client,
        });
    }

    /// Records a click or vote on `article_id` among the results of `query`.
    pub fn record_feedback(&self, query: &str, article_id: &str, event: FeedbackEvent) {
        self.record_feedback_at(now_ms(), query, article_id, event)
    }

    /// [`Analytics::record_feedback`] at a given time (ms since the epoch).
    pub fn record_feedback_at(&self, at: i64, query: &str, article_id: &str, event: FeedbackEvent) {
        self.send(Event::Feedback {
            at,
            query: query.to_owned(),
            article_id: article_id.to_string(),
            event,
        });
    }

    /// Waits until every event sent before this call is written.
    pub fn flush(&self) -> Result<(), AnalyticsError> {
        let (done_tx, done_rx) = mpsc::channel();
        {
            let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            let tx = tx.as_ref().ok_or(AnalyticsError::WriterStopped)?;
            // A flush must not be dropped: block for room in the queue.
            tx.send(Event::Flush(done_tx))
                .map_err(|_| AnalyticsError::WriterStopped)?;
        }
        self.writer_thread.unpark();
        done_rx.recv().map_err(|_| AnalyticsError::WriterStopped)
    }

    /// Forgets searches and feedback older than `before_ms` (and past queries not asked since),
    /// so the database does not grow without bound. Queued like any write.
    pub fn prune_before(&self, before_ms: i64) {
        self.send(Event::Prune { before: before_ms });
    }

    /// Events dropped because the writer could not keep up (or had stopped).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes what is queued and stops the writer; later events are dropped.
    pub fn shutdown(&self) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(tx);
        self.writer_thread.unpark();
        if let Some(handle) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
    }

    /// The `kind` report over searches and feedback since `since_ms`, at most `limit` lines.
    /// Reads what was recorded before the call (it flushes first).
    pub fn queries(
        &self,
        kind: ReportKind,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<QueryStat>, AnalyticsError> {
        self.flush()?;
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let sql = format!(
            "WITH s AS (
                 SELECT query, SUM(final) AS finals, SUM(final AND hits = 0) AS zero,
                        MAX(at) AS last_at
                 FROM searches WHERE at >= ?1 GROUP BY query),
             f AS (
                 SELECT query, SUM(event = 'click') AS clicks, SUM(event = 'helpful') AS helpful,
                        SUM(event = 'not_helpful') AS not_helpful, MAX(at) AS last_at
                 FROM feedback WHERE at >= ?1 AND query <> '' GROUP BY query),
             q AS (SELECT query FROM s UNION SELECT query FROM f)
             SELECT q.query, COALESCE(s.finals, 0), COALESCE(s.zero, 0), COALESCE(f.clicks, 0),
                    COALESCE(f.helpful, 0), COALESCE(f.not_helpful, 0),
                    MAX(COALESCE(s.last_at, 0), COALESCE(f.last_at, 0)) AS last_at
             FROM q LEFT JOIN s ON s.query = q.query LEFT JOIN f ON f.query = q.query
             WHERE {filter}
             ORDER BY {order}, last_at DESC, q.query
             LIMIT ?2",
            filter = match kind {
                ReportKind::Top =>
                    "COALESCE(s.finals, 0) > 0 OR COALESCE(f.clicks, 0) + COALESCE(f.helpful, 0) \
                     + COALESCE(f.not_helpful, 0) > 0",
                ReportKind::ZeroResults => "COALESCE(s.zero, 0) > 0",
            },
            order = match kind {
                ReportKind::Top => "COALESCE(s.finals, 0) DESC, COALESCE(f.clicks, 0) DESC",
                ReportKind::ZeroResults => "COALESCE(s.zero, 0) DESC",
            },
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![since_ms, limit as i64], |row| {
            let finals: i64 = row.get(1)?;
            let zero: i64 = row.get(2)?;
            Ok(QueryStat {
                query: row.get(0)?,
                count: match kind {
                    ReportKind::Top => finals,
                    ReportKind::ZeroResults => zero,
                },
                clicks: row.get(3)?,
                helpful: row.get(4)?,
                not_helpful: row.get(5)?,
                last_seen: format_ms(row.get(6)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Past queries starting with `prefix` (normalized) that found something, most asked first.
    /// Does not flush: suggestions may lag the newest searches by a moment.
    pub fn popular_with_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<PopularQuery>, AnalyticsError> {
        let prefix = normalize_query(prefix);
        if prefix.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        // BINARY collation compares UTF-8 bytes; U+10FFFF encodes as the largest sequence, so
        // [prefix, prefix + U+10FFFF) is exactly the strings starting with prefix.
        let upper = format!("{prefix}\u{10FFFF}");
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare_cached(
            "SELECT query, finals FROM popularity
             WHERE query > ?1 AND query < ?2 AND finals >= ?3 AND last_hits > 0
             ORDER BY finals DESC, query LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![prefix, upper, SUGGEST_MIN_SEARCHES, limit as i64],
            |row| {
                Ok(PopularQuery {
                    query: row.get(0)?,
                    searches: row.get(1)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Number of searches and feedback events stored (all, final or not).
    pub fn counts(&self) -> Result<(u64, u64), AnalyticsError> {
        self.flush()?;
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let searches: i64 = conn.query_row("SELECT COUNT(*) FROM searches", [], |r| r.get(0))?;
        let feedback: i64 = conn.query_row("SELECT COUNT(*) FROM feedback", [], |r| r.get(0))?;
        Ok((searches as u64, feedback as u64))
    }
}

impl Drop for Analytics {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn init_schema(conn: &Connection) -> Result<(), AnalyticsError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(AnalyticsError::Schema(version));
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS searches (
             id INTEGER PRIMARY KEY,
             at INTEGER NOT NULL,
             query TEXT NOT NULL,
             hits INTEGER NOT NULL,
             final INTEGER NOT NULL DEFAULT 1
         );
         CREATE INDEX IF NOT EXISTS searches_at ON searches (at);
         CREATE TABLE IF NOT EXISTS feedback (
             id INTEGER PRIMARY KEY,
             at INTEGER NOT NULL,
             query TEXT NOT NULL,
             article_id TEXT NOT NULL,
             event TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS feedback_at ON feedback (at);
         CREATE TABLE IF NOT EXISTS popularity (
             query TEXT PRIMARY KEY,
             finals INTEGER NOT NULL,
             last_hits INTEGER NOT NULL,
             last_at INTEGER NOT NULL
         ) WITHOUT ROWID;
         PRAGMA user_version = 1;",
    )?;
    Ok(())
}

/// The last search of a client, while its burst may still go on.
struct LastSearch {
    row: i64,
    query: String,
    at: i64,
}

struct Writer {
    conn: Connection,
    last: HashMap<u64, LastSearch>,
}

impl Writer {
    fn new(conn: Connection) -> Writer {
        Writer {
            conn,
            last: HashMap::new(),
        }
    }

    fn run(mut self, rx: Receiver<Event>) {
        while let Ok(first) = rx.recv() {
            let batch = gather(&rx, first, Instant::now() + BATCH_WINDOW);
            let mut flushes = Vec::new();
            if let Err(err) = self.write_batch(batch, &mut flushes) {
                tracing::error!(error = %err, "analytics: writing a batch failed");
            }
            for done in flushes {
                let _ = done.send(());
            }
        }
    }

    fn write_batch(
        &mut self,
        batch: Vec<Event>,
        flushes: &mut Vec<mpsc::Sender<()>>,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        for event in batch {
            match event {
                Event::Search {
                    at,
                    query,
                    hits,
                    client,
                } => {
                    let query = normalize_query(&query);
                    if query.is_empty() {
                        continue;
                    }
                    if let Some(prev) = client.and_then(|c| self.last.get(&c))
                        && at - prev.at <= BURST_WINDOW_MS
                        && at >= prev.at
                        && (query.starts_with(&prev.query) || prev.query.starts_with(&query))
                    {
                        tx.prepare_cached(
                            "UPDATE searches SET final = 0 WHERE id = ?1 AND final = 1",
                        )?
                        .execute([prev.row])?;
                        tx.prepare_cached(
                            "UPDATE popularity SET finals = finals - 1 WHERE query = ?1",
                        )?
                        .execute([&prev.query])?;
                    }
                    tx.prepare_cached(
                        "INSERT INTO searches (at, query, hits, final) VALUES (?1, ?2, ?3, 1)",
                    )?
                    .execute(params![at, query, hits])?;
                    let row = tx.last_insert_rowid();
                    tx.prepare_cached(
                        "INSERT INTO popularity (query, finals, last_hits, last_at)
                         VALUES (?1, 1, ?2, ?3)
                         ON CONFLICT (query) DO UPDATE SET finals = finals + 1,
                             last_hits = excluded.last_hits, last_at = excluded.last_at",
                    )?
                    .execute(params![query, hits, at])?;
                    if let Some(client) = client {
                        if self.last.len() > 100_000 {
                            self.last.retain(|_, s| at - s.at <= BURST_WINDOW_MS);
                        }
                        self.last.insert(client, LastSearch { row, query, at });
                    }
                }
                Event::Feedback {
                    at,
                    query,
                    article_id,
                    event,
                } => {
                    let query = normalize_query(&query);
                    tx.prepare_cached(
                        "INSERT INTO feedback (at, query, article_id, event) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![at, query, article_id, event.as_str()])?;
                }
                Event::Prune { before } => {
                    tx.execute("DELETE FROM searches WHERE at < ?1", [before])?;
                    tx.execute("DELETE FROM feedback WHERE at < ?1", [before])?;
                    tx.execute("DELETE FROM popularity WHERE last_at < ?1", [before])?;
                    self.last.retain(|_, s| s.at >= before);
                }
                Event::Flush(done) => flushes.push(done),
            }
        }
        tx.commit()
    }
}

/// `first` and the events sent after it until `deadline`, a flush, the channel closing or
/// [`MAX_BATCH`] events. The writer sleeps between looks (senders do not wake it for every
/// event); [`Analytics::flush`] and [`Analytics::shutdown`] unpark it.
fn gather(rx: &Receiver<Event>, first: Event, deadline: Instant) -> Vec<Event> {
    let mut flush = matches!(first, Event::Flush(_));
    let mut batch = vec![first];
    loop {
        loop {
            if batch.len() >= MAX_BATCH {
                return batch;
            }
            match rx.try_recv() {
                Ok(event) => {
                    flush |= matches!(event, Event::Flush(_));
                    batch.push(event);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return batch,
            }
        }
        let now = Instant::now();
        if flush || now >= deadline {
            return batch;
        }
        std::thread::park_timeout(deadline - now);
    }
}

/// The analytics database for an index directory: `<index>/analytics.sqlite3`. tantivy only
/// garbage-collects files it lists in its own `managed.json`, so a foreign file there is safe,
/// and the index directory stays the one thing to back up.
pub fn default_path(index_dir: &Path) -> std::path::PathBuf {
    index_dir.join("analytics.sqlite3")
}

/// Whether a database exists at `path` (for `kefu analytics` on a fresh machine).
pub fn exists(path: &Path) -> bool {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| {
            c.query_row(
                "SELECT name FROM sqlite_master WHERE name = 'searches'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()
        })
        .is_ok_and(|name| name.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn top(store: &Analytics) -> Vec<(String, i64, i64, i64, i64)> {
        store
            .queries(ReportKind::Top, 0, 100)
            .unwrap()
            .into_iter()
            .map(|q| (q.query, q.count, q.clicks, q.helpful, q.not_helpful))
            .collect()
    }

    #[test]
    fn normalization_folds_width_case_and_spaces() {
        assert_eq!(
            normalize_query("  ＥＣＳ   实例\t无法启动 "),
            "ecs 实例 无法启动"
        );
        assert_eq!(normalize_query("Refund"), "refund");
        assert_eq!(normalize_query(&"长".repeat(1000)).chars().count(), 256);
    }

    #[test]
    fn typing_burst_counts_only_the_final_query() {
        let store = Analytics::open_in_memory().unwrap();
        for (i, q) in ["如", "如何", "如何申请", "如何申请退款"]
            .iter()
            .enumerate()
        {
            store.record_search_at(T0 + i as i64 * 300, q, 3, Some(7));
        }
        // Another client typing the same thing concurrently is its own burst.
        store.record_search_at(T0 + 100, "如何申请退款", 3, Some(8));
        // Same client, an unrelated query: a new burst.
        store.record_search_at(T0 + 2_000, "发票", 0, Some(7));
        // Same client, a refinement long after: also a new burst.
        store.record_search_at(T0 + 60_000, "发票 抬头", 2, Some(7));
        assert_eq!(
            top(&store),
            vec![
                ("如何申请退款".into(), 2, 0, 0, 0),
                ("发票 抬头".into(), 1, 0, 0, 0),
                ("发票".into(), 1, 0, 0, 0),
            ]
        );
        assert_eq!(store.counts().unwrap(), (7, 0));
        let zero = store.queries(ReportKind::ZeroResults, 0, 10).unwrap();
        assert_eq!(zero.len(), 1);
        assert_eq!((zero[0].query.as_str(), zero[0].count), ("发票", 1));
    }

    #[test]
    fn backspacing_is_part_of_the_burst() {
        let store = Analytics::open_in_memory().unwrap();
        store.record_search_at(T0, "退款到账", 0, Some(1));
        store.record_search_at(T0 + 500, "退款", 4, Some(1));
        assert_eq!(top(&store), vec![("退款".into(), 1, 0, 0, 0)]);
        assert!(
            store
                .queries(ReportKind::ZeroResults, 0, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn feedback_joins_the_query_and_since_filters() {
        let store = Analytics::open_in_memory().unwrap();
        store.record_search_at(T0, "如何申请退款", 3, None);
        store.record_feedback_at(T0 + 10, "如何申请退款 ", "a.md", FeedbackEvent::Click);
        store.record_feedback_at(T0 + 20, "如何申请退款", "a.md", FeedbackEvent::Helpful);
        store.record_feedback_at(T0 + 30, "如何申请退款", "b.md", FeedbackEvent::NotHelpful);
        // A vote for a query whose search was superseded still shows the query.
        store.record_feedback_at(T0 + 40, "Invoice", "c.md", FeedbackEvent::Click);
        // Feedback without a query (an article opened directly) is not a query line.
        store.record_feedback_at(T0 + 50, "", "c.md", FeedbackEvent::Helpful);
        assert_eq!(
            top(&store),
            vec![
                ("如何申请退款".into(), 1, 1, 1, 1),
                ("invoice".into(), 0, 1, 0, 0),
            ]
        );
        let recent = store.queries(ReportKind::Top, T0 + 35, 10).unwrap();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].query, "invoice");
        assert_eq!(recent[0].last_seen, format_ms(T0 + 40));
        assert_eq!(store.queries(ReportKind::Top, 0, 1).unwrap().len(), 1);
    }

    #[test]
    fn popular_prefix_needs_repeats_and_hits() {
        let store = Analytics::open_in_memory().unwrap();
        for at in [T0, T0 + 10, T0 + 20] {
            store.record_search_at(at, "退款多久到账", 5, None);
        }
        store.record_search_at(T0, "退款 发票", 2, None);
        store.record_search_at(T0 + 1, "退款 发票", 2, None);
        store.record_search_at(T0, "退款 订单 12345", 1, None); // asked once: private
        store.record_search_at(T0, "退款失败", 0, None);
        store.record_search_at(T0 + 1, "退款失败", 0, None); // finds nothing: not suggested
        store.flush().unwrap();
        let got: Vec<_> = store
            .popular_with_prefix("退款", 10)
            .unwrap()
            .into_iter()
            .map(|p| (p.query, p.searches))
            .collect();
        assert_eq!(
            got,
            vec![("退款多久到账".into(), 3), ("退款 发票".into(), 2)]
        );
        assert!(
            store
                .popular_with_prefix("退款多久到账", 10)
                .unwrap()
                .is_empty()
        );
        assert!(store.popular_with_prefix("", 10).unwrap().is_empty());
    }

    #[test]
    fn pruning_forgets_old_activity() {
        let store = Analytics::open_in_memory().unwrap();
        let day = 86_400_000;
        store.record_search_at(T0, "旧问题", 1, None);
        store.record_search_at(T0 + 1, "旧问题", 1, None);
        store.record_feedback_at(T0, "旧问题", "a.md", FeedbackEvent::Click);
        store.record_search_at(T0 + 10 * day, "新问题", 1, None);
        store.prune_before(T0 + day);
        assert_eq!(top(&store), vec![("新问题".into(), 1, 0, 0, 0)]);
        assert_eq!(store.counts().unwrap(), (1, 0));
        assert!(store.popular_with_prefix("旧", 5).unwrap().is_empty());
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite3");
        {
            let store = Analytics::open(&path).unwrap();
            store.record_search("ecs", 1, None);
            store.record_feedback("ecs", "x.md", FeedbackEvent::Click);
        }
        assert!(exists(&path));
        let store = Analytics::open(&path).unwrap();
        assert_eq!(top(&store), vec![("ecs".into(), 1, 1, 0, 0)]);
        assert!(!exists(&dir.path().join("missing.sqlite3")));
    }

    #[test]
    fn rfc3339_round_trip() {
        let ms = parse_rfc3339_ms("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(format_ms(ms), "2026-01-02T03:04:05Z");
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
