//! `/dashboard`: the queue, the workers and every job with its screenshot, in a browser.
//!
//! The page and its script are compiled into the binary (`dashboard/`), with no build step. Its
//! data comes from the JSON routes below, under `/dashboard/api/`, each authorised like the REST
//! API: `Authorization: Bearer <API key>` sees that key's jobs only, and `Bearer
//! <PGSHOT_ADMIN_TOKEN>` (the operator) sees every owner, the workers and the queue view. The
//! page keeps the key in the tab's session storage and sends it on every call; nothing is kept in
//! a cookie, so no other site can make the browser call these routes with it.
//!
//! Live updates are server-sent events on `/dashboard/api/events`: the API's LISTEN connection
//! (completion.rs) signals new jobs and watched completions at once, and a check of the viewer's
//! jobs every two seconds catches claims and completions nobody notified (a completion NOTIFY for
//! every job would slow the queue; README "Notifications").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgshot_job::new_job_id;
use poem::http::{header, StatusCode};
use poem::web::sse::{Event, SSE};
use poem::web::{Data, Path, Query};
use poem::{get, handler, post, IntoResponse, Request, Response, Route};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::db::Cursor;
use crate::error::{ApiError, ApiResult};
use crate::screenshots::State;
use crate::{api_key_of, same_token};

const INDEX_HTML: &str = include_str!("../dashboard/index.html");
const APP_JS: &str = include_str!("../dashboard/app.js");
const APP_CSS: &str = include_str!("../dashboard/app.css");

/// Scripts, styles and images only from this origin (and images from `blob:`, how the page shows
/// results it fetched with the key): a URL, title or error message that slipped into the page as
/// markup could still not run.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
                   connect-src 'self'; frame-src blob:; object-src blob:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// `PGSHOT_ADMIN_TOKEN`, when set: the operator's bearer token.
#[derive(Clone)]
pub struct AdminToken(pub Option<String>);

/// Who is looking: one API key's owner, or the operator (every owner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    Key(String),
    Operator,
}

impl Viewer {
    /// The owner every query is scoped to; `None` for the operator.
    fn owner(&self) -> Option<&str> {
        match self {
            Viewer::Key(owner) => Some(owner),
            Viewer::Operator => None,
        }
    }
}

pub fn routes() -> Route {
    Route::new()
        .at("/", get(index_page))
        .at("/app.js", get(app_js))
        .at("/app.css", get(app_css))
        .at("/api/session", get(session_page))
        .at("/api/jobs", get(jobs_page))
        .at("/api/jobs/:id", get(job_page))
        .at("/api/jobs/:id/thumbnail", get(thumbnail_image))
        .at("/api/jobs/:id/result", get(result_bytes))
        .at("/api/jobs/:id/outputs/:output", get(output_bytes))
        .at("/api/jobs/:id/cancel", post(cancel_job))
        .at("/api/jobs/:id/retry", post(retry_job))
        .at("/api/queue", get(queue_page))
        .at("/api/events", get(event_stream))
}

fn asset(content_type: &str, body: &'static str) -> Response {
    Response::builder()
        .content_type(content_type)
        .header(header::CONTENT_SECURITY_POLICY, CSP)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
}

#[handler]
fn index_page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

#[handler]
fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

#[handler]
fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// Failed logins allowed from one client address per [`FAILED_LOGIN_WINDOW`]; past that every
/// login from it is refused (429) until the window ends, right token or not, so that the
/// operator token cannot be guessed at the speed of the network.
const FAILED_LOGINS_ALLOWED: u32 = 10;
const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// Failed dashboard logins per client address, in the current window.
#[derive(Default)]
pub struct FailedLogins {
    by_address: std::sync::Mutex<HashMap<String, (Instant, u32)>>,
}

impl FailedLogins {
    /// Seconds until `address` may try again, when it is throttled.
    fn throttled(&self, address: &str) -> Option<u64> {
        let by = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        let (since, failures) = by.get(address)?;
        let left = FAILED_LOGIN_WINDOW.checked_sub(since.elapsed())?;
        (*failures >= FAILED_LOGINS_ALLOWED).then(|| left.as_secs() + 1)
    }

    fn failed(&self, address: &str) {
        let mut by = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        by.retain(|_, (since, _)| since.elapsed() < FAILED_LOGIN_WINDOW);
        by.entry(address.to_string()).or_insert((Instant::now(), 0)).1 += 1;
    }
}

async fn viewer(rid: &str, req: &Request, state: &State, admin: &AdminToken) -> ApiResult<Viewer> {
    let address = req.remote_addr().as_socket_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    if let Some(retry_after) = state.failed_logins.throttled(&address) {
        return Err(ApiError::too_many_logins(rid, retry_after));
    }
    let failed = || {
        state.failed_logins.failed(&address);
        ApiError::unauthorized(rid)
    };
    let token = api_key_of(req).ok_or_else(failed)?;
    if admin.0.as_deref().is_some_and(|admin| same_token(&token, admin)) {
        return Ok(Viewer::Operator);
    }
    let owner = state.db.owner(rid, &token).await?.ok_or_else(failed)?;
    Ok(Viewer::Key(owner))
}

fn json_response(value: &Value) -> Response {
    Response::builder()
        .content_type("application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(value.to_string())
}

/// Runs `f` for an authorised viewer; a client mistake is its error body, never a 500.
async fn answer<F, Fut>(req: &Request, state: &State, admin: &AdminToken, f: F) -> Response
where
    F: FnOnce(String, Viewer) -> Fut,
    Fut: std::future::Future<Output = ApiResult<Response>>,
{
    let rid = new_job_id();
    let result = match viewer(&rid, req, state, admin).await {
        Ok(viewer) => f(rid, viewer).await,
        Err(e) => Err(e),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

#[handler]
async fn session_page(req: &Request, state: Data<&Arc<State>>, admin: Data<&AdminToken>) -> Response {
    answer(req, &state, &admin, |_, viewer| async move {
        Ok(json_response(&match viewer {
            Viewer::Key(owner) => json!({"role": "key", "owner": owner}),
            Viewer::Operator => json!({"role": "operator"}),
        }))
    })
    .await
}

#[derive(Deserialize)]
struct JobsQuery {
    status: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

const STATUSES: [&str; 5] = ["QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"];

#[handler]
async fn jobs_page(
    req: &Request,
    query: Query<JobsQuery>,
    state: Data<&Arc<State>>,
    admin: Data<&AdminToken>,
) -> Response {
    let state = *state;
    answer(req, state, &admin, |rid, viewer| async move {
        let status = query.status.as_deref().filter(|s| !s.is_empty());
        if let Some(status) = status {
            if !STATUSES.contains(&status) {
                let message = format!("status must be one of {}", STATUSES.join(", "));
                return Err(ApiError::bad_request(
                    &rid,
                    "INVALID_REQUEST",
                    message,
                    Some(crate::error::ErrorDetails::field("status")),
                ));
            }
        }
        let search = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
        if search.is_some_and(|q| q.chars().count() > 200) {
            return Err(ApiError::bad_request(
                &rid,
                "INVALID_REQUEST",
                "q must be at most 200 characters",
                Some(crate::error::ErrorDetails::field("q")),
            ));
        }
        let cursor = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(raw) => Some(Cursor::parse(raw).ok_or_else(|| ApiError::invalid_cursor(&rid))?),
            None => None,
        };
        let limit = query.limit.unwrap_or(25).clamp(1, 100);
        let mut rows =
            state.db.dashboard_jobs(&rid, viewer.owner(), status, search, cursor.as_ref(), limit + 1).await?;
        let next = (rows.len() as i64 > limit).then(|| rows[limit as usize - 1].3.to_string());
        rows.truncate(limit as usize);
        let jobs: Vec<Value> = rows
            .into_iter()
            .map(|(mut job, owner, thumbnail, _)| {
                state.storage_urls(&mut job);
                job["owner"] = owner.map_or(Value::Null, Value::String);
                job["hasThumbnail"] = thumbnail.into();
                job
            })
            .collect();
        Ok(json_response(&json!({"jobs": jobs, "nextCursor": next})))
    })
    .await
}

#[handler]
async fn job_page(req: &Request, id: Path<String>, state: Data<&Arc<State>>, admin: Data<&AdminToken>) -> Response {
    let state = *state;
    answer(req, state, &admin, |rid, viewer| async move {
        let mut page = state.db.dashboard_job(&rid, viewer.owner(), &id).await?;
        state.storage_urls(&mut page["job"]);
        mask_secrets(&mut page["request"]);
        // The role that enqueued a job, and the workers that ran it, are the operator's business.
        if let (Viewer::Key(_), Some(fields)) = (&viewer, page.as_object_mut()) {
            fields.remove("enqueuedBy");
            crate::screenshots::hide_workers(&mut page["job"]);
        }
        Ok(json_response(&page))
    })
    .await
}

#[handler]
async fn thumbnail_image(
    req: &Request,
    id: Path<String>,
    state: Data<&Arc<State>>,
    admin: Data<&AdminToken>,
) -> Response {
    let state = *state;
    answer(req, state, &admin, |rid, viewer| async move {
        match state.db.thumbnail(&rid, viewer.owner(), &id).await? {
            Some((content_type, bytes)) => Ok(Response::builder()
                .content_type(content_type)
                .header(header::CACHE_CONTROL, "private, max-age=3600")
                .body(bytes)),
            None => Err(ApiError::not_found(&rid, format!("job \"{}\" has no thumbnail", *id))),
        }
    })
    .await
}

#[handler]
async fn result_bytes(req: &Request, id: Path<String>, state: Data<&Arc<State>>, admin: Data<&AdminToken>) -> Response {
    download(req, &state, &admin, &id, None).await
}

#[handler]
async fn output_bytes(
    req: &Request,
    Path((id, output)): Path<(String, String)>,
    state: Data<&Arc<State>>,
    admin: Data<&AdminToken>,
) -> Response {
    download(req, &state, &admin, &id, Some(&output)).await
}

/// A result's bytes, always through the API (the page fetches them with the key and shows a blob).
async fn download(req: &Request, state: &State, admin: &AdminToken, id: &str, output: Option<&str>) -> Response {
    answer(req, state, admin, |rid, viewer| async move {
        let mut row = state.db.result(&rid, viewer.owner(), id, output).await?;
        let bytes = state.result_bytes(&rid, &mut row).await?;
        Ok(Response::builder()
            .content_type(row.content_type)
            // Shown in the page as a blob, never as a document of this origin.
            .header(header::CONTENT_SECURITY_POLICY, "sandbox")
            .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
            .body(bytes))
    })
    .await
}

#[handler]
async fn cancel_job(req: &Request, id: Path<String>, state: Data<&Arc<State>>, admin: Data<&AdminToken>) -> Response {
    let state = *state;
    answer(req, state, &admin, |rid, viewer| async move {
        let mut job = state.db.cancel(&rid, viewer.owner(), &id).await?;
        state.storage_urls(&mut job);
        Ok(json_response(&job))
    })
    .await
}

#[handler]
async fn retry_job(req: &Request, id: Path<String>, state: Data<&Arc<State>>, admin: Data<&AdminToken>) -> Response {
    let state = *state;
    answer(req, state, &admin, |rid, viewer| async move {
        let job = state.db.retry(&rid, viewer.owner(), &id, &new_job_id()).await?;
        Ok(json_response(&job).with_status(StatusCode::CREATED).into_response())
    })
    .await
}

#[handler]
async fn queue_page(req: &Request, state: Data<&Arc<State>>, admin: Data<&AdminToken>) -> Response {
    let state = *state;
    answer(req, state, &admin, |rid, viewer| async move {
        if viewer != Viewer::Operator {
            return Ok(crate::error::forbidden(&rid, "the queue view needs the operator token (PGSHOT_ADMIN_TOKEN)"));
        }
        Ok(json_response(&state.db.queue_view(&rid).await?))
    })
    .await
}

/// How often a stream checks the viewer's jobs when no notification came.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// A check this recent is what every stream of the viewer sees (they wake together on a
/// notification).
const CHECK_SHARED_FOR: Duration = Duration::from_millis(500);

impl Viewer {
    /// The name its streams are counted and shared under.
    fn holder(&self) -> &str {
        match self {
            Viewer::Key(owner) => owner,
            Viewer::Operator => "operator",
        }
    }
}

/// What each viewer's event streams last saw: whether its key is still live and the fingerprint
/// of its jobs, checked by whichever of its streams asks first and shared by the others for
/// [`CHECK_SHARED_FOR`] (a viewer with four tabs costs one check a tick, not four).
#[derive(Default)]
pub struct StreamChecks {
    viewers: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<(Instant, Option<String>)>>>>>,
    made: std::sync::atomic::AtomicU64,
}

impl StreamChecks {
    /// Checks made so far (for /metrics).
    pub fn made(&self) -> u64 {
        self.made.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The viewer's fingerprint, or `None` once its key was revoked (the operator's token is the
    /// API's setting and cannot be).
    async fn check(&self, state: &State, viewer: &Viewer, token: &str) -> ApiResult<Option<String>> {
        let cell = {
            let mut viewers = self.viewers.lock().unwrap_or_else(|e| e.into_inner());
            // Forget viewers not checked for a minute (their streams are gone).
            viewers.retain(|_, c| {
                Arc::strong_count(c) > 1
                    || c.try_lock()
                        .map_or(true, |g| g.as_ref().is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(60)))
            });
            viewers.entry(viewer.holder().to_string()).or_default().clone()
        };
        let mut last = cell.lock().await;
        if let Some((at, seen)) = last.as_ref() {
            if at.elapsed() < CHECK_SHARED_FOR {
                return Ok(seen.clone());
            }
        }
        let rid = new_job_id();
        self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let live = match viewer {
            Viewer::Key(owner) => state.db.owner(&rid, token).await?.as_deref() == Some(owner.as_str()),
            Viewer::Operator => true,
        };
        let seen = if live { Some(state.db.fingerprint(&rid, viewer.owner()).await?) } else { None };
        *last = Some((Instant::now(), seen.clone()));
        Ok(seen)
    }
}

#[handler]
async fn event_stream(req: &Request, state: Data<&Arc<State>>, admin: Data<&AdminToken>) -> Response {
    let state = state.clone();
    let rid = new_job_id();
    let viewer = match viewer(&rid, req, &state, &admin).await {
        Ok(viewer) => viewer,
        Err(e) => return e.into_response(),
    };
    let token = api_key_of(req).unwrap_or_default();
    // Capped per viewer and in all: each open stream holds a connection's worth of the API.
    let slot = match state.event_streams.try_admit(viewer.holder()) {
        Ok(slot) => slot,
        Err(refused) => return ApiError::too_many_streams(&rid, refused).into_response(),
    };
    let changes = state.completions.changes();
    // One `change` event whenever what the viewer sees changed; the page then reloads its view.
    // The key is checked again at every tick: a revoked key's streams end.
    let stream = futures::stream::unfold(
        (state, viewer, token, changes, None::<String>, slot),
        |(state, viewer, token, mut changes, last, slot)| async move {
            loop {
                if last.is_some() {
                    let _ = tokio::time::timeout(CHECK_EVERY, changes.changed()).await;
                    // Several notifications of one burst make one check.
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    changes.borrow_and_update();
                }
                let now = match state.stream_checks.check(&state, &viewer, &token).await {
                    Ok(Some(now)) => now,
                    Ok(None) => return None,
                    Err(_) => {
                        tokio::time::sleep(CHECK_EVERY).await;
                        continue;
                    }
                };
                if last.as_deref() != Some(&now) {
                    let event =
                        Event::message(json!({"reason": if last.is_none() { "hello" } else { "change" }}).to_string())
                            .event_type("change");
                    return Some((event, (state, viewer, token, changes, Some(now), slot)));
                }
            }
        },
    );
    SSE::new(stream).keep_alive(Duration::from_secs(15)).into_response()
}

/// A stored request as its page shows it: the values of cookies, headers, storage items, typed
/// text and the webhook secret replaced by "••••" (their names stay, so that one can see what
/// was sent).
pub fn mask_secrets(request: &mut Value) {
    const MASK: &str = "••••";
    let Some(fields) = request.as_object_mut() else { return };
    if fields.get("webhookSecret").is_some_and(|s| !s.is_null()) {
        fields.insert("webhookSecret".into(), MASK.into());
    }
    if let Some(session) = fields.get_mut("session").and_then(Value::as_object_mut) {
        for list in ["cookies", "headers"] {
            for item in session.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(value) = item.get_mut("value") {
                    *value = MASK.into();
                }
            }
        }
        for item in session.get_mut("storage").and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(item) = item.as_object_mut() else { continue };
            if item.get("value").is_some_and(|v| !v.is_null()) {
                item.insert("value".into(), MASK.into());
            }
            for map in ["localStorage", "sessionStorage"] {
                for value in item.get_mut(map).and_then(Value::as_object_mut).into_iter().flat_map(|m| m.values_mut()) {
                    *value = MASK.into();
                }
            }
        }
    }
    for action in fields.get_mut("actions").and_then(Value::as_array_mut).into_iter().flatten() {
        for field in ["text", "value"] {
            if let Some(value) = action.get_mut(field).filter(|v| v.is_string()) {
                *value = MASK.into();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_their_names_kept() {
        let mut request = json!({
            "viewport": {"width": 1280, "height": 800},
            "webhookUrl": "https://hooks.example/x",
            "webhookSecret": "whsec_abc",
            "session": {
                "cookies": [{"name": "sid", "value": "s3cr3t", "domain": "example.com"}],
                "headers": [{"name": "Authorization", "value": "Bearer t0ken"}],
                "storage": [
                    {"key": "jwt", "value": "eyJ", "origin": "https://example.com"},
                    {"origin": "https://example.com", "localStorage": {"a": "1"}, "sessionStorage": {"b": "2"}}
                ]
            },
            "actions": [
                {"type": "type", "selector": "#password", "text": "hunter2"},
                {"type": "select", "selector": "#plan", "value": "pro"},
                {"type": "click", "selector": "#go"}
            ]
        });
        mask_secrets(&mut request);
        let text = request.to_string();
        for secret in ["whsec_abc", "s3cr3t", "t0ken", "eyJ", "hunter2", "\"pro\"", "\"1\"", "\"2\""] {
            assert!(!text.contains(secret), "{secret} is still in {text}");
        }
        assert_eq!(request["session"]["cookies"][0]["name"], "sid");
        assert_eq!(request["session"]["headers"][0]["name"], "Authorization");
        assert_eq!(request["session"]["storage"][0]["key"], "jwt");
        assert_eq!(request["actions"][0]["selector"], "#password");
        assert_eq!(request["viewport"]["width"], 1280);
        assert_eq!(request["webhookUrl"], "https://hooks.example/x");
    }

    #[test]
    fn a_request_without_secrets_is_unchanged() {
        let mut request = json!({"fullPage": true, "session": {}, "actions": []});
        let before = request.clone();
        mask_secrets(&mut request);
        assert_eq!(request, before);
        let mut not_an_object = json!("x");
        mask_secrets(&mut not_an_object);
        assert_eq!(not_an_object, json!("x"));
    }

    #[test]
    fn tokens_compare_whole() {
        use crate::same_token as same;
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        assert!(!same("", "a"));
    }
}
