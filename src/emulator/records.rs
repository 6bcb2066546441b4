//! Row-level semantics shared by single requests, `$batch` parts and bulk messages:
//! payload validation (types, lengths, required columns, `@odata.bind`), create, upsert by
//! id or alternate key (the whole `If-Match`/`If-None-Match` matrix), read and delete.

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::fixture::TableDef;
use super::odata_url::{check_key_value, format_literal, parse_path, KeyPredicate};
use super::payload::{check_required, field_name, prepare};
use super::query::QueryOptions;
use super::response::{codes, ApiError, ApiResponse, ApiResult};
use super::store::{display_key, new_id, Store, StoreError};

/// What a request needs to know besides the store.
pub struct WriteContext<'a> {
    /// `http://127.0.0.1:PORT/api/data/v9.2/`
    pub service_root: &'a str,
    /// `$n` → entity created by the changeset request with `Content-ID: n`.
    pub content_ids: &'a HashMap<String, EntityRef>,
    pub enforce_application_required: bool,
}

/// A row addressed by a request, and the URL to report for it.
#[derive(Debug, Clone)]
pub struct EntityRef {
    pub table: usize,
    pub id: Uuid,
}

/// Conditional headers and preferences of a write.
#[derive(Debug, Default, Clone)]
pub struct WriteOptions {
    pub if_match: Option<String>,
    pub if_none_match_star: bool,
    pub return_representation: bool,
}

pub fn entity_type(def: &TableDef) -> String {
    format!("Microsoft.Dynamics.CRM.{}", def.logical_name)
}

fn missing_id(def: &TableDef, id: Uuid) -> ApiError {
    ApiError::new(
        404,
        codes::DOES_NOT_EXIST,
        format!("{} With Id = {} Does Not Exist", def.logical_name, id),
    )
}

fn missing_key(def: &TableDef) -> ApiError {
    ApiError::new(
        404,
        codes::DOES_NOT_EXIST,
        format!(
            "A record with the specified key values does not exist in {} entity",
            def.logical_name
        ),
    )
}

/// Finds the row a key predicate names. `Ok(None)` when it is valid but absent.
pub fn find_row(store: &Store, table: usize, key: &KeyPredicate) -> ApiResult<Option<Uuid>> {
    let state = store.table(table);
    let def = &state.def;
    match key {
        KeyPredicate::Id(id) => Ok(state.get(id).map(|r| r.id)),
        KeyPredicate::Named(pairs) => {
            if pairs.len() == 1 && pairs[0].0 == def.primary_id {
                let id = pairs[0].1.as_str().and_then(|s| Uuid::parse_str(s).ok());
                return Ok(id.and_then(|id| state.get(&id).map(|r| r.id)));
            }
            for (_, value) in pairs {
                check_key_value(value)?;
            }
            let key_index = def.keys.iter().position(|k| {
                k.attributes.len() == pairs.len()
                    && k.attributes
                        .iter()
                        .all(|a| pairs.iter().any(|(n, _)| n == a))
            });
            let Some(key_index) = key_index else {
                return Err(ApiError::bad_request(
                    codes::PAYLOAD_ERROR,
                    format!(
                        "The key in the request URI is not valid for resource '{}'. Make sure the names \
                         and number of key properties match the type of key defined on the resource.",
                        entity_type(def)
                    ),
                ));
            };
            let values: Vec<Value> = def.keys[key_index]
                .attributes
                .iter()
                .map(|a| {
                    pairs
                        .iter()
                        .find(|(n, _)| n == a)
                        .expect("checked above")
                        .1
                        .clone()
                })
                .collect();
            Ok(state.find_by_key(key_index, &values))
        }
    }
}

/// URL of a row as the client addressed it: key form for alternate keys, id form otherwise.
pub fn entity_url(ctx: &WriteContext, def: &TableDef, key: &KeyPredicate, id: Uuid) -> String {
    match key {
        KeyPredicate::Named(pairs) if !(pairs.len() == 1 && pairs[0].0 == def.primary_id) => {
            let inner: Vec<String> = pairs
                .iter()
                .map(|(n, v)| format!("{n}={}", format_literal(v)))
                .collect();
            format!(
                "{}{}({})",
                ctx.service_root,
                def.entity_set,
                inner.join(",")
            )
        }
        _ => format!("{}{}({})", ctx.service_root, def.entity_set, id),
    }
}

/// Resolves an `@odata.bind` / `@odata.id` value: `$n`, `/set(id)`, `set(key='v')` or an
/// absolute URL under the service root.
pub fn resolve_reference(
    store: &Store,
    ctx: &WriteContext,
    text: &str,
) -> ApiResult<(usize, Uuid)> {
    if text.starts_with('$') {
        return ctx
            .content_ids
            .get(text)
            .map(|r| (r.table, r.id))
            .ok_or_else(|| unknown_content_id(text));
    }
    let relative = match text.find("/api/data/v9.2/") {
        Some(at) => &text[at + "/api/data/v9.2/".len()..],
        None => text.trim_start_matches('/'),
    };
    let decoded = super::odata_url::decode_path(relative)?;
    let segments = parse_path(&decoded)?;
    let bad = || {
        ApiError::payload(format!(
            "The entity reference '{text}' is not a valid entity URL."
        ))
    };
    let [segment] = segments.as_slice() else {
        return Err(bad());
    };
    let key = segment.key.as_ref().ok_or_else(bad)?;
    let table = store
        .table_by_set(&segment.name)
        .ok_or_else(|| ApiError::segment_not_found(&segment.name))?;
    match find_row(store, table, key)? {
        Some(id) => Ok((table, id)),
        None => Err(match key {
            KeyPredicate::Id(id) => missing_id(store.def(table), *id),
            KeyPredicate::Named(_) => missing_key(store.def(table)),
        }),
    }
}

pub fn unknown_content_id(reference: &str) -> ApiError {
    ApiError::payload(format!(
        "Content-ID Reference: '{reference}' does not exist in the batch context."
    ))
}

fn store_error(def: &TableDef, error: StoreError) -> ApiError {
    match error {
        StoreError::DuplicateId(id) => ApiError::new(
            412,
            codes::DUPLICATE_RECORD,
            format!("Cannot insert duplicate key: a {} with id {id} already exists.", def.logical_name),
        ),
        StoreError::KeyConflict { key, value } => ApiError::new(
            412,
            codes::DUPLICATE_KEY_ON_CREATE,
            format!(
                "A record that has the attribute values {value} already exists. The entity key {key} requires \
                 that this set of attributes contains unique values. Select unique values and try again. \
                 (table {})",
                def.logical_name
            ),
        ),
    }
}

/// Creates a row (and its deep-inserted children). Returns the new id.
pub fn create_row(
    store: &mut Store,
    ctx: &WriteContext,
    table: usize,
    body: &Map<String, Value>,
    preset: &Map<String, Value>,
    preset_targets: &HashMap<String, String>,
    preset_id: Option<Uuid>,
) -> ApiResult<Uuid> {
    let prepared = prepare(store, ctx, table, body, true)?;
    let def = store.shared_def(table);
    let id = prepared.id.or(preset_id).unwrap_or_else(new_id);
    let mut fields = preset.clone();
    fields.extend(prepared.fields);
    fields.insert(def.primary_id.clone(), Value::String(id.to_string()));
    check_required(&def, &fields, ctx.enforce_application_required, true)?;
    let mut targets = preset_targets.clone();
    targets.extend(prepared.targets);
    store
        .insert(table, id, fields, targets)
        .map_err(|e| store_error(&def, e))?;
    for (child_table, lookup, rows) in prepared.nested {
        let mut child_preset = Map::new();
        child_preset.insert(format!("_{lookup}_value"), Value::String(id.to_string()));
        let child_targets = HashMap::from([(lookup.clone(), def.logical_name.clone())]);
        for row in rows {
            create_row(
                store,
                ctx,
                child_table,
                &row,
                &child_preset,
                &child_targets,
                None,
            )?;
        }
    }
    Ok(id)
}

/// Updates an existing row with a validated payload.
pub fn update_row(
    store: &mut Store,
    ctx: &WriteContext,
    table: usize,
    id: Uuid,
    body: &Map<String, Value>,
    drop_keys: &[String],
) -> ApiResult<()> {
    let mut prepared = prepare(store, ctx, table, body, false)?;
    let def = store.shared_def(table);
    for key in drop_keys {
        prepared.fields.remove(key);
    }
    check_required(
        &def,
        &prepared.fields,
        ctx.enforce_application_required,
        false,
    )?;
    let record = store
        .table(table)
        .get(&id)
        .expect("update of an existing row")
        .clone();
    let mut fields = record.fields;
    fields.extend(prepared.fields);
    let mut targets = record.lookup_targets;
    targets.extend(prepared.targets);
    store
        .update(table, id, fields, targets)
        .map_err(|e| store_error(&def, e))
}

/// The JSON representation of a row, with `$select` applied.
pub fn representation(
    store: &Store,
    table: usize,
    id: Uuid,
    query: &QueryOptions,
) -> ApiResult<Map<String, Value>> {
    let state = store.table(table);
    let def = &state.def;
    let record = state.get(&id).ok_or_else(|| missing_id(def, id))?;
    let mut row = Map::new();
    row.insert(
        "@odata.etag".into(),
        Value::String(format!("W/\"{}\"", record.version)),
    );
    if let Some(columns) = &query.select {
        for column in columns {
            let known = *column == def.primary_id
                || def
                    .columns
                    .iter()
                    .any(|c| field_name(c) == *column || c.name == *column);
            if !known {
                return Err(ApiError::payload(format!(
                    "Could not find a property named '{column}' on type '{}'.",
                    entity_type(def)
                )));
            }
            row.insert(
                column.clone(),
                record.fields.get(column).cloned().unwrap_or(Value::Null),
            );
        }
        row.insert(def.primary_id.clone(), Value::String(id.to_string()));
    } else {
        row.extend(record.fields.clone());
    }
    Ok(row)
}

fn success(
    ctx: &WriteContext,
    store: &Store,
    (table, id): (usize, Uuid),
    url: String,
    status: u16,
    opts: &WriteOptions,
    query: &QueryOptions,
) -> ApiResult<ApiResponse> {
    if opts.return_representation {
        let mut row = representation(store, table, id, query)?;
        row.insert(
            "@odata.context".into(),
            Value::String(format!(
                "{}$metadata#{}/$entity",
                ctx.service_root,
                store.def(table).entity_set
            )),
        );
        let etag = row
            .get("@odata.etag")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(ApiResponse::json(status, &Value::Object(row))
            .with_header("Preference-Applied", "return=representation")
            .with_header("ETag", etag))
    } else {
        Ok(ApiResponse::no_content()
            .with_header("OData-EntityId", url.clone())
            .with_header("Location", url))
    }
}

/// `POST <set>`.
pub fn post_create(
    store: &mut Store,
    ctx: &WriteContext,
    table: usize,
    body: &Map<String, Value>,
    opts: &WriteOptions,
    query: &QueryOptions,
) -> ApiResult<(ApiResponse, EntityRef)> {
    let id = create_row(store, ctx, table, body, &Map::new(), &HashMap::new(), None)?;
    let url = format!(
        "{}{}({})",
        ctx.service_root,
        store.def(table).entity_set,
        id
    );
    let response = success(ctx, store, (table, id), url, 201, opts, query)?;
    Ok((response, EntityRef { table, id }))
}

/// `PATCH <set>(<key>)`: update, or create when missing (upsert), honouring the conditions.
pub fn patch_upsert(
    store: &mut Store,
    ctx: &WriteContext,
    table: usize,
    key: &KeyPredicate,
    body: &Map<String, Value>,
    opts: &WriteOptions,
    query: &QueryOptions,
) -> ApiResult<(ApiResponse, EntityRef)> {
    let def = store.shared_def(table);
    let existing = find_row(store, table, key)?;
    let key_pairs: Vec<(String, Value)> = match key {
        KeyPredicate::Named(pairs) if !(pairs.len() == 1 && pairs[0].0 == def.primary_id) => {
            pairs.clone()
        }
        _ => vec![],
    };
    match existing {
        Some(id) => {
            if opts.if_none_match_star {
                return Err(ApiError::new(
                    412,
                    codes::DUPLICATE_RECORD,
                    "A record with matching key values already exists.",
                ));
            }
            if let Some(tag) = opts.if_match.as_deref().filter(|t| *t != "*") {
                let version = store.table(table).get(&id).expect("exists").version;
                if tag.trim() != format!("W/\"{version}\"") {
                    return Err(ApiError::new(
                        412,
                        codes::VERSION_MISMATCH,
                        "The version of the existing record doesn't match the RowVersion property provided.",
                    ));
                }
            }
            let drop: Vec<String> = key_pairs.iter().map(|(n, _)| n.clone()).collect();
            update_row(store, ctx, table, id, body, &drop)?;
            let url = entity_url(ctx, &def, key, id);
            let response = success(ctx, store, (table, id), url, 200, opts, query)?;
            Ok((response, EntityRef { table, id }))
        }
        None => {
            if opts.if_match.is_some() {
                return Err(match key {
                    KeyPredicate::Id(id) => missing_id(&def, *id),
                    KeyPredicate::Named(_) if key_pairs.is_empty() => missing_key(&def),
                    KeyPredicate::Named(_) => missing_key(&def),
                });
            }
            let preset: Map<String, Value> = key_pairs.iter().cloned().collect();
            let preset_id = match key {
                KeyPredicate::Id(id) => Some(*id),
                KeyPredicate::Named(pairs) if key_pairs.is_empty() => {
                    pairs[0].1.as_str().and_then(|s| Uuid::parse_str(s).ok())
                }
                _ => None,
            };
            let id = create_row(store, ctx, table, body, &preset, &HashMap::new(), preset_id)?;
            let url = entity_url(ctx, &def, key, id);
            let response = success(ctx, store, (table, id), url, 201, opts, query)?;
            Ok((response, EntityRef { table, id }))
        }
    }
}

/// `GET <set>(<key>)`.
pub fn get_one(
    store: &Store,
    ctx: &WriteContext,
    table: usize,
    key: &KeyPredicate,
    query: &QueryOptions,
) -> ApiResult<ApiResponse> {
    let def = store.def(table);
    let id = find_row(store, table, key)?.ok_or_else(|| match key {
        KeyPredicate::Id(id) => missing_id(def, *id),
        KeyPredicate::Named(_) => missing_key(def),
    })?;
    let mut row = representation(store, table, id, query)?;
    row.insert(
        "@odata.context".into(),
        Value::String(format!(
            "{}$metadata#{}/$entity",
            ctx.service_root, def.entity_set
        )),
    );
    Ok(ApiResponse::json(200, &Value::Object(row)))
}

/// `GET <set>?$filter=...&$select=...&$top=n`.
pub fn get_collection(
    store: &Store,
    ctx: &WriteContext,
    table: usize,
    query: &QueryOptions,
) -> ApiResult<ApiResponse> {
    let state = store.table(table);
    let mut value = Vec::new();
    for record in state.rows() {
        if query.top.is_some_and(|top| value.len() >= top) {
            break;
        }
        if query.matches(&record.fields) {
            value.push(Value::Object(representation(
                store, table, record.id, query,
            )?));
        }
    }
    let mut body = json!({"@odata.context": format!("{}$metadata#{}", ctx.service_root, state.def.entity_set)});
    if query.count {
        body["@odata.count"] = json!(value.len());
    }
    body["value"] = Value::Array(value);
    Ok(ApiResponse::json(200, &body))
}

/// `DELETE <set>(<key>)`.
pub fn delete_one(store: &mut Store, table: usize, key: &KeyPredicate) -> ApiResult<ApiResponse> {
    let def = store.shared_def(table);
    let id = find_row(store, table, key)?.ok_or_else(|| match key {
        KeyPredicate::Id(id) => missing_id(&def, *id),
        KeyPredicate::Named(_) => missing_key(&def),
    })?;
    store.delete(table, id);
    Ok(ApiResponse::no_content())
}

/// Key values of a row for messages and listings.
pub fn key_text(def: &TableDef, fields: &Map<String, Value>) -> Option<String> {
    let key = def.keys.first()?;
    let values: Vec<&Value> = key
        .attributes
        .iter()
        .map(|a| fields.get(a).unwrap_or(&Value::Null))
        .collect();
    Some(display_key(&values))
}
