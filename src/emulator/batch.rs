//! `$batch`: parsing of `multipart/mixed` bodies with changesets (the embedded HTTP requests
//! are parsed with `httparse`; CRLF or bare LF; relative or absolute request URLs), execution
//! with atomic changesets and `$n` references, and the multipart response writer.

use std::collections::HashMap;

use super::api::{dispatch_atomic, ApiRequest, Identity};
use super::records::{EntityRef, WriteContext};
use super::response::{codes, reason_phrase, ApiError, ApiResponse, ApiResult};
use super::store::{new_id, Store};

/// The most operations (changeset members counted one by one) a batch may hold.
pub const MAX_BATCH_OPERATIONS: usize = 1000;

#[derive(Debug)]
pub struct BatchOperation {
    pub content_id: Option<String>,
    pub request: ApiRequest,
}

#[derive(Debug)]
pub enum BatchItem {
    Single(BatchOperation),
    Changeset(Vec<BatchOperation>),
}

pub fn count_operations(items: &[BatchItem]) -> usize {
    items
        .iter()
        .map(|item| match item {
            BatchItem::Single(_) => 1,
            BatchItem::Changeset(ops) => ops.len(),
        })
        .sum()
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(codes::PAYLOAD_ERROR, message)
}

/// `boundary` parameter of a `multipart/mixed` content type.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    let media = parts.next()?.trim();
    if !media.eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    parts.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

/// Splits a multipart body into the bytes of its parts (delimiter lines excluded).
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> ApiResult<Vec<&'a [u8]>> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    // Positions of delimiter lines: at the start or right after a line feed. A boundary holds
    // no line feed, so a delimiter that starts a line never overlaps another occurrence.
    let starts: Vec<usize> = memchr::memmem::find_iter(body, delimiter)
        .filter(|&i| i == 0 || body[i - 1] == b'\n')
        .collect();
    if starts.is_empty() {
        return Err(invalid(format!(
            "The multipart body does not contain the boundary '{boundary}'."
        )));
    }
    let mut parts = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let after = start + delimiter.len();
        if body[after..].starts_with(b"--") {
            return Ok(parts); // close delimiter
        }
        let line_end = match body[after..].iter().position(|&b| b == b'\n') {
            Some(p) => after + p + 1,
            None => return Err(invalid("A multipart delimiter line is not terminated.")),
        };
        let Some(&next) = starts.get(n + 1) else {
            return Err(invalid(format!(
                "The multipart body has no closing delimiter '--{boundary}--'."
            )));
        };
        // The line break before the next delimiter belongs to the delimiter.
        let mut end = next;
        if end > line_end && body[end - 1] == b'\n' {
            end -= 1;
            if end > line_end && body[end - 1] == b'\r' {
                end -= 1;
            }
        }
        parts.push(&body[line_end..end.max(line_end)]);
    }
    Err(invalid(format!(
        "The multipart body has no closing delimiter '--{boundary}--'."
    )))
}

type Headers = Vec<(String, String)>;

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The MIME headers of a part and what follows them.
fn parse_mime_part(part: &[u8]) -> ApiResult<(Headers, &[u8])> {
    let mut storage = [httparse::EMPTY_HEADER; 32];
    match httparse::parse_headers(part, &mut storage) {
        Ok(httparse::Status::Complete((offset, headers))) => {
            let headers = headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).trim().to_string(),
                    )
                })
                .collect();
            Ok((headers, &part[offset..]))
        }
        Ok(httparse::Status::Partial) => Err(invalid("A batch part ends inside its headers.")),
        Err(e) => Err(invalid(format!("A batch part has malformed headers: {e}."))),
    }
}

/// Path of a request target relative to the service root, and its query.
fn relative_target(target: &str) -> (String, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = match path.find("/api/data/v9.2/") {
        Some(at) => &path[at + "/api/data/v9.2/".len()..],
        None => path
            .strip_prefix("api/data/v9.2/")
            .unwrap_or(path.trim_start_matches('/')),
    };
    (path.to_string(), query.to_string())
}

/// Parses an embedded `application/http` request.
fn parse_http_request(bytes: &[u8]) -> ApiResult<ApiRequest> {
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut storage);
    let offset = match request.parse(bytes) {
        Ok(httparse::Status::Complete(offset)) => offset,
        Ok(httparse::Status::Partial) => {
            // A request without a body may lack the final blank line.
            let mut padded = bytes.to_vec();
            padded.extend_from_slice(b"\r\n\r\n");
            return parse_http_request(&padded);
        }
        Err(e) => {
            return Err(invalid(format!(
                "A batch part does not hold a valid HTTP request: {e}."
            )))
        }
    };
    let method = request.method.unwrap_or_default().to_string();
    let (path, query) = relative_target(request.path.unwrap_or_default());
    let headers: Headers = request
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let mut body = &bytes[offset..];
    if let Some(length) = header(&headers, "Content-Length").and_then(|l| l.parse::<usize>().ok()) {
        body = &body[..length.min(body.len())];
    }
    while let [rest @ .., b'\r' | b'\n'] = body {
        body = rest;
    }
    Ok(ApiRequest {
        method,
        path,
        query,
        headers,
        body: body.to_vec(),
    })
}

fn parse_operation(part: &[u8], in_changeset: bool) -> ApiResult<BatchOperation> {
    let (headers, rest) = parse_mime_part(part)?;
    let content_type = header(&headers, "Content-Type").unwrap_or_default();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/http")
    {
        return Err(invalid(format!(
            "A batch operation must have Content-Type 'application/http', not '{content_type}'."
        )));
    }
    let request = parse_http_request(rest)?;
    if in_changeset && request.method.eq_ignore_ascii_case("GET") {
        return Err(invalid(
            "An invalid HTTP method 'GET' was detected for a request in a change set. Requests in change sets \
             only support the HTTP methods 'POST', 'PUT', 'DELETE', and 'PATCH'.",
        ));
    }
    let content_id = header(&headers, "Content-ID")
        .or_else(|| request.header("Content-ID"))
        .map(str::to_string);
    Ok(BatchOperation {
        content_id,
        request,
    })
}

/// Parses a `$batch` body.
pub fn parse_batch(content_type: &str, body: &[u8]) -> ApiResult<Vec<BatchItem>> {
    let boundary = boundary_of(content_type).ok_or_else(|| {
        invalid("A $batch request must have Content-Type 'multipart/mixed' with a boundary.")
    })?;
    let mut items = Vec::new();
    for part in split_multipart(body, &boundary)? {
        let (headers, rest) = parse_mime_part(part)?;
        let content_type = header(&headers, "Content-Type").unwrap_or_default();
        if let Some(changeset_boundary) = boundary_of(content_type) {
            let mut operations = Vec::new();
            for inner in split_multipart(rest, &changeset_boundary)? {
                let (inner_headers, _) = parse_mime_part(inner)?;
                if boundary_of(header(&inner_headers, "Content-Type").unwrap_or_default()).is_some()
                {
                    return Err(invalid("Changesets cannot be nested."));
                }
                operations.push(parse_operation(inner, true)?);
            }
            items.push(BatchItem::Changeset(operations));
        } else {
            items.push(BatchItem::Single(parse_operation(part, false)?));
        }
    }
    Ok(items)
}

/// One part of the batch response.
pub enum ResponsePart {
    Single {
        content_id: Option<String>,
        response: ApiResponse,
    },
    Changeset(Vec<(Option<String>, ApiResponse)>),
}

pub struct BatchOutcome {
    pub status: u16,
    pub parts: Vec<ResponsePart>,
}

fn error_response(error: ApiError) -> ApiResponse {
    error
        .into_response()
        .with_header("REQ_ID", new_id().to_string())
}

/// Runs the parsed batch in request order.
pub fn execute(
    store: &mut Store,
    service_root: &str,
    enforce_application_required: bool,
    identity: &Identity,
    items: &[BatchItem],
    continue_on_error: bool,
) -> BatchOutcome {
    let no_references = HashMap::new();
    let mut parts = Vec::new();
    for item in items {
        match item {
            BatchItem::Single(op) => {
                let ctx = WriteContext {
                    service_root,
                    content_ids: &no_references,
                    enforce_application_required,
                };
                match dispatch_atomic(store, &ctx, identity, &op.request) {
                    Ok((response, _)) => parts.push(ResponsePart::Single {
                        content_id: op.content_id.clone(),
                        response,
                    }),
                    Err(error) => {
                        parts.push(ResponsePart::Single {
                            content_id: op.content_id.clone(),
                            response: error_response(error),
                        });
                        if !continue_on_error {
                            return BatchOutcome { status: 400, parts };
                        }
                    }
                }
            }
            BatchItem::Changeset(ops) => {
                let savepoint = store.savepoint();
                let mut references: HashMap<String, EntityRef> = HashMap::new();
                let mut answered = Vec::new();
                let mut failure = None;
                for op in ops {
                    let ctx = WriteContext {
                        service_root,
                        content_ids: &references,
                        enforce_application_required,
                    };
                    match dispatch_atomic(store, &ctx, identity, &op.request) {
                        Ok((response, entity)) => {
                            if let (Some(id), Some(entity)) = (&op.content_id, entity) {
                                references.insert(format!("${id}"), entity);
                            }
                            answered.push((op.content_id.clone(), response));
                        }
                        Err(error) => {
                            failure = Some((op.content_id.clone(), error));
                            break;
                        }
                    }
                }
                match failure {
                    None => parts.push(ResponsePart::Changeset(answered)),
                    Some((content_id, error)) => {
                        store.rollback_to(savepoint);
                        parts.push(ResponsePart::Single {
                            content_id,
                            response: error_response(error),
                        });
                        if !continue_on_error {
                            return BatchOutcome { status: 400, parts };
                        }
                    }
                }
            }
        }
    }
    BatchOutcome { status: 200, parts }
}

fn write_http_part(out: &mut Vec<u8>, content_id: &Option<String>, response: &ApiResponse) {
    out.extend_from_slice(
        b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n",
    );
    if let Some(id) = content_id {
        out.extend_from_slice(b"Content-ID: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\nHTTP/1.1 ");
    out.extend_from_slice(response.status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(response.status).as_bytes());
    out.extend_from_slice(b"\r\nOData-Version: 4.0\r\n");
    for (name, value) in &response.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        if name.eq_ignore_ascii_case("Content-Type") && value.starts_with("application/json") {
            out.extend_from_slice(b"; odata.streaming=true");
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !response.body.is_empty() {
        out.extend_from_slice(&response.body);
        out.extend_from_slice(b"\r\n");
    }
}

/// `--<boundary>` and a line end (`--` before the line end for the close delimiter).
fn delimiter_line(out: &mut Vec<u8>, boundary: &str, close: bool) {
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    if close {
        out.extend_from_slice(b"--");
    }
    out.extend_from_slice(b"\r\n");
}

/// Renders the multipart response; returns its content type and body.
pub fn write_response(outcome: &BatchOutcome) -> (String, Vec<u8>) {
    let boundary = format!("batchresponse_{}", new_id());
    let mut out = Vec::with_capacity(
        outcome
            .parts
            .iter()
            .map(|part| match part {
                ResponsePart::Single { response, .. } => 300 + response.body.len(),
                ResponsePart::Changeset(answers) => {
                    200 + answers
                        .iter()
                        .map(|(_, r)| 400 + r.body.len())
                        .sum::<usize>()
                }
            })
            .sum::<usize>()
            + 100,
    );
    for part in &outcome.parts {
        delimiter_line(&mut out, &boundary, false);
        match part {
            ResponsePart::Single {
                content_id,
                response,
            } => write_http_part(&mut out, content_id, response),
            ResponsePart::Changeset(answers) => {
                let inner = format!("changesetresponse_{}", new_id());
                out.extend_from_slice(b"Content-Type: multipart/mixed; boundary=");
                out.extend_from_slice(inner.as_bytes());
                out.extend_from_slice(b"\r\n\r\n");
                for (content_id, response) in answers {
                    delimiter_line(&mut out, &inner, false);
                    write_http_part(&mut out, content_id, response);
                }
                delimiter_line(&mut out, &inner, true);
            }
        }
    }
    delimiter_line(&mut out, &boundary, true);
    (format!("multipart/mixed; boundary={boundary}"), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lf_only_changeset_with_absolute_urls() {
        let body = "--batch_1\nContent-Type: multipart/mixed; boundary=changeset_2\n\n--changeset_2\n\
                    Content-Type: application/http\nContent-Transfer-Encoding: binary\nContent-ID: 1\n\n\
                    POST http://h/api/data/v9.2/accounts HTTP/1.1\nContent-Type: application/json\n\n{\"name\":\"A\"}\n\
                    --changeset_2--\n--batch_1\nContent-Type: application/http\n\nGET /api/data/v9.2/WhoAmI?$top=1 HTTP/1.1\n\n\
                    --batch_1--\n";
        let items = parse_batch("multipart/mixed; boundary=\"batch_1\"", body.as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        let BatchItem::Changeset(ops) = &items[0] else {
            panic!("changeset")
        };
        assert_eq!(ops[0].content_id.as_deref(), Some("1"));
        assert_eq!(ops[0].request.path, "accounts");
        assert_eq!(ops[0].request.body, b"{\"name\":\"A\"}");
        let BatchItem::Single(op) = &items[1] else {
            panic!("single")
        };
        assert_eq!(
            (op.request.path.as_str(), op.request.query.as_str()),
            ("WhoAmI", "$top=1")
        );
    }
}
