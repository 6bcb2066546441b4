//! The Dataverse client against the real emulator over HTTP: prepare, a clean batch, a
//! permanent error that fails only its order, idempotent resends, refused credentials.

use orderload::config::{SubmitConfig, TargetConfig};
use orderload::dataverse::DataverseTarget;
use orderload::emulator::{self, EmulatorConfig, RunningEmulator};
use orderload::model::{Address, CurrencyCode, Customer, Order, OrderLine, Provenance};
use orderload::submit::target::{OrderResult, OrderToSend, Target, TargetError};
use rust_decimal::Decimal;
use std::str::FromStr;

async fn emulator() -> RunningEmulator {
    emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts")
}

fn target(emu: &RunningEmulator, dir: &tempfile::TempDir, secret: &str) -> TargetConfig {
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let defaults = EmulatorConfig::default();
    let mut t = TargetConfig {
        url: emu.base_url.clone(),
        authority: emu.base_url.clone(),
        tenant_id: defaults.tenant,
        client_id: defaults.client_id,
        client_secret_env: None,
        client_secret_file: Some(secret_file),
        ..TargetConfig::default()
    };
    t.retry.max_retries = 2;
    t.retry.base_ms = 10;
    t
}

/// A target on `emu` with the right secret, prepared (its temporary directory holds the
/// secret file).
async fn prepared(emu: &RunningEmulator) -> (tempfile::TempDir, DataverseTarget) {
    let dir = tempfile::tempdir().unwrap();
    let t = DataverseTarget::new(
        &target(emu, &dir, &EmulatorConfig::default().client_secret),
        &SubmitConfig::default(),
    )
    .unwrap();
    t.prepare().await.expect("prepare");
    (dir, t)
}

fn order(order_id: i64, external_id: &str, lines: u32) -> OrderToSend {
    OrderToSend {
        order_id,
        order: Order {
            channel: "shopify-us".into(),
            external_id: external_id.into(),
            created_at: chrono::Utc::now(),
            created_at_original: String::new(),
            currency: CurrencyCode::parse("USD").unwrap(),
            customer: Customer::default(),
            billing: None,
            shipping: Some(Address {
                name: Some("Ann Lee".into()),
                postal_code: Some("02134".into()),
                ..Address::default()
            }),
            lines: (1..=lines)
                .map(|n| OrderLine {
                    line_number: n,
                    sku: Some(format!("SKU-{n}")),
                    name: format!("Item {n}"),
                    quantity: Decimal::from(n),
                    unit_price: Decimal::from_str("19.99").unwrap(),
                    discount: Decimal::ZERO,
                    tax: Decimal::from_str("1.60").unwrap(),
                })
                .collect(),
            subtotal: None,
            shipping_amount: Some(Decimal::from_str("4.99").unwrap()),
            tax: None,
            discount: None,
            total: None,
            taxes_included: false,
            financial_status: None,
            notes: None,
            source: Provenance::default(),
        },
        earlier_lines: 0,
    }
}

#[tokio::test]
async fn prepare_then_a_clean_batch_lands_each_order_once() {
    let emu = emulator().await;
    let (_dir, t) = prepared(&emu).await;
    let orders = [
        order(1, "#1001", 2),
        order(2, "A/B+C?", 1),
        order(3, "O'Brien 7 ü", 3),
    ];
    let planned: Vec<_> = orders.iter().map(|o| t.plan_order(o).unwrap()).collect();
    let outcomes = t.submit_batch(&planned).await.expect("batch");
    assert_eq!(outcomes.len(), 3);
    for o in &outcomes {
        assert!(matches!(o.result, OrderResult::Succeeded { .. }), "{o:?}");
    }
    let state = emu.state().await;
    assert_eq!(state["salesorders"], 3, "{state}");
    assert_eq!(state["salesorderdetails"], 6, "{state}");
    // Resending is an update, not a second order.
    let again = t.submit_batch(&planned).await.unwrap();
    assert!(
        again
            .iter()
            .all(|o| matches!(o.result, OrderResult::Succeeded { .. })),
        "{again:?}"
    );
    let state = emu.state().await;
    assert_eq!(state["salesorders"], 3, "{state}");
    assert_eq!(state["salesorderdetails"], 6, "{state}");
    assert!(t.stats().requests >= 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_permanent_error_fails_only_its_order() {
    let emu = emulator().await;
    let (_dir, t) = prepared(&emu).await;
    let good = t.plan_order(&order(1, "good-1", 1)).unwrap();
    let mut bad = t.plan_order(&order(2, "bad-1", 1)).unwrap();
    // Bypass the client's own length check so that the service refuses it.
    let plan = bad
        .payload
        .get_mut::<orderload::dataverse::batch_writer::ChangesetPlan>()
        .unwrap();
    plan.operations[0].body = plan.operations[0]
        .body
        .replace("02134", "1234567890123456789012345");
    let outcomes = t.submit_batch(&[good, bad]).await.unwrap();
    let by_id = |id: i64| {
        outcomes
            .iter()
            .find(|o| o.order_id == id)
            .unwrap()
            .result
            .clone()
    };
    assert!(
        matches!(by_id(1), OrderResult::Succeeded { .. }),
        "{outcomes:?}"
    );
    match by_id(2) {
        OrderResult::Failed {
            retryable,
            http_status,
            message,
            ..
        } => {
            assert!(!retryable);
            assert_eq!(http_status, Some(400));
            assert!(message.contains("shipto_postalcode"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let state = emu.state().await;
    assert_eq!(state["salesorders"], 1, "{state}");
    assert_eq!(state["salesorderdetails"], 1, "{state}");
    emu.shutdown().await;
}

#[tokio::test]
async fn wrong_secret_is_an_auth_error_and_unknown_price_list_a_config_error() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let t = DataverseTarget::new(&target(&emu, &dir, "wrong"), &SubmitConfig::default()).unwrap();
    let err = t.prepare().await.unwrap_err();
    assert!(matches!(err, TargetError::Auth(_)), "{err}");
    assert!(!err.to_string().contains("wrong"), "{err}");

    let mut c = target(&emu, &dir, &EmulatorConfig::default().client_secret);
    c.price_list = "Wholesale Nowhere".into();
    let t = DataverseTarget::new(&c, &SubmitConfig::default()).unwrap();
    let err = t.prepare().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "target configuration: price list \"Wholesale Nowhere\" not found in Dynamics (pricelevels.name)"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn injected_5xx_and_dropped_connections_are_retried_without_duplicates() {
    let emu = emulator::start(EmulatorConfig {
        fail_rate: 0.3,
        drop_rate: 0.3,
        seed: 7,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = target(&emu, &dir, &EmulatorConfig::default().client_secret);
    c.retry.max_retries = 12;
    c.retry.base_ms = 5;
    c.retry.cap_ms = 50;
    let t = DataverseTarget::new(&c, &SubmitConfig::default()).unwrap();
    t.prepare().await.unwrap();
    for batch in 0..5 {
        let planned: Vec<_> = (0..4)
            .map(|i| {
                t.plan_order(&order(batch * 10 + i, &format!("{batch}-{i}"), 2))
                    .unwrap()
            })
            .collect();
        let outcomes = t.submit_batch(&planned).await.unwrap();
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o.result, OrderResult::Succeeded { .. })),
            "{outcomes:?}"
        );
    }
    let state = emu.state().await;
    assert_eq!(state["salesorders"], 20, "{state}");
    assert_eq!(state["salesorderdetails"], 40, "{state}");
    assert!(
        t.stats().retries > 0,
        "faults were injected: {:?} {state}",
        t.stats()
    );
    emu.shutdown().await;
}

/// An order corrected from 4 lines to 2: its changeset removes lines 3 and 4. Sent after the
/// 4-line version landed, the removals delete them; sent when they are not there (that version
/// never reached Dynamics, or a lost answer hid that they were removed), the 404 is answered
/// by looking each line up once and sending the order again without the removals — one more
/// request, not one per line, and no retry.
#[tokio::test]
async fn removals_of_lines_already_gone_are_dropped_without_a_retry() {
    let emu = emulator().await;
    let (_dir, t) = prepared(&emu).await;
    let corrected = |id: i64, external_id: &str| OrderToSend {
        earlier_lines: 4,
        ..order(id, external_id, 2)
    };
    let details = |emu_state: &serde_json::Value| emu_state["salesorderdetails"].clone();

    // Sent with 4 lines, then corrected: two removals, applied in the same request.
    let first = t.plan_order(&order(1, "R-1", 4)).unwrap();
    assert!(matches!(
        t.submit_batch(&[first]).await.unwrap()[0].result,
        OrderResult::Succeeded { .. }
    ));
    assert_eq!(details(&emu.state().await), 4);
    let planned = t.plan_order(&corrected(1, "R-1")).unwrap();
    assert_eq!(planned.operations, 5, "order, 2 lines, 2 removals");
    let requests = t.stats().requests;
    let out = t.submit_batch(&[planned]).await.unwrap();
    assert!(
        matches!(out[0].result, OrderResult::Succeeded { .. }),
        "{out:?}"
    );
    assert_eq!(details(&emu.state().await), 2);
    assert_eq!(t.stats().requests - requests, 1);

    // Corrected before its 4-line version was ever sent: lines 3 and 4 are not there.
    let planned = t.plan_order(&corrected(2, "R-2")).unwrap();
    let requests = t.stats().requests;
    let out = t.submit_batch(&[planned]).await.unwrap();
    assert!(
        matches!(out[0].result, OrderResult::Succeeded { .. }),
        "{out:?}"
    );
    assert_eq!(details(&emu.state().await), 4);
    assert_eq!(
        t.stats().requests - requests,
        4,
        "the batch, one lookup per removed line, the batch again"
    );
    assert_eq!(t.stats().retries, 0);
    emu.shutdown().await;
}

/// Order 2's claim is withdrawn while the batch waits out a 429: after the pause the client
/// asks, and sends the batch again without it (`claim_withdrawn`), so Dynamics never gets it.
#[tokio::test]
async fn after_a_429_only_the_orders_still_claimed_are_sent_again() {
    /// Order 1 only; counts the questions.
    struct OnlyFirst(std::sync::atomic::AtomicUsize);
    #[async_trait::async_trait]
    impl orderload::submit::target::ClaimCheck for OnlyFirst {
        async fn still_ours(&self, order_ids: &[i64]) -> Vec<i64> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            order_ids.iter().copied().filter(|&id| id == 1).collect()
        }
    }
    let emu = emulator().await;
    let (_dir, t) = prepared(&emu).await;
    // prepare's reads fill a one-request, one-second window: the batch is throttled.
    let limits = reqwest::Client::new()
        .post(format!("{}/_emulator/limits", emu.base_url))
        .json(&serde_json::json!({"limit_requests": 1, "limit_window_secs": 1}))
        .send()
        .await
        .unwrap();
    assert!(limits.status().is_success());
    let planned = [
        t.plan_order(&order(1, "T-1", 1)).unwrap(),
        t.plan_order(&order(2, "T-2", 1)).unwrap(),
    ];
    let only_first = OnlyFirst(Default::default());
    let mut out = t.submit_batch_checked(&planned, &only_first).await.unwrap();
    out.sort_by_key(|o| o.order_id);
    assert!(
        matches!(out[0].result, OrderResult::Succeeded { .. }),
        "{out:?}"
    );
    assert!(
        matches!(&out[1].result, OrderResult::Failed { code, .. } if code == "claim_withdrawn"),
        "{out:?}"
    );
    let state = emu.state().await;
    assert!(state["throttled"].as_u64().unwrap() >= 1, "{state}");
    assert_eq!(state["salesorders"], 1, "{state}");
    assert_eq!(
        only_first.0.load(std::sync::atomic::Ordering::Relaxed) as u64,
        state["throttled"].as_u64().unwrap(),
        "asked once per 429's pause: not before the first request, and the answer after the \
         pause is used, not asked again"
    );
    emu.shutdown().await;
}
