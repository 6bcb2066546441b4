//! Deterministic (seeded) generator of Shopify-style order exports for the benchmarks.
//!
//! The shape follows `perf-baseline.md`: 31 columns, one row per line item, ~2.5 lines per
//! order (1–4, uniform), only an order's first row carries the order-level columns, and
//! quoted fields with commas, doubled quotes and line breaks. About 170 bytes per row.
//! Nothing generated here is committed: files are written at bench time into a temp folder.

use std::io::Write;
use std::path::Path;

/// SplitMix64: tiny, seeded, and the same on every machine and Rust version.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub const HEADER: [&str; 31] = [
    "Name",
    "Email",
    "Financial Status",
    "Paid at",
    "Fulfillment Status",
    "Accepts Marketing",
    "Currency",
    "Subtotal",
    "Shipping",
    "Taxes",
    "Total",
    "Discount Amount",
    "Shipping Method",
    "Created at",
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Lineitem sku",
    "Lineitem requires shipping",
    "Billing Name",
    "Billing Address1",
    "Billing City",
    "Billing Zip",
    "Billing Country",
    "Shipping Name",
    "Shipping Address1",
    "Shipping City",
    "Shipping Zip",
    "Shipping Country",
    "Notes",
    "Id",
];

const PRODUCTS: &[&str] = &[
    "Organic Cotton Tee",
    "Classic Hoodie, heather grey",
    "Ceramic Mug \"Morning\"",
    "Canvas Tote",
    "Wool Socks, 3-pack",
    "Enamel Pin",
    "Linen Apron, one size",
    "Poster 50x70",
];
const SIZES: &[&str] = &["XS", "S", "M", "L", "XL"];
const FIRST: &[&str] = &["Ann", "Bo", "Chen", "Dana", "Emil", "Fatima", "Gus", "Hana"];
const LAST: &[&str] = &["Meyer", "O'Brien", "Nguyen", "Smith", "García", "Kowalski"];
const STREETS: &[&str] = &["Main St", "Elm Avenue", "Harbour Road", "Via Roma"];
const CITIES: &[(&str, &str, &str)] = &[
    ("Springfield", "'02134", "US"),
    ("Berlin", "10115", "DE"),
    ("Leeds", "LS1 4AP", "GB"),
    ("Toronto", "M5V 2T6", "CA"),
];
const CURRENCIES: &[&str] = &["USD", "EUR", "GBP", "CAD"];
const NOTES: &[&str] = &[
    "Leave at the back door, please",
    "Gift wrap, no invoice in the box\nCard: \"Happy birthday, Sam!\"",
    "Call before delivery,\nbuzzer broken",
];

/// What a generated file holds.
#[derive(Debug, Clone, Copy)]
pub struct Generated {
    pub rows: u64,
    pub orders: u64,
    pub bytes: u64,
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// How much to generate.
#[derive(Debug, Clone, Copy)]
pub enum Size {
    /// Exactly this many line rows (the last order may be cut short).
    Rows(u64),
    /// Exactly this many orders.
    Orders(u64),
}

/// Write a Shopify export of `size` to `path`. Order names are `#{prefix}{1001 + n}`; the
/// same `seed` gives the same bytes.
pub fn shopify_export(
    path: &Path,
    size: Size,
    seed: u64,
    prefix: &str,
) -> std::io::Result<Generated> {
    let (rows, max_orders) = match size {
        Size::Rows(r) => (r, u64::MAX),
        Size::Orders(o) => (u64::MAX, o),
    };
    let file = std::fs::File::create(path)?;
    let mut csv = csv::WriterBuilder::new()
        .buffer_capacity(1 << 20)
        .from_writer(file);
    csv.write_record(HEADER)?;
    let mut rng = Rng::new(seed);
    let mut written = 0u64;
    let mut orders = 0u64;
    let mut record: Vec<String> = vec![String::new(); HEADER.len()];
    while written < rows && orders < max_orders {
        let n = orders;
        orders += 1;
        let lines = (1 + rng.below(4)).min(rows - written);
        let name = format!("#{prefix}{}", 1001 + n);
        let email = format!("buyer{}@example.com", n % 250_000);
        let day = 1 + (n % 28);
        let created = format!(
            "2025-03-{day:02} {:02}:{:02}:{:02} +0100",
            n % 24,
            n % 60,
            (n * 7) % 60
        );
        let items: Vec<(String, u64, u64, String)> = (0..lines)
            .map(|l| {
                let product = rng.pick(PRODUCTS);
                let size = rng.pick(SIZES);
                let qty = 1 + rng.below(3);
                let price = 500 + rng.below(9_500);
                (
                    format!("{product} / {size}"),
                    qty,
                    price,
                    format!("SKU-{:05}-{l}", rng.below(20_000)),
                )
            })
            .collect();
        let subtotal: u64 = items.iter().map(|(_, q, p, _)| q * p).sum();
        let shipping = if subtotal > 10_000 { 0 } else { 495 };
        let taxes = subtotal * 8 / 100;
        let (city, zip, country) = CITIES[rng.below(CITIES.len() as u64) as usize];
        let person = format!("{} {}", rng.pick(FIRST), rng.pick(LAST));
        let street = format!(
            "{} {}, Apt {}",
            1 + rng.below(200),
            rng.pick(STREETS),
            1 + rng.below(30)
        );
        let currency = rng.pick(CURRENCIES);
        let note = if rng.chance(8) { rng.pick(NOTES) } else { "" };
        let marketing = if rng.chance(40) { "yes" } else { "no" };
        for (l, (item, qty, price, sku)) in items.iter().enumerate() {
            for f in record.iter_mut() {
                f.clear();
            }
            record[0].push_str(&name);
            record[1].push_str(&email);
            record[13].push_str(&created);
            record[14].push_str(&qty.to_string());
            record[15].push_str(item);
            record[16].push_str(&money(*price));
            record[17].push_str(sku);
            record[18].push_str("true");
            if l == 0 {
                record[2].push_str("paid");
                record[3].push_str(&created);
                record[4].push_str("fulfilled");
                record[5].push_str(marketing);
                record[6].push_str(currency);
                record[7].push_str(&money(subtotal));
                record[8].push_str(&money(shipping));
                record[9].push_str(&money(taxes));
                record[10].push_str(&money(subtotal + shipping + taxes));
                record[11].push_str("0.00");
                record[12].push_str("Standard");
                for base in [19, 24] {
                    record[base].push_str(&person);
                    record[base + 1].push_str(&street);
                    record[base + 2].push_str(city);
                    record[base + 3].push_str(zip);
                    record[base + 4].push_str(country);
                }
                record[29].push_str(note);
                record[30].push_str(&(4_100_000_000 + n).to_string());
            }
            csv.write_record(&record)?;
        }
        written += lines;
    }
    let mut file = csv.into_inner().map_err(|e| e.into_error())?;
    file.flush()?;
    let bytes = std::fs::metadata(path)?.len();
    Ok(Generated {
        rows: written,
        orders,
        bytes,
    })
}
