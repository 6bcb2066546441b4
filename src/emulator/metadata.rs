//! Metadata that clients use to discover tables: `EntityDefinitions` (by `LogicalName`, with
//! `Keys`, `Attributes` and picklist attributes) and the `sdkmessagefilters` query that tells
//! whether a bulk message is available on a table.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::bulk::{BULK_MESSAGES, BULK_TABLES};
use super::fixture::{ColumnDef, ColumnType, KeyDef, RequiredLevel, TableDef};
use super::odata_url::{KeyPredicate, Segment};
use super::query::QueryOptions;
use super::records::WriteContext;
use super::response::{ApiError, ApiResponse, ApiResult};
use super::store::Store;

const PICKLIST_CAST: &str = "Microsoft.Dynamics.CRM.PicklistAttributeMetadata";

/// A stable id derived from a name, so that metadata ids do not change between runs.
fn stable_id(name: &str) -> Uuid {
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

fn label(text: &str) -> Value {
    let localized = json!({"Label": text, "LanguageCode": 1033});
    json!({"LocalizedLabels": [localized.clone()], "UserLocalizedLabel": localized})
}

fn entity_json(def: &TableDef) -> Map<String, Value> {
    let value = json!({
        "MetadataId": stable_id(&def.logical_name),
        "LogicalName": def.logical_name,
        "SchemaName": def.logical_name,
        "EntitySetName": def.entity_set,
        "LogicalCollectionName": def.entity_set,
        "PrimaryIdAttribute": def.primary_id,
        "PrimaryNameAttribute": def.primary_name,
        "IsCustomEntity": false,
        "DisplayName": label(&def.logical_name),
    });
    value.as_object().expect("object").clone()
}

fn key_json(def: &TableDef, key: &KeyDef) -> Value {
    json!({
        "MetadataId": stable_id(&format!("{}.key.{}", def.logical_name, key.name)),
        "LogicalName": key.name,
        "SchemaName": key.name,
        "EntityLogicalName": def.logical_name,
        "KeyAttributes": key.attributes,
        "EntityKeyIndexStatus": "Active",
        "DisplayName": label(&key.name),
    })
}

fn type_names(column_type: ColumnType) -> (&'static str, &'static str) {
    match column_type {
        ColumnType::String => ("String", "StringAttributeMetadata"),
        ColumnType::Memo => ("Memo", "MemoAttributeMetadata"),
        ColumnType::Integer => ("Integer", "IntegerAttributeMetadata"),
        ColumnType::Decimal => ("Decimal", "DecimalAttributeMetadata"),
        ColumnType::Money => ("Money", "MoneyAttributeMetadata"),
        ColumnType::Double => ("Double", "DoubleAttributeMetadata"),
        ColumnType::Boolean => ("Boolean", "BooleanAttributeMetadata"),
        ColumnType::DateTime => ("DateTime", "DateTimeAttributeMetadata"),
        ColumnType::Uniqueidentifier => ("Uniqueidentifier", "UniqueIdentifierAttributeMetadata"),
        ColumnType::Picklist => ("Picklist", "PicklistAttributeMetadata"),
        ColumnType::Lookup => ("Lookup", "LookupAttributeMetadata"),
        ColumnType::Customer => ("Customer", "LookupAttributeMetadata"),
        ColumnType::Owner => ("Owner", "LookupAttributeMetadata"),
    }
}

fn attribute_json(def: &TableDef, column: &ColumnDef, query: &QueryOptions) -> Map<String, Value> {
    let (attribute_type, odata_type) = type_names(column.column_type);
    let mut value = json!({
        "@odata.type": format!("#Microsoft.Dynamics.CRM.{odata_type}"),
        "MetadataId": stable_id(&format!("{}.{}", def.logical_name, column.name)),
        "LogicalName": column.name,
        "SchemaName": column.name,
        "EntityLogicalName": def.logical_name,
        "AttributeType": attribute_type,
        "AttributeTypeName": {"Value": format!("{attribute_type}Type")},
        "IsPrimaryId": false,
        "IsPrimaryName": column.name == def.primary_name,
        "IsValidForCreate": true,
        "IsValidForUpdate": true,
        "IsValidForRead": true,
        "RequiredLevel": {
            "Value": column.required.as_str(),
            "CanBeChanged": column.required != RequiredLevel::SystemRequired,
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
        },
    });
    if let Some(max) = column.max_length {
        value["MaxLength"] = json!(max);
    }
    if column.column_type.is_lookup() {
        value["Targets"] = json!(column.targets);
    }
    if column.column_type == ColumnType::Picklist && query.wants_expand("OptionSet") {
        let options: Vec<Value> = column
            .options
            .iter()
            .map(|o| json!({"Value": o.value, "Label": label(&o.label)}))
            .collect();
        value["OptionSet"] =
            json!({"Name": format!("{}_{}", def.logical_name, column.name), "Options": options});
    }
    value.as_object().expect("object").clone()
}

fn primary_id_json(def: &TableDef) -> Map<String, Value> {
    let value = json!({
        "@odata.type": "#Microsoft.Dynamics.CRM.UniqueIdentifierAttributeMetadata",
        "MetadataId": stable_id(&format!("{}.{}", def.logical_name, def.primary_id)),
        "LogicalName": def.primary_id,
        "SchemaName": def.primary_id,
        "EntityLogicalName": def.logical_name,
        "AttributeType": "Uniqueidentifier",
        "AttributeTypeName": {"Value": "UniqueidentifierType"},
        "IsPrimaryId": true,
        "IsPrimaryName": false,
        "IsValidForCreate": true,
        "IsValidForUpdate": false,
        "IsValidForRead": true,
        "RequiredLevel": {"Value": "SystemRequired", "CanBeChanged": false,
                          "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
    });
    value.as_object().expect("object").clone()
}

fn attributes(
    def: &TableDef,
    query: &QueryOptions,
    picklists_only: bool,
) -> Vec<Map<String, Value>> {
    let mut all = Vec::new();
    if !picklists_only {
        all.push(primary_id_json(def));
    }
    for column in &def.columns {
        if !picklists_only || column.column_type == ColumnType::Picklist {
            all.push(attribute_json(def, column, query));
        }
    }
    all
}

fn project(query: &QueryOptions, row: Map<String, Value>, always: &[&str]) -> Map<String, Value> {
    query.project(row, always)
}

fn full_entity(def: &TableDef, query: &QueryOptions) -> Map<String, Value> {
    let mut entity = project(query, entity_json(def), &["MetadataId"]);
    if query.wants_expand("Keys") {
        entity.insert(
            "Keys".into(),
            Value::Array(def.keys.iter().map(|k| key_json(def, k)).collect()),
        );
    }
    if query.wants_expand("Attributes") {
        let attrs = attributes(def, &QueryOptions::default(), false)
            .into_iter()
            .map(Value::Object)
            .collect();
        entity.insert("Attributes".into(), Value::Array(attrs));
    }
    entity
}

fn find_table<'a>(store: &'a Store, key: &KeyPredicate) -> ApiResult<&'a TableDef> {
    let found = store.tables.iter().map(|t| &*t.def).find(|def| match key {
        KeyPredicate::Id(id) => stable_id(&def.logical_name) == *id,
        KeyPredicate::Named(pairs) => {
            pairs.len() == 1
                && pairs[0].0 == "LogicalName"
                && pairs[0].1.as_str() == Some(def.logical_name.as_str())
        }
    });
    found.ok_or_else(|| {
        ApiError::new(
            404,
            "0x80040217",
            format!("Could not find an entity with the requested metadata key ({key:?})."),
        )
    })
}

fn collection(
    context: String,
    items: Vec<Map<String, Value>>,
    query: &QueryOptions,
) -> ApiResponse {
    let value: Vec<Value> = items
        .into_iter()
        .take(query.top.unwrap_or(usize::MAX))
        .map(Value::Object)
        .collect();
    ApiResponse::json(200, &json!({"@odata.context": context, "value": value}))
}

/// `EntityDefinitions...` requests.
pub fn entity_definitions(
    store: &Store,
    ctx: &WriteContext,
    segments: &[Segment],
    query: &QueryOptions,
) -> ApiResult<ApiResponse> {
    let root = ctx.service_root;
    let Some(key) = &segments[0].key else {
        if segments.len() > 1 {
            return Err(ApiError::segment_not_found(&segments[1].name));
        }
        let items: Vec<_> = store
            .tables
            .iter()
            .filter(|t| query.matches(&entity_json(&t.def)))
            .map(|t| full_entity(&t.def, query))
            .collect();
        return Ok(collection(
            format!("{root}$metadata#EntityDefinitions"),
            items,
            query,
        ));
    };
    let def = find_table(store, key)?;
    let context = format!(
        "{root}$metadata#EntityDefinitions({})",
        stable_id(&def.logical_name)
    );
    match &segments[1..] {
        [] => {
            let mut entity = full_entity(def, query);
            entity.insert(
                "@odata.context".into(),
                Value::String(format!("{context}/$entity")),
            );
            Ok(ApiResponse::json(200, &Value::Object(entity)))
        }
        [keys] if keys.name == "Keys" && keys.key.is_none() => {
            let items = def
                .keys
                .iter()
                .map(|k| key_json(def, k).as_object().expect("object").clone())
                .collect();
            Ok(collection(format!("{context}/Keys"), items, query))
        }
        [attrs] if attrs.name == "Attributes" => match &attrs.key {
            None => {
                let items = attributes(def, query, false)
                    .into_iter()
                    .filter(|a| query.matches(a))
                    .map(|a| project(query, a, &["MetadataId", "OptionSet"]))
                    .collect();
                Ok(collection(format!("{context}/Attributes"), items, query))
            }
            Some(KeyPredicate::Named(pairs)) if pairs.len() == 1 && pairs[0].0 == "LogicalName" => {
                let wanted = pairs[0].1.as_str().unwrap_or_default();
                let attr = attributes(def, query, false)
                    .into_iter()
                    .find(|a| a.get("LogicalName").and_then(Value::as_str) == Some(wanted))
                    .ok_or_else(|| {
                        ApiError::segment_not_found(&format!("Attributes(LogicalName='{wanted}')"))
                    })?;
                Ok(ApiResponse::json(
                    200,
                    &Value::Object(project(query, attr, &["MetadataId"])),
                ))
            }
            Some(_) => Err(ApiError::segment_not_found("Attributes")),
        },
        [attrs, cast]
            if attrs.name == "Attributes" && attrs.key.is_none() && cast.name == PICKLIST_CAST =>
        {
            let items = attributes(def, query, true)
                .into_iter()
                .filter(|a| query.matches(a))
                .map(|a| project(query, a, &["MetadataId", "OptionSet"]))
                .collect();
            Ok(collection(
                format!("{context}/Attributes/{PICKLIST_CAST}"),
                items,
                query,
            ))
        }
        [other, ..] => Err(ApiError::segment_not_found(&other.name)),
    }
}

/// `GET sdkmessagefilters?$filter=sdkmessageid/name eq @message and primaryobjecttypecode eq @table`.
pub fn sdk_message_filters(store: &Store, ctx: &WriteContext, query: &QueryOptions) -> ApiResponse {
    let mut rows = Vec::new();
    for table in BULK_TABLES {
        if store.table_by_logical(table).is_none() {
            continue;
        }
        for message in BULK_MESSAGES {
            let row = json!({
                "sdkmessagefilterid": stable_id(&format!("filter.{message}.{table}")),
                "primaryobjecttypecode": table,
                "sdkmessageid": {"name": message},
            });
            rows.push(row.as_object().expect("object").clone());
        }
    }
    let items: Vec<Value> = rows
        .into_iter()
        .filter(|row| query.matches(row))
        .map(|row| Value::Object(project(query, row, &["sdkmessagefilterid"])))
        .collect();
    ApiResponse::json(
        200,
        &json!({"@odata.context": format!("{}$metadata#sdkmessagefilters", ctx.service_root), "value": items}),
    )
}
