// Conformance: the third-party `dynamics-web-api` client (npm) against the orderload emulator.
// Usage: EMULATOR_URL=http://127.0.0.1:PORT node run.mjs   (run `npm ci` here first)
// Optional: EMULATOR_TENANT, EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET (emulator defaults).
// Exits non-zero on the first failed assertion.

import assert from "node:assert/strict";
import { DynamicsWebApi } from "dynamics-web-api";

const base = (process.env.EMULATOR_URL || "").replace(/\/$/, "");
if (!base) {
  console.error("EMULATOR_URL is not set");
  process.exit(2);
}
const tenant = process.env.EMULATOR_TENANT || "emulator";
const clientId = process.env.EMULATOR_CLIENT_ID || "orderload-emulator";
const clientSecret = process.env.EMULATOR_CLIENT_SECRET || "emulator-secret";

const RETAIL = "00000002-0000-0000-0000-000000000001";
const WEB_CUSTOMERS = "00000003-0000-0000-0000-000000000001";
const USD = "00000001-0000-0000-0000-000000000001";
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

async function getToken() {
  const response = await fetch(`${base}/${tenant}/oauth2/v2.0/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      client_id: clientId,
      client_secret: clientSecret,
      grant_type: "client_credentials",
      scope: `${base}/.default`,
    }),
  });
  assert.equal(response.status, 200, "token endpoint status");
  const body = await response.json();
  assert.equal(body.token_type, "Bearer");
  assert.ok(body.expires_in > 0);
  return body.access_token;
}

function order(name, extra = {}) {
  return {
    name,
    "customerid_account@odata.bind": `/accounts(${WEB_CUSTOMERS})`,
    "pricelevelid@odata.bind": `/pricelevels(${RETAIL})`,
    "transactioncurrencyid@odata.bind": `/transactioncurrencies(${USD})`,
    ...extra,
  };
}

async function state(path = "salesorders") {
  const response = await fetch(`${base}/_emulator/${path}`);
  return response.json();
}

const steps = [];
async function step(name, fn) {
  try {
    await fn();
    steps.push(name);
    console.log(`ok   ${name}`);
  } catch (error) {
    console.error(`FAIL ${name}`);
    console.error(error);
    process.exit(1);
  }
}

const token = await getToken();
const api = new DynamicsWebApi({
  serverUrl: base,
  dataApi: { version: "9.2" },
  onTokenRefresh: async () => token,
  propagateErrors: true,
});

await step("$batch with a changeset of two creates ($1 reference)", async () => {
  api.startBatch();
  api.create({ collection: "salesorders", data: order("Conformance batch", { new_externalorderid: "cf.batch.1" }), contentId: "1" });
  api.create({
    collection: "salesorderdetails",
    data: {
      "salesorderid@odata.bind": "$1",
      new_externallineid: "cf.batch.1.1",
      isproductoverridden: true,
      productdescription: "Conformance tee",
      quantity: 2,
    },
    contentId: "2",
  });
  const responses = await api.executeBatch();
  assert.equal(responses.length, 2, "two responses");
  for (const id of responses) assert.match(String(id), GUID, "each create answers with the new id");
  const orders = await state();
  const created = orders.orders.find((o) => o.key === "cf.batch.1");
  assert.ok(created, "the order exists in the emulator");
  assert.equal(created.id, responses[0]);
  assert.equal(created.lines, 1);
});

await step("a failing changeset rolls back and surfaces the error", async () => {
  api.startBatch();
  api.create({ collection: "salesorders", data: order("Rolled back", { new_externalorderid: "cf.batch.2" }), contentId: "1" });
  api.create({ collection: "salesorderdetails", data: { "salesorderid@odata.bind": "$1", quantity: 1, productdescription: "x".repeat(501), isproductoverridden: true }, contentId: "2" });
  let failed = false;
  try {
    const responses = await api.executeBatch();
    // Some versions return errors as values instead of throwing.
    const error = responses.find((r) => r instanceof Error || (r && r.status >= 400));
    assert.ok(error, `expected an error response, got ${JSON.stringify(responses)}`);
    failed = true;
  } catch (error) {
    // A 400 batch is rejected with the array of parsed parts; an error part keeps the
    // service's JSON under `error` (this is the client's own shape, the same for the real service).
    const inner = Array.isArray(error) ? error.find((e) => e instanceof Error) : error;
    assert.ok(inner, `an error part in ${JSON.stringify(error)}`);
    assert.equal(inner.status, 400, `status of ${JSON.stringify(inner)}`);
    const code = inner.code ?? inner.error?.code;
    const message = inner.message || inner.error?.message;
    assert.equal(code, "0x80044331", JSON.stringify(inner));
    assert.match(message, /productdescription/);
    failed = true;
  }
  assert.ok(failed);
  const orders = await state();
  assert.ok(!orders.orders.some((o) => o.key === "cf.batch.2"), "the changeset was rolled back");
});

await step("upsert by alternate key creates, then updates the same row", async () => {
  const key = "new_externalorderid='cf.upsert.1'";
  await api.upsert({ collection: "salesorders", key, data: order("Upsert v1") });
  await api.upsert({ collection: "salesorders", key, data: { name: "Upsert v2" } });
  const row = await api.retrieve({ collection: "salesorders", key, select: ["name", "new_externalorderid", "_pricelevelid_value"] });
  assert.equal(row.name, "Upsert v2");
  assert.equal(row.new_externalorderid, "cf.upsert.1");
  assert.equal(row._pricelevelid_value, RETAIL);
  const orders = await state();
  assert.equal(orders.orders.filter((o) => o.key === "cf.upsert.1").length, 1);
  assert.deepEqual(orders.duplicates, []);
  // If-Match: * on a missing key: the client surfaces a 404.
  await assert.rejects(
    api.upsert({ collection: "salesorders", key: "new_externalorderid='cf.upsert.missing'", data: { name: "x" }, ifmatch: "*" }),
    (error) => error.status === 404,
  );
});

await step("create then retrieve by id", async () => {
  const id = await api.create({ collection: "salesorders", data: order("Create and read", { shipto_city: "Springfield" }) });
  assert.match(String(id), GUID);
  const row = await api.retrieve({ collection: "salesorders", key: id, select: ["name", "shipto_city", "_customerid_value"] });
  assert.equal(row.name, "Create and read");
  assert.equal(row.shipto_city, "Springfield");
  assert.equal(row._customerid_value, WEB_CUSTOMERS);
  assert.equal(row.salesorderid, id);
  const withRepresentation = await api.create({ collection: "salesorders", data: order("Representation"), returnRepresentation: true, select: ["name"] });
  assert.equal(withRepresentation.name, "Representation");
});

await step("error case: a column too long gives code 0x80044331 and names the column", async () => {
  await assert.rejects(
    api.create({ collection: "salesorders", data: order("n".repeat(301)) }),
    (error) => {
      assert.equal(error.status, 400);
      assert.equal(error.code, "0x80044331");
      assert.match(error.message, /'name'/);
      return true;
    },
  );
});

await step("reference data and metadata queries", async () => {
  const currencies = await api.retrieveMultiple({ collection: "transactioncurrencies", select: ["isocurrencycode"], filter: "isocurrencycode eq 'EUR'" });
  assert.equal(currencies.value.length, 1);
  const entity = await api.retrieveEntity({ key: "LogicalName='salesorder'", select: ["EntitySetName", "PrimaryIdAttribute"] });
  assert.equal(entity.EntitySetName, "salesorders");
  const who = await api.callFunction("WhoAmI");
  assert.match(who.UserId, GUID);
});

console.log(`conformance: ok (${steps.length} steps)`);
