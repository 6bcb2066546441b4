//! Format detection by header signature (channel-formats.md §10) and the check that a header
//! fits the format a channel is configured with.

use super::{
    amazon, bigcommerce, ebay, etsy, mapped_csv, shopify, woocommerce, ChannelSpec, Format,
};

/// A concrete file layout an adapter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Shopify,
    AmazonAllOrders,
    AmazonUnshipped,
    WooAlgolPlus,
    WooSkyVerge,
    Ebay,
    EtsyItems,
    EtsyOrders,
    BigCommerce,
    Mapped,
}

impl Layout {
    pub fn format(self) -> Format {
        match self {
            Layout::Shopify => Format::Shopify,
            Layout::AmazonAllOrders | Layout::AmazonUnshipped => Format::Amazon,
            Layout::WooAlgolPlus | Layout::WooSkyVerge => Format::Woocommerce,
            Layout::Ebay => Format::Ebay,
            Layout::EtsyItems | Layout::EtsyOrders => Format::Etsy,
            Layout::BigCommerce => Format::Bigcommerce,
            Layout::Mapped => Format::Csv,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Layout::Shopify => "Shopify orders export",
            Layout::AmazonAllOrders => "Amazon All Orders report",
            Layout::AmazonUnshipped => "Amazon Unshipped Orders report",
            Layout::WooAlgolPlus => "WooCommerce Advanced Order Export (AlgolPlus)",
            Layout::WooSkyVerge => {
                "WooCommerce Customer/Order CSV Export (SkyVerge), one row per item"
            }
            Layout::Ebay => "eBay Orders report",
            Layout::EtsyItems => "Etsy Sold Order Items",
            Layout::EtsyOrders => "Etsy Sold Orders",
            Layout::BigCommerce => "BigCommerce orders export",
            Layout::Mapped => "mapped CSV",
        }
    }

    fn required(self) -> &'static [&'static [&'static str]] {
        match self {
            Layout::Shopify => shopify::REQUIRED,
            Layout::AmazonAllOrders => amazon::REQUIRED_ALL_ORDERS,
            Layout::AmazonUnshipped => amazon::REQUIRED_UNSHIPPED,
            Layout::WooAlgolPlus => woocommerce::REQUIRED_ALGOLPLUS,
            Layout::WooSkyVerge => woocommerce::REQUIRED_SKYVERGE,
            Layout::Ebay => ebay::REQUIRED,
            Layout::EtsyItems => etsy::REQUIRED_ITEMS,
            Layout::EtsyOrders => etsy::REQUIRED_ORDERS,
            Layout::BigCommerce => bigcommerce::REQUIRED,
            Layout::Mapped => &[],
        }
    }
}

/// Leading header cells of known exports; `None` layout = known but no adapter.
const SIGNATURES: &[(&str, &[&str], Option<Layout>)] = &[
    (
        "Shopify orders export",
        &["Name", "Email", "Financial Status", "Paid at"],
        Some(Layout::Shopify),
    ),
    (
        "Amazon All Orders report",
        &["amazon-order-id", "merchant-order-id", "purchase-date"],
        Some(Layout::AmazonAllOrders),
    ),
    (
        "Amazon Unshipped Orders report",
        &[
            "order-id",
            "order-item-id",
            "purchase-date",
            "payments-date",
        ],
        Some(Layout::AmazonUnshipped),
    ),
    (
        "WooCommerce SkyVerge export",
        &["order_id", "order_number", "order_number_formatted"],
        Some(Layout::WooSkyVerge),
    ),
    (
        "WooCommerce AlgolPlus export",
        &["Order Number", "Order Status", "Order Date"],
        Some(Layout::WooAlgolPlus),
    ),
    (
        "WooCommerce Analytics download",
        &["Date", "Order #", "Status", "Customer"],
        None,
    ),
    (
        "WooCommerce SkyVerge legacy export",
        &["Order ID", "Date", "Order Status", "Shipping"],
        None,
    ),
    (
        "WooCommerce WebToffee export",
        &[
            "order_id",
            "order_number",
            "order_date",
            "paid_date",
            "status",
        ],
        None,
    ),
    (
        "Amazon.in Easy Ship report",
        &["order-id", "tracking-id", "expected-ship-date"],
        None,
    ),
    ("eBay Orders report", ebay::SIGNATURE, Some(Layout::Ebay)),
    (
        "Etsy Sold Order Items",
        etsy::ITEMS_SIGNATURE,
        Some(Layout::EtsyItems),
    ),
    (
        "Etsy Sold Orders",
        etsy::ORDERS_SIGNATURE,
        Some(Layout::EtsyOrders),
    ),
    (
        "BigCommerce orders export",
        bigcommerce::SIGNATURE,
        Some(Layout::BigCommerce),
    ),
    (
        "Magento order grid",
        &["ID", "Purchase Point", "Purchase Date"],
        None,
    ),
];

fn starts_with(cells: &[String], sig: &[&str]) -> bool {
    cells.len() >= sig.len() && cells.iter().zip(sig).all(|(c, s)| c == s)
}

/// eBay's UK and US reports differ in case (`Order number` / `Order Number`).
fn starts_with_ignoring_case(cells: &[String], sig: &[&str]) -> bool {
    cells.len() >= sig.len()
        && cells
            .iter()
            .zip(sig)
            .all(|(c, s)| c.eq_ignore_ascii_case(s))
}

/// Detect the layout of a delimited file from its header cells.
pub(crate) fn detect(cells: &[String]) -> Result<Layout, DetectError> {
    let has = |n: &str| cells.iter().any(|c| c == n);
    let layout = if starts_with(cells, SIGNATURES[0].1) && has("Lineitem quantity") {
        Some(Layout::Shopify)
    } else if starts_with_ignoring_case(cells, ebay::SIGNATURE) {
        Some(Layout::Ebay)
    } else if has("Order Number")
        && cells
            .iter()
            .any(|c| c.ends_with("(Billing)") || c.ends_with("(Shipping)"))
    {
        Some(Layout::WooAlgolPlus)
    } else {
        SIGNATURES
            .iter()
            .filter(|(_, _, l)| *l != Some(Layout::Shopify) && *l != Some(Layout::WooAlgolPlus))
            .find(|(_, sig, _)| starts_with(cells, sig))
            .map(|(name, _, l)| l.ok_or(*name))
            .transpose()
            .map_err(|name| {
                DetectError::Unrecognized(format!(
                    "the header looks like a {name}, which has no adapter; configure a channel \
                     with format = \"csv\" and a column mapping for it"
                ))
            })?
    };
    match layout {
        Some(l) => check_layout(l, cells).map(|_| l),
        None => Err(DetectError::Unrecognized(nearest(cells))),
    }
}

/// Why detection failed: no signature matched, or one matched but columns are missing.
#[derive(Debug, PartialEq)]
pub(crate) enum DetectError {
    Unrecognized(String),
    Invalid(String),
}

fn nearest(cells: &[String]) -> String {
    let best = SIGNATURES
        .iter()
        .map(|(name, sig, _)| {
            let found = sig
                .iter()
                .filter(|s| cells.iter().any(|c| c.eq_ignore_ascii_case(s)))
                .count();
            (found * 100 / sig.len(), found, name, sig)
        })
        .max_by_key(|(score, found, _, _)| (*score, *found));
    let shown: Vec<&str> = cells.iter().take(4).map(String::as_str).collect();
    match best {
        Some((_, found, name, sig)) => format!(
            "header starting {:?} matches no known export; nearest is the {name} (starts {:?}), \
             {found} of its {} signature columns found",
            shown.join(","),
            sig.join(","),
            sig.len()
        ),
        None => "no header".to_string(),
    }
}

fn check_layout(layout: Layout, cells: &[String]) -> Result<(), DetectError> {
    let missing = layout_missing(layout, cells);
    if missing.is_empty() {
        return Ok(());
    }
    let hint = if layout == Layout::WooSkyVerge && cells.iter().any(|c| c == "line_items") {
        " (this is the SkyVerge `default` format with items packed into `line_items`; export \
         with the `default_one_row_per_item` format instead)"
    } else {
        ""
    };
    Err(DetectError::Invalid(format!(
        "{} is missing required column(s): {}{hint}",
        layout.describe(),
        missing.join(", ")
    )))
}

fn layout_missing(layout: Layout, cells: &[String]) -> Vec<String> {
    if layout == Layout::Ebay {
        ebay::missing(cells)
    } else {
        missing_columns(layout.required(), cells)
    }
}

fn missing_columns(required: &[&[&str]], cells: &[String]) -> Vec<String> {
    required
        .iter()
        .filter(|alts| !alts.iter().any(|a| cells.iter().any(|c| c == a)))
        .map(|alts| {
            alts.iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(" or ")
        })
        .collect()
}

/// Check a header against the configured format and pick the layout within it.
pub(crate) fn check(
    format: Format,
    cells: &[String],
    spec: &ChannelSpec,
) -> Result<Layout, DetectError> {
    let candidates: &[Layout] = match format {
        Format::Shopify => &[Layout::Shopify],
        Format::Amazon => &[Layout::AmazonAllOrders, Layout::AmazonUnshipped],
        Format::Woocommerce => &[Layout::WooAlgolPlus, Layout::WooSkyVerge],
        Format::Ebay => &[Layout::Ebay],
        Format::Etsy => {
            // Both Etsy files have the required columns of the other's signature; pick by it.
            if starts_with(cells, etsy::ITEMS_SIGNATURE) || cells.iter().any(|c| c == "Item Name") {
                &[Layout::EtsyItems]
            } else {
                &[Layout::EtsyOrders]
            }
        }
        Format::Bigcommerce => &[Layout::BigCommerce],
        Format::Magento => {
            return Err(DetectError::Invalid(
                "the channel's format is magento, which reads the REST GET /V1/orders JSON; \
                 the order grid CSV has no line items"
                    .into(),
            ))
        }
        Format::Csv => {
            return mapped_csv::check_mapping(spec, cells)
                .map(|_| Layout::Mapped)
                .map_err(DetectError::Invalid)
        }
    };
    let mut best: Option<(usize, Layout, Vec<String>)> = None;
    for &l in candidates {
        let missing = layout_missing(l, cells);
        if missing.is_empty() {
            return Ok(l);
        }
        if best.as_ref().is_none_or(|(n, _, _)| missing.len() < *n) {
            best = Some((missing.len(), l, missing));
        }
    }
    let (_, l, missing) = best.expect("every format has a layout");
    Err(DetectError::Invalid(format!(
        "the channel's format is {} but the header does not fit the {}: missing required \
         column(s) {}",
        format.as_str(),
        l.describe(),
        missing.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(s: &str, d: char) -> Vec<String> {
        s.split(d).map(|c| c.trim().to_string()).collect()
    }

    #[test]
    fn detects_each_supported_layout() {
        let shopify = "Name,Email,Financial Status,Paid at,Currency,Created at,Lineitem quantity,Lineitem name,Lineitem price";
        assert_eq!(detect(&cells(shopify, ',')), Ok(Layout::Shopify));
        let all = "amazon-order-id\tmerchant-order-id\tpurchase-date\tsku\tproduct-name\tquantity\tcurrency\titem-price\t";
        assert_eq!(detect(&cells(all, '\t')), Ok(Layout::AmazonAllOrders));
        let un = "order-id\torder-item-id\tpurchase-date\tpayments-date\tsku\tproduct-name\tquantity-purchased\t";
        assert_eq!(detect(&cells(un, '\t')), Ok(Layout::AmazonUnshipped));
    }

    #[test]
    fn known_but_unsupported_and_unknown_headers_say_what_they_look_like() {
        let grid = cells("ID,Purchase Point,Purchase Date,Bill-to Name", ',');
        match detect(&grid) {
            Err(DetectError::Unrecognized(m)) => assert!(m.contains("Magento"), "{m}"),
            other => panic!("{other:?}"),
        }
        let odd = cells("Name,Email,Total,Whatever", ',');
        match detect(&odd) {
            Err(DetectError::Unrecognized(m)) => {
                assert!(m.contains("nearest is the Shopify orders export"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_configured_format_names_missing_columns() {
        let spec = ChannelSpec::default();
        let h = cells(
            "Name,Email,Financial Status,Paid at,Currency,Created at",
            ',',
        );
        match check(Format::Shopify, &h, &spec) {
            Err(DetectError::Invalid(m)) => {
                assert!(m.contains("\"Lineitem quantity\""), "{m}");
                assert!(!m.contains("\"Currency\""), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }
}
