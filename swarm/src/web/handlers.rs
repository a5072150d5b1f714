//! Handlers for Locust's web API (the wire types are [`crate::api`]); JSON keys
//! and CSV headers are Locust's.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Form, Json};
use serde_json::json;

use super::form::parse_swarm_form;
use super::WebState;
use crate::api::{
    ClassRow, CurrentPercentiles, ErrorRow, ExceptionJson, ExceptionsAnswer, StatsRequests,
    StatsRow, StopAnswer, SwarmAnswer, TotalAnswer, WorkerRow,
};
use crate::master::{MasterError, MasterSnapshot};
use crate::stats::{now_epoch, ExceptionRow, StatsEntry};

const INDEX: &str = include_str!("assets/index.html");
const HEAD: &str = include_str!("assets/head.html");
const FAILURES_TABLE: &str = include_str!("assets/failures-table.html");
const EXCEPTIONS_TABLE: &str = include_str!("assets/exceptions-table.html");
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

/// Puts what the page and the report share — the head's start (charset,
/// viewport, icon), the failures and exceptions tables — into `page`.
pub(super) fn with_shared_parts(page: &str) -> String {
    page.replacen("<!--__HEAD__-->", HEAD, 1)
        .replace("<!--__FAILURES_TABLE__-->", FAILURES_TABLE)
        .replace("<!--__EXCEPTIONS_TABLE__-->", EXCEPTIONS_TABLE)
}

pub(super) async fn index() -> Html<&'static str> {
    static PAGE: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| with_shared_parts(INDEX));
    Html(PAGE.as_str())
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
) -> ApiResult<Json<SwarmAnswer>> {
    let host = || async { state.master.snapshot().await.ok().map(|s| s.host) };
    let planned = state.master.snapshot().await?.test_plan.is_some();
    let request = match parse_swarm_form(&fields, planned) {
        Ok(request) => request,
        Err(err) => {
            return Ok(Json(SwarmAnswer {
                success: false,
                message: err.0,
                host: host().await,
                run_time: None,
            }))
        }
    };
    let run_time = request.run_time;
    match state.master.swarm(request).await {
        Ok(message) => Ok(Json(SwarmAnswer {
            success: true,
            message,
            host: host().await,
            run_time: run_time.map(|t| t.as_secs()),
        })),
        Err(MasterError::Gone) => Err(ApiError(MasterError::Gone)),
        Err(err) => Ok(Json(SwarmAnswer {
            success: false,
            message: err.to_string(),
            host: host().await,
            run_time: None,
        })),
    }
}

pub(super) async fn stop(State(state): State<WebState>) -> ApiResult<Json<StopAnswer>> {
    state.master.stop().await?;
    Ok(Json(StopAnswer {
        success: true,
        message: "Test stopped".into(),
    }))
}

pub(super) async fn reset(State(state): State<WebState>) -> ApiResult<&'static str> {
    state.master.reset_stats().await?;
    Ok("ok")
}

/// `GET /stats/total` (our extension): the `Aggregated` entry with its
/// response-time buckets, so a remote ramp measures exact windows.
pub(super) async fn total(State(state): State<WebState>) -> ApiResult<Json<TotalAnswer>> {
    Ok(Json(total_answer(&state.master.snapshot().await?)))
}

/// The body of `GET /stats/total`.
pub fn total_answer(snapshot: &MasterSnapshot) -> TotalAnswer {
    TotalAnswer {
        state: snapshot.state,
        user_count: snapshot.user_count,
        target_user_count: snapshot.target_user_count,
        worker_count: snapshot.active_workers(),
        host: snapshot.host.clone(),
        total: snapshot.stats.total.clone(),
        errors: crate::api::error_counts(&snapshot.error_counts()),
        worker_events: snapshot.events.clone(),
        busiest_worker_cpu: snapshot.busiest_worker_cpu(),
    }
}

pub(super) async fn requests(State(state): State<WebState>) -> ApiResult<Json<StatsRequests>> {
    Ok(Json(stats_requests(&state.master.snapshot().await?)))
}

/// `GET /stats/requests`, as Locust's master answers it.
pub fn stats_requests(snapshot: &MasterSnapshot) -> StatsRequests {
    let stats = &snapshot.stats;
    let mut rows: Vec<StatsRow> = stats
        .sorted_entries()
        .into_iter()
        .take(500)
        .map(|e| stats_row(e, &stats.total))
        .collect();
    rows.push(stats_row(&stats.total, &stats.total));
    let errors = stats
        .errors
        .values()
        .take(500)
        .map(|e| ErrorRow {
            method: e.method.clone(),
            name: e.name.clone(),
            error: e.error.clone(),
            occurrences: e.occurrences,
            first_seen: e.first_seen,
            last_seen: e.last_seen,
        })
        .collect();
    let workers = snapshot
        .workers
        .iter()
        .map(|w| WorkerRow {
            id: w.id.clone(),
            state: w.state,
            user_count: w.user_count,
            user_classes_count: w.user_classes_count.clone(),
            cpu_usage: w.cpu_usage,
            memory_usage: w.memory_usage,
            cpu_share: Some(w.cpu_share),
        })
        .collect();
    let total = &stats.total;
    StatsRequests {
        stats: rows,
        errors,
        current_rps: total.current_rps(total),
        current_fail_per_sec: total.current_fail_per_sec(total),
        total_rps: total.total_rps(total),
        total_fail_per_sec: total.total_fail_per_sec(total),
        fail_ratio: total.fail_ratio(),
        current_response_time_percentiles: CurrentPercentiles {
            p50: snapshot.current_percentiles.0,
            p95: snapshot.current_percentiles.1,
        },
        workers,
        worker_count: snapshot.active_workers(),
        state: snapshot.state,
        user_count: snapshot.user_count,
        host: Some(snapshot.host.clone()),
        worker_events: snapshot.events.clone(),
        refused_frames: snapshot.refused.clone(),
        test_plan: snapshot.test_plan.clone(),
        user_classes: snapshot.user_classes.clone(),
        class_picker: snapshot.class_picker.as_ref().map(|classes| {
            classes
                .iter()
                .map(|c| ClassRow {
                    name: c.name.clone(),
                    weight: c.weight,
                })
                .collect()
        }),
        thresholds: snapshot.thresholds.clone(),
        arrival_rate: snapshot.arrival_rate,
        dropped_iterations: stats.dropped_iterations,
    }
}

/// One row of `/stats/requests`; `run` is the run's `Aggregated` total,
/// over whose span Locust gives every row's rates.
fn stats_row(e: &StatsEntry, run: &StatsEntry) -> StatsRow {
    StatsRow {
        method: e.method.clone(),
        name: e.name.clone(),
        num_requests: e.num_requests,
        num_failures: e.num_failures,
        min_response_time: e.min_response_time.map_or(0, |m| m.round() as u64),
        max_response_time: e.max_response_time.round() as u64,
        current_rps: e.current_rps(run),
        current_fail_per_sec: e.current_fail_per_sec(run),
        avg_response_time: e.avg_response_time(),
        median_response_time: e.median_response_time(),
        total_rps: e.total_rps(run),
        total_fail_per_sec: e.total_fail_per_sec(run),
        p95: e.percentile(0.95),
        p99: e.percentile(0.99),
        avg_content_length: e.avg_content_length(),
        precise: crate::api::PreciseTimes::of(e),
    }
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

pub(super) async fn history(
    State(state): State<WebState>,
) -> ApiResult<Json<Vec<crate::api::HistorySample>>> {
    Ok(Json(state.master.history().await?))
}

pub(super) async fn exceptions(State(state): State<WebState>) -> ApiResult<Json<ExceptionsAnswer>> {
    let snapshot = state.master.snapshot().await?;
    Ok(Json(exceptions_answer(&snapshot.exceptions)))
}

/// `GET /exceptions`, as Locust answers it: `nodes` is one comma-separated
/// string, not a list.
pub fn exceptions_answer(rows: &[ExceptionRow]) -> ExceptionsAnswer {
    ExceptionsAnswer {
        exceptions: rows
            .iter()
            .map(|row| ExceptionJson {
                count: row.count,
                msg: row.msg.clone(),
                traceback: row.traceback.clone(),
                nodes: row
                    .nodes
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect(),
    }
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
    Ok(Html(super::render_report(&snapshot, &history)))
}
