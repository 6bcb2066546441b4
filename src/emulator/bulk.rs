//! Bulk messages on a table: `CreateMultiple` (200 + `Ids`), `UpdateMultiple` and
//! `UpsertMultiple` (204). `@odata.type` is required on every target; the call is
//! all-or-nothing, as on standard tables (the caller's savepoint rolls everything back).

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::odata_url::{decode_path, parse_path, KeyPredicate};
use super::query::QueryOptions;
use super::records::{self, entity_type, WriteContext, WriteOptions};
use super::response::{codes, ApiError, ApiResponse, ApiResult};
use super::store::Store;

/// Tables on which the bulk messages are available (as the current reference lists them).
pub const BULK_TABLES: &[&str] = &["salesorder", "salesorderdetail"];
pub const BULK_MESSAGES: &[&str] = &["CreateMultiple", "UpdateMultiple", "UpsertMultiple"];

fn target_error(message: &str, index: usize, error: ApiError) -> ApiError {
    ApiError {
        message: format!("{message} failed at target {index}: {}", error.message),
        ..error
    }
}

pub fn serve(
    store: &mut Store,
    ctx: &WriteContext,
    table: usize,
    action: &str,
    body: &Map<String, Value>,
) -> ApiResult<ApiResponse> {
    let def = store.shared_def(table);
    let message = action.strip_prefix("Microsoft.Dynamics.CRM.").unwrap_or("");
    if !BULK_MESSAGES.contains(&message) {
        return Err(ApiError::segment_not_found(action));
    }
    if !BULK_TABLES.contains(&def.logical_name.as_str()) {
        return Err(ApiError::bad_request(
            codes::INVALID_ARGUMENT,
            format!(
                "The message {message} is not supported on the {} table.",
                def.logical_name
            ),
        ));
    }
    let targets = body
        .get("Targets")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::payload(format!("{message} requires a 'Targets' array.")))?;
    let expected_type = entity_type(&def);
    let mut ids = Vec::with_capacity(targets.len());
    for (index, target) in targets.iter().enumerate() {
        let Some(target) = target.as_object() else {
            return Err(ApiError::payload(format!(
                "Target {index} of {message} is not an entity."
            )));
        };
        match target.get("@odata.type").and_then(Value::as_str) {
            None => {
                return Err(ApiError::payload(format!(
                    "The '@odata.type' annotation is required on every target of {message} (target {index} has none)."
                )))
            }
            Some(t) if t.trim_start_matches('#') != expected_type => {
                return Err(ApiError::payload(format!(
                    "Target {index} of {message} has '@odata.type' '{t}', expected '{expected_type}'."
                )))
            }
            Some(_) => {}
        }
        let result = match message {
            "CreateMultiple" => records::create_row(
                store,
                ctx,
                table,
                target,
                &Map::new(),
                &HashMap::new(),
                None,
            ),
            "UpdateMultiple" => {
                let key = target_key(store, table, target)?.ok_or_else(|| {
                    ApiError::payload(format!(
                        "Target {index} of UpdateMultiple has no '{}'.",
                        def.primary_id
                    ))
                })?;
                let options = WriteOptions {
                    if_match: Some("*".into()),
                    ..WriteOptions::default()
                };
                records::patch_upsert(
                    store,
                    ctx,
                    table,
                    &key,
                    &strip(target),
                    &options,
                    &QueryOptions::default(),
                )
                .map(|(_, entity)| entity.id)
            }
            _ => match target_key(store, table, target)? {
                Some(key) => records::patch_upsert(
                    store,
                    ctx,
                    table,
                    &key,
                    &strip(target),
                    &WriteOptions::default(),
                    &QueryOptions::default(),
                )
                .map(|(_, entity)| entity.id),
                None => records::create_row(
                    store,
                    ctx,
                    table,
                    target,
                    &Map::new(),
                    &HashMap::new(),
                    None,
                ),
            },
        };
        ids.push(result.map_err(|e| target_error(message, index, e))?);
    }
    if message == "CreateMultiple" {
        let body = json!({
            "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse", ctx.service_root),
            "Ids": ids,
        });
        Ok(ApiResponse::json(200, &body))
    } else {
        Ok(ApiResponse::no_content())
    }
}

/// The body without the primary id (it is in the key) and `@odata.id`.
fn strip(target: &Map<String, Value>) -> Map<String, Value> {
    target
        .iter()
        .filter(|(k, _)| *k != "@odata.id")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// How a target names its row: `@odata.id` (key or id form), the primary id, or the values of
/// an alternate key in the body. `None`: no identification (UpsertMultiple then creates).
fn target_key(
    store: &Store,
    table: usize,
    target: &Map<String, Value>,
) -> ApiResult<Option<KeyPredicate>> {
    let def = store.def(table);
    if let Some(odata_id) = target.get("@odata.id").and_then(Value::as_str) {
        let relative = match odata_id.find("/api/data/v9.2/") {
            Some(at) => &odata_id[at + "/api/data/v9.2/".len()..],
            None => odata_id.trim_start_matches('/'),
        };
        let decoded = decode_path(relative)?;
        let segments = parse_path(&decoded)?;
        return match segments.as_slice() {
            [segment] if segment.name == def.entity_set && segment.key.is_some() => {
                let key = segment.key.clone().expect("checked");
                records::find_row(store, table, &key)?; // validates the key names and values
                Ok(Some(key))
            }
            _ => Err(ApiError::payload(format!(
                "'@odata.id' '{odata_id}' does not identify a {} record.",
                def.logical_name
            ))),
        };
    }
    if let Some(id) = target
        .get(&def.primary_id)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
    {
        return Ok(Some(KeyPredicate::Id(id)));
    }
    for key in &def.keys {
        let values: Option<Vec<(String, Value)>> = key
            .attributes
            .iter()
            .map(|a| {
                target
                    .get(a)
                    .filter(|v| !v.is_null())
                    .map(|v| (a.clone(), v.clone()))
            })
            .collect();
        if let Some(pairs) = values {
            return Ok(Some(KeyPredicate::Named(pairs)));
        }
    }
    Ok(None)
}
