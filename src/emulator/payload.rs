//! Validation of a JSON payload against a table definition: known columns, types, string
//! lengths, picklist values, required columns, and resolution of `@odata.bind` references.

use std::collections::HashMap;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::fixture::{ColumnDef, ColumnType, RequiredLevel, TableDef};
use super::records::{entity_type, resolve_reference, WriteContext};
use super::response::{codes, ApiError, ApiResult};
use super::store::Store;

/// Deep-insert rows: related table, its lookup back to the parent, the rows.
pub type NestedRows = (usize, String, Vec<Map<String, Value>>);

pub struct PreparedWrite {
    pub fields: Map<String, Value>,
    pub targets: HashMap<String, String>,
    pub id: Option<Uuid>,
    pub nested: Vec<NestedRows>,
}

fn undeclared(def: &TableDef, name: &str) -> ApiError {
    ApiError::payload(format!(
        "The property '{name}' does not exist on type '{}'. Make sure to only use property names that are \
         defined by the type.",
        entity_type(def)
    ))
}

/// Validates a JSON payload against the table definition and resolves its binds.
pub fn prepare(
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
                    .find(|t| c.is_navigation_name(t, nav_name))
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

fn check_value(def: &TableDef, column: &ColumnDef, value: &Value) -> ApiResult<()> {
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

pub fn field_name(column: &ColumnDef) -> String {
    if column.column_type.is_lookup() {
        format!("_{}_value", column.name)
    } else {
        column.name.clone()
    }
}

/// The value a row holds for `column` (see [`field_name`]); `scratch` holds a lookup's field
/// name, so that checking many columns allocates once.
fn field_value<'a>(
    fields: &'a Map<String, Value>,
    column: &ColumnDef,
    scratch: &mut String,
) -> Option<&'a Value> {
    if column.column_type.is_lookup() {
        scratch.clear();
        scratch.push('_');
        scratch.push_str(&column.name);
        scratch.push_str("_value");
        fields.get(scratch.as_str())
    } else {
        fields.get(&column.name)
    }
}

/// Required columns: all of them on create; on update only those explicitly set to null.
pub fn check_required(
    def: &TableDef,
    fields: &Map<String, Value>,
    enforce_app: bool,
    creating: bool,
) -> ApiResult<()> {
    let mut scratch = String::new();
    for column in &def.columns {
        let enforced = match column.required {
            RequiredLevel::SystemRequired => true,
            RequiredLevel::ApplicationRequired => enforce_app,
            _ => false,
        };
        if !enforced {
            continue;
        }
        let value = field_value(fields, column, &mut scratch);
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
                let value = column.and_then(|c| field_value(fields, c, &mut scratch));
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
