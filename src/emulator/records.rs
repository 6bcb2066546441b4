//! Row-level semantics shared by single requests, `$batch` parts and bulk messages:
//! payload validation (types, lengths, required columns, `@odata.bind`), create, upsert by
//! id or alternate key (the whole `If-Match`/`If-None-Match` matrix), read and delete.

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::fixture::{ColumnType, RequiredLevel, TableDef};
use super::odata_url::{check_key_value, format_literal, parse_path, KeyPredicate};
use super::query::QueryOptions;
use super::response::{codes, ApiError, ApiResponse, ApiResult};
use super::store::{display_key, Store, StoreError};

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

/// Deep-insert rows: related table, its lookup back to the parent, the rows.
type NestedRows = (usize, String, Vec<Map<String, Value>>);

struct PreparedWrite {
    fields: Map<String, Value>,
    targets: HashMap<String, String>,
    id: Option<Uuid>,
    nested: Vec<NestedRows>,
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

fn undeclared(def: &TableDef, name: &str) -> ApiError {
    ApiError::payload(format!(
        "The property '{name}' does not exist on type '{}'. Make sure to only use property names that are \
         defined by the type.",
        entity_type(def)
    ))
}

/// Validates a JSON payload against the table definition and resolves its binds.
fn prepare(
    store: &Store,
    ctx: &WriteContext,
    table: usize,
    body: &Map<String, Value>,
    creating: bool,
) -> ApiResult<PreparedWrite> {
    let def = store.def(table);
    let mut out = PreparedWrite {
        fields: Map::new(),
        targets: HashMap::new(),
        id: None,
        nested: vec![],
    };
    for (name, value) in body {
        if let Some(nav_name) = name.strip_suffix("@odata.bind") {
            let column = def.columns.iter().find_map(|c| {
                c.targets
                    .iter()
                    .find(|t| c.navigation_name(t) == nav_name)
                    .map(|t| (c, t))
            });
            let Some((column, target)) = column else {
                return Err(ApiError::payload(format!(
                    "An undeclared property '{nav_name}' which only has property annotations in the payload but \
                     no property value was found in the payload. In OData, only declared navigation properties \
                     and declared named streams can be represented as properties without values."
                )));
            };
            let field = format!("_{}_value", column.name);
            match value {
                Value::Null => {
                    out.fields.insert(field, Value::Null);
                    out.targets.remove(&column.name);
                }
                Value::String(reference) => {
                    let (bound_table, id) = resolve_reference(store, ctx, reference)?;
                    if store.def(bound_table).logical_name != *target {
                        return Err(ApiError::payload(format!(
                            "'{name}' must reference a {target} record, but '{reference}' is a {}.",
                            store.def(bound_table).logical_name
                        )));
                    }
                    out.fields.insert(field, Value::String(id.to_string()));
                    out.targets.insert(column.name.clone(), target.clone());
                }
                _ => {
                    return Err(ApiError::payload(format!(
                        "The value of '{name}' must be a URL string."
                    )))
                }
            }
            continue;
        }
        if name.starts_with('@') || name.contains('@') {
            continue; // instance annotations such as @odata.type
        }
        if let Some(nav) = def.navigations.iter().find(|n| n.name == *name) {
            if !creating {
                return Err(ApiError::payload(format!(
                    "Deep insert through '{name}' is only supported when creating a {}.",
                    def.logical_name
                )));
            }
            let related = store.table_by_logical(&nav.table).expect("fixture checked");
            let rows = value
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|v| v.as_object().cloned())
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| {
                    ApiError::payload(format!("'{name}' must be an array of entities."))
                })?;
            out.nested.push((related, nav.lookup.clone(), rows));
            continue;
        }
        if *name == def.primary_id {
            let id = value.as_str().and_then(|s| Uuid::parse_str(s).ok());
            out.id =
                Some(id.ok_or_else(|| ApiError::payload(format!("'{name}' must be a GUID.")))?);
            continue;
        }
        let Some(column) = def.column(name) else {
            return Err(undeclared(def, name));
        };
        if column.column_type.is_lookup() {
            return Err(ApiError::payload(format!(
                "The lookup '{name}' of '{}' is set with '{}@odata.bind', not as a plain property.",
                entity_type(def),
                column.navigation_name(&column.targets[0])
            )));
        }
        check_value(def, column, value)?;
        out.fields.insert(name.clone(), value.clone());
    }
    Ok(out)
}

fn check_value(def: &TableDef, column: &super::fixture::ColumnDef, value: &Value) -> ApiResult<()> {
    if value.is_null() {
        return Ok(());
    }
    let type_error = |expected: &str| {
        ApiError::payload(format!(
            "Cannot convert the literal '{value}' to the expected type '{expected}' for property '{}'.",
            column.name
        ))
    };
    match column.column_type {
        ColumnType::String | ColumnType::Memo => {
            let text = value.as_str().ok_or_else(|| type_error("Edm.String"))?;
            let length = text.encode_utf16().count();
            if let Some(max) = column.max_length {
                if length > max {
                    return Err(ApiError::bad_request(
                        codes::STRING_TOO_LONG,
                        format!(
                            "A validation error occurred. The length of the '{}' attribute of the '{}' entity \
                             exceeded the maximum allowed length of '{max}'.",
                            column.name, def.logical_name
                        ),
                    ));
                }
            }
        }
        ColumnType::Integer => {
            value.as_i64().ok_or_else(|| type_error("Edm.Int32"))?;
        }
        ColumnType::Decimal | ColumnType::Money | ColumnType::Double => {
            let numeric =
                value.is_number() || value.as_str().is_some_and(|s| s.parse::<f64>().is_ok());
            if !numeric {
                return Err(type_error("Edm.Decimal"));
            }
        }
        ColumnType::Boolean => {
            value.as_bool().ok_or_else(|| type_error("Edm.Boolean"))?;
        }
        ColumnType::DateTime => {
            let text = value
                .as_str()
                .ok_or_else(|| type_error("Edm.DateTimeOffset"))?;
            let ok = chrono::DateTime::parse_from_rfc3339(text).is_ok()
                || chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok();
            if !ok {
                return Err(type_error("Edm.DateTimeOffset"));
            }
        }
        ColumnType::Uniqueidentifier => {
            value
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| type_error("Edm.Guid"))?;
        }
        ColumnType::Picklist => {
            let v = value.as_i64().ok_or_else(|| type_error("Edm.Int32"))?;
            if !column.options.iter().any(|o| o.value == v) {
                return Err(ApiError::bad_request(
                    codes::PICKLIST_OUT_OF_RANGE,
                    format!(
                        "A validation error occurred. The value {v} of '{}' on record of type '{}' is outside \
                         the valid range.",
                        column.name, def.logical_name
                    ),
                ));
            }
        }
        ColumnType::Lookup | ColumnType::Customer | ColumnType::Owner => {}
    }
    Ok(())
}

fn field_name(column: &super::fixture::ColumnDef) -> String {
    if column.column_type.is_lookup() {
        format!("_{}_value", column.name)
    } else {
        column.name.clone()
    }
}

/// Required columns: all of them on create; on update only those explicitly set to null.
fn check_required(
    def: &TableDef,
    fields: &Map<String, Value>,
    enforce_app: bool,
    creating: bool,
) -> ApiResult<()> {
    for column in &def.columns {
        let enforced = match column.required {
            RequiredLevel::SystemRequired => true,
            RequiredLevel::ApplicationRequired => enforce_app,
            _ => false,
        };
        if !enforced {
            continue;
        }
        let value = fields.get(&field_name(column));
        let missing = if creating {
            value.is_none_or(Value::is_null)
        } else {
            value.is_some_and(Value::is_null)
        };
        if missing {
            return Err(ApiError::bad_request(
                codes::INVALID_ARGUMENT,
                format!(
                    "A value for the attribute '{}' of the entity '{}' is required ({}) and was not provided.",
                    column.name,
                    def.logical_name,
                    column.required.as_str()
                ),
            ));
        }
    }
    if creating && !def.require_one_of.is_empty() {
        let satisfied = def.require_one_of.iter().any(|group| {
            group.iter().all(|name| {
                let column = def.column(name);
                let value = column.and_then(|c| fields.get(&field_name(c)));
                match value {
                    None | Some(Value::Null) | Some(Value::Bool(false)) => false,
                    Some(_) => true,
                }
            })
        });
        if !satisfied {
            let groups: Vec<String> = def.require_one_of.iter().map(|g| g.join(" + ")).collect();
            return Err(ApiError::bad_request(
                codes::INVALID_ARGUMENT,
                format!(
                    "A {} requires one of: {}.",
                    def.logical_name,
                    groups.join(", or ")
                ),
            ));
        }
    }
    Ok(())
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
    let def = store.def(table).clone();
    let id = prepared.id.or(preset_id).unwrap_or_else(Uuid::new_v4);
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
    let def = store.def(table).clone();
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
    let def = store.def(table).clone();
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
    let def = store.def(table).clone();
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
