//! Canned `$batch` replies for the reader (in the shapes the protocol doc describes).

use super::*;

fn written() -> WrittenBatch {
    WrittenBatch {
        boundary: "batch_B".into(),
        body: String::new(),
        content_ids: vec![vec![1, 2], vec![3]],
    }
}

fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

const ALL_OK: &str = "--batchresponse_r1
Content-Type: multipart/mixed; boundary=changesetresponse_a

--changesetresponse_a
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

HTTP/1.1 204 No Content
OData-Version: 4.0
Location: https://x/api/data/v9.2/salesorders(new_externalorderid='shopify-us.%231001')
OData-EntityId: https://x/api/data/v9.2/salesorders(new_externalorderid='shopify-us.%231001')


--changesetresponse_a
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 2

HTTP/1.1 204 No Content
OData-Version: 4.0


--changesetresponse_a--
--batchresponse_r1
Content-Type: multipart/mixed; boundary=\"changesetresponse_b\"

--changesetresponse_b
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 3

HTTP/1.1 204 No Content
OData-EntityId: https://x/api/data/v9.2/salesorders(new_externalorderid='amazon.1')


--changesetresponse_b--
--batchresponse_r1--
";

const ONE_FAILED: &str = "--batchresponse_r2
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 400 Bad Request
REQ_ID: 5b5c1b2a-0000-0000-0000-000000000000
Content-Type: application/json; odata.metadata=minimal
OData-Version: 4.0

{\"error\":{\"code\":\"0x80044331\",\"message\":\"The length of the 'shipto_postalcode' attribute exceeded the maximum allowed length of '20'.\"}}
--batchresponse_r2
Content-Type: multipart/mixed; boundary=changesetresponse_c

--changesetresponse_c
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 3

HTTP/1.1 204 No Content


--changesetresponse_c--
--batchresponse_r2--
";

#[test]
fn all_success_changesets() {
    let reply = read_batch_response(
        200,
        "multipart/mixed; boundary=batchresponse_r1",
        crlf(ALL_OK).as_bytes(),
    )
    .unwrap();
    let BatchReply::Parts { stopped, parts } = reply else {
        panic!("{reply:?}")
    };
    assert!(!stopped);
    assert_eq!(parts.len(), 2);
    let results = changeset_results(&written(), &parts);
    assert_eq!(
        results[0],
        ChangesetResult::Succeeded {
            entity_ids: vec![
                Some(
                    "https://x/api/data/v9.2/salesorders(new_externalorderid='shopify-us.%231001')"
                        .into()
                ),
                None
            ]
        }
    );
    assert!(
        matches!(&results[1], ChangesetResult::Succeeded { entity_ids } if entity_ids[0].as_deref().unwrap().ends_with("'amazon.1')"))
    );
}

#[test]
fn one_failed_changeset_under_continue_on_error() {
    let reply = read_batch_response(
        200,
        "multipart/mixed; boundary=\"batchresponse_r2\"",
        crlf(ONE_FAILED).as_bytes(),
    )
    .unwrap();
    let BatchReply::Parts { stopped, parts } = reply else {
        panic!()
    };
    assert!(!stopped);
    let results = changeset_results(&written(), &parts);
    let ChangesetResult::Failed {
        operation,
        response,
    } = &results[0]
    else {
        panic!("{results:?}")
    };
    assert_eq!(*operation, None, "no Content-ID on the error part");
    assert_eq!(response.status, 400);
    let e = response.error.as_ref().unwrap();
    assert_eq!(e.code, "0x80044331");
    assert!(e.message.contains("shipto_postalcode"));
    assert!(matches!(results[1], ChangesetResult::Succeeded { .. }));
}

#[test]
fn stopped_batch_400_leaves_the_rest_not_executed() {
    let body = "--batchresponse_s
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 2

HTTP/1.1 404 Not Found
Content-Type: application/json; odata.metadata=minimal

{\"error\":{\"code\":\"\",\"message\":\"product With Id = x Does Not Exist\"}}
--batchresponse_s--
";
    let reply = read_batch_response(
        400,
        "multipart/mixed; boundary=batchresponse_s",
        crlf(body).as_bytes(),
    )
    .unwrap();
    let BatchReply::Parts { stopped, parts } = reply else {
        panic!()
    };
    assert!(stopped);
    let results = changeset_results(&written(), &parts);
    let ChangesetResult::Failed {
        operation,
        response,
    } = &results[0]
    else {
        panic!()
    };
    assert_eq!(*operation, Some(1), "Content-ID 2 is the first line");
    assert_eq!(response.status, 404);
    assert_eq!(response.error.as_ref().unwrap().code, "");
    assert_eq!(results[1], ChangesetResult::NotExecuted);
}

#[test]
fn non_multipart_json_rejects_the_whole_batch() {
    let reply = read_batch_response(
        400,
        "application/json; odata.metadata=minimal",
        br#"{"error":{"code":"0x0","message":"The number of requests in the batch exceeds 1000"}}"#,
    )
    .unwrap();
    assert_eq!(
        reply,
        BatchReply::Rejected {
            status: 400,
            error: ServiceError {
                code: "0x0".into(),
                message: "The number of requests in the batch exceeds 1000".into()
            }
        }
    );
    let reply = read_batch_response(500, "text/plain", b"").unwrap();
    assert!(
        matches!(reply, BatchReply::Rejected { status: 500, error } if error.message.contains("500"))
    );
}

#[test]
fn lf_only_is_accepted() {
    let reply = read_batch_response(
        200,
        "multipart/mixed; boundary=batchresponse_r2",
        ONE_FAILED.as_bytes(),
    )
    .unwrap();
    let BatchReply::Parts { parts, .. } = reply else {
        panic!()
    };
    let results = changeset_results(&written(), &parts);
    assert!(
        matches!(&results[0], ChangesetResult::Failed { response, .. } if response.status == 400)
    );
    assert!(matches!(results[1], ChangesetResult::Succeeded { .. }));
}

#[test]
fn content_id_wins_over_position_and_short_replies_are_not_executed() {
    // Only the second changeset answered.
    let body = "--batchresponse_q
Content-Type: multipart/mixed; boundary=changesetresponse_z

--changesetresponse_z
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 3

HTTP/1.1 429 Too Many Requests
Retry-After: 4

{\"error\":{\"code\":\"0x80072322\",\"message\":\"Number of requests exceeded the limit\"}}
--changesetresponse_z--
--batchresponse_q--
";
    let reply = read_batch_response(
        200,
        "multipart/mixed;boundary=batchresponse_q",
        crlf(body).as_bytes(),
    )
    .unwrap();
    let BatchReply::Parts { parts, .. } = reply else {
        panic!()
    };
    let results = changeset_results(&written(), &parts);
    assert_eq!(results[0], ChangesetResult::NotExecuted);
    let ChangesetResult::Failed {
        operation,
        response,
    } = &results[1]
    else {
        panic!()
    };
    assert_eq!(*operation, Some(0));
    assert_eq!(response.retry_after, Some(Duration::from_secs(4)));
}

#[test]
fn boundary_parsing() {
    assert_eq!(
        boundary_from_content_type("multipart/mixed; boundary=batchresponse_1").as_deref(),
        Some("batchresponse_1")
    );
    assert_eq!(
        boundary_from_content_type("multipart/mixed; charset=utf-8; Boundary=\"b\"").as_deref(),
        Some("b")
    );
    assert_eq!(boundary_from_content_type("multipart/mixed"), None);
    assert!(matches!(
        read_batch_response(200, "multipart/mixed", b""),
        Err(ReadError::NoBoundary(_))
    ));
}

#[test]
fn garbage_part_is_an_error_not_a_panic() {
    let body = "--b\r\nContent-Type: application/http\r\n\r\nnot http at all\r\n--b--\r\n";
    assert!(matches!(
        read_batch_response(200, "multipart/mixed; boundary=b", body.as_bytes()),
        Err(ReadError::MalformedPart(_))
    ));
}

#[test]
fn invalid_utf8_in_a_reply_is_replaced_not_refused() {
    let body = b"{\"error\":{\"code\":\"0x80040216\",\"message\":\"bad \xff byte\"}}";
    match read_batch_response(500, "application/json", body).unwrap() {
        BatchReply::Rejected { status, error } => {
            assert_eq!(status, 500);
            assert_eq!(error.code, "0x80040216");
            assert_eq!(error.message, "bad \u{FFFD} byte");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(utf8(b"caf\xc3\xa9"), "café");
    assert!(matches!(utf8(b"ok"), Cow::Borrowed("ok")));
}
