//! `GET /api/v2/logs` and `GET /api/v2/logs/{id}`: the stored audit log in Auth0's log-event shape
//! (`log_id`, `date`, `type`, `description`, `client_id`, `user_id`, `ip`, `user_agent`, `details`), with
//! Auth0's paging and the part of its `q` syntax that filters what Latchkey stores.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{paths, ManagementError, ManagementErrorBody, ManagementPath, ManagementQuery, Manager};
use crate::{
    audit::{store, Record},
    clock::{iso8601, Millis},
    state::AppState,
};

/// `GET /api/v2/logs` query (Auth0's).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LogsQuery {
    /// Page number, from 0.
    pub page: Option<i64>,
    /// 1–100, default 50.
    pub per_page: Option<i64>,
    /// `true`: answer `{logs, start, limit, length, total}` instead of the bare array.
    pub include_totals: Option<bool>,
    /// `date:-1` (newest first, the default) or `date:1`.
    pub sort: Option<String>,
    /// Filters joined by ` AND `: `type:s`, `user_id:"usr_…"`, `client_id:…`, `outcome:failure`,
    /// `date:[2026-12-01T00:00:00Z TO *]` (either end may be `*`; a bare date is midnight UTC). Also read
    /// as `search`, the name Auth0's Node SDK sends it under.
    #[serde(alias = "search")]
    pub q: Option<String>,
}

/// One audit record, as Auth0's log event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogEvent {
    /// `log_…`.
    pub log_id: String,
    /// ISO 8601, UTC.
    pub date: String,
    /// Auth0's code where the event is one of Auth0's (`s`, `f`, `ss`, `slo`, `seccft`, `seacft`,
    /// `sertft`, `ferrt`, `srrt`, `sapi`), else Latchkey's own name (README, "Audit log").
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    /// `success` or `failure`.
    pub outcome: String,
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    /// Who acted, when it is not the user: a client id, an API key's owner, or `master`.
    pub actor_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The request's `x-request-id`.
    pub request_id: Option<String>,
    /// The event's other fields (ids, reasons, actions; never a secret).
    #[schema(value_type = Object)]
    pub details: Map<String, Value>,
}

impl From<Record> for LogEvent {
    fn from(record: Record) -> LogEvent {
        LogEvent {
            log_id: record.id,
            date: iso8601(record.at),
            kind: record.kind,
            description: record.description,
            outcome: record.outcome,
            client_id: record.client_id,
            user_id: record.user_id,
            actor_id: record.actor_id,
            ip: record.ip,
            user_agent: record.user_agent,
            request_id: record.request_id,
            details: record.details,
        }
    }
}

/// The list: the bare array, or the page with `include_totals=true`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LogListResponse {
    List(Vec<LogEvent>),
    Page(LogPage),
}

/// `include_totals=true` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LogPage {
    pub logs: Vec<LogEvent>,
    /// Index of the first record of this page.
    pub start: i64,
    pub limit: i64,
    /// Records on this page.
    pub length: i64,
    /// Records matching the query.
    pub total: i64,
}

/// A `q` Latchkey cannot answer, for the 400.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(String);

/// One end of a time range as `q`'s `date:[…]` takes it (also `latchkey admin logs --from/--to`).
pub fn parse_bound(value: &str, upper: bool) -> Result<Option<Millis>, QueryError> {
    bound(value, upper)
}

/// Parses the supported part of Auth0's log query syntax into a filter.
pub fn parse_q(q: &str) -> Result<store::Filter, QueryError> {
    let mut filter = store::Filter::default();
    let q = q.trim();
    if q.is_empty() {
        return Ok(filter);
    }
    for term in q.split(" AND ") {
        let term = term.trim();
        let (field, value) =
            term.split_once(':').ok_or_else(|| QueryError(format!("`{term}` is not `field:value`")))?;
        let value = value.trim();
        if field == "date" {
            let range = value
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .ok_or_else(|| QueryError("date takes a range: date:[FROM TO TO]".into()))?;
            let (from, to) =
                range.split_once(" TO ").ok_or_else(|| QueryError("date takes a range: date:[FROM TO TO]".into()))?;
            filter.from = bound(from.trim(), false)?;
            filter.to = bound(to.trim(), true)?;
            continue;
        }
        let value = unquote(value).ok_or_else(|| QueryError(format!("`{field}` has no value")))?;
        let slot = match field {
            "type" => &mut filter.kind,
            "user_id" => &mut filter.user_id,
            "client_id" => &mut filter.client_id,
            "outcome" => &mut filter.outcome,
            _ => {
                return Err(QueryError(format!(
                    "`{field}` cannot be searched; use type, user_id, client_id, outcome or date"
                )))
            }
        };
        *slot = Some(value.to_owned());
    }
    Ok(filter)
}

/// A value without its double quotes; `None` when empty or with a quote or space inside.
fn unquote(value: &str) -> Option<&str> {
    let inner = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
    (!inner.is_empty() && !inner.contains(['"', ' ', '*'])).then_some(inner)
}

/// One end of a date range: `*`, an RFC 3339 time, or a date (the day's first millisecond, or its last
/// for the upper end).
fn bound(value: &str, upper: bool) -> Result<Option<Millis>, QueryError> {
    if value == "*" {
        return Ok(None);
    }
    let bad = || QueryError(format!("`{value}` is not a date (2026-12-01 or 2026-12-01T08:00:00Z)"));
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(Some(at.timestamp_millis()));
    }
    let day = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| bad())?;
    let start = day.and_time(chrono::NaiveTime::MIN).and_utc().timestamp_millis();
    Ok(Some(if upper { start + 86_400_000 - 1 } else { start }))
}

/// Lists the audit log, newest first.
#[utoipa::path(get, path = paths::MGMT_LOGS, tag = "management", params(LogsQuery),
    responses((status = 200, body = LogListResponse, description = "The records; a page with totals with `include_totals=true`"),
        (status = 400, body = ManagementErrorBody, description = "`invalid_query_string`: a paging value, `sort` or `q` Latchkey does not take"),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without `read:logs`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn list_logs(
    State(state): State<AppState>,
    manager: Manager,
    query: ManagementQuery<LogsQuery>,
) -> Result<Response, ManagementError> {
    manager.require("read:logs")?;
    let query = query.0;
    let invalid = |message: String| ManagementError::new(StatusCode::BAD_REQUEST, "invalid_query_string", message);
    let filter = parse_q(query.q.as_deref().unwrap_or_default()).map_err(|QueryError(message)| invalid(message))?;
    let oldest_first = match query.sort.as_deref() {
        None | Some("date:-1") => false,
        Some("date:1") => true,
        Some(other) => return Err(invalid(format!("sort `{other}` is not date:1 or date:-1"))),
    };
    let (limit, start) = super::page(query.page, query.per_page);
    let totals = query.include_totals == Some(true);
    let (records, total) = store::list(&state.db, &filter, oldest_first, limit, start, totals).await?;
    let logs: Vec<LogEvent> = records.into_iter().map(LogEvent::from).collect();
    let body = match total {
        Some(total) => {
            let length = i64::try_from(logs.len()).unwrap_or(i64::MAX);
            LogListResponse::Page(LogPage { logs, start, limit, length, total })
        }
        None => LogListResponse::List(logs),
    };
    Ok(Json(body).into_response())
}

/// One audit record.
#[utoipa::path(get, path = paths::MGMT_LOG, tag = "management", params(("id" = String, Path, description = "`log_…`")),
    responses((status = 200, body = LogEvent),
        (status = 401, body = ManagementErrorBody, description = "`missing_credentials`, `invalid_credentials`"),
        (status = 403, body = ManagementErrorBody, description = "`insufficient_scope`: a management token without `read:logs`"),
        (status = 404, body = ManagementErrorBody, description = "`inexistent_log`"),
        (status = 503, body = ManagementErrorBody, description = "`management_disabled`")))]
pub async fn get_log(
    State(state): State<AppState>,
    manager: Manager,
    ManagementPath(id): ManagementPath,
) -> Result<Json<LogEvent>, ManagementError> {
    manager.require("read:logs")?;
    let record = store::find(&state.db, &id)
        .await?
        .ok_or_else(|| ManagementError::new(StatusCode::NOT_FOUND, "inexistent_log", "The log does not exist"))?;
    Ok(Json(record.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supported_query_terms_become_a_filter() {
        let filter = parse_q(r#"type:f AND user_id:"usr_1" AND client_id:abc AND outcome:failure"#).unwrap();
        assert_eq!(filter.kind.as_deref(), Some("f"));
        assert_eq!(filter.user_id.as_deref(), Some("usr_1"));
        assert_eq!(filter.client_id.as_deref(), Some("abc"));
        assert_eq!(filter.outcome.as_deref(), Some("failure"));
        let filter = parse_q("date:[2026-12-01 TO 2026-12-01]").unwrap();
        assert_eq!(filter.from, Some(1_796_083_200_000));
        assert_eq!(filter.to, Some(1_796_083_200_000 + 86_400_000 - 1));
        let filter = parse_q("date:[2026-12-01T08:00:00Z TO *]").unwrap();
        assert_eq!((filter.from, filter.to), (Some(1_796_112_000_000), None));
        assert_eq!(parse_q("  ").unwrap(), store::Filter::default());
    }

    #[test]
    fn anything_else_is_refused() {
        for q in [
            "email:a@b.co",
            "type",
            "type:",
            "type:\"\"",
            "type:s*",
            "user_id:\"a b\"",
            "date:2026-12-01",
            "date:[2026-12-01]",
            "date:[yesterday TO *]",
            "type:s OR type:f",
        ] {
            assert!(parse_q(q).is_err(), "{q}");
        }
    }
}
