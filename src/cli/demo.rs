//! `orderload demo`: the whole job in one go, on embedded sample data, against the emulator
//! started in-process on a free loopback port. Nothing outside the demo folder is touched.

use super::{run as nightly, Context};
use crate::config::{ChannelConfig, Config, TargetConfig};
use crate::exit_codes;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder for the demo's inboxes, database and metrics (emptied first).
    /// Default: orderload-demo in the system temp folder.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The sample exports, embedded so the demo works from any folder.
const SAMPLES: &[(&str, &str, &[u8])] = &[
    (
        "shopify",
        "orders_export.csv",
        include_bytes!("../../sample_data/shopify/orders_export.csv"),
    ),
    (
        "shopify",
        "orders_export_2.csv",
        include_bytes!("../../sample_data/shopify/orders_export_2.csv"),
    ),
    (
        "amazon",
        "all-orders.txt",
        include_bytes!("../../sample_data/amazon/all-orders.txt"),
    ),
    (
        "amazon",
        "unshipped-us.txt",
        include_bytes!("../../sample_data/amazon/unshipped-us.txt"),
    ),
    (
        "woocommerce",
        "orders.csv",
        include_bytes!("../../sample_data/woocommerce/orders.csv"),
    ),
    (
        "woocommerce",
        "orders-excel-semicolon.csv",
        include_bytes!("../../sample_data/woocommerce/orders-excel-semicolon.csv"),
    ),
    (
        "woocommerce",
        "orders.json",
        include_bytes!("../../sample_data/woocommerce/orders.json"),
    ),
    (
        "csv",
        "marketplace.csv",
        include_bytes!("../../sample_data/csv/marketplace.csv"),
    ),
    (
        "ebay",
        "eBay-OrdersReport-Jun-02-2023-10_15_00-0700-1234.csv",
        include_bytes!(
            "../../sample_data/ebay/eBay-OrdersReport-Jun-02-2023-10_15_00-0700-1234.csv"
        ),
    ),
    (
        "ebay",
        "us-orders-report.csv",
        include_bytes!("../../sample_data/ebay/us-orders-report.csv"),
    ),
    (
        "etsy",
        "EtsySoldOrderItems2023-1.csv",
        include_bytes!("../../sample_data/etsy/EtsySoldOrderItems2023-1.csv"),
    ),
    (
        "etsy",
        "EtsySoldOrders2023-1.csv",
        include_bytes!("../../sample_data/etsy/EtsySoldOrders2023-1.csv"),
    ),
    (
        "etsy",
        "EtsySoldOrderItems2023-2.csv",
        include_bytes!("../../sample_data/etsy/EtsySoldOrderItems2023-2.csv"),
    ),
    (
        "bigcommerce",
        "orders-2024-09.csv",
        include_bytes!("../../sample_data/bigcommerce/orders-2024-09.csv"),
    ),
    (
        "shopify-json",
        "orders.json",
        include_bytes!("../../sample_data/shopify-json/orders.json"),
    ),
    (
        "amazon-json",
        "orders-with-items.json",
        include_bytes!("../../sample_data/amazon-json/orders-with-items.json"),
    ),
    (
        "magento",
        "orders.json",
        include_bytes!("../../sample_data/magento/orders.json"),
    ),
];

/// The `csv` channel's column mapping for `sample_data/csv/marketplace.csv`.
fn marketplace_mapping() -> std::collections::BTreeMap<String, String> {
    let toml_text = include_str!("../../sample_data/csv/mapping.toml");
    toml::from_str(toml_text).unwrap_or_default()
}

pub async fn run(args: DemoArgs) -> anyhow::Result<u8> {
    let dir = args
        .dir
        .unwrap_or_else(|| std::env::temp_dir().join("orderload-demo"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    for (channel, name, text) in SAMPLES {
        let folder = dir.join("inbox").join(channel);
        std::fs::create_dir_all(&folder)?;
        std::fs::write(folder.join(name), text)?;
    }

    eprintln!("orderload demo: starting the Dataverse emulator on a free loopback port ...");
    let emulator = crate::emulator::start(crate::emulator::EmulatorConfig::default()).await?;
    let secret_file = dir.join("client-secret");
    write_private(
        &secret_file,
        &crate::emulator::EmulatorConfig::default().client_secret,
    )?;

    let db_url = format!("sqlite://{}", dir.join("demo.db").display());
    let mut config = Config {
        database_url: db_url.clone(),
        ..Default::default()
    };
    config.ingest.settle_secs = 0;
    for (name, format) in [
        ("shopify", "shopify"),
        ("amazon", "amazon"),
        ("woocommerce", "woocommerce"),
        ("csv", "csv"),
        ("ebay", "ebay"),
        ("etsy", "etsy"),
        ("bigcommerce", "bigcommerce"),
        ("shopify-json", "shopify"),
        ("amazon-json", "amazon"),
        ("magento", "magento"),
    ] {
        config.channels.push(ChannelConfig {
            name: format!("{name}-demo"),
            format: Some(serde_json::from_value(serde_json::json!(format))?),
            inbox: Some(dir.join("inbox").join(name)),
            archive: Some(dir.join("archive").join(name)),
            time_zone: Some("Europe/Berlin".into()),
            currency: (name == "csv").then(|| "USD".to_string()),
            mapping: if name == "csv" {
                marketplace_mapping()
            } else {
                Default::default()
            },
            encoding: None,
        });
    }
    config.target = Some(TargetConfig {
        url: emulator.base_url.clone(),
        authority: emulator.base_url.clone(),
        tenant_id: crate::emulator::EmulatorConfig::default().tenant,
        client_id: crate::emulator::EmulatorConfig::default().client_id,
        client_secret_env: None,
        client_secret_file: Some(secret_file),
        ..Default::default()
    });
    config.validate()?;
    let ctx = Context {
        config,
        argv: vec!["orderload".into(), "demo".into()],
    };

    println!(
        "== 1. the nightly job: ingest the inboxes, then submit to Dynamics (the emulator at {})\n",
        emulator.base_url
    );
    let metrics = dir.join("orderload.prom");
    let code = nightly::run(
        &ctx,
        nightly::RunArgs {
            metrics_file: Some(metrics.clone()),
            max_orders: None,
        },
    )
    .await?;

    println!("\n== 2. the morning report (orderload report)\n");
    #[derive(clap::Parser)]
    struct ReportOnly {
        #[command(flatten)]
        args: super::report::ReportArgs,
    }
    let report = <ReportOnly as clap::Parser>::parse_from(["report"]).args;
    super::report::run(&ctx, report).await?;

    let state = emulator.state().await;
    println!(
        "\n== 3. what Dynamics (the emulator) now holds: {} sales orders, {} order lines, {} requests, {} throttled\n",
        state["salesorders"], state["salesorderdetails"], state["requests"], state["throttled"]
    );
    emulator.shutdown().await;

    let db = format!("--database {db_url}");
    println!(
        "The nightly run would have exited with code {code} ({}).",
        meaning(code)
    );
    println!("Everything is in {}. Try next:", dir.display());
    println!("  cargo run --release -- {db} report --failed          # what failed, and what to do about it");
    println!("  cargo run --release -- {db} report --format json     # the same for tools");
    println!("  cargo run --release -- {db} rerun --failed --dry-run # what a rerun would resend, and why");
    println!(
        "  cat {}                # the Prometheus metrics of the run",
        metrics.display()
    );
    println!("  cargo run --release -- emulator                      # rehearse against the emulator yourself");
    Ok(exit_codes::OK)
}

fn meaning(code: u8) -> &'static str {
    match code {
        exit_codes::OK => "everything loaded",
        exit_codes::SOME_FAILED => {
            "some orders failed or rows were rejected — on purpose: the samples contain bad rows"
        }
        exit_codes::TARGET_UNAVAILABLE => "Dynamics unavailable",
        exit_codes::LEASE_HELD => "another run holds the lease",
        _ => "could not run",
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path)?.write_all(text.as_bytes())
}
