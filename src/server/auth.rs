//! API keys: `Authorization: Bearer <key>`.
//!
//! Two kinds, as in Algolia/Meilisearch: *admin* keys (`KEFU_API_KEYS` or `--api-keys-file`)
//! allow everything, including the writes (article upserts and deletes), which always need one;
//! *search* keys (`KEFU_SEARCH_API_KEYS`), when any are configured, are then required by the read
//! API (search, suggest, route, analytics...), which is otherwise open. Pages, `/healthz` and
//! `/metrics` stay open.
//!
//! Must never: compare keys with `==` (timing leaks how much of a guess was right). Keys are
//! hashed to fixed-length digests and compared in constant time against every configured key.
//!
//! ```
//! use kefu::server::auth::ApiKeys;
//! let keys = ApiKeys::new(["s3cret".to_string()], []);
//! assert!(keys.is_admin("s3cret"));
//! assert!(!keys.is_admin("s3cre"));
//! ```

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

type Digest = [u8; 20];

fn digest(key: &str) -> Digest {
    sha1_smol::Sha1::from(key.as_bytes()).digest().bytes()
}

/// Configured keys, stored as digests.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    admin: Vec<Digest>,
    search: Vec<Digest>,
}

impl ApiKeys {
    /// Keys from lists; blank entries are ignored.
    pub fn new(
        admin: impl IntoIterator<Item = String>,
        search: impl IntoIterator<Item = String>,
    ) -> ApiKeys {
        let clean = |keys: &mut dyn Iterator<Item = String>| {
            keys.map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .map(|k| digest(&k))
                .collect()
        };
        ApiKeys {
            admin: clean(&mut admin.into_iter()),
            search: clean(&mut search.into_iter()),
        }
    }

    /// Comma-separated lists (the `KEFU_*` variables) plus a file of admin keys, one per line
    /// (`#` comments allowed).
    pub fn from_config(
        admin_csv: Option<&str>,
        admin_file: Option<&Path>,
        search_csv: Option<&str>,
    ) -> std::io::Result<ApiKeys> {
        let split = |csv: Option<&str>| -> Vec<String> {
            csv.unwrap_or_default()
                .split(',')
                .map(str::to_string)
                .collect()
        };
        let mut admin = split(admin_csv);
        if let Some(file) = admin_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                std::io::Error::new(e.kind(), format!("API keys file {}: {e}", file.display()))
            })?;
            admin.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.starts_with('#'))
                    .map(str::to_string),
            );
        }
        Ok(ApiKeys::new(admin, split(search_csv)))
    }

    /// Whether any admin key is configured (else writes are refused).
    pub fn has_admin_keys(&self) -> bool {
        !self.admin.is_empty()
    }

    /// Whether reads need a key.
    pub fn reads_protected(&self) -> bool {
        !self.search.is_empty()
    }

    pub fn is_admin(&self, key: &str) -> bool {
        matches_any(&self.admin, key)
    }

    pub fn is_search(&self, key: &str) -> bool {
        matches_any(&self.search, key)
    }
}

/// Constant time in the number of keys: every key is compared, no early exit.
fn matches_any(keys: &[Digest], key: &str) -> bool {
    let candidate = digest(key);
    let mut found = subtle::Choice::from(0u8);
    for k in keys {
        found |= k.ct_eq(&candidate);
    }
    found.into()
}

/// The bearer token of a request, `Err` when the header is missing or not `Bearer`.
fn bearer(request: &Request) -> Result<&str, ApiError> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                "this endpoint needs an API key: send `Authorization: Bearer <key>`",
            )
        })?;
    value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "the Authorization header must be `Bearer <key>`",
            )
        })
}

fn wrong_key() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "the API key is not valid for this endpoint",
    )
}

/// Middleware for writes: an admin key is required.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let keys = &state.keys;
    if !keys.has_admin_keys() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "writes_disabled",
            "writes are disabled: the server has no API keys (set KEFU_API_KEYS or --api-keys-file)",
        ));
    }
    if !keys.is_admin(bearer(&request)?) {
        return Err(wrong_key());
    }
    Ok(next.run(request).await)
}

/// Middleware for reads: a search or admin key, when search keys are configured.
pub async fn require_search(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let keys = &state.keys;
    if keys.reads_protected() {
        let key = bearer(&request)?;
        // Both checks always run: which kind matched must not show in the timing either.
        let (search, admin) = (keys.is_search(key), keys.is_admin(key));
        if !(search | admin) {
            return Err(wrong_key());
        }
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(&file, "# admins\nfile-key\n\n").unwrap();
        let keys = ApiKeys::from_config(Some("a, b,,"), Some(&file), Some("s")).unwrap();
        assert!(keys.is_admin("a") && keys.is_admin("b") && keys.is_admin("file-key"));
        assert!(!keys.is_admin("") && !keys.is_admin("s") && !keys.is_admin("# admins"));
        assert!(keys.is_search("s") && keys.reads_protected());
        assert!(ApiKeys::from_config(None, Some(&dir.path().join("none")), None).is_err());
        let open = ApiKeys::from_config(None, None, None).unwrap();
        assert!(!open.has_admin_keys() && !open.reads_protected());
    }
}
