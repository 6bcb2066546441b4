//! Typed configuration, layered: defaults → `orderload.toml` → `ORDERLOAD_*` environment → flags.
//!
//! Every key is documented in the README ("Configuration") and in [`EXAMPLE`], which
//! `orderload config example` prints. An invalid configuration is an error naming the key.

use crate::channels::{ChannelSpec, Format};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://orderload.db";
pub const DEFAULT_CONFIG_FILE: &str = "orderload.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sqlite://path/to/file.db` (created if missing) or `postgres://user@host/db` (the
    /// password from `PGPASSWORD` or `~/.pgpass`, never in a file or flag).
    pub database_url: String,
    /// PostgreSQL only: a direct connection (not through a pooler) for the migrations, which
    /// take an advisory lock. Default: `database_url`.
    pub database_migration_url: Option<String>,
    pub ingest: IngestConfig,
    pub submit: SubmitConfig,
    /// The Dataverse service-protection budget every worker of one application user shares.
    pub budget: crate::submit::budget::BudgetLimits,
    #[serde(rename = "channel")]
    pub channels: Vec<ChannelConfig>,
    pub target: Option<TargetConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: DEFAULT_DATABASE_URL.into(),
            database_migration_url: None,
            ingest: IngestConfig::default(),
            submit: SubmitConfig::default(),
            budget: Default::default(),
            channels: Vec::new(),
            target: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// An inbox file is read only once it is at least this old and its size is stable
    /// (a file still being written is left for the next run). Explicit paths are read at once.
    pub settle_secs: u64,
    /// Orders per write transaction.
    pub chunk_orders: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            settle_secs: 5,
            chunk_orders: 250,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubmitConfig {
    /// Orders per `$batch` request (also bounded by 1000 operations).
    pub batch_size: usize,
    /// Batches in flight at once (never above the server's `x-ms-dop-hint`).
    pub max_parallel: usize,
    /// A retryable failed order is claimed again until it has been attempted this often.
    pub max_attempts: u32,
    /// Seconds a lease or claim lives without a heartbeat before another run may take over.
    pub lease_secs: u64,
}

impl Default for SubmitConfig {
    fn default() -> Self {
        Self {
            batch_size: 50,
            max_parallel: 4,
            max_attempts: 5,
            lease_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub name: String,
    /// `shopify`, `amazon`, `woocommerce`, `csv`; omitted = detect by header.
    pub format: Option<Format>,
    pub inbox: Option<PathBuf>,
    /// Where a file is moved once ingested.
    pub archive: Option<PathBuf>,
    /// IANA time zone for dates without an offset, e.g. `America/New_York`.
    pub time_zone: Option<String>,
    /// For `format = "csv"`: currency when the file has no currency column.
    pub currency: Option<String>,
    /// For `format = "csv"`: canonical field → column header.
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
    /// The text encoding of the channel's files when it is neither UTF-8 nor Windows-1252
    /// (which are told apart by themselves), e.g. `shift_jis` for Amazon Japan: a WHATWG label.
    pub encoding: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    pub url: String,
    pub authority: String,
    pub tenant_id: String,
    pub client_id: String,
    /// Name of the environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// Or a file holding the client secret (first line).
    pub client_secret_file: Option<PathBuf>,
    /// Price list (pricelevel) by name.
    pub price_list: String,
    /// Account by name that orders are booked on, unless `customer_match = "email"`.
    pub default_customer: String,
    /// `account` (all orders on `default_customer`) or `email` (upsert a contact by e-mail).
    pub customer_match: String,
    /// Alternate key column on salesorder.
    pub order_key_column: String,
    /// Alternate key column on salesorderdetail.
    pub line_key_column: String,
    /// Alternate key column on contact used when `customer_match = "email"`.
    pub contact_key_column: String,
    /// `write_in` (productdescription) or `catalog` (product by SKU).
    pub product_mode: String,
    /// Alternate key column on product used when `product_mode = "catalog"`.
    pub product_key_column: String,
    /// Unit (uom) by name for catalog products.
    pub unit: String,
    /// ISO code → transactioncurrency name, for currencies whose name is not resolvable by
    /// `isocurrencycode`. Usually empty.
    pub currencies: BTreeMap<String, String>,
    /// Whole-request timeout, seconds.
    pub timeout_secs: u64,
    pub connect_timeout_secs: u64,
    /// Extra CA certificate (PEM) to trust, e.g. the emulator's `--tls` certificate.
    pub ca_file: Option<PathBuf>,
    pub retry: RetryConfig,
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            authority: "https://login.microsoftonline.com".into(),
            tenant_id: String::new(),
            client_id: String::new(),
            client_secret_env: Some("ORDERLOAD_CLIENT_SECRET".into()),
            client_secret_file: None,
            price_list: "Retail".into(),
            default_customer: "Web Customers".into(),
            customer_match: "account".into(),
            order_key_column: "new_externalorderid".into(),
            line_key_column: "new_externallineid".into(),
            contact_key_column: "emailaddress1".into(),
            product_mode: "write_in".into(),
            product_key_column: "productnumber".into(),
            unit: "Primary Unit".into(),
            currencies: BTreeMap::new(),
            timeout_secs: 120,
            connect_timeout_secs: 10,
            ca_file: None,
            retry: RetryConfig::default(),
        }
    }
}

/// Backoff for transient errors: `base_ms * factor^n`, capped, with ±`jitter` fraction;
/// `Retry-After` from the server wins when it is longer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub max_retries: u32,
    pub base_ms: u64,
    pub factor: f64,
    pub cap_ms: u64,
    pub jitter: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 6,
            base_ms: 500,
            factor: 2.0,
            cap_ms: 60_000,
            jitter: 0.2,
        }
    }
}

impl Config {
    /// Load the configuration: defaults, then `path` (if given, or `orderload.toml` if it
    /// exists), then `ORDERLOAD_*` variables from `env`.
    pub fn load(
        path: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let (text, label) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?,
                p.display().to_string(),
            ),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => (
                std::fs::read_to_string(DEFAULT_CONFIG_FILE).map_err(|source| {
                    ConfigError::Read {
                        path: DEFAULT_CONFIG_FILE.into(),
                        source,
                    }
                })?,
                DEFAULT_CONFIG_FILE.to_string(),
            ),
            None => (String::new(), "(defaults)".to_string()),
        };
        Self::from_toml_and_env(&text, &label, env)
    }

    pub fn from_toml_and_env(
        text: &str,
        label: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut value: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: label.to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        apply_env(&mut value, env)?;
        let config: Config =
            toml::Value::Table(value)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: label.to_string(),
                    message: e.to_string().trim().replace('\n', " "),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Semantic checks serde cannot do.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let postgres = crate::staging::is_postgres_url(&self.database_url);
        if !self.database_url.starts_with("sqlite:") && !postgres {
            return Err(invalid(
                "database_url",
                format!(
                    "unsupported URL {:?}: expected sqlite://PATH or postgres://USER@HOST/DATABASE",
                    crate::staging::redact_url(&self.database_url)
                ),
            ));
        }
        if let Some(m) = &self.database_migration_url {
            if !postgres || !crate::staging::is_postgres_url(m) {
                return Err(invalid(
                    "database_migration_url",
                    "is for PostgreSQL only: set it to a postgres:// URL of a direct connection",
                ));
            }
        }
        for (key, url) in [
            ("database_url", Some(&self.database_url)),
            (
                "database_migration_url",
                self.database_migration_url.as_ref(),
            ),
        ] {
            if let Some(url) = url {
                if crate::staging::redact_url(url) != *url {
                    return Err(invalid(
                        key,
                        "holds a password: give it in PGPASSWORD or ~/.pgpass instead, never in a URL",
                    ));
                }
            }
        }
        let b = &self.budget;
        for (key, v) in [
            ("budget.requests", b.requests),
            ("budget.execution_ms", b.execution_ms),
            ("budget.window_secs", b.window_secs),
            ("budget.concurrent", b.concurrent),
            ("budget.request_timeout_secs", b.request_timeout_secs),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if let Some(t) = &self.target {
            let http = t.timeout_secs + t.connect_timeout_secs;
            if b.request_timeout_secs <= http {
                return Err(invalid(
                    "budget.request_timeout_secs",
                    format!(
                        "must be longer than a request can take (target.timeout_secs + target.connect_timeout_secs = {http} s), or requests still in flight stop counting against the budget"
                    ),
                ));
            }
        }
        if self.submit.batch_size == 0 {
            return Err(invalid("submit.batch_size", "must be at least 1"));
        }
        if self.submit.max_parallel == 0 {
            return Err(invalid("submit.max_parallel", "must be at least 1"));
        }
        if self.submit.max_attempts == 0 {
            return Err(invalid("submit.max_attempts", "must be at least 1"));
        }
        if self.ingest.chunk_orders == 0 {
            return Err(invalid("ingest.chunk_orders", "must be at least 1"));
        }
        let mut names = HashSet::new();
        for (i, ch) in self.channels.iter().enumerate() {
            let key = |k: &str| format!("channel[{i}].{k}");
            if ch.name.trim().is_empty() {
                return Err(invalid(key("name"), "must not be empty"));
            }
            if ch.name.contains(['.', ':', '/', '\'']) || ch.name.chars().any(char::is_whitespace) {
                return Err(invalid(
                    key("name"),
                    format!(
                        "{:?} may not contain '.', ':', '/', quotes or spaces (it becomes part of the Dynamics key)",
                        ch.name
                    ),
                ));
            }
            if !names.insert(ch.name.clone()) {
                return Err(invalid(
                    key("name"),
                    format!("channel {:?} is defined twice", ch.name),
                ));
            }
            if let Some(tz) = &ch.time_zone {
                tz.parse::<chrono_tz::Tz>().map_err(|_| {
                    invalid(
                        key("time_zone"),
                        format!("unknown time zone {tz:?} (expected an IANA name such as Europe/Berlin)"),
                    )
                })?;
            }
            if let Some(e) = &ch.encoding {
                let found = encoding_rs::Encoding::for_label(e.as_bytes()).ok_or_else(|| {
                    invalid(
                        key("encoding"),
                        format!("unknown encoding {e:?} (expected a label such as shift_jis, windows-1250 or iso-8859-2)"),
                    )
                })?;
                // UTF-8 and Windows-1252 are told apart without a setting (a UTF-8 setting
                // would turn stray bytes into U+FFFD); UTF-16 files are refused as binary, and
                // the other two are not text encodings.
                if !found.is_single_byte() && !found.is_ascii_compatible()
                    || found == encoding_rs::UTF_8
                    || found == encoding_rs::REPLACEMENT
                    || found == encoding_rs::X_USER_DEFINED
                {
                    return Err(invalid(
                        key("encoding"),
                        format!("{e:?} is not an encoding to set here: UTF-8 and Windows-1252 are recognised without it; set it for others such as shift_jis, euc-kr or iso-8859-2"),
                    ));
                }
            }
            if let Some(c) = &ch.currency {
                crate::model::CurrencyCode::parse(c)
                    .map_err(|e| invalid(key("currency"), e.to_string()))?;
            }
            if ch.format == Some(Format::Csv) {
                for field in ch.mapping.keys() {
                    if !crate::channels::mapped_csv::FIELDS.contains(&field.as_str()) {
                        return Err(invalid(
                            format!("channel[{i}].mapping.{field}"),
                            format!(
                                "unknown canonical field; expected one of: {}",
                                crate::channels::mapped_csv::FIELDS.join(", ")
                            ),
                        ));
                    }
                }
                for required in ["external_id", "created_at", "quantity", "unit_price"] {
                    if !ch.mapping.contains_key(required) {
                        return Err(invalid(
                            key("mapping"),
                            format!("format \"csv\" needs a mapping for `{required}`"),
                        ));
                    }
                }
                if !ch.mapping.contains_key("sku") && !ch.mapping.contains_key("name") {
                    return Err(invalid(
                        key("mapping"),
                        "format \"csv\" needs a mapping for `sku` or `name` (or both)",
                    ));
                }
                if !ch.mapping.contains_key("currency") && ch.currency.is_none() {
                    return Err(invalid(
                        key("mapping"),
                        "format \"csv\" needs a `currency` mapping or a channel `currency`",
                    ));
                }
            }
        }
        if let Some(t) = &self.target {
            if t.url.is_empty() {
                return Err(invalid("target.url", "must be set"));
            }
            if !(t.url.starts_with("https://") || t.url.starts_with("http://")) {
                return Err(invalid("target.url", "must start with https://"));
            }
            if t.client_id.is_empty() {
                return Err(invalid("target.client_id", "must be set"));
            }
            if t.tenant_id.is_empty() {
                return Err(invalid("target.tenant_id", "must be set"));
            }
            if t.client_secret_env.is_none() && t.client_secret_file.is_none() {
                return Err(invalid(
                    "target.client_secret_env",
                    "set client_secret_env or client_secret_file",
                ));
            }
            if !matches!(t.customer_match.as_str(), "account" | "email") {
                return Err(invalid(
                    "target.customer_match",
                    format!("{:?}: expected \"account\" or \"email\"", t.customer_match),
                ));
            }
            if !matches!(t.product_mode.as_str(), "write_in" | "catalog") {
                return Err(invalid(
                    "target.product_mode",
                    format!("{:?}: expected \"write_in\" or \"catalog\"", t.product_mode),
                ));
            }
        }
        Ok(())
    }

    /// The channel named `name`.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// The SQLite file path from `database_url`.
    pub fn database_path(&self) -> PathBuf {
        database_path(&self.database_url)
    }
}

/// `sqlite://x.db`, `sqlite:x.db`, `sqlite:///abs/x.db` → path.
pub fn database_path(url: &str) -> PathBuf {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let rest = rest.split('?').next().unwrap_or(rest);
    PathBuf::from(rest)
}

impl ChannelConfig {
    pub fn spec(&self) -> ChannelSpec {
        ChannelSpec {
            name: self.name.clone(),
            format: self.format,
            time_zone: self.time_zone.as_deref().and_then(|t| t.parse().ok()),
            mapping: self.mapping.clone(),
            default_currency: self.currency.clone(),
            archive: self.archive.clone(),
            encoding: self
                .encoding
                .as_deref()
                .and_then(|e| encoding_rs::Encoding::for_label(e.as_bytes())),
        }
    }
}

/// Scalar keys that `ORDERLOAD_*` variables may set: (env suffix, section, key).
const ENV_KEYS: &[(&str, Option<&str>, &str)] = &[
    ("DATABASE_URL", None, "database_url"),
    ("DATABASE_MIGRATION_URL", None, "database_migration_url"),
    ("BUDGET_REQUESTS", Some("budget"), "requests"),
    ("BUDGET_EXECUTION_MS", Some("budget"), "execution_ms"),
    ("BUDGET_WINDOW_SECS", Some("budget"), "window_secs"),
    ("BUDGET_CONCURRENT", Some("budget"), "concurrent"),
    ("INGEST_SETTLE_SECS", Some("ingest"), "settle_secs"),
    ("INGEST_CHUNK_ORDERS", Some("ingest"), "chunk_orders"),
    ("SUBMIT_BATCH_SIZE", Some("submit"), "batch_size"),
    ("SUBMIT_MAX_PARALLEL", Some("submit"), "max_parallel"),
    ("SUBMIT_MAX_ATTEMPTS", Some("submit"), "max_attempts"),
    ("SUBMIT_LEASE_SECS", Some("submit"), "lease_secs"),
    ("TARGET_URL", Some("target"), "url"),
    ("TARGET_AUTHORITY", Some("target"), "authority"),
    ("TARGET_TENANT_ID", Some("target"), "tenant_id"),
    ("TARGET_CLIENT_ID", Some("target"), "client_id"),
    (
        "TARGET_CLIENT_SECRET_FILE",
        Some("target"),
        "client_secret_file",
    ),
    ("TARGET_PRICE_LIST", Some("target"), "price_list"),
    (
        "TARGET_DEFAULT_CUSTOMER",
        Some("target"),
        "default_customer",
    ),
    ("TARGET_CA_FILE", Some("target"), "ca_file"),
    ("TARGET_TIMEOUT_SECS", Some("target"), "timeout_secs"),
];

fn apply_env(table: &mut toml::Table, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (suffix, section, key) in ENV_KEYS {
        let name = format!("ORDERLOAD_{suffix}");
        let Some(raw) = env.get(&name) else { continue };
        let value = if let Ok(n) = raw.parse::<i64>() {
            toml::Value::Integer(n)
        } else {
            toml::Value::String(raw.clone())
        };
        let target = match section {
            None => &mut *table,
            Some(s) => {
                let entry = table
                    .entry(s.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                entry
                    .as_table_mut()
                    .ok_or_else(|| invalid(*s, "must be a table"))?
            }
        };
        target.insert(key.to_string(), value);
    }
    Ok(())
}

/// The commented example printed by `orderload config example`.
pub const EXAMPLE: &str = include_str!("../orderload.example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn example_parses_and_validates() {
        let c = Config::from_toml_and_env(EXAMPLE, "example", &env(&[])).unwrap();
        assert!(!c.channels.is_empty());
        assert!(c.target.is_some());
    }

    #[test]
    fn env_overrides_file() {
        let c = Config::from_toml_and_env(
            "database_url = \"sqlite://a.db\"\n[submit]\nbatch_size = 5\n",
            "t",
            &env(&[
                ("ORDERLOAD_DATABASE_URL", "sqlite://b.db"),
                ("ORDERLOAD_SUBMIT_BATCH_SIZE", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(c.database_url, "sqlite://b.db");
        assert_eq!(c.submit.batch_size, 7);
    }

    #[test]
    fn unknown_format_names_the_key() {
        let err = Config::from_toml_and_env(
            "[[channel]]\nname = \"x\"\nformat = \"shopfy\"\n",
            "t.toml",
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("t.toml"), "{err}");
        assert!(err.contains("shopfy"), "{err}");
    }

    #[test]
    fn postgres_urls_are_accepted_without_a_password_only() {
        let ok = Config::from_toml_and_env(
            "database_url = \"postgres://ol@db:5432/orders\"\ndatabase_migration_url = \"postgres://ol@db-direct/orders\"\n",
            "t",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(ok.database_url, "postgres://ol@db:5432/orders");
        let err = Config::from_toml_and_env(
            "database_url = \"postgresql://ol:hunter2@db/orders\"\n",
            "t",
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("database_url") && err.contains("PGPASSWORD"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let err = Config::from_toml_and_env(
            "database_url = \"mysql://db/orders\"\n",
            "t",
            &env(&[("ORDERLOAD_DATABASE_URL", "mysql://u:hunter2@db/x")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("postgres://") && !err.contains("hunter2"),
            "{err}"
        );
        let err = Config::from_toml_and_env(
            "database_migration_url = \"postgres://ol@db/orders\"\n",
            "t",
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("database_migration_url"), "{err}");
        let err = Config::from_toml_and_env("[budget]\nrequests = 0\n", "t", &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("budget.requests"), "{err}");
    }

    #[test]
    fn bad_time_zone_names_the_key() {
        let err = Config::from_toml_and_env(
            "[[channel]]\nname = \"x\"\ntime_zone = \"Mars/Base\"\n",
            "t",
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "configuration key `channel[0].time_zone`: unknown time zone \"Mars/Base\" (expected an IANA name such as Europe/Berlin)"
        );
    }

    #[test]
    fn unknown_key_is_refused() {
        let err = Config::from_toml_and_env("databse_url = \"x\"\n", "t", &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("databse_url"), "{err}");
    }

    #[test]
    fn database_path_forms() {
        assert_eq!(database_path("sqlite://a/b.db"), PathBuf::from("a/b.db"));
        assert_eq!(
            database_path("sqlite:///tmp/x.db"),
            PathBuf::from("/tmp/x.db")
        );
        assert_eq!(database_path("sqlite:c.db?mode=rwc"), PathBuf::from("c.db"));
    }
}
