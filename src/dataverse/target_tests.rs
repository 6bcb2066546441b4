//! `DataverseTarget` without a server: construction, planning, description.

use super::*;
use crate::model::{Address, CurrencyCode, Customer, Order, OrderLine, Provenance};
use std::str::FromStr;

fn target_config(secret_file: &std::path::Path) -> TargetConfig {
    TargetConfig {
        url: "https://contoso.crm.dynamics.com".into(),
        tenant_id: "contoso.onmicrosoft.com".into(),
        client_id: "id".into(),
        client_secret_env: None,
        client_secret_file: Some(secret_file.to_path_buf()),
        ..TargetConfig::default()
    }
}

fn order(id: &str, lines: u32) -> OrderToSend {
    OrderToSend {
        order_id: 7,
        order: Order {
            channel: "shopify-us".into(),
            external_id: id.into(),
            created_at: chrono::Utc::now(),
            created_at_original: String::new(),
            currency: CurrencyCode::parse("USD").unwrap(),
            customer: Customer::default(),
            billing: None,
            shipping: Some(Address::default()),
            lines: (1..=lines)
                .map(|n| OrderLine {
                    line_number: n,
                    sku: None,
                    name: format!("item {n}"),
                    quantity: rust_decimal::Decimal::ONE,
                    unit_price: rust_decimal::Decimal::from_str("9.99").unwrap(),
                    discount: rust_decimal::Decimal::ZERO,
                    tax: rust_decimal::Decimal::ZERO,
                })
                .collect(),
            subtotal: None,
            shipping_amount: None,
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

fn prepared() -> (tempfile::TempDir, DataverseTarget) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "super-secret-value\n").unwrap();
    let t = DataverseTarget::new(&target_config(&secret), &SubmitConfig::default()).unwrap();
    t.set_references(References {
        price_list_id: "11111111-0000-0000-0000-000000000001".into(),
        account_id: Some("22222222-0000-0000-0000-000000000002".into()),
        currencies: [("USD".into(), "33333333-0000-0000-0000-000000000003".into())].into(),
        unit_id: None,
    });
    (dir, t)
}

#[test]
fn missing_secret_is_a_config_error() {
    let mut c = target_config(std::path::Path::new("/nonexistent/secret"));
    let err = DataverseTarget::new(&c, &SubmitConfig::default()).unwrap_err();
    assert!(
        matches!(err, TargetError::Config(ref m) if m.contains("client_secret_file")),
        "{err}"
    );
    c.client_secret_file = None;
    c.client_secret_env = Some("ORDERLOAD_TEST_SURELY_UNSET_SECRET".into());
    let err = DataverseTarget::new(&c, &SubmitConfig::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("ORDERLOAD_TEST_SURELY_UNSET_SECRET"),
        "{err}"
    );
}

#[test]
fn plan_before_prepare_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s").unwrap();
    let t = DataverseTarget::new(&target_config(&secret), &SubmitConfig::default()).unwrap();
    assert_eq!(
        t.plan_order(&order("1", 1)).unwrap_err().code,
        "target_not_prepared"
    );
}

#[test]
fn plan_counts_operations_and_describe_shows_the_exact_body() {
    let (_dir, t) = prepared();
    let planned = t.plan_order(&order("#1001", 2)).unwrap();
    assert_eq!(planned.dynamics_key, "shopify-us.#1001");
    assert_eq!(planned.operations, 3);
    assert_eq!(t.max_operations_per_batch(), 1000);
    let text = t.describe_batch(&[planned]);
    assert!(
        text.starts_with("POST https://contoso.crm.dynamics.com/api/data/v9.2/$batch HTTP/1.1\r\n")
    );
    assert!(text.contains("Authorization: Bearer <access token>\r\n"));
    assert!(text.contains("Prefer: odata.continue-on-error\r\n"));
    assert!(text.contains("PATCH https://contoso.crm.dynamics.com/api/data/v9.2/salesorders(new_externalorderid='shopify-us.%231001') HTTP/1.1\r\n"));
    assert!(text.contains(r#""priceperunit":9.99,"#));
    assert!(!text.contains("super-secret-value"));
    assert!(!format!("{t:?}").contains("super-secret-value"));
    assert_eq!(t.stats(), TargetStats::default());
    assert_eq!(t.parallelism(), SubmitConfig::default().max_parallel);
}

#[test]
fn chunks_never_exceed_the_operation_limit() {
    let mk = |n: usize| OrderChangeset {
        order_id: n as i64,
        plan: std::sync::Arc::new(ChangesetPlan {
            order_key: n.to_string(),
            operations: vec![
                batch_writer::PlannedOperation {
                    method: "PATCH".into(),
                    path: String::new(),
                    body: String::new(),
                    label: String::new(),
                };
                n
            ],
        }),
    };
    let chunks = chunk_by_operations(vec![mk(600), mk(400), mk(1), mk(999), mk(5)], 1000);
    let sizes: Vec<usize> = chunks
        .iter()
        .map(|c| c.iter().map(|o| o.plan.operations.len()).sum())
        .collect();
    assert_eq!(sizes, vec![1000, 1000, 5]);
}

#[tokio::test]
async fn unreachable_host_is_unavailable_and_refused_credentials_are_auth() {
    // Nothing listens on port 9 of loopback (discard); the token request is refused.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s").unwrap();
    let mut c = target_config(&secret);
    c.url = "http://127.0.0.1:9".into();
    c.authority = "http://127.0.0.1:9".into();
    c.retry.max_retries = 1;
    c.retry.base_ms = 1;
    let t = DataverseTarget::new(&c, &SubmitConfig::default()).unwrap();
    let err = t.prepare().await.unwrap_err();
    assert!(
        matches!(err, TargetError::Unavailable(ref m) if m.contains("cannot reach the token endpoint")),
        "{err}"
    );
}
