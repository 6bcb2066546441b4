//! Emulator tests: every feature of the local Dataverse Web API emulator, over real HTTP on
//! 127.0.0.1, plus the third-party conformance run (`tests/conformance/run.mjs`).

use std::time::Duration;

use orderload::emulator::{self, EmulatorConfig, RunningEmulator};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const RETAIL: &str = "00000002-0000-0000-0000-000000000001";
const WEB_CUSTOMERS: &str = "00000003-0000-0000-0000-000000000001";
const USD: &str = "00000001-0000-0000-0000-000000000001";

struct Emu {
    running: RunningEmulator,
    http: reqwest::Client,
    token: String,
}

async fn spawn(config: EmulatorConfig) -> Emu {
    let running = emulator::start(config).await.expect("emulator starts");
    let http = reqwest::Client::new();
    let token = fetch_token(&http, &running).await;
    Emu {
        running,
        http,
        token,
    }
}

async fn spawn_default() -> Emu {
    spawn(EmulatorConfig::default()).await
}

async fn fetch_token(http: &reqwest::Client, running: &RunningEmulator) -> String {
    let response = http
        .post(&running.token_url)
        .form(&[
            ("client_id", "orderload-emulator"),
            ("client_secret", "emulator-secret"),
            ("grant_type", "client_credentials"),
            ("scope", &format!("{}/.default", running.base_url)),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Emu {
    fn url(&self, path: &str) -> String {
        format!("{}/api/data/v9.2/{}", self.running.base_url, path)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
            .header("OData-Version", "4.0");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None, &[]).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body), &[]).await
    }

    async fn patch(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Answer {
        self.call(Method::PATCH, path, Some(body), headers).await
    }

    async fn batch(&self, body: &str, boundary: &str, prefer: Option<&str>) -> Answer {
        let mut request = self
            .http
            .post(self.url("$batch"))
            .bearer_auth(&self.token)
            .header(
                "Content-Type",
                format!("multipart/mixed; boundary=\"{boundary}\""),
            )
            .body(body.to_string());
        if let Some(prefer) = prefer {
            request = request.header("Prefer", prefer);
        }
        let response = request.send().await.expect("batch request");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/_emulator/{path}", self.running.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "control {path}");
        response.json().await.unwrap()
    }

    async fn state(&self) -> Value {
        self.http
            .get(format!("{}/_emulator/state", self.running.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn orders(&self) -> Value {
        self.http
            .get(format!("{}/_emulator/salesorders", self.running.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn order_body(name: &str) -> Value {
    json!({
        "name": name,
        "customerid_account@odata.bind": format!("/accounts({WEB_CUSTOMERS})"),
        "pricelevelid@odata.bind": format!("/pricelevels({RETAIL})"),
        "transactioncurrencyid@odata.bind": format!("/transactioncurrencies({USD})"),
    })
}

fn line_body(order_key: &str, description: &str) -> Value {
    json!({
        "salesorderid@odata.bind": format!("/salesorders(new_externalorderid='{order_key}')"),
        "isproductoverridden": true,
        "productdescription": description,
        "quantity": 2,
        "priceperunit": 9.99,
        "ispriceoverridden": true,
    })
}

// ---------------------------------------------------------------- auth

#[tokio::test]
async fn token_endpoint_issues_and_refuses_tokens() {
    let emu = spawn_default().await;
    let who = emu.get("WhoAmI").await;
    assert_eq!(who.status, 200);

    let bad = emu
        .http
        .post(&emu.running.token_url)
        .form(&[
            ("client_id", "orderload-emulator"),
            ("client_secret", "wrong"),
            ("grant_type", "client_credentials"),
            ("scope", &format!("{}/.default", emu.running.base_url)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS7000215"));

    let bad_scope = emu
        .http
        .post(&emu.running.token_url)
        .form(&[
            ("client_id", "orderload-emulator"),
            ("client_secret", "emulator-secret"),
            ("grant_type", "client_credentials"),
            ("scope", "https://contoso.crm.dynamics.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_scope.status(), 400);
    assert_eq!(
        bad_scope.json::<Value>().await.unwrap()["error"],
        "invalid_scope"
    );

    // Basic auth works too.
    let basic = emu
        .http
        .post(&emu.running.token_url)
        .basic_auth("orderload-emulator", Some("emulator-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", &format!("{}/.default", emu.running.base_url)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);

    let wrong_tenant = emu.running.token_url.replace("/emulator/", "/contoso/");
    let response = emu
        .http
        .post(wrong_tenant)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    emu.running.shutdown().await;
}

#[tokio::test]
async fn api_requires_a_valid_unexpired_unrevoked_token() {
    let emu = spawn(EmulatorConfig {
        token_lifetime_secs: 1,
        ..EmulatorConfig::default()
    })
    .await;
    let missing = emu.http.get(emu.url("WhoAmI")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "0x80072182");

    let wrong = emu
        .http
        .get(emu.url("WhoAmI"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    assert_eq!(emu.get("WhoAmI").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = emu.get("WhoAmI").await;
    assert_eq!(expired.status, 401);
    assert!(expired.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ExpiredAuthTicket"));

    // Revocation: a fresh token stops working after /_emulator/revoke-tokens.
    let emu2 = spawn_default().await;
    assert_eq!(emu2.get("WhoAmI").await.status, 200);
    let revoked = emu2.control("revoke-tokens", json!({})).await;
    assert_eq!(revoked["revoked"], 1);
    assert_eq!(emu2.get("WhoAmI").await.status, 401);
    assert_eq!(emu2.state().await["unauthorized"], 1);
    emu.running.shutdown().await;
    emu2.running.shutdown().await;
}

#[tokio::test]
async fn whoami_and_dop_hint() {
    let emu = spawn(EmulatorConfig {
        dop_hint: 5,
        ..EmulatorConfig::default()
    })
    .await;
    let who = emu.get("WhoAmI").await;
    assert_eq!(who.status, 200);
    assert_eq!(who.header("x-ms-dop-hint"), Some("5"));
    assert_eq!(who.header("odata-version"), Some("4.0"));
    let body = who.json();
    for field in ["UserId", "BusinessUnitId", "OrganizationId"] {
        assert!(
            uuid::Uuid::parse_str(body[field].as_str().unwrap()).is_ok(),
            "{field}"
        );
    }
    // Clients call functions with parentheses, too.
    assert_eq!(emu.get("WhoAmI()").await.status, 200);
    // Errors carry the header and the documented shape and content type too.
    let missing = emu.get("nosuchtable").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-ms-dop-hint"), Some("5"));
    assert_eq!(
        missing.header("content-type"),
        Some("application/json; odata.metadata=minimal")
    );
    assert!(missing.json()["error"]["message"].is_string());
    emu.running.shutdown().await;
}

// ---------------------------------------------------------------- rows

#[tokio::test]
async fn create_returns_204_with_entity_id_or_201_with_representation() {
    let emu = spawn_default().await;
    let created = emu.post("salesorders", order_body("Web 1")).await;
    assert_eq!(created.status, 204, "{}", created.text);
    let entity_id = created.header("odata-entityid").unwrap().to_string();
    assert!(entity_id.starts_with(&emu.url("salesorders(")));
    assert_eq!(created.header("location"), Some(entity_id.as_str()));

    let representation = emu
        .call(
            Method::POST,
            "salesorders?$select=name,_pricelevelid_value",
            Some(order_body("Web 2")),
            &[("Prefer", "return=representation")],
        )
        .await;
    assert_eq!(representation.status, 201, "{}", representation.text);
    let body = representation.json();
    assert_eq!(body["name"], "Web 2");
    assert_eq!(body["_pricelevelid_value"], RETAIL);
    assert!(body["salesorderid"].is_string());
    assert!(representation.header("odata-entityid").is_none());

    // Read back by id: lookups come back as _<lookup>_value columns.
    let id = entity_id.rsplit('(').next().unwrap().trim_end_matches(')');
    let read = emu.get(&format!("salesorders({id})")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["_customerid_value"], WEB_CUSTOMERS);
    assert_eq!(read.json()["_transactioncurrencyid_value"], USD);
    emu.running.shutdown().await;
}

#[tokio::test]
async fn upsert_matrix_by_alternate_key() {
    let emu = spawn_default().await;
    let key = "salesorders(new_externalorderid='shop.1001')";
    // If-Match: * on a missing row → 404, nothing created.
    let missing = emu.patch(key, order_body("A"), &[("If-Match", "*")]).await;
    assert_eq!(missing.status, 404, "{}", missing.text);
    assert_eq!(emu.state().await["salesorders"], 0);
    // Plain PATCH creates: 204 with the key form in OData-EntityId.
    let created = emu.patch(key, order_body("A"), &[]).await;
    assert_eq!(created.status, 204, "{}", created.text);
    assert_eq!(created.header("odata-entityid").unwrap(), emu.url(key));
    // Plain PATCH again updates.
    let updated = emu.patch(key, json!({"name": "A2"}), &[]).await;
    assert_eq!(updated.status, 204);
    // If-None-Match: * on an existing row → 412.
    let exists = emu
        .patch(key, order_body("A3"), &[("If-None-Match", "*")])
        .await;
    assert_eq!(exists.status, 412);
    // If-Match: * on an existing row → 204.
    assert_eq!(
        emu.patch(key, json!({"description": "x"}), &[("If-Match", "*")])
            .await
            .status,
        204
    );
    // If-None-Match: * on a missing row → 204 (created).
    let other = "salesorders(new_externalorderid='shop.1002')";
    assert_eq!(
        emu.patch(other, order_body("B"), &[("If-None-Match", "*")])
            .await
            .status,
        204
    );
    // return=representation: 200 on update, 201 on create.
    let repr = [("Prefer", "return=representation")];
    let updated = emu.patch(key, json!({"name": "A4"}), &repr).await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.json()["name"], "A4");
    assert_eq!(updated.json()["new_externalorderid"], "shop.1001");
    let created = emu
        .patch(
            "salesorders(new_externalorderid='shop.1003')",
            order_body("C"),
            &repr,
        )
        .await;
    assert_eq!(created.status, 201);
    // GET by key.
    let read = emu.get(key).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["name"], "A4");
    assert_eq!(read.json()["description"], "x");
    assert_eq!(
        emu.get("salesorders(new_externalorderid='nope')")
            .await
            .status,
        404
    );
    // Keys compare case-insensitively, like the service's SQL collation.
    assert_eq!(
        emu.get("salesorders(new_externalorderid='SHOP.1001')")
            .await
            .json()["name"],
        "A4"
    );
    // A POST colliding with an existing key → 412 0x80060892.
    let mut body = order_body("dup");
    body["new_externalorderid"] = json!("shop.1001");
    let dup = emu.post("salesorders", body).await;
    assert_eq!(dup.status, 412);
    assert_eq!(dup.code(), "0x80060892");
    // A column that is not a key → 400.
    let not_key = emu.get("salesorders(name='A4')").await;
    assert_eq!(not_key.status, 400);
    assert!(not_key
        .text
        .contains("The key in the request URI is not valid for resource"));
    let orders = emu.orders().await;
    assert_eq!(orders["count"], 3);
    assert_eq!(orders["duplicates"], json!([]));
    emu.running.shutdown().await;
}

#[tokio::test]
async fn patch_by_id_upserts_and_if_match_refuses_missing() {
    let emu = spawn_default().await;
    let id = uuid::Uuid::new_v4();
    assert_eq!(
        emu.patch(
            &format!("salesorders({id})"),
            order_body("X"),
            &[("If-Match", "*")]
        )
        .await
        .status,
        404
    );
    let created = emu
        .patch(&format!("salesorders({id})"), order_body("X"), &[])
        .await;
    assert_eq!(created.status, 204);
    assert_eq!(
        created.header("odata-entityid").unwrap(),
        emu.url(&format!("salesorders({id})"))
    );
    assert_eq!(
        emu.get(&format!("salesorders({id})")).await.json()["name"],
        "X"
    );
    emu.running.shutdown().await;
}

#[tokio::test]
async fn binds_by_key_and_to_missing_rows() {
    let emu = spawn_default().await;
    assert_eq!(
        emu.patch(
            "salesorders(new_externalorderid='o1')",
            order_body("O1"),
            &[]
        )
        .await
        .status,
        204
    );
    let line = emu
        .patch(
            "salesorderdetails(new_externallineid='o1.1')",
            line_body("o1", "Tee"),
            &[],
        )
        .await;
    assert_eq!(line.status, 204, "{}", line.text);
    let mut catalog = json!({"salesorderid@odata.bind": "/salesorders(new_externalorderid='o1')",
        "productid@odata.bind": "/products(productnumber='SKU-MUG')", "quantity": 1,
        "uomid@odata.bind": "/uoms(00000004-0000-0000-0000-000000000001)"});
    assert_eq!(
        emu.patch(
            "salesorderdetails(new_externallineid='o1.2')",
            catalog.clone(),
            &[]
        )
        .await
        .status,
        204
    );
    assert_eq!(emu.orders().await["orders"][0]["lines"], 2);
    let order_id = emu
        .get("salesorders(new_externalorderid='o1')")
        .await
        .json()["salesorderid"]
        .clone();
    let read = emu
        .get("salesorderdetails(new_externallineid='o1.2')")
        .await
        .json();
    assert_eq!(read["_salesorderid_value"], order_id);
    assert_eq!(
        read["_productid_value"],
        "00000005-0000-0000-0000-000000000004"
    );

    // Binding to a missing row → 404-class error.
    catalog["productid@odata.bind"] = json!("/products(productnumber='SKU-NOPE')");
    let missing = emu
        .patch("salesorderdetails(new_externallineid='o1.3')", catalog, &[])
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "0x80040217");
    let mut body = order_body("O2");
    body["pricelevelid@odata.bind"] = json!(format!("/pricelevels({})", uuid::Uuid::new_v4()));
    let missing = emu.post("salesorders", body).await;
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Does Not Exist"));
    // Bind to a contact (the other customer target), created by e-mail key.
    assert_eq!(
        emu.patch(
            "contacts(emailaddress1='ann@example.com')",
            json!({"lastname": "Ann"}),
            &[]
        )
        .await
        .status,
        204
    );
    let mut body = order_body("O3");
    body.as_object_mut()
        .unwrap()
        .remove("customerid_account@odata.bind");
    body["customerid_contact@odata.bind"] = json!("/contacts(emailaddress1='ann@example.com')");
    assert_eq!(emu.post("salesorders", body).await.status, 204);
    emu.running.shutdown().await;
}

#[tokio::test]
async fn column_length_required_columns_and_unknown_properties() {
    let emu = spawn_default().await;
    let mut body = order_body("L");
    body["shipto_postalcode"] = json!("x".repeat(21));
    let long = emu.post("salesorders", body).await;
    assert_eq!(long.status, 400);
    assert_eq!(long.code(), "0x80044331");
    assert!(long.text.contains("shipto_postalcode"));
    // Exactly at the limit is fine; length counts characters, not bytes.
    let mut body = order_body(&"é".repeat(300));
    body["shipto_postalcode"] = json!("x".repeat(20));
    assert_eq!(emu.post("salesorders", body).await.status, 204);

    let mut no_price_list = order_body("R");
    no_price_list
        .as_object_mut()
        .unwrap()
        .remove("pricelevelid@odata.bind");
    let required = emu.post("salesorders", no_price_list.clone()).await;
    assert_eq!(required.status, 400);
    assert!(required.text.contains("pricelevelid"));
    // A line without a product → 400.
    emu.patch(
        "salesorders(new_externalorderid='r1')",
        order_body("R1"),
        &[],
    )
    .await;
    let mut line = line_body("r1", "x");
    line.as_object_mut().unwrap().remove("productdescription");
    let no_product = emu.post("salesorderdetails", line).await;
    assert_eq!(no_product.status, 400, "{}", no_product.text);
    let unknown = emu
        .post("salesorders", json!({"name": "U", "nosuchcolumn": 1}))
        .await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.text.contains("nosuchcolumn"));

    // ApplicationRequired enforcement can be switched off.
    let lax = spawn(EmulatorConfig {
        enforce_application_required: false,
        ..EmulatorConfig::default()
    })
    .await;
    assert_eq!(lax.post("salesorders", no_price_list).await.status, 204);
    emu.running.shutdown().await;
    lax.running.shutdown().await;
}

#[tokio::test]
async fn query_options_select_filter_top() {
    let emu = spawn_default().await;
    let currencies = emu.get("transactioncurrencies?$select=isocurrencycode,currencyname&$filter=isocurrencycode%20eq%20'EUR'").await;
    assert_eq!(currencies.status, 200, "{}", currencies.text);
    let value = currencies.json()["value"].clone();
    assert_eq!(value.as_array().unwrap().len(), 1);
    assert_eq!(value[0]["currencyname"], "Euro");
    assert!(value[0].get("currencysymbol").is_none());
    let all = emu.get("transactioncurrencies?$top=3").await.json();
    assert_eq!(all["value"].as_array().unwrap().len(), 3);
    let price = emu
        .get("pricelevels?$filter=name eq 'Retail'&$select=pricelevelid")
        .await
        .json();
    assert_eq!(price["value"][0]["pricelevelid"], RETAIL);
    let account = emu
        .get("accounts?$filter=name eq 'Web Customers'")
        .await
        .json();
    assert_eq!(account["value"][0]["accountid"], WEB_CUSTOMERS);
    emu.patch(
        "salesorders(new_externalorderid='q1')",
        order_body("Q1"),
        &[],
    )
    .await;
    emu.patch(
        "salesorderdetails(new_externallineid='q1.1')",
        line_body("q1", "a"),
        &[],
    )
    .await;
    emu.patch(
        "salesorderdetails(new_externallineid='q1.2')",
        line_body("q1", "b"),
        &[],
    )
    .await;
    let order = emu
        .get("salesorders(new_externalorderid='q1')?$select=salesorderid")
        .await
        .json();
    let id = order["salesorderid"].as_str().unwrap();
    let lines = emu
        .get(&format!(
            "salesorderdetails?$filter=_salesorderid_value eq {id} and productdescription eq 'b'"
        ))
        .await
        .json();
    assert_eq!(lines["value"].as_array().unwrap().len(), 1);
    assert_eq!(emu.get("salesorders?$filter=name ne 'x'").await.status, 400);
    emu.running.shutdown().await;
}

#[tokio::test]
async fn deep_insert_creates_order_and_lines() {
    let emu = spawn_default().await;
    let mut body = order_body("Deep");
    body["new_externalorderid"] = json!("deep.1");
    body["order_details"] = json!([
        {"isproductoverridden": true, "productdescription": "T-shirt", "quantity": 2, "new_externallineid": "deep.1.1"},
        {"productid@odata.bind": "/products(productnumber='SKU-TEE-S')", "quantity": 1, "new_externallineid": "deep.1.2"}
    ]);
    let created = emu.post("salesorders", body.clone()).await;
    assert_eq!(created.status, 204, "{}", created.text);
    let state = emu.state().await;
    assert_eq!(
        (
            state["salesorders"].as_u64(),
            state["salesorderdetails"].as_u64()
        ),
        (Some(1), Some(2))
    );
    // A failing line rolls back the whole deep insert.
    body["new_externalorderid"] = json!("deep.2");
    body["order_details"][1]["new_externallineid"] = json!("deep.2.2");
    body["order_details"][0] = json!({"quantity": 1, "new_externallineid": "deep.2.1"});
    assert_eq!(emu.post("salesorders", body).await.status, 400);
    let state = emu.state().await;
    assert_eq!(
        (
            state["salesorders"].as_u64(),
            state["salesorderdetails"].as_u64()
        ),
        (Some(1), Some(2))
    );
    emu.running.shutdown().await;
}

#[tokio::test]
async fn forbidden_key_characters_doubled_quotes_and_percent_encoding() {
    let emu = spawn_default().await;
    for bad in [
        "a/b", "a%25b", "a*b", "a:b", "a%3Fb", "a%2Bb", "a%26b", "a%3Cb", "a%5Cb",
    ] {
        let answer = emu
            .patch(
                &format!("salesorders(new_externalorderid='{bad}')"),
                order_body("x"),
                &[],
            )
            .await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.text);
    }
    // A doubled quote is one quote in the value; %23 is '#'.
    let key = "salesorders(new_externalorderid='O''Brien%20%231001')";
    assert_eq!(emu.patch(key, order_body("q"), &[]).await.status, 204);
    let read = emu.get(key).await.json();
    assert_eq!(read["new_externalorderid"], "O'Brien #1001");
    let listed = emu.orders().await;
    assert_eq!(listed["orders"][0]["key"], "O'Brien #1001");
    emu.running.shutdown().await;
}

// ---------------------------------------------------------------- $batch

fn http_part(method: &str, url: &str, content_id: Option<u32>, body: Option<&Value>) -> String {
    let mut part =
        String::from("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
    if let Some(id) = content_id {
        part.push_str(&format!("Content-ID: {id}\r\n"));
    }
    part.push_str(&format!("\r\n{method} {url} HTTP/1.1\r\n"));
    match body {
        Some(b) => part.push_str(&format!(
            "Content-Type: application/json; type=entry\r\n\r\n{b}\r\n"
        )),
        None => part.push_str("\r\n"),
    }
    part
}

fn changeset(boundary: &str, parts: &[String]) -> String {
    let mut out = format!("Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n");
    for part in parts {
        out.push_str(&format!("--{boundary}\r\n{part}"));
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out
}

fn batch_body(boundary: &str, parts: &[String]) -> String {
    let mut out = String::new();
    for part in parts {
        out.push_str(&format!("--{boundary}\r\n{part}"));
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out
}

fn order_changeset(n: usize, key: &str, lines: usize, absolute: Option<&str>) -> String {
    let prefix = absolute.unwrap_or("/api/data/v9.2/");
    let mut parts = vec![http_part(
        "PATCH",
        &format!("{prefix}salesorders(new_externalorderid='{key}')"),
        Some(1),
        Some(&order_body(key)),
    )];
    for line in 1..=lines {
        parts.push(http_part(
            "PATCH",
            &format!("{prefix}salesorderdetails(new_externallineid='{key}.{line}')"),
            Some(line as u32 + 1),
            Some(&line_body(key, "item")),
        ));
    }
    changeset(&format!("changeset_{n}"), &parts)
}

#[tokio::test]
async fn batch_changesets_are_atomic_and_answered_in_order() {
    let emu = spawn_default().await;
    let root = format!("{}/api/data/v9.2/", emu.running.base_url);
    let mut bad_line = line_body("b2", "x");
    bad_line["productdescription"] = json!("x".repeat(501));
    let failing = changeset(
        "changeset_bad",
        &[
            http_part(
                "PATCH",
                "salesorders(new_externalorderid='b2')",
                Some(1),
                Some(&order_body("b2")),
            ),
            http_part(
                "PATCH",
                "salesorderdetails(new_externallineid='b2.1')",
                Some(2),
                Some(&bad_line),
            ),
        ],
    );
    let body = batch_body(
        "batch_A",
        &[
            order_changeset(1, "b1", 2, None),
            failing,
            order_changeset(3, "b3", 1, Some(&root)),
            http_part("GET", "WhoAmI", None, None),
        ],
    );
    let answer = emu
        .batch(&body, "batch_A", Some("odata.continue-on-error"))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let content_type = answer.header("content-type").unwrap();
    assert!(
        content_type.starts_with("multipart/mixed; boundary=batchresponse_"),
        "{content_type}"
    );
    let text = &answer.text;
    assert_eq!(
        text.matches("Content-Type: multipart/mixed; boundary=changesetresponse_")
            .count(),
        2
    );
    assert_eq!(text.matches("HTTP/1.1 204 No Content").count(), 5);
    assert_eq!(text.matches("HTTP/1.1 400 Bad Request").count(), 1);
    assert!(text.contains("0x80044331"));
    assert!(text.contains("HTTP/1.1 200 OK"));
    assert!(text.contains("Content-ID: 2"));
    assert!(text.contains("OData-EntityId: "));
    // Request order: b1's parts, then the error, then b3's, then WhoAmI.
    let b1 = text.find("new_externalorderid='b1'").unwrap();
    let error = text.find("0x80044331").unwrap();
    let b3 = text.find("new_externalorderid='b3'").unwrap();
    let who = text.find("WhoAmIResponse").unwrap();
    assert!(b1 < error && error < b3 && b3 < who);
    // b2 was rolled back whole: its order is not there.
    let orders = emu.orders().await;
    let keys: Vec<&str> = orders["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["b1", "b3"]);
    assert_eq!(emu.state().await["salesorderdetails"], 3);
    assert_eq!(emu.state().await["batches"], 1);
    emu.running.shutdown().await;
}

#[tokio::test]
async fn batch_stops_at_first_error_without_continue_on_error() {
    let emu = spawn_default().await;
    let mut bad = order_body("s2");
    bad["nosuchcolumn"] = json!(1);
    let body = batch_body(
        "batch_S",
        &[
            order_changeset(1, "s1", 1, None),
            changeset(
                "changeset_2",
                &[http_part(
                    "PATCH",
                    "salesorders(new_externalorderid='s2')",
                    Some(1),
                    Some(&bad),
                )],
            ),
            order_changeset(3, "s3", 1, None),
        ],
    );
    let answer = emu.batch(&body, "batch_S", None).await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert_eq!(answer.text.matches("HTTP/1.1 400 Bad Request").count(), 1);
    assert!(!answer.text.contains("s3"));
    let orders = emu.orders().await;
    assert_eq!(orders["count"], 1);
    assert_eq!(orders["orders"][0]["key"], "s1");
    emu.running.shutdown().await;
}

#[tokio::test]
async fn batch_content_id_references() {
    let emu = spawn_default().await;
    let mut line = line_body("unused", "ref");
    line["salesorderid@odata.bind"] = json!("$1");
    let set = changeset(
        "changeset_r",
        &[
            http_part(
                "POST",
                "/api/data/v9.2/salesorders",
                Some(1),
                Some(&order_body("ref")),
            ),
            http_part(
                "POST",
                "/api/data/v9.2/salesorderdetails",
                Some(2),
                Some(&line),
            ),
            http_part(
                "PATCH",
                "$1",
                Some(3),
                Some(&json!({"description": "patched via $1"})),
            ),
        ],
    );
    let answer = emu
        .batch(&batch_body("batch_R", &[set]), "batch_R", None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let orders = emu.orders().await;
    assert_eq!(orders["orders"][0]["lines"], 1);
    let id = orders["orders"][0]["id"].as_str().unwrap();
    assert_eq!(
        emu.get(&format!("salesorders({id})")).await.json()["description"],
        "patched via $1"
    );

    // A reference to an unknown Content-ID → 400 with the documented message.
    let mut forward = line_body("unused", "fwd");
    forward["salesorderid@odata.bind"] = json!("$5");
    let set = changeset(
        "changeset_f",
        &[http_part(
            "POST",
            "salesorderdetails",
            Some(1),
            Some(&forward),
        )],
    );
    let answer = emu
        .batch(&batch_body("batch_F", &[set]), "batch_F", None)
        .await;
    assert_eq!(answer.status, 400);
    assert!(answer
        .text
        .contains("Content-ID Reference: '$5' does not exist in the batch context."));
    emu.running.shutdown().await;
}

#[tokio::test]
async fn batch_refuses_get_in_changeset_and_more_than_1000_operations() {
    let emu = spawn_default().await;
    let set = changeset("changeset_g", &[http_part("GET", "WhoAmI", Some(1), None)]);
    let answer = emu
        .batch(&batch_body("batch_G", &[set]), "batch_G", None)
        .await;
    assert_eq!(answer.status, 400);
    assert!(answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'GET'"));

    let parts: Vec<String> = (0..1001)
        .map(|i| {
            http_part(
                "PATCH",
                &format!("salesorders(new_externalorderid='m{i}')"),
                None,
                Some(&order_body("m")),
            )
        })
        .collect();
    let answer = emu
        .batch(&batch_body("batch_M", &parts), "batch_M", None)
        .await;
    assert_eq!(answer.status, 400);
    assert!(answer.text.contains("1001"));
    assert_eq!(emu.state().await["salesorders"], 0);
    // Exactly 1000 operations, counted across changesets, are accepted.
    let sets: Vec<String> = (0..500)
        .map(|i| order_changeset(i, &format!("k{i}"), 1, None))
        .collect();
    let answer = emu
        .batch(&batch_body("batch_K", &sets), "batch_K", None)
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(emu.state().await["salesorders"], 500);
    emu.running.shutdown().await;
}

#[tokio::test]
async fn batch_accepts_lf_only_bodies() {
    let emu = spawn_default().await;
    let body = batch_body(
        "batch_L",
        &[
            order_changeset(1, "lf1", 2, None),
            http_part("GET", "WhoAmI", None, None),
        ],
    )
    .replace("\r\n", "\n");
    let answer = emu.batch(&body, "batch_L", None).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(emu.orders().await["orders"][0]["lines"], 2);
    emu.running.shutdown().await;
}

// ---------------------------------------------------------------- bulk messages

#[tokio::test]
async fn upsert_and_create_multiple_are_all_or_nothing() {
    let emu = spawn_default().await;
    let target = |key: &str| {
        let mut t = order_body(key);
        t["@odata.type"] = json!("Microsoft.Dynamics.CRM.salesorder");
        t["@odata.id"] = json!(format!("salesorders(new_externalorderid='{key}')"));
        t
    };
    let ok = emu
        .post(
            "salesorders/Microsoft.Dynamics.CRM.UpsertMultiple",
            json!({"Targets": [target("u1"), target("u2")]}),
        )
        .await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    assert_eq!(emu.state().await["salesorders"], 2);
    // Same keys again: updates, no new rows.
    let again = emu
        .post(
            "salesorders/Microsoft.Dynamics.CRM.UpsertMultiple",
            json!({"Targets": [target("u1"), target("u3")]}),
        )
        .await;
    assert_eq!(again.status, 204);
    assert_eq!(emu.state().await["salesorders"], 3);
    // A target without @odata.type fails the whole call.
    let mut untyped = target("u4");
    untyped.as_object_mut().unwrap().remove("@odata.type");
    let refused = emu
        .post(
            "salesorders/Microsoft.Dynamics.CRM.UpsertMultiple",
            json!({"Targets": [target("u5"), untyped]}),
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(emu.state().await["salesorders"], 3);
    // CreateMultiple: 200 with Ids; a bad target rolls back every one.
    let create = |name: &str| {
        let mut t = order_body(name);
        t["@odata.type"] = json!("Microsoft.Dynamics.CRM.salesorder");
        t
    };
    let created = emu
        .post(
            "salesorders/Microsoft.Dynamics.CRM.CreateMultiple",
            json!({"Targets": [create("c1"), create("c2")]}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json()["Ids"].as_array().unwrap().len(), 2);
    let mut long = create("c3");
    long["name"] = json!("n".repeat(301));
    let failed = emu
        .post(
            "salesorders/Microsoft.Dynamics.CRM.CreateMultiple",
            json!({"Targets": [create("c4"), long]}),
        )
        .await;
    assert_eq!(failed.status, 400);
    assert_eq!(failed.code(), "0x80044331");
    assert_eq!(emu.state().await["salesorders"], 5);
    // Lines too.
    let mut line = line_body("u1", "bulk line");
    line["@odata.type"] = json!("Microsoft.Dynamics.CRM.salesorderdetail");
    line["@odata.id"] = json!("salesorderdetails(new_externallineid='u1.1')");
    let lines = emu
        .post(
            "salesorderdetails/Microsoft.Dynamics.CRM.UpsertMultiple",
            json!({"Targets": [line]}),
        )
        .await;
    assert_eq!(lines.status, 204, "{}", lines.text);
    // Availability query.
    let filters = emu
        .get("sdkmessagefilters?$select=sdkmessagefilterid&$filter=sdkmessageid/name eq @message and primaryobjecttypecode eq @table&@message='UpsertMultiple'&@table='salesorder'")
        .await;
    assert_eq!(filters.status, 200, "{}", filters.text);
    assert_eq!(filters.json()["value"].as_array().unwrap().len(), 1);
    let none = emu
        .get("sdkmessagefilters?$select=sdkmessagefilterid&$filter=sdkmessageid/name eq @message and primaryobjecttypecode eq @table&@message='UpsertMultiple'&@table='account'")
        .await;
    assert_eq!(none.json()["value"], json!([]));
    emu.running.shutdown().await;
}

// ---------------------------------------------------------------- limits and faults

#[tokio::test]
async fn request_limit_gives_429_with_retry_after() {
    let emu = spawn(EmulatorConfig {
        limit_requests: 3,
        limit_window_secs: 2,
        ..EmulatorConfig::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(emu.get("WhoAmI").await.status, 200);
    }
    let throttled = emu.get("WhoAmI").await;
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.code(), "0x80072322");
    assert!(throttled.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Number of requests exceeded the limit of 3 over time window of 2 seconds."));
    let retry: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry));
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(emu.get("WhoAmI").await.status, 200);
    assert_eq!(emu.state().await["throttled"], 1);
    emu.running.shutdown().await;
}

#[tokio::test]
async fn execution_time_limit_counts_injected_latency() {
    let emu = spawn(EmulatorConfig {
        limit_exec_ms: 150,
        limit_window_secs: 30,
        latency_ms: 100,
        ..EmulatorConfig::default()
    })
    .await;
    assert_eq!(emu.get("WhoAmI").await.status, 200);
    assert_eq!(emu.get("WhoAmI").await.status, 200);
    let throttled = emu.get("WhoAmI").await;
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.code(), "0x80072321");
    assert!(throttled.text.contains(
        "Combined execution time of incoming requests exceeded limit of 150 milliseconds"
    ));
    let retry: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((25..=30).contains(&retry), "{retry}");
    emu.running.shutdown().await;
}

#[tokio::test]
async fn concurrency_limit_refuses_at_once() {
    let emu = spawn(EmulatorConfig {
        limit_concurrent: 2,
        latency_ms: 400,
        ..EmulatorConfig::default()
    })
    .await;
    let calls = (0..4).map(|_| emu.get("WhoAmI"));
    let answers = futures::future::join_all(calls).await;
    let throttled: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(throttled.len(), 2);
    assert_eq!(throttled[0].code(), "0x80072326");
    assert!(throttled[0].header("retry-after").is_some());
    assert_eq!(answers.iter().filter(|a| a.status == 200).count(), 2);
    // Limits can be changed at runtime.
    emu.control("limits", json!({"limit_concurrent": 10})).await;
    let answers = futures::future::join_all((0..4).map(|_| emu.get("WhoAmI"))).await;
    assert!(answers.iter().all(|a| a.status == 200));
    emu.running.shutdown().await;
}

#[tokio::test]
async fn fail_rate_is_reproducible_with_a_seed() {
    async fn pattern(seed: u64) -> Vec<u16> {
        let emu = spawn(EmulatorConfig {
            fail_rate: 0.5,
            seed,
            ..EmulatorConfig::default()
        })
        .await;
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(emu.get("WhoAmI").await.status.as_u16());
        }
        let state = emu.state().await;
        assert_eq!(
            state["failed_injected"].as_u64().unwrap() as usize,
            statuses.iter().filter(|s| **s == 503).count()
        );
        emu.running.shutdown().await;
        statuses
    }
    let first = pattern(7).await;
    assert_eq!(first, pattern(7).await);
    assert!(first.contains(&503) && first.contains(&200));
    // A 503 happens before anything is done.
    let emu = spawn(EmulatorConfig {
        fail_rate: 1.0,
        ..EmulatorConfig::default()
    })
    .await;
    let failed = emu
        .patch(
            "salesorders(new_externalorderid='f1')",
            order_body("f"),
            &[],
        )
        .await;
    assert_eq!(failed.status, 503);
    assert!(failed.json()["error"]["code"].is_string());
    assert_eq!(emu.state().await["salesorders"], 0);
    emu.control("faults", json!({"fail_rate": 0.0})).await;
    assert_eq!(
        emu.patch(
            "salesorders(new_externalorderid='f1')",
            order_body("f"),
            &[]
        )
        .await
        .status,
        204
    );
    emu.running.shutdown().await;
}

#[tokio::test]
async fn dropped_connection_still_commits_the_write() {
    let emu = spawn(EmulatorConfig {
        drop_rate: 1.0,
        seed: 1,
        ..EmulatorConfig::default()
    })
    .await;
    let result = emu
        .http
        .patch(emu.url("salesorders(new_externalorderid='d1')"))
        .bearer_auth(&emu.token)
        .json(&order_body("d1"))
        .send()
        .await;
    assert!(
        result.is_err(),
        "the client must see a connection error, got {result:?}"
    );
    let state = emu.state().await;
    assert_eq!(state["salesorders"], 1);
    assert_eq!(state["dropped"], 1);
    // Reads are not dropped; batches are.
    assert_eq!(
        emu.get("salesorders(new_externalorderid='d1')")
            .await
            .status,
        200
    );
    let body = batch_body("batch_D", &[order_changeset(1, "d2", 1, None)]);
    let result = emu
        .http
        .post(emu.url("$batch"))
        .bearer_auth(&emu.token)
        .header("Content-Type", "multipart/mixed; boundary=batch_D")
        .body(body)
        .send()
        .await;
    assert!(result.is_err());
    assert_eq!(emu.orders().await["count"], 2);
    // Resending after the drop updates, never duplicates.
    emu.control("faults", json!({"drop_rate": 0.0})).await;
    assert_eq!(
        emu.patch(
            "salesorders(new_externalorderid='d1')",
            order_body("d1"),
            &[]
        )
        .await
        .status,
        204
    );
    assert_eq!(emu.orders().await["count"], 2);
    assert_eq!(emu.orders().await["duplicates"], json!([]));
    emu.running.shutdown().await;
}

#[tokio::test]
async fn latency_per_operation_slows_batches() {
    let emu = spawn(EmulatorConfig {
        latency_per_op_ms: 50,
        ..EmulatorConfig::default()
    })
    .await;
    let body = batch_body("batch_T", &[order_changeset(1, "t1", 3, None)]);
    let started = std::time::Instant::now();
    assert_eq!(emu.batch(&body, "batch_T", None).await.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    emu.running.shutdown().await;
}

// ---------------------------------------------------------------- state, metadata, config

#[tokio::test]
async fn state_endpoint_and_library_state_agree() {
    let emu = spawn_default().await;
    emu.patch(
        "salesorders(new_externalorderid='st1')",
        order_body("st"),
        &[],
    )
    .await;
    let over_http = emu.state().await;
    let direct = emu.running.state().await;
    for field in [
        "salesorders",
        "salesorderdetails",
        "requests",
        "throttled",
        "batches",
        "dropped",
        "failed_injected",
    ] {
        assert!(over_http[field].is_u64(), "{field}");
    }
    assert_eq!(over_http["salesorders"], 1);
    assert_eq!(over_http["salesorders"], direct["salesorders"]);
    assert_eq!(direct["requests"], 1);
    assert_eq!(over_http["tables"]["transactioncurrencies"], 8);
    emu.running.shutdown().await;
}

#[tokio::test]
async fn entity_definitions_describe_tables_keys_and_attributes() {
    let emu = spawn_default().await;
    let so = emu.get("EntityDefinitions(LogicalName='salesorder')?$select=EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute&$expand=Keys").await;
    assert_eq!(so.status, 200, "{}", so.text);
    let so = so.json();
    assert_eq!(so["EntitySetName"], "salesorders");
    assert_eq!(so["PrimaryIdAttribute"], "salesorderid");
    assert_eq!(so["PrimaryNameAttribute"], "name");
    assert_eq!(
        so["Keys"][0]["KeyAttributes"],
        json!(["new_externalorderid"])
    );
    let filtered = emu
        .get("EntityDefinitions?$filter=LogicalName eq 'salesorderdetail'&$select=EntitySetName")
        .await
        .json();
    assert_eq!(filtered["value"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["value"][0]["EntitySetName"], "salesorderdetails");
    let with_attributes = emu
        .get("EntityDefinitions(LogicalName='salesorder')?$expand=Attributes")
        .await
        .json();
    let name = with_attributes["Attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["LogicalName"] == "name")
        .unwrap()
        .clone();
    assert_eq!(name["AttributeType"], "String");
    assert_eq!(name["MaxLength"], 300);
    assert_eq!(name["RequiredLevel"]["Value"], "ApplicationRequired");
    let zip = emu.get("EntityDefinitions(LogicalName='salesorder')/Attributes(LogicalName='shipto_postalcode')").await.json();
    assert_eq!(zip["MaxLength"], 20);
    // Picklists: some on salesorder, an empty list on salesorderdetail, for every table.
    let picklists = emu
        .get("EntityDefinitions(LogicalName='salesorder')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet")
        .await
        .json();
    assert!(!picklists["value"].as_array().unwrap().is_empty());
    assert!(picklists["value"][0]["OptionSet"]["Options"].is_array());
    for table in [
        "salesorderdetail",
        "account",
        "contact",
        "pricelevel",
        "transactioncurrency",
        "product",
        "uom",
    ] {
        let answer = emu.get(&format!("EntityDefinitions(LogicalName='{table}')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata")).await;
        assert_eq!(answer.status, 200, "{table}");
        assert!(answer.json()["value"].is_array());
    }
    let product = emu
        .get("EntityDefinitions(LogicalName='product')?$expand=Keys")
        .await
        .json();
    assert_eq!(
        product["Keys"][0]["KeyAttributes"],
        json!(["productnumber"])
    );
    assert_eq!(
        emu.get("EntityDefinitions(LogicalName='nosuch')")
            .await
            .status,
        404
    );
    emu.running.shutdown().await;
}

#[tokio::test]
async fn non_loopback_listen_needs_explicit_permission() {
    let config = EmulatorConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..EmulatorConfig::default()
    };
    let error = emulator::start(config).await.err().expect("refused");
    assert!(error.to_string().contains("--allow-non-loopback"));
}

#[tokio::test]
async fn fixture_file_replaces_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture.json");
    let mut fixture: Value = serde_json::from_str(emulator::DEFAULT_FIXTURE).unwrap();
    for table in fixture["tables"].as_array_mut().unwrap() {
        if table["logical_name"] == "pricelevel" {
            table["rows"][0]["name"] = json!("Wholesale");
        }
    }
    std::fs::write(&path, fixture.to_string()).unwrap();
    let emu = spawn(EmulatorConfig {
        fixture: Some(path),
        ..EmulatorConfig::default()
    })
    .await;
    let price = emu
        .get("pricelevels?$filter=name eq 'Wholesale'")
        .await
        .json();
    assert_eq!(price["value"].as_array().unwrap().len(), 1);
    emu.running.shutdown().await;
}

#[tokio::test]
async fn tls_with_a_generated_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("emulator.pem");
    let running = emulator::start(EmulatorConfig {
        tls: true,
        cert_out: Some(cert.clone()),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    assert!(running.base_url.starts_with("https://127.0.0.1:"));
    assert_eq!(running.cert_pem_path.as_deref(), Some(cert.as_path()));
    let pem = std::fs::read(&cert).unwrap();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let token = fetch_token(&trusting, &running).await;
    let who = trusting
        .get(format!("{}/api/data/v9.2/WhoAmI", running.base_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(who.status(), 200);
    let untrusting = reqwest::Client::new();
    let refused = untrusting
        .get(format!("{}/api/data/v9.2/WhoAmI", running.base_url))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a client that does not trust the certificate must be refused"
    );
    running.shutdown().await;
}

// ---------------------------------------------------------------- third-party client

#[tokio::test]
async fn conformance_with_dynamics_web_api() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let node = std::process::Command::new("node").arg("--version").output();
    if node.is_err() || !dir.join("node_modules/dynamics-web-api").exists() {
        eprintln!("SKIPPED conformance_with_dynamics_web_api: needs `node` and `npm ci` in tests/conformance");
        return;
    }
    let running = emulator::start(EmulatorConfig::default()).await.unwrap();
    let output = tokio::process::Command::new("node")
        .arg("run.mjs")
        .current_dir(&dir)
        .env("EMULATOR_URL", &running.base_url)
        .env("EMULATOR_TENANT", "emulator")
        .env("EMULATOR_CLIENT_ID", "orderload-emulator")
        .env("EMULATOR_CLIENT_SECRET", "emulator-secret")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "conformance failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("conformance: ok"), "{stdout}");
    let orders = reqwest::get(format!("{}/_emulator/salesorders", running.base_url))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(orders["duplicates"], json!([]));
    running.shutdown().await;
}
