//! The audit log's SQL (`audit_log`): batched inserts, the filtered and paged list, one record, and
//! retention. Written once, run on both backends.

use serde_json::{Map, Value};

use super::Record;
use crate::{
    clock::Millis,
    db_run,
    storage::{Db, StorageError},
};

const COLUMNS: &str =
    "id, at, type, description, outcome, actor_id, user_id, client_id, ip, user_agent, request_id, details";

/// A row of `audit_log`.
#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    at: Millis,
    #[sqlx(rename = "type")]
    kind: String,
    description: String,
    outcome: String,
    actor_id: Option<String>,
    user_id: Option<String>,
    client_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    details: String,
}

impl From<Row> for Record {
    fn from(row: Row) -> Record {
        let details = match serde_json::from_str(&row.details) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        Record {
            id: row.id,
            at: row.at,
            kind: row.kind,
            description: row.description,
            outcome: row.outcome,
            actor_id: row.actor_id,
            user_id: row.user_id,
            client_id: row.client_id,
            ip: row.ip,
            user_agent: row.user_agent,
            request_id: row.request_id,
            details,
        }
    }
}

/// Writes `records` in one statement.
pub async fn insert(db: &Db, records: &[Record]) -> Result<(), StorageError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut sql = format!("INSERT INTO audit_log ({COLUMNS}) VALUES ");
    for i in 0..records.len() {
        let n = i * 12;
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        sql.push_str(&(1..=12).map(|k| format!("${}", n + k)).collect::<Vec<_>>().join(","));
        sql.push(')');
    }
    let details: Vec<String> = records.iter().map(|r| Value::Object(r.details.clone()).to_string()).collect();
    db_run!(db, |pool| {
        let mut query = sqlx::query(&sql);
        for (record, details) in records.iter().zip(&details) {
            query = query
                .bind(&record.id)
                .bind(record.at)
                .bind(&record.kind)
                .bind(&record.description)
                .bind(&record.outcome)
                .bind(&record.actor_id)
                .bind(&record.user_id)
                .bind(&record.client_id)
                .bind(&record.ip)
                .bind(&record.user_agent)
                .bind(&record.request_id)
                .bind(details);
        }
        query.execute(pool).await?;
        Ok(())
    })
}

/// Which records to list (every field optional; all given ones must hold).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub kind: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub outcome: Option<String>,
    /// From this time on (unix ms, inclusive).
    pub from: Option<Millis>,
    /// Up to this time (unix ms, inclusive).
    pub to: Option<Millis>,
}

enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

impl Filter {
    /// The `WHERE` clause (empty when nothing is asked) and its values, numbered from `$1`.
    fn clause(&self) -> (String, Vec<Bind<'_>>) {
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        for (column, value) in [
            ("type", &self.kind),
            ("user_id", &self.user_id),
            ("client_id", &self.client_id),
            ("outcome", &self.outcome),
        ] {
            if let Some(value) = value {
                binds.push(Bind::Text(value));
                conditions.push(format!("{column} = ${}", binds.len()));
            }
        }
        if let Some(from) = self.from {
            binds.push(Bind::Int(from));
            conditions.push(format!("at >= ${}", binds.len()));
        }
        if let Some(to) = self.to {
            binds.push(Bind::Int(to));
            conditions.push(format!("at <= ${}", binds.len()));
        }
        let clause = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
        (clause, binds)
    }
}

/// A page of records matching `filter`, newest first (`oldest_first` reverses), and how many match
/// when `count` is asked.
pub async fn list(
    db: &Db,
    filter: &Filter,
    oldest_first: bool,
    limit: i64,
    offset: i64,
    count: bool,
) -> Result<(Vec<Record>, Option<i64>), StorageError> {
    let (clause, binds) = filter.clause();
    let order = if oldest_first { "at ASC, id ASC" } else { "at DESC, id DESC" };
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log{clause} ORDER BY {order} LIMIT ${} OFFSET ${}",
        binds.len() + 1,
        binds.len() + 2
    );
    let count_sql = format!("SELECT COUNT(*) FROM audit_log{clause}");
    db_run!(db, |pool| {
        let mut query = sqlx::query_as::<_, Row>(&sql);
        for bind in &binds {
            query = match bind {
                Bind::Text(value) => query.bind(*value),
                Bind::Int(value) => query.bind(*value),
            };
        }
        let rows = query.bind(limit).bind(offset).fetch_all(pool).await?;
        let total = if count {
            let mut query = sqlx::query_scalar::<_, i64>(&count_sql);
            for bind in &binds {
                query = match bind {
                    Bind::Text(value) => query.bind(*value),
                    Bind::Int(value) => query.bind(*value),
                };
            }
            Some(query.fetch_one(pool).await?)
        } else {
            None
        };
        Ok((rows.into_iter().map(Record::from).collect(), total))
    })
}

/// One record by id.
pub async fn find(db: &Db, id: &str) -> Result<Option<Record>, StorageError> {
    let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE id = $1");
    db_run!(db, |pool| {
        let row: Option<Row> = sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?;
        Ok(row.map(Record::from))
    })
}

/// Deletes records older than `before`, at most `batch` of them (the caller repeats while a full batch
/// went, so that no statement holds the table for long). Returns how many went.
pub async fn cleanup(db: &Db, before: Millis, batch: i64) -> Result<u64, StorageError> {
    db_run!(db, |pool| {
        let done = sqlx::query(
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 ORDER BY at LIMIT $2)",
        )
        .bind(before)
        .bind(batch)
        .execute(pool)
        .await?;
        Ok(done.rows_affected())
    })
}
