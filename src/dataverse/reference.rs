//! Reference data: the names people configure (price list, account, ISO currency, unit)
//! resolved to Dataverse ids once, in `prepare`. A name that does not resolve stops the run
//! early with a message naming the table and column that were searched.

use super::client::ApiClient;
use super::keys::encode_query_value;
use super::mapping::{CustomerMatch, MappingConfig, ProductMode, References};
use crate::config::TargetConfig;
use crate::submit::target::TargetError;
use serde_json::Value;
use std::collections::BTreeMap;

/// Follow `@odata.nextLink` and collect every row of `value`.
async fn get_all(client: &ApiClient, url: String, what: &str) -> Result<Vec<Value>, TargetError> {
    let mut rows = Vec::new();
    let mut next = Some(url);
    let mut pages = 0;
    while let Some(url) = next.take() {
        let page = client.get_json(&url, what).await?;
        if let Some(values) = page.get("value").and_then(Value::as_array) {
            rows.extend(values.iter().cloned());
        }
        next = page
            .get("@odata.nextLink")
            .and_then(Value::as_str)
            .map(str::to_string);
        pages += 1;
        if pages > 1000 {
            return Err(TargetError::Unavailable(format!(
                "{what}: more than 1000 pages"
            )));
        }
    }
    Ok(rows)
}

fn text<'a>(row: &'a Value, column: &str) -> Option<&'a str> {
    row.get(column).and_then(Value::as_str)
}

/// Rows of `entity_set` whose `name_column` equals `name` (case-insensitively, as Dataverse
/// compares). The `$filter` narrows the query; the comparison is repeated here.
async fn find_by_name(
    client: &ApiClient,
    entity_set: &str,
    id_column: &str,
    name_column: &str,
    name: &str,
    label: &str,
) -> Result<Option<String>, TargetError> {
    let literal = format!("'{}'", name.replace('\'', "''"));
    let url = format!(
        "{}{entity_set}?$select={id_column},{name_column}&$filter={name_column}%20eq%20{}",
        client.base,
        encode_query_value(&literal)
    );
    let what = format!("looking up {label} {name:?} ({entity_set}.{name_column})");
    let rows = get_all(client, url, &what).await?;
    let ids: Vec<&str> = rows
        .iter()
        .filter(|r| {
            text(r, name_column).is_some_and(|n| n.trim().eq_ignore_ascii_case(name.trim()))
        })
        .filter_map(|r| text(r, id_column))
        .collect();
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(check_guid(id, &what)?)),
        many => Err(TargetError::Config(format!(
            "{label} {name:?} matches {} rows in Dynamics ({entity_set}.{name_column}); it must be unique",
            many.len()
        ))),
    }
}

fn check_guid(id: &str, what: &str) -> Result<String, TargetError> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| TargetError::Unavailable(format!("{what}: {id:?} is not a GUID")))
}

async fn required(
    client: &ApiClient,
    entity_set: &str,
    id_column: &str,
    name: &str,
    label: &str,
) -> Result<String, TargetError> {
    find_by_name(client, entity_set, id_column, "name", name, label)
        .await?
        .ok_or_else(|| {
            TargetError::Config(format!(
                "{label} {name:?} not found in Dynamics ({entity_set}.name)"
            ))
        })
}

/// Resolve everything the mapping needs.
pub async fn resolve(
    client: &ApiClient,
    target: &TargetConfig,
    mapping: &MappingConfig,
) -> Result<References, TargetError> {
    let price_list_id = required(
        client,
        "pricelevels",
        "pricelevelid",
        &target.price_list,
        "price list",
    )
    .await?;
    let account_id = match mapping.customer_match {
        CustomerMatch::Account => Some(
            required(
                client,
                "accounts",
                "accountid",
                &target.default_customer,
                "account",
            )
            .await?,
        ),
        // Used only for orders without an e-mail address; optional.
        CustomerMatch::Email if target.default_customer.trim().is_empty() => None,
        CustomerMatch::Email => {
            let found = find_by_name(
                client,
                "accounts",
                "accountid",
                "name",
                &target.default_customer,
                "account",
            )
            .await?;
            if found.is_none() {
                tracing::warn!(
                    account = %target.default_customer,
                    "default account not found; orders without an e-mail address will fail"
                );
            }
            found
        }
    };
    let unit_id = match mapping.product_mode {
        ProductMode::Catalog => {
            Some(required(client, "uoms", "uomid", &target.unit, "unit").await?)
        }
        ProductMode::WriteIn => None,
    };
    let currencies = resolve_currencies(client, &target.currencies).await?;
    Ok(References {
        price_list_id,
        account_id,
        currencies,
        unit_id,
    })
}

/// ISO code → transactioncurrencyid, from `isocurrencycode`, plus the configured
/// `target.currencies` (ISO code → currency name) for currencies named differently.
async fn resolve_currencies(
    client: &ApiClient,
    by_name: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, TargetError> {
    let url = format!(
        "{}transactioncurrencies?$select=transactioncurrencyid,isocurrencycode,currencyname",
        client.base
    );
    let rows = get_all(client, url, "reading transactioncurrencies").await?;
    currency_map(&rows, by_name)
}

fn currency_map(
    rows: &[Value],
    by_name: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, TargetError> {
    let mut map = BTreeMap::new();
    for row in rows {
        if let (Some(iso), Some(id)) = (
            text(row, "isocurrencycode"),
            text(row, "transactioncurrencyid"),
        ) {
            let id = check_guid(id, "reading transactioncurrencies")?;
            map.entry(iso.trim().to_ascii_uppercase()).or_insert(id);
        }
    }
    for (iso, name) in by_name {
        let id = rows
            .iter()
            .find(|r| text(r, "currencyname").is_some_and(|n| n.trim().eq_ignore_ascii_case(name.trim())))
            .and_then(|r| text(r, "transactioncurrencyid"))
            .ok_or_else(|| {
                TargetError::Config(format!(
                    "currency {name:?} (target.currencies.{iso}) not found in Dynamics (transactioncurrencies.currencyname)"
                ))
            })?;
        map.insert(
            iso.trim().to_ascii_uppercase(),
            check_guid(id, "reading transactioncurrencies")?,
        );
    }
    if map.is_empty() {
        tracing::warn!("no transaction currencies found in Dynamics; every order will fail");
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn currencies_by_iso_code_and_by_configured_name() {
        let rows = vec![
            json!({"transactioncurrencyid":"aaaaaaaa-0000-0000-0000-000000000001","isocurrencycode":"USD","currencyname":"US Dollar"}),
            json!({"transactioncurrencyid":"aaaaaaaa-0000-0000-0000-000000000002","isocurrencycode":"eur","currencyname":"Euro"}),
            json!({"transactioncurrencyid":"AAAAAAAA-0000-0000-0000-000000000003","isocurrencycode":"XCH","currencyname":"Swiss Franc"}),
        ];
        let map = currency_map(
            &rows,
            &[("CHF".to_string(), "swiss franc".to_string())].into(),
        )
        .unwrap();
        assert_eq!(map["USD"], "aaaaaaaa-0000-0000-0000-000000000001");
        assert_eq!(map["EUR"], "aaaaaaaa-0000-0000-0000-000000000002");
        assert_eq!(map["CHF"], "aaaaaaaa-0000-0000-0000-000000000003");
        let err =
            currency_map(&rows, &[("GBP".to_string(), "Pound".to_string())].into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "target configuration: currency \"Pound\" (target.currencies.GBP) not found in Dynamics (transactioncurrencies.currencyname)"
        );
    }
}
