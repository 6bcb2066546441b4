//! The `runs` table: one row per invocation that changes something.

use super::{now_utc, SqliteStaging, StagingError};

#[derive(Debug, Clone)]
pub struct RunStart {
    pub command: String,
    pub args: String,
    pub host: String,
    pub pid: u32,
    pub os_user: String,
}

impl RunStart {
    /// This process, running `command` with the given arguments (never holding secrets).
    pub fn this_process(command: &str, args: &[String]) -> Self {
        Self {
            command: command.to_string(),
            args: args
                .iter()
                .map(|a| redact_url(a))
                .collect::<Vec<_>>()
                .join(" "),
            host: host_name(),
            pid: std::process::id(),
            os_user: os_user(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunInfo {
    pub id: i64,
    pub command: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: Option<String>,
    pub exit_code: Option<i64>,
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

pub fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // SAFETY-free fallback: the numeric uid from /proc.
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("Uid:"))
                        .and_then(|l| l.split_whitespace().nth(1).map(|u| format!("uid {u}")))
                })
                .unwrap_or_else(|| "unknown-user".into())
        })
}

impl SqliteStaging {
    pub(super) async fn insert_run(&self, start: RunStart) -> Result<i64, StagingError> {
        let id = sqlx::query_scalar(
            "INSERT INTO runs (command, args, host, pid, os_user, started_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&start.command)
        .bind(&start.args)
        .bind(&start.host)
        .bind(start.pid as i64)
        .bind(&start.os_user)
        .bind(now_utc())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    pub(super) async fn update_run_end(
        &self,
        run_id: i64,
        outcome: &str,
        exit_code: u8,
        summary: &serde_json::Value,
    ) -> Result<(), StagingError> {
        sqlx::query(
            "UPDATE runs SET finished_at = ?, outcome = ?, exit_code = ?, summary = ? WHERE id = ?",
        )
        .bind(now_utc())
        .bind(outcome)
        .bind(exit_code as i64)
        .bind(summary.to_string())
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// `url` with any password replaced by `***`: the one in the user part
/// (`postgres://user:***@host/db`) and `password=` / `sslpassword=` query parameters. For the
/// `runs.args` column, logs, error messages, and to refuse passwords in configured URLs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let (head, rest) = url.split_at(scheme_end + 3);
    let (before_query, query) = match rest.find('?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    let authority_end = before_query.find('/').unwrap_or(before_query.len());
    let mut out = String::from(head);
    match before_query[..authority_end].rfind('@') {
        Some(at) => match before_query[..at].find(':') {
            Some(colon) => {
                out.push_str(&before_query[..colon]);
                out.push_str(":***");
                out.push_str(&before_query[at..]);
            }
            None => out.push_str(before_query),
        },
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _))
                    if k.eq_ignore_ascii_case("password")
                        || k.eq_ignore_ascii_case("sslpassword") =>
                {
                    format!("{k}=***")
                }
                _ => p.to_string(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

impl SqliteStaging {
    pub(super) async fn last_ok_run(&self) -> Result<Option<String>, StagingError> {
        Ok(sqlx::query_scalar(
            "SELECT MAX(finished_at) FROM runs WHERE outcome = 'ok' AND command IN ('run', 'submit')",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted_and_nothing_else() {
        assert_eq!(
            redact_url("postgres://ol:s3cr@t@db.example:5432/orders?sslmode=require"),
            "postgres://ol:***@db.example:5432/orders?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://ol@db/orders"),
            "postgres://ol@db/orders"
        );
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
        assert_eq!(
            redact_url("--database=postgres://u:p@h/d"),
            "--database=postgres://u:***@h/d"
        );
        assert_eq!(
            redact_url("postgres://u@h/d?sslmode=require&password=hunter2&sslpassword=x"),
            "postgres://u@h/d?sslmode=require&password=***&sslpassword=***"
        );
        assert_eq!(
            redact_url("postgres://h/d?password="),
            "postgres://h/d?password=***"
        );
    }
}
