//! The mapping from the canonical [`Order`] to salesorder / salesorderdetail (and contact)
//! upserts, driven by the `[target]` configuration.
//!
//! Everything is validated before anything is sent: a value longer than its column fails the
//! order with `value_too_long` naming the column; nothing is truncated. Money goes into the
//! JSON body as the decimal's own text (`19.99`, never through `f64`), so what the shop
//! charged is exactly what Dynamics receives.

use super::batch_writer::{ChangesetPlan, PlannedOperation};
use super::errors::shorten;
use super::keys::{is_addressable, key_path, OrderKey};
use crate::config::TargetConfig;
use crate::model::{Address, Order, OrderLine};
use crate::submit::target::PlanError;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashSet};

/// Column lengths (protocol doc section 7); lengths count UTF-16 code units, as Dataverse does.
pub fn column_limit(column: &str) -> Option<usize> {
    let address_part = column
        .strip_prefix("shipto_")
        .or_else(|| column.strip_prefix("billto_"));
    if let Some(part) = address_part {
        return match part {
            "name" => Some(200),
            "line1" | "line2" | "line3" => Some(250),
            "city" | "country" => Some(80),
            "stateorprovince" | "telephone" => Some(50),
            "postalcode" => Some(20),
            _ => None,
        };
    }
    match column {
        "name" => Some(300),
        "description" => Some(2000),
        "productdescription" => Some(500),
        "firstname" | "lastname" | "telephone1" => Some(50),
        "emailaddress1" => Some(100),
        _ => None,
    }
}

/// Dataverse money columns hold at most 4 decimal places and ±922,337,203,685,477.
const MONEY_SCALE: u32 = 4;
const MONEY_MAX: i64 = 922_337_203_685_477;
/// salesorderdetail.quantity is a decimal with 5 places.
const QUANTITY_SCALE: u32 = 5;

/// Ids resolved from names once per run (see `reference.rs`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct References {
    pub price_list_id: String,
    /// The default account; `None` when it is not needed (e-mail matching) and not found.
    pub account_id: Option<String>,
    /// ISO code → transactioncurrencyid.
    pub currencies: BTreeMap<String, String>,
    /// The unit for catalog products.
    pub unit_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerMatch {
    Account,
    Email,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductMode {
    WriteIn,
    Catalog,
}

/// The configuration the mapping needs.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingConfig {
    pub order_key_column: String,
    pub line_key_column: String,
    pub contact_key_column: String,
    pub customer_match: CustomerMatch,
    pub product_mode: ProductMode,
    pub product_key_column: String,
}

impl MappingConfig {
    pub fn from_target(t: &TargetConfig) -> Self {
        Self {
            order_key_column: t.order_key_column.clone(),
            line_key_column: t.line_key_column.clone(),
            contact_key_column: t.contact_key_column.clone(),
            customer_match: if t.customer_match == "email" {
                CustomerMatch::Email
            } else {
                CustomerMatch::Account
            },
            product_mode: if t.product_mode == "catalog" {
                ProductMode::Catalog
            } else {
                ProductMode::WriteIn
            },
            product_key_column: t.product_key_column.clone(),
        }
    }
}

fn plan_error(code: &str, message: impl Into<String>) -> PlanError {
    PlanError {
        code: code.into(),
        message: message.into(),
    }
}

/// A JSON object written column by column straight into its text, with the checks that
/// belong to each column.
#[derive(Debug)]
struct Body {
    out: Vec<u8>,
    /// Prefix for error messages (`line 2: `).
    context: String,
}

impl Default for Body {
    fn default() -> Self {
        Self::for_context(String::new())
    }
}

impl Body {
    fn for_context(context: impl Into<String>) -> Self {
        let mut out = Vec::with_capacity(512);
        out.push(b'{');
        Self {
            out,
            context: context.into(),
        }
    }

    /// `"name":` (with the comma before it when needed). Strings are escaped by serde_json.
    fn name(&mut self, name: &str) {
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        json_string_into(&mut self.out, name);
        self.out.push(b':');
    }

    /// A text column; empty values are left out; too long values are refused.
    fn text(&mut self, column: &str, value: Option<&str>) -> Result<(), PlanError> {
        let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
            return Ok(());
        };
        check_length(&self.context, column, value)?;
        self.name(column);
        json_string_into(&mut self.out, value);
        Ok(())
    }

    fn bind(&mut self, navigation: &str, path: &str) {
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        // `navigation@odata.bind`: a navigation property name needs no escaping beyond what
        // serde_json does for the whole name.
        let mut name = String::with_capacity(navigation.len() + 11);
        name.push_str(navigation);
        name.push_str("@odata.bind");
        json_string_into(&mut self.out, &name);
        self.out.push(b':');
        json_string_into(&mut self.out, path);
    }

    fn money(&mut self, column: &str, value: Option<Decimal>) -> Result<(), PlanError> {
        let Some(value) = value else { return Ok(()) };
        let value = value.normalize();
        if value.scale() > MONEY_SCALE {
            return Err(plan_error(
                "value_too_precise",
                format!(
                    "{}{column}: {value} has more than {MONEY_SCALE} decimal places",
                    self.context
                ),
            ));
        }
        if value.abs() > Decimal::from(MONEY_MAX) {
            return Err(plan_error(
                "value_out_of_range",
                format!(
                    "{}{column}: {value} is outside the money range",
                    self.context
                ),
            ));
        }
        self.number(column, value);
        Ok(())
    }

    fn decimal(&mut self, column: &str, value: Decimal, max_scale: u32) -> Result<(), PlanError> {
        let value = value.normalize();
        if value.scale() > max_scale {
            return Err(plan_error(
                "value_too_precise",
                format!(
                    "{}{column}: {value} has more than {max_scale} decimal places",
                    self.context
                ),
            ));
        }
        self.number(column, value);
        Ok(())
    }

    /// Numbers are the decimal's own text.
    fn number(&mut self, column: &str, value: Decimal) {
        use std::io::Write as _;
        self.name(column);
        let _ = write!(self.out, "{value}");
    }

    fn int(&mut self, column: &str, value: i64) {
        use std::io::Write as _;
        self.name(column);
        let _ = write!(self.out, "{value}");
    }

    fn bool(&mut self, column: &str, value: bool) {
        self.name(column);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// The JSON text.
    fn render(mut self) -> String {
        self.out.push(b'}');
        String::from_utf8(self.out).expect("JSON written from str values is UTF-8")
    }
}

/// `s` as a JSON string literal, escaped by serde_json, appended to `out`.
fn json_string_into(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("writing a str into a Vec cannot fail");
}

/// Refuse a value longer than its column (`value_too_long`, naming the column).
fn check_length(context: &str, column: &str, value: &str) -> Result<(), PlanError> {
    let Some(limit) = column_limit(column) else {
        return Ok(());
    };
    let length = value.encode_utf16().count();
    if length <= limit {
        return Ok(());
    }
    Err(plan_error(
        "value_too_long",
        format!(
            "{context}{column}: {length} characters, column allows {limit} (value {:?})",
            shorten(value, 40)
        ),
    ))
}

fn address_columns(body: &mut Body, prefix: &str, a: &Address) -> Result<(), PlanError> {
    // Dynamics has no company column on an address: the company is the name when there is no
    // person's name, otherwise it goes on line 3.
    let (name, line3) = match (&a.name, &a.company) {
        (Some(n), Some(c)) if !n.trim().is_empty() => (Some(n), Some(c)),
        (Some(n), None) => (Some(n), None),
        (_, Some(c)) => (Some(c), None),
        (None, None) => (None, None),
    };
    let parts: [(&str, Option<&str>); 9] = [
        ("name", name.map(String::as_str)),
        ("line1", a.line1.as_deref()),
        ("line2", a.line2.as_deref()),
        ("line3", line3.map(String::as_str)),
        ("city", a.city.as_deref()),
        ("stateorprovince", a.province.as_deref()),
        ("postalcode", a.postal_code.as_deref()),
        ("country", a.country.as_deref()),
        ("telephone", a.phone.as_deref()),
    ];
    let mut column = String::with_capacity(32);
    for (part, value) in parts {
        column.clear();
        column.push_str(prefix);
        column.push('_');
        column.push_str(part);
        body.text(&column, value)?;
    }
    Ok(())
}

/// Map one order to its changeset: optional contact upsert, the salesorder, each line.
pub fn plan_changeset(
    order: &Order,
    cfg: &MappingConfig,
    refs: &References,
) -> Result<ChangesetPlan, PlanError> {
    let key = OrderKey::new(&order.channel, &order.external_id);
    let order_path = key_path("salesorders", &cfg.order_key_column, key.as_str());
    let mut operations = Vec::with_capacity(order.lines.len() + 2);

    let currency = order.currency.as_str();
    let currency_id = refs.currencies.get(currency).ok_or_else(|| {
        plan_error(
            "unknown_currency",
            format!(
                "currency {currency} is not set up in Dynamics (no transactioncurrency with isocurrencycode {currency})"
            ),
        )
    })?;

    let mut body = Body::default();
    body.text(
        "name",
        Some(&format!("{} {}", order.channel, order.external_id)),
    )?;
    body.bind(
        "pricelevelid",
        &format!("/pricelevels({})", refs.price_list_id),
    );
    body.bind(
        "transactioncurrencyid",
        &format!("/transactioncurrencies({currency_id})"),
    );
    match customer_binding(order, cfg, refs)? {
        CustomerBinding::Account(id) => {
            body.bind("customerid_account", &format!("/accounts({id})"))
        }
        CustomerBinding::Contact { email, operation } => {
            body.bind(
                "customerid_contact",
                &format!("/{}", key_path("contacts", &cfg.contact_key_column, &email)),
            );
            operations.push(operation);
        }
    }
    body.text("description", order.notes.as_deref())?;
    body.money("freightamount", order.shipping_amount)?;
    body.money("discountamount", order.discount)?;
    body.money("totalamount", order.total)?;
    if let Some(a) = &order.billing {
        address_columns(&mut body, "billto", a)?;
    }
    if let Some(a) = &order.shipping {
        address_columns(&mut body, "shipto", a)?;
    }
    operations.push(PlannedOperation {
        method: "PATCH".into(),
        path: order_path.clone(),
        body: body.render(),
        label: "order".into(),
    });

    // Every line binds to the order by its key: `/salesorders(<key column>='<key>')`.
    let order_bind = format!("/{order_path}");
    let mut seen = HashSet::new();
    for line in &order.lines {
        if !seen.insert(line.line_number) {
            return Err(plan_error(
                "duplicate_line_number",
                format!(
                    "line number {} appears twice in the order",
                    line.line_number
                ),
            ));
        }
        operations.push(plan_line(line, &key, &order_bind, cfg, refs)?);
    }
    Ok(ChangesetPlan {
        order_key: key.to_string(),
        operations,
    })
}

/// `DELETE`s of the lines an earlier version of `order` had that it no longer has: lines are
/// upserted by position (`channel.order.N`), so an order corrected from 3 lines to 2 would
/// otherwise keep its old line 3 in Dynamics. `earlier_lines` is the most lines any version
/// had since the order last succeeded; a line that is already gone answers 404, which the
/// sender reads as done (see `send_batch`).
pub fn plan_removed_lines(
    order: &Order,
    earlier_lines: u32,
    cfg: &MappingConfig,
) -> Vec<PlannedOperation> {
    let key = OrderKey::new(&order.channel, &order.external_id);
    let kept: HashSet<u32> = order.lines.iter().map(|l| l.line_number).collect();
    (1..=earlier_lines)
        .filter(|n| !kept.contains(n))
        .map(|n| PlannedOperation {
            method: "DELETE".into(),
            path: key_path("salesorderdetails", &cfg.line_key_column, &key.line_key(n)),
            body: String::new(),
            label: format!("remove line {n}"),
        })
        .collect()
}

fn plan_line(
    line: &OrderLine,
    key: &OrderKey,
    order_path: &str,
    cfg: &MappingConfig,
    refs: &References,
) -> Result<PlannedOperation, PlanError> {
    let context = format!("line {}: ", line.line_number);
    let mut body = Body::for_context(&context);
    body.bind("salesorderid", order_path);
    body.int("lineitemnumber", i64::from(line.line_number));
    body.decimal("quantity", line.quantity, QUANTITY_SCALE)?;
    body.money("priceperunit", Some(line.unit_price))?;
    body.bool("ispriceoverridden", true);
    if line.discount.is_sign_negative() && !line.discount.is_zero() {
        return Err(plan_error(
            "invalid_value",
            format!(
                "{context}manualdiscountamount: {} is negative",
                line.discount
            ),
        ));
    }
    body.money("manualdiscountamount", Some(line.discount))?;
    body.money("tax", Some(line.tax))?;
    let sku = line.sku.as_deref().map(str::trim).filter(|s| !s.is_empty());
    match (cfg.product_mode, sku) {
        (ProductMode::Catalog, Some(sku)) => {
            if !is_addressable(sku) {
                return Err(plan_error(
                    "unaddressable_key",
                    format!(
                        "{context}SKU {sku:?} contains one of / < > * % & : \\ ? + and cannot be looked up by {}",
                        cfg.product_key_column
                    ),
                ));
            }
            body.bind(
                "productid",
                &format!("/{}", key_path("products", &cfg.product_key_column, sku)),
            );
            let unit = refs.unit_id.as_deref().ok_or_else(|| {
                plan_error(
                    "unknown_unit",
                    format!("{context}no unit resolved for catalog products"),
                )
            })?;
            body.bind("uomid", &format!("/uoms({unit})"));
        }
        // Write-in, and catalog lines without a SKU (shipping, gift cards): a write-in product.
        _ => {
            body.bool("isproductoverridden", true);
            let description = match sku {
                Some(sku) => format!("{} (SKU {sku})", line.name),
                None => line.name.clone(),
            };
            body.text("productdescription", Some(&description))?;
        }
    }
    Ok(PlannedOperation {
        method: "PATCH".into(),
        path: key_path(
            "salesorderdetails",
            &cfg.line_key_column,
            &key.line_key(line.line_number),
        ),
        body: body.render(),
        label: format!("line {}", line.line_number),
    })
}

enum CustomerBinding {
    Account(String),
    Contact {
        email: String,
        operation: PlannedOperation,
    },
}

fn customer_binding(
    order: &Order,
    cfg: &MappingConfig,
    refs: &References,
) -> Result<CustomerBinding, PlanError> {
    let email = order
        .customer
        .email
        .as_deref()
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty());
    let account = || {
        refs.account_id.clone().map(CustomerBinding::Account).ok_or_else(|| {
            plan_error(
                "missing_customer",
                "the order has no e-mail address and no default account is resolved (target.default_customer)",
            )
        })
    };
    if cfg.customer_match == CustomerMatch::Account {
        return account();
    }
    let Some(email) = email else { return account() };
    if !is_addressable(&email) {
        return Err(plan_error(
            "unaddressable_key",
            format!(
                "customer e-mail {email:?} contains one of / < > * % & : \\ ? + and cannot be used as the contact key ({})",
                cfg.contact_key_column
            ),
        ));
    }
    let mut body = Body::for_context("contact: ");
    check_length("contact: ", "emailaddress1", &email)?;
    if cfg.contact_key_column != "emailaddress1" {
        body.text("emailaddress1", Some(&email))?;
    }
    let name = order.customer.name.as_deref().map(str::trim).unwrap_or("");
    let (first, last) = match name.rsplit_once(char::is_whitespace) {
        Some((f, l)) => (Some(f.trim()), l.trim()),
        None if !name.is_empty() => (None, name),
        None => (None, email.as_str()),
    };
    body.text("firstname", first)?;
    body.text("lastname", Some(last))?;
    body.text("telephone1", order.customer.phone.as_deref())?;
    let operation = PlannedOperation {
        method: "PATCH".into(),
        path: key_path("contacts", &cfg.contact_key_column, &email),
        body: body.render(),
        label: "contact".into(),
    };
    Ok(CustomerBinding::Contact { email, operation })
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
