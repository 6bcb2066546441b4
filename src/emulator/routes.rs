//! HTTP routes: the token endpoint, the Web API pipeline (auth → limits → faults → latency →
//! dispatch → optional connection drop) and the `/_emulator/*` control endpoints.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::api::{dispatch_atomic, ApiRequest, Identity};
use super::auth::{token_request, unauthorized, TokenPolicy, TokenStore};
use super::batch::{self, count_operations, MAX_BATCH_OPERATIONS};
use super::faults::{FaultUpdate, Faults};
use super::limits::{LimitSettings, LimitState};
use super::records::{key_text, WriteContext};
use super::response::{codes, ApiError, ApiResponse};
use super::store::Store;

const MAX_BODY_BYTES: usize = 128 * 1024 * 1024;

/// Per-connection facts the server puts into every request.
#[derive(Clone)]
pub struct Connection {
    pub peer: SocketAddr,
    /// Notified to close the connection without an answer.
    pub drop_signal: Arc<Notify>,
}

#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub throttled: AtomicU64,
    pub batches: AtomicU64,
    pub dropped: AtomicU64,
    pub failed_injected: AtomicU64,
    pub unauthorized: AtomicU64,
}

pub struct Shared {
    pub base_url: String,
    pub service_root: String,
    pub token_url: String,
    pub port: u16,
    pub tls: bool,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    pub token_lifetime_secs: u64,
    pub dop_hint: u32,
    pub enforce_application_required: bool,
    pub identity: Identity,
    pub store: Mutex<Store>,
    pub tokens: Mutex<TokenStore>,
    pub limits: Mutex<LimitState>,
    pub limit_settings: Mutex<LimitSettings>,
    pub faults: Mutex<Faults>,
    pub counters: Counters,
}

fn count(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Shared {
    pub fn state_json(&self) -> Value {
        let store = self.store.lock().expect("store lock");
        let tables: serde_json::Map<String, Value> = store
            .tables
            .iter()
            .map(|t| (t.def.entity_set.clone(), json!(t.row_count())))
            .collect();
        let faults = self.faults.lock().expect("faults lock").settings;
        let limits = *self.limit_settings.lock().expect("limits lock");
        json!({
            "salesorders": store.count_by_set("salesorders"),
            "salesorderdetails": store.count_by_set("salesorderdetails"),
            "requests": count(&self.counters.requests),
            "throttled": count(&self.counters.throttled),
            "peaks": self.limits.lock().expect("limits lock").peaks(),
            "batches": count(&self.counters.batches),
            "dropped": count(&self.counters.dropped),
            "failed_injected": count(&self.counters.failed_injected),
            "unauthorized": count(&self.counters.unauthorized),
            "tokens_issued": self.tokens.lock().expect("tokens lock").issued,
            "tables": tables,
            "faults": faults,
            "limits": limits,
        })
    }

    fn orders_json(&self) -> Value {
        let store = self.store.lock().expect("store lock");
        let Some(orders) = store.table_by_set("salesorders") else {
            return json!({"count": 0, "orders": [], "duplicates": []});
        };
        // Each order's lines by their keys, in key order.
        let mut lines: HashMap<String, Vec<Option<String>>> = HashMap::new();
        if let Some(details) = store.table_by_set("salesorderdetails") {
            let details = store.table(details);
            for row in details.rows() {
                if let Some(Value::String(order)) = row.fields.get("_salesorderid_value") {
                    lines
                        .entry(order.clone())
                        .or_default()
                        .push(key_text(&details.def, &row.fields));
                }
            }
        }
        for keys in lines.values_mut() {
            keys.sort();
        }
        let state = store.table(orders);
        let list: Vec<Value> = state
            .rows()
            .iter()
            .map(|row| {
                json!({
                    "key": key_text(&state.def, &row.fields),
                    "id": row.id,
                    "name": row.fields.get("name"),
                    "lines": lines.get(&row.id.to_string()).map_or(0, Vec::len),
                    "line_keys": lines.get(&row.id.to_string()).cloned().unwrap_or_default(),
                })
            })
            .collect();
        let mut duplicates = state.duplicate_keys();
        if let Some(details) = store.table_by_set("salesorderdetails") {
            duplicates.extend(store.table(details).duplicate_keys());
        }
        json!({"count": list.len(), "orders": list, "duplicates": duplicates})
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/_emulator/state", get(state))
        .route("/_emulator/salesorders", get(orders))
        .route("/_emulator/faults", post(faults))
        .route("/_emulator/limits", post(limits))
        .route("/_emulator/revoke-tokens", post(revoke_tokens))
        .route("/api/data/v9.2", any(web_api))
        .route("/api/data/v9.2/", any(web_api))
        .route("/api/data/v9.2/{*rest}", any(web_api))
        .with_state(shared)
}

fn to_http(response: ApiResponse, dop_hint: u32) -> Response {
    let mut builder = Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder = builder
        .header("OData-Version", "4.0")
        .header("x-ms-dop-hint", dop_hint.to_string())
        .header("REQ_ID", super::store::new_id().to_string());
    builder
        .body(Body::from(response.body))
        .expect("valid response parts")
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form: HashMap<String, String> =
        super::odata_url::parse_query(&String::from_utf8_lossy(&body))
            .into_iter()
            .collect();
    let policy = TokenPolicy {
        tenant: &shared.tenant,
        client_id: &shared.client_id,
        client_secret: &shared.client_secret,
        lifetime_secs: shared.token_lifetime_secs,
        port: shared.port,
        scheme: if shared.tls { "https" } else { "http" },
    };
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let answer = {
        let mut tokens = shared.tokens.lock().expect("tokens lock");
        token_request(&policy, &mut tokens, &tenant, &form, authorization)
    };
    let status = StatusCode::from_u16(answer.status).expect("valid status");
    (status, [("Cache-Control", "no-store")], Json(answer.body)).into_response()
}

fn loopback_only(connection: &Connection) -> Result<(), Box<Response>> {
    if connection.peer.ip().is_loopback() {
        Ok(())
    } else {
        let refusal = (
            StatusCode::FORBIDDEN,
            "the /_emulator endpoints answer loopback clients only",
        );
        Err(Box::new(refusal.into_response()))
    }
}

async fn state(State(shared): State<Arc<Shared>>, Extension(c): Extension<Connection>) -> Response {
    if let Err(r) = loopback_only(&c) {
        return *r;
    }
    Json(shared.state_json()).into_response()
}

async fn orders(
    State(shared): State<Arc<Shared>>,
    Extension(c): Extension<Connection>,
) -> Response {
    if let Err(r) = loopback_only(&c) {
        return *r;
    }
    Json(shared.orders_json()).into_response()
}

async fn faults(
    State(shared): State<Arc<Shared>>,
    Extension(c): Extension<Connection>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = loopback_only(&c) {
        return *r;
    }
    let update: FaultUpdate = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("invalid fault settings: {e}"),
            )
                .into_response()
        }
    };
    let mut faults = shared.faults.lock().expect("faults lock");
    match faults.apply(&update) {
        Ok(()) => Json(json!(faults.settings)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn limits(
    State(shared): State<Arc<Shared>>,
    Extension(c): Extension<Connection>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = loopback_only(&c) {
        return *r;
    }
    let mut settings = shared.limit_settings.lock().expect("limits lock");
    let mut current = serde_json::to_value(*settings).expect("serializable");
    let update: serde_json::Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("invalid limit settings: {e}"),
            )
                .into_response()
        }
    };
    for (k, v) in update {
        if current.get(&k).is_none() {
            return (StatusCode::BAD_REQUEST, format!("unknown limit '{k}'")).into_response();
        }
        current[k] = v;
    }
    match serde_json::from_value::<LimitSettings>(current) {
        Ok(new) if new.limit_window_secs > 0 && new.limit_concurrent > 0 => {
            *settings = new;
            Json(json!(new)).into_response()
        }
        _ => (StatusCode::BAD_REQUEST, "invalid limit settings").into_response(),
    }
}

async fn revoke_tokens(
    State(shared): State<Arc<Shared>>,
    Extension(c): Extension<Connection>,
) -> Response {
    if let Err(r) = loopback_only(&c) {
        return *r;
    }
    let revoked = shared.tokens.lock().expect("tokens lock").revoke_all();
    Json(json!({"revoked": revoked})).into_response()
}

/// Marks a request in flight for the concurrency limit and records its execution time.
struct InFlight {
    shared: Arc<Shared>,
    user: String,
    started: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed().as_millis() as u64;
        if let Ok(mut limits) = self.shared.limits.lock() {
            limits.finish(&self.user, elapsed, Instant::now());
        }
    }
}

async fn web_api(
    State(shared): State<Arc<Shared>>,
    Extension(connection): Extension<Connection>,
    request: Request,
) -> Response {
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let dop = shared.dop_hint;
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let relative = path
        .strip_prefix("/api/data/v9.2")
        .unwrap_or(path)
        .trim_start_matches('/')
        .to_string();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let api_request_head = ApiRequest {
        method: parts.method.as_str().to_string(),
        path: relative,
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers,
        body: vec![],
    };

    let authorization = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let user = match shared
        .tokens
        .lock()
        .expect("tokens lock")
        .check(authorization)
    {
        Ok(user) => user,
        Err(problem) => {
            shared.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            return to_http(
                unauthorized(problem, &shared.token_url, &shared.base_url).into_response(),
                dop,
            );
        }
    };
    let settings = *shared.limit_settings.lock().expect("limits lock");
    if let Err(throttle) =
        shared
            .limits
            .lock()
            .expect("limits lock")
            .admit(&user, &settings, Instant::now())
    {
        shared.counters.throttled.fetch_add(1, Ordering::Relaxed);
        return to_http(throttle.into_response(), dop);
    }
    let _in_flight = InFlight {
        shared: shared.clone(),
        user,
        started: Instant::now(),
    };

    let (draw, fault_settings) = {
        let mut faults = shared.faults.lock().expect("faults lock");
        (faults.draw(), faults.settings)
    };
    if draw.fail {
        shared
            .counters
            .failed_injected
            .fetch_add(1, Ordering::Relaxed);
        let error = ApiError::new(
            503,
            codes::SERVICE_UNAVAILABLE,
            "The service is temporarily unavailable (injected fault). Try again later.",
        );
        return to_http(error.into_response(), dop);
    }
    if fault_settings.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault_settings.latency_ms)).await;
    }
    let body = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b.to_vec(),
        Err(_) => {
            return to_http(
                ApiError::new(413, codes::PAYLOAD_ERROR, "The request body is too large.")
                    .into_response(),
                dop,
            )
        }
    };
    let api_request = ApiRequest {
        body,
        ..api_request_head
    };
    let response = if api_request.path == "$batch" {
        serve_batch(&shared, &api_request, fault_settings.latency_per_op_ms).await
    } else {
        let mut store = shared.store.lock().expect("store lock");
        let no_references = HashMap::new();
        let ctx = WriteContext {
            service_root: &shared.service_root,
            content_ids: &no_references,
            enforce_application_required: shared.enforce_application_required,
        };
        let result = dispatch_atomic(&mut store, &ctx, &shared.identity, &api_request);
        store.release();
        match result {
            Ok((response, _)) => response,
            Err(error) => error.into_response(),
        }
    };
    if draw.drop_after_commit && api_request.is_write() {
        shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
        connection.drop_signal.notify_one();
        std::future::pending::<()>().await;
    }
    to_http(response, dop)
}

async fn serve_batch(shared: &Shared, request: &ApiRequest, latency_per_op_ms: u64) -> ApiResponse {
    if !request.method.eq_ignore_ascii_case("POST") {
        return ApiError::new(405, codes::METHOD_NOT_ALLOWED, "$batch accepts POST only.")
            .into_response();
    }
    shared.counters.batches.fetch_add(1, Ordering::Relaxed);
    let content_type = request.header("Content-Type").unwrap_or_default();
    let items = match batch::parse_batch(content_type, &request.body) {
        Ok(items) => items,
        Err(error) => return error.into_response(),
    };
    let operations = count_operations(&items);
    if operations > MAX_BATCH_OPERATIONS {
        return ApiError::bad_request(
            codes::PAYLOAD_ERROR,
            format!(
                "The number of operations in the batch ({operations}) exceeds the maximum of {MAX_BATCH_OPERATIONS}. \
                 Changeset members count one by one."
            ),
        )
        .into_response();
    }
    if latency_per_op_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_per_op_ms * operations as u64)).await;
    }
    let outcome = {
        let mut store = shared.store.lock().expect("store lock");
        let outcome = batch::execute(
            &mut store,
            &shared.service_root,
            shared.enforce_application_required,
            &shared.identity,
            &items,
            request.prefers("odata.continue-on-error"),
        );
        store.release();
        outcome
    };
    let (content_type, body) = batch::write_response(&outcome);
    let mut response = ApiResponse {
        status: outcome.status,
        headers: vec![("Content-Type".into(), content_type)],
        body,
    };
    if request.prefers("odata.continue-on-error") {
        response = response.with_header("Preference-Applied", "odata.continue-on-error");
    }
    response
}
