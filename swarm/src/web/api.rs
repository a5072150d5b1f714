//! Handlers for Locust's web API; JSON keys and CSV headers are Locust's.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Form, Json};
use serde_json::{json, Value};

use super::form::parse_swarm_form;
use super::WebState;
use crate::master::{MasterError, MasterSnapshot};
use crate::stats::{now_epoch, ExceptionRow, StatsEntry};

const INDEX: &str = include_str!("assets/index.html");
/// Chart and formatting code shared by the page and the report.
pub(super) const COMMON_JS: &str = include_str!("assets/common.js");

/// The master has gone away: nothing here can answer.
pub(super) struct ApiError(MasterError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"success": false, "message": self.0.to_string()})),
        )
            .into_response()
    }
}

impl From<MasterError> for ApiError {
    fn from(err: MasterError) -> Self {
        ApiError(err)
    }
}

type ApiResult<T> = Result<T, ApiError>;

pub(super) async fn index() -> Html<&'static str> {
    Html(INDEX)
}

pub(super) async fn common_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        COMMON_JS,
    )
}

pub(super) async fn swarm(
    State(state): State<WebState>,
    Form(fields): Form<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let host = || async {
        state
            .master
            .snapshot()
            .await
            .map(|s| s.host)
            .unwrap_or_default()
    };
    let request = match parse_swarm_form(&fields) {
        Ok(request) => request,
        Err(err) => {
            return Ok(Json(
                json!({"success": false, "message": err.0, "host": host().await}),
            ))
        }
    };
    let run_time = request.run_time;
    match state.master.swarm(request).await {
        Ok(message) => {
            let mut answer = json!({"success": true, "message": message, "host": host().await});
            // Locust adds the run time, in whole seconds, when one was given.
            if let Some(run_time) = run_time {
                answer["run_time"] = json!(run_time.as_secs());
            }
            Ok(Json(answer))
        }
        Err(MasterError::Gone) => Err(ApiError(MasterError::Gone)),
        Err(err) => Ok(Json(
            json!({"success": false, "message": err.to_string(), "host": host().await}),
        )),
    }
}

pub(super) async fn stop(State(state): State<WebState>) -> ApiResult<Json<Value>> {
    state.master.stop().await?;
    Ok(Json(json!({"success": true, "message": "Test stopped"})))
}

pub(super) async fn reset(State(state): State<WebState>) -> ApiResult<&'static str> {
    state.master.reset_stats().await?;
    Ok("ok")
}

/// `GET /stats/total` (our extension): the `Aggregated` entry with its
/// response-time buckets, so a remote ramp measures exact windows.
pub(super) async fn total(State(state): State<WebState>) -> ApiResult<Json<Value>> {
    Ok(Json(crate::ramp::total_json(
        &state.master.snapshot().await?,
    )))
}

pub(super) async fn requests(State(state): State<WebState>) -> ApiResult<Json<Value>> {
    Ok(Json(requests_json(
        &state.master.snapshot().await?,
        now_epoch(),
    )))
}

/// `GET /stats/requests`, as Locust's master answers it.
pub fn requests_json(snapshot: &MasterSnapshot, now: f64) -> Value {
    let stats = &snapshot.stats;
    let mut rows: Vec<Value> = stats
        .sorted_entries()
        .into_iter()
        .take(500)
        .map(|e| entry_json(e, now))
        .collect();
    rows.push(entry_json(&stats.total, now));
    let errors: Vec<Value> = stats.errors.values().take(500).map(|e| {
        json!({"method": e.method, "name": e.name, "error": e.error, "occurrences": e.occurrences, "first_seen": e.first_seen, "last_seen": e.last_seen})
    }).collect();
    let workers: Vec<Value> = snapshot.workers.iter().map(|w| {
        json!({"id": w.id, "state": w.state.as_str(), "user_count": w.user_count, "cpu_usage": w.cpu_usage, "memory_usage": w.memory_usage})
    }).collect();
    let total = &stats.total;
    json!({
        "stats": rows,
        "errors": errors,
        "current_rps": total.current_rps(now),
        "current_fail_per_sec": total.current_fail_per_sec(now),
        "total_rps": total.total_rps(),
        "total_fail_per_sec": total.total_fail_per_sec(),
        "fail_ratio": total.fail_ratio(),
        "current_response_time_percentiles": {
            "response_time_percentile_0.5": snapshot.current_percentiles.0,
            "response_time_percentile_0.95": snapshot.current_percentiles.1,
        },
        "workers": workers,
        "worker_count": snapshot.active_workers(),
        "state": snapshot.state.as_str(),
        "user_count": snapshot.user_count,
        "host": snapshot.host,
        // Our extension: joins, missing, back, quits, spot reclaims.
        "worker_events": snapshot.events,
    })
}

fn entry_json(e: &StatsEntry, now: f64) -> Value {
    json!({
        "method": e.method,
        "name": e.name,
        "num_requests": e.num_requests,
        "num_failures": e.num_failures,
        "min_response_time": e.min_response_time.map_or(0, |m| m.round() as u64),
        "max_response_time": e.max_response_time.round() as u64,
        "current_rps": e.current_rps(now),
        "current_fail_per_sec": e.current_fail_per_sec(now),
        "avg_response_time": e.avg_response_time(),
        "median_response_time": e.median_response_time(),
        "total_rps": e.total_rps(),
        "total_fail_per_sec": e.total_fail_per_sec(),
        "response_time_percentile_0.95": e.percentile(0.95),
        "response_time_percentile_0.99": e.percentile(0.99),
        "avg_content_length": e.avg_content_length(),
    })
}

fn csv_download(body: String, what: &str) -> Response {
    let name = format!(
        "attachment; filename=\"spotload_{what}_{}.csv\"",
        now_epoch() as u64
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv".to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn requests_csv(State(state): State<WebState>) -> ApiResult<Response> {
    Ok(csv_download(
        crate::stats::stats_csv(&state.master.snapshot().await?.stats),
        "requests",
    ))
}

pub(super) async fn failures_csv(State(state): State<WebState>) -> ApiResult<Response> {
    Ok(csv_download(
        crate::stats::failures_csv(&state.master.snapshot().await?.stats),
        "failures",
    ))
}

pub(super) async fn history(State(state): State<WebState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.master.history().await?)))
}

pub(super) async fn exceptions(State(state): State<WebState>) -> ApiResult<Json<Value>> {
    let snapshot = state.master.snapshot().await?;
    Ok(Json(exceptions_json(&snapshot.exceptions)))
}

/// `GET /exceptions`, as Locust answers it: `nodes` is one comma-separated
/// string, not a list.
pub fn exceptions_json(rows: &[ExceptionRow]) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| {
            let nodes: Vec<&str> = row.nodes.iter().map(String::as_str).collect();
            json!({
                "count": row.count,
                "msg": row.msg,
                "traceback": row.traceback,
                "nodes": nodes.join(", "),
            })
        })
        .collect();
    json!({ "exceptions": rows })
}

pub(super) async fn exceptions_csv(State(state): State<WebState>) -> ApiResult<Response> {
    let snapshot = state.master.snapshot().await?;
    Ok(csv_download(
        crate::stats::exceptions_csv(&snapshot.exceptions),
        "exceptions",
    ))
}

pub(super) async fn report(State(state): State<WebState>) -> ApiResult<Html<String>> {
    let snapshot = state.master.snapshot().await?;
    let history = state.master.history().await?;
    Ok(Html(super::render_report(&snapshot, &history, now_epoch())))
}
