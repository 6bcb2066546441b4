//! PostgreSQL for integration tests: one fresh, uniquely named database per test on a server
//! given by `ORDERLOAD_TEST_POSTGRES_URL`.
//!
//! Running the PostgreSQL tests locally (CI's `.ci/run` does the same):
//!
//! ```sh
//! .ci/postgres start                     # throwaway cluster in target/ci-postgres, 127.0.0.1:54329
//! export ORDERLOAD_TEST_POSTGRES_URL=postgres://orderload@127.0.0.1:54329/postgres
//! export PGPASSWORD=orderload-ci         # or: eval "$(.ci/postgres env)"
//! cargo test
//! .ci/postgres stop
//! ```
//!
//! The password comes from `PGPASSWORD` (libpq and sqlx both read it), never from the URL, so
//! the URL returned here contains no password either. Without `ORDERLOAD_TEST_POSTGRES_URL` the
//! PostgreSQL tests are skipped with a visible line on stderr; with it set but the server
//! unreachable they panic, so a broken CI setup fails instead of silently skipping.
//!
//! Usage in a test:
//!
//! ```ignore
//! let Some(url) = common::pg::fresh_database("claims_are_exclusive") else { return };
//! ```
//!
//! Databases are never dropped: the throwaway cluster is the cleanup (`rm -rf target/ci-postgres`).
//! Creating them needs the `psql` client on PATH (it comes with the `postgresql` package).

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The environment variable naming the test server (no password in it).
pub const URL_ENV: &str = "ORDERLOAD_TEST_POSTGRES_URL";

/// PostgreSQL identifiers longer than this are truncated (NAMEDATALEN - 1).
const MAX_IDENT: usize = 63;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `ORDERLOAD_TEST_POSTGRES_URL` if it is set (and not empty), else `None`.
pub fn server_url() -> Option<String> {
    std::env::var(URL_ENV).ok().filter(|u| !u.trim().is_empty())
}

/// Create a new, empty database for `test_name` and return its URL (the server's host, port and
/// user; no password), or `None` after printing a SKIPPED line when no server is configured.
///
/// Panics if a server is configured but the database cannot be created (server down, wrong
/// password, missing `psql`, ...).
pub fn fresh_database(test_name: &str) -> Option<String> {
    let Some(server) = server_url() else {
        // Straight to the stderr handle: the test harness captures `eprintln!` of passing
        // tests, and a skip must be visible.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (no PostgreSQL): {test_name} — set {URL_ENV} (.ci/postgres start does)"
        );
        return None;
    };
    assert!(
        !has_password(&server),
        "{URL_ENV} must not contain a password; put it in PGPASSWORD instead"
    );
    let base = sanitize(test_name);
    let pid = std::process::id();
    // A previous run against the same cluster may have used the same pid: skip taken names.
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = db_name(&base, pid, n);
        match psql(&server, &format!("CREATE DATABASE \"{name}\"")) {
            Ok(()) => return Some(with_database(&server, &name)),
            Err(e) if e.contains("already exists") => continue,
            Err(e) => panic!(
                "{URL_ENV}={server} is set but creating database {name} for test {test_name} \
                 failed — is the server running (.ci/postgres start) and PGPASSWORD exported?\n{e}"
            ),
        }
    }
    panic!("could not find a free database name for test {test_name} on {server}");
}

/// Run one SQL command with `psql` against `url` (the password from `PGPASSWORD`), never
/// prompting. `Err` carries psql's output.
fn psql(url: &str, sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .arg("-X") // ignore ~/.psqlrc
        .arg("-w") // never prompt for a password
        .arg("-q")
        .args(["-v", "ON_ERROR_STOP=1"])
        .arg("-d")
        .arg(url)
        .arg("-c")
        .arg(sql)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap_or_else(|e| {
            panic!("{URL_ENV} is set but `psql` could not be run ({e}); install postgresql-client")
        });
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "psql exited with {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Lowercase ASCII letters, digits and `_` only, at most 40 characters.
fn sanitize(test_name: &str) -> String {
    let mut s: String = test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(40);
    s
}

/// `ol_<name>_<pid>_<n>`, always a valid unquoted identifier of at most 63 bytes.
fn db_name(base: &str, pid: u32, n: usize) -> String {
    let suffix = format!("_{pid}_{n}");
    let mut name = format!("ol_{base}");
    name.truncate(MAX_IDENT - suffix.len());
    name.push_str(&suffix);
    name
}

/// `postgres://user:secret@host/...` has a password; `postgres://user@host/...` does not.
fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// The same URL (scheme, user, host, port, query parameters) with the database replaced.
fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or_else(|| {
        panic!("{URL_ENV}={url} is not a URL like postgres://user@host:port/db")
    });
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{db}{query}")
}

/// Run a query with `psql` and return its rows, unaligned, one per line (`-tA`). Panics with
/// psql's output when it fails.
pub fn query(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-X",
            "-w",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert_eq!(
            sanitize("pg::Claims-Are Exclusive"),
            "pg__claims_are_exclusive"
        );
        let long = "x".repeat(100);
        let name = db_name(&sanitize(&long), 4_000_000, 123_456);
        assert!(name.len() <= MAX_IDENT, "{name}");
        assert!(name.ends_with("_4000000_123456"));
        assert_eq!(
            with_database("postgres://orderload@127.0.0.1:54329/postgres", "ol_a_1_0"),
            "postgres://orderload@127.0.0.1:54329/ol_a_1_0"
        );
        assert_eq!(
            with_database("postgresql://u@h:1?sslmode=disable", "d"),
            "postgresql://u@h:1/d?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h/db?application_name=x", "d"),
            "postgres://u@h/d?application_name=x"
        );
        assert!(!has_password(
            "postgres://orderload@127.0.0.1:54329/postgres"
        ));
        assert!(has_password(
            "postgres://orderload:pw@127.0.0.1:54329/postgres"
        ));
        assert!(!has_password("postgres://127.0.0.1:54329/postgres"));
    }
}
