//! Shared helpers for the integration tests: a temp workspace, the real binary, SQLite
//! queries on the real file, and the emulator on 127.0.0.1.

#![allow(dead_code)]

pub mod pg;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const SECRET: &str = "emulator-secret";

/// A temporary folder with a database and a configuration file.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    /// A PostgreSQL database URL instead of the SQLite file in `dir`.
    pub postgres: Option<String>,
}

impl Workspace {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            postgres: None,
        }
    }
    /// A workspace whose database is this PostgreSQL URL.
    pub fn with_postgres(url: String) -> Self {
        Self {
            postgres: Some(url),
            ..Self::new()
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn db_path(&self) -> PathBuf {
        self.path().join("orderload.db")
    }
    pub fn db_url(&self) -> String {
        match &self.postgres {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.db_path().display()),
        }
    }
    pub fn config_path(&self) -> PathBuf {
        self.path().join("orderload.toml")
    }
    /// Write `orderload.toml`: the database, `extra` TOML, and a `[target]` for `emulator_url`.
    pub fn write_config(&self, emulator_url: Option<&str>, extra: &str) {
        let mut text = format!("database_url = \"{}\"\n", self.db_url());
        text.push_str("[ingest]\nsettle_secs = 0\n[submit]\nlease_secs = 5\nbatch_size = 10\n");
        text.push_str(extra);
        if let Some(url) = emulator_url {
            text.push_str(&target_section(url));
        }
        std::fs::write(self.config_path(), text).expect("write config");
    }
    /// Replace `from` with `to` in the configuration file (the text must be there).
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config_path()).unwrap();
        assert!(text.contains(from), "config has no {from:?}:\n{text}");
        std::fs::write(self.config_path(), text.replacen(from, to, 1)).unwrap();
    }
    pub fn write_file(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }
    /// The real binary with this workspace's configuration and a clean environment.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_orderload"));
        for (k, _) in std::env::vars() {
            if k.starts_with("ORDERLOAD_") {
                c.env_remove(k);
            }
        }
        c.current_dir(self.path())
            .env("ORDERLOAD_CLIENT_SECRET", SECRET)
            .arg("--config")
            .arg(self.config_path());
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run orderload")
    }
    pub fn query_i64(&self, sql: &str) -> i64 {
        if let Some(url) = &self.postgres {
            let out = pg::query(url, sql);
            return out
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{sql}: {out:?}"));
        }
        let conn = rusqlite::Connection::open(self.db_path()).expect("open db");
        conn.query_row(sql, [], |r| r.get(0)).expect(sql)
    }
    /// Run statements that return nothing (DDL, a trigger), on either backend.
    pub fn execute(&self, sql: &str) {
        if let Some(url) = &self.postgres {
            pg::query(url, sql);
            return;
        }
        let conn = rusqlite::Connection::open(self.db_path()).expect("open db");
        conn.execute_batch(sql).expect(sql);
    }
    pub fn query_strings(&self, sql: &str) -> Vec<String> {
        if let Some(url) = &self.postgres {
            return pg::query(url, sql).lines().map(str::to_string).collect();
        }
        let conn = rusqlite::Connection::open(self.db_path()).expect("open db");
        let mut stmt = conn.prepare(sql).expect(sql);
        let rows = stmt
            .query_map([], |r| r.get::<_, Option<String>>(0))
            .expect(sql);
        rows.map(|r| r.unwrap().unwrap_or_default()).collect()
    }
}

/// `orderload ingest --channel shop FILE` as a child process (stderr piped), returned once at
/// least `at_least` orders are staged; panics if it ends or stalls before that.
pub async fn ingest_until_staged(ws: &Workspace, file: &str, at_least: i64) -> std::process::Child {
    let mut child = ws
        .cmd()
        .args(["ingest", "--channel", "shop", file])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ingest");
    let started = std::time::Instant::now();
    while ws.query_i64("SELECT COUNT(*) FROM staged_orders") < at_least {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the ingest ended before {at_least} orders were staged"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no progress"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    child
}

pub fn target_section(url: &str) -> String {
    format!(
        "[target]\nurl = \"{url}\"\nauthority = \"{url}\"\ntenant_id = \"emulator\"\nclient_id = \"orderload-emulator\"\nclient_secret_env = \"ORDERLOAD_CLIENT_SECRET\"\n[target.retry]\nmax_retries = 8\nbase_ms = 50\ncap_ms = 2000\n"
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Assert the exit code, showing both streams when it is wrong.
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        stdout(o),
        stderr(o)
    );
}

/// The repository's sample_data folder.
pub fn sample(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_data")
        .join(rel)
}

/// Generate a Shopify export with `orders` orders of `lines` lines each (deterministic).
pub fn shopify_csv(orders: usize, lines: usize, prefix: &str) -> String {
    let header = "Name,Email,Financial Status,Paid at,Fulfillment Status,Fulfilled at,Accepts Marketing,Currency,Subtotal,Shipping,Taxes,Total,Discount Code,Discount Amount,Shipping Method,Created at,Lineitem quantity,Lineitem name,Lineitem price,Lineitem compare at price,Lineitem sku,Lineitem requires shipping,Lineitem taxable,Lineitem fulfillment status,Billing Name,Billing Street,Billing Address1,Billing Address2,Billing Company,Billing City,Billing Zip,Billing Province,Billing Country,Billing Phone,Shipping Name,Shipping Street,Shipping Address1,Shipping Address2,Shipping Company,Shipping City,Shipping Zip,Shipping Province,Shipping Country,Shipping Phone,Notes,Note Attributes,Cancelled at,Payment Method,Payment Reference,Refunded Amount,Vendor,Id,Tags,Risk Level,Source,Lineitem discount";
    let mut out = String::from(header);
    out.push('\n');
    for o in 0..orders {
        let name = format!("#{prefix}{}", 1000 + o);
        let subtotal = 10 * lines;
        for l in 0..lines {
            if l == 0 {
                out.push_str(&format!(
                    "{name},buyer{o}@example.com,paid,2025-03-01 10:00:00 +0100,,,no,USD,{subtotal}.00,5.00,0.00,{}.00,,0.00,Standard,2025-03-01 10:00:00 +0100,1,Tee {l},10.00,,SKU-{l},true,true,pending,Ann Buyer,1 Main St,1 Main St,,,Springfield,'02134,MA,US,,Ann Buyer,1 Main St,1 Main St,,,Springfield,'02134,MA,US,,,,,Stripe,,0.00,,{},,Low,web,0.00\n",
                    subtotal + 5,
                    5_000_000 + o
                ));
            } else {
                out.push_str(&format!(
                    "{name},buyer{o}@example.com,,,,,,,,,,,,,,2025-03-01 10:00:00 +0100,1,Tee {l},10.00,,SKU-{l},true,true,pending,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,0.00\n"
                ));
            }
        }
    }
    out
}

/// The emulator, in-process, on a free loopback port.
pub async fn emulator(
    tweak: impl FnOnce(&mut orderload::emulator::EmulatorConfig),
) -> orderload::emulator::RunningEmulator {
    let mut config = orderload::emulator::EmulatorConfig::default();
    tweak(&mut config);
    orderload::emulator::start(config)
        .await
        .expect("start emulator")
}

/// The emulator's orders (`key`, `lines`, ...), after asserting that no key is stored twice
/// (salesorders and their lines).
pub async fn stored_orders(base_url: &str) -> Vec<serde_json::Value> {
    let listing: serde_json::Value = reqwest::get(format!("{base_url}/_emulator/salesorders"))
        .await
        .expect("GET /_emulator/salesorders")
        .json()
        .await
        .expect("salesorders listing JSON");
    let dups = listing["duplicates"].as_array().expect("duplicates list");
    assert!(dups.is_empty(), "duplicates in the emulator: {listing}");
    listing["orders"].as_array().expect("orders list").clone()
}

/// Asserts that the emulator holds no key twice; how many orders it holds.
pub async fn assert_stored_once(base_url: &str) -> usize {
    stored_orders(base_url).await.len()
}

/// Run the binary on a blocking thread so the in-process emulator keeps serving.
pub async fn run_async(ws: &Workspace, args: &[&str]) -> Output {
    let mut cmd = ws.cmd();
    cmd.args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("run orderload"))
        .await
        .unwrap()
}
