//! The OData request dispatcher: one function that serves a single Web API request against
//! the store. The top-level routes and every `$batch` part go through it.

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::bulk;
use super::metadata;
use super::odata_url::{decode_path, parse_path, KeyPredicate};
use super::query::QueryOptions;
use super::records::{self, unknown_content_id, EntityRef, WriteContext, WriteOptions};
use super::response::{codes, ApiError, ApiResponse, ApiResult};
use super::store::Store;

/// One Web API request, with the path relative to the service root (still percent-encoded).
#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn prefers(&self, preference: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("prefer"))
            .flat_map(|(_, v)| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case(preference))
    }

    pub fn is_write(&self) -> bool {
        !self.method.eq_ignore_ascii_case("GET")
    }

    fn write_options(&self) -> WriteOptions {
        WriteOptions {
            if_match: self.header("If-Match").map(str::to_string),
            if_none_match_star: self
                .header("If-None-Match")
                .is_some_and(|v| v.trim() == "*"),
            return_representation: self.prefers("return=representation"),
        }
    }

    fn json_body(&self) -> ApiResult<Map<String, Value>> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ApiError::payload("The request body must be a JSON object.")),
            Err(e) => Err(ApiError::payload(format!(
                "Error identified in Payload provided by the user for Entity: the body is not valid JSON ({e})."
            ))),
        }
    }
}

/// Identity returned by WhoAmI.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: Uuid,
    pub business_unit_id: Uuid,
    pub organization_id: Uuid,
}

fn method_not_allowed(method: &str, path: &str) -> ApiError {
    ApiError::new(
        405,
        codes::METHOD_NOT_ALLOWED,
        format!("The HTTP method '{method}' is not supported for the resource '{path}'."),
    )
}

/// Serves one request inside its own savepoint: a failed request leaves no trace.
pub fn dispatch_atomic(
    store: &mut Store,
    ctx: &WriteContext,
    identity: &Identity,
    request: &ApiRequest,
) -> ApiResult<(ApiResponse, Option<EntityRef>)> {
    let savepoint = store.savepoint();
    let result = dispatch(store, ctx, identity, request);
    if result.is_err() {
        store.rollback_to(savepoint);
    }
    result
}

fn dispatch(
    store: &mut Store,
    ctx: &WriteContext,
    identity: &Identity,
    request: &ApiRequest,
) -> ApiResult<(ApiResponse, Option<EntityRef>)> {
    let decoded = decode_path(&request.path)?;
    let mut segments = parse_path(&decoded)?;
    if segments.is_empty() {
        let body = json!({"@odata.context": format!("{}$metadata", ctx.service_root), "value": []});
        return Ok((ApiResponse::json(200, &body), None));
    }
    let first = segments[0].name.clone();
    if first.starts_with('$')
        && first != "$batch"
        && first != "$metadata"
        && segments[0].key.is_none()
    {
        let entity = ctx
            .content_ids
            .get(&first)
            .ok_or_else(|| unknown_content_id(&first))?;
        segments[0].name = store.def(entity.table).entity_set.clone();
        segments[0].key = Some(KeyPredicate::Id(entity.id));
    }
    let method = request.method.to_ascii_uppercase();
    let query = QueryOptions::parse(&request.query)?;
    let name = segments[0].name.as_str();
    match name {
        "WhoAmI" => {
            if method != "GET" {
                return Err(method_not_allowed(&method, name));
            }
            let body = json!({
                "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", ctx.service_root),
                "BusinessUnitId": identity.business_unit_id,
                "UserId": identity.user_id,
                "OrganizationId": identity.organization_id,
            });
            return Ok((ApiResponse::json(200, &body), None));
        }
        "EntityDefinitions" => {
            if method != "GET" {
                return Err(method_not_allowed(&method, name));
            }
            return Ok((
                metadata::entity_definitions(store, ctx, &segments, &query)?,
                None,
            ));
        }
        "sdkmessagefilters" => {
            if method != "GET" {
                return Err(method_not_allowed(&method, name));
            }
            return Ok((metadata::sdk_message_filters(store, ctx, &query), None));
        }
        "$batch" => {
            return Err(ApiError::payload(
                "A $batch request cannot be nested inside a batch.",
            ));
        }
        "$metadata" => {
            return Err(ApiError::new(
                501,
                codes::RESOURCE_NOT_FOUND,
                "The emulator does not serve $metadata; use EntityDefinitions.",
            ));
        }
        _ => {}
    }
    let table = store
        .table_by_set(name)
        .ok_or_else(|| ApiError::segment_not_found(name))?;
    let options = request.write_options();
    match (segments.as_slice(), method.as_str()) {
        ([only], "GET") if only.key.is_none() => {
            Ok((records::get_collection(store, ctx, table, &query)?, None))
        }
        ([only], "POST") if only.key.is_none() => {
            let body = request.json_body()?;
            let (response, entity) =
                records::post_create(store, ctx, table, &body, &options, &query)?;
            Ok((response, Some(entity)))
        }
        ([only], "GET") => {
            let key = only.key.as_ref().expect("keyed");
            Ok((records::get_one(store, ctx, table, key, &query)?, None))
        }
        ([only], "PATCH") if only.key.is_some() => {
            let key = only.key.as_ref().expect("keyed");
            let body = request.json_body()?;
            let (response, entity) =
                records::patch_upsert(store, ctx, table, key, &body, &options, &query)?;
            Ok((response, Some(entity)))
        }
        ([only], "DELETE") if only.key.is_some() => {
            let key = only.key.as_ref().expect("keyed");
            Ok((records::delete_one(store, table, key)?, None))
        }
        ([only], _) => Err(method_not_allowed(&method, &only.name)),
        ([set, action], "POST") if set.key.is_none() && action.key.is_none() => {
            let body = request.json_body()?;
            Ok((bulk::serve(store, ctx, table, &action.name, &body)?, None))
        }
        ([_, other, ..], _) => Err(ApiError::segment_not_found(&other.name)),
        ([], _) => unreachable!("segments is not empty"),
    }
}
