//! Delimited records with their raw text and 1-based record numbers.
//!
//! A quoted field may span lines, so records are counted, not lines. The raw text of each
//! record is kept (exactly as in the file, minus the line terminator) so that a rejected row
//! can be stored as it was read. Memory holds the CSV parser's buffer plus one record.

use super::fields::Problem;
use csv::StringRecord;
use std::collections::HashMap;
use std::io::Read;

/// Passes bytes through and keeps those not yet claimed by a record.
struct TeeReader {
    inner: Box<dyn Read + Send>,
    kept: Vec<u8>,
    /// `kept[..claimed]` belongs to records already returned. It is dropped in one move when
    /// it is at least half of `kept` (dropping it per record moved the rest of the buffer
    /// every time: ~6 % of an ingest's CPU).
    claimed: usize,
    /// Byte offset (in the decoded stream) of `kept[0]`.
    base: u64,
    /// The input has ended (a read returned nothing).
    at_end: bool,
}

impl Read for TeeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.claimed > 0 && self.claimed * 2 >= self.kept.len() {
            self.kept.drain(..self.claimed);
            self.base += self.claimed as u64;
            self.claimed = 0;
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.at_end = true;
        }
        self.kept.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// The column index's hasher: every cell of every record is looked up by its header name, so
/// the lookup is on the parser's hot path. SipHash (the default, built against hostile keys)
/// was ~3 % of ingest CPU and FNV-1a, a multiply per byte, still ~2 %: this one mixes only the
/// length and the first and last 8 bytes of a name (two loads and two multiplies); names that
/// share those just compare equal-hashed, which the map resolves by comparing the names. Header
/// names come from the file, but a few dozen of them cannot degrade a map that matters.
#[derive(Clone, Copy, Default)]
pub(crate) struct NameHasher(u64);

impl std::hash::Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let n = bytes.len();
        let (head, tail) = if n >= 8 {
            let word = |at: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&bytes[at..at + 8]);
                u64::from_le_bytes(w)
            };
            (word(0), word(n - 8))
        } else {
            (bytes.iter().fold(0u64, |x, &b| (x << 8) | u64::from(b)), 0)
        };
        let x = (self.0 ^ head ^ (n as u64).rotate_left(56)).wrapping_mul(K);
        self.0 = (x.rotate_left(31) ^ tail).wrapping_mul(K);
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

type NameMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<NameHasher>>;

/// Column names of a header record and their positions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Columns {
    pub names: Vec<String>,
    index: NameMap<String, usize>,
    known: KnownNames,
}

impl Columns {
    pub fn new(names: Vec<String>) -> Self {
        let mut index = NameMap::default();
        for (i, n) in names.iter().enumerate() {
            index.entry(n.clone()).or_insert(i);
        }
        Columns {
            names,
            index,
            known: KnownNames::default(),
        }
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// [`Columns::position`] of a name the program spells out (the adapters' column names),
    /// remembered by the name's address.
    pub fn position_of(&self, name: &'static str) -> Option<usize> {
        self.known
            .get(name)
            .unwrap_or_else(|| self.known.put(name, self.position(name)))
    }

    pub fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The first of `names` that the header has.
    pub fn first_of<'a>(&self, names: &[&'a str]) -> Option<&'a str> {
        names.iter().copied().find(|n| self.has(n))
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }
}

/// Positions of `'static` column names, remembered by the name's address and length: the
/// adapters look up the same couple of dozen literal names in every record, and hashing and
/// comparing each name was ~17 % of the parser's instructions. A `'static` string is never
/// freed, so its address and length stand for its text (two equal literals may share an
/// address, which is fine: same text, same position). Open addressing with linear probing and
/// no eviction (names that share a slot do not push each other out on every record); once
/// the table is 3/4 full, further names are looked up by hash every time.
#[derive(Debug, Clone)]
struct KnownNames {
    slots: [std::cell::Cell<KnownName>; KNOWN_SLOTS],
    used: std::cell::Cell<usize>,
}

impl Default for KnownNames {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| std::cell::Cell::new(KnownName::default())),
            used: Default::default(),
        }
    }
}

const KNOWN_SLOTS: usize = 128;

/// A slot: the name's address and length, and its position (`usize::MAX`: not in the header;
/// address 0: empty).
#[derive(Debug, Clone, Copy, Default)]
struct KnownName {
    addr: usize,
    len: usize,
    position: usize,
}

impl KnownNames {
    /// The name's slot, or the empty slot where it would go; `None` when the table is full
    /// and the name is not in it.
    fn find(&self, name: &'static str) -> Option<(usize, KnownName)> {
        let addr = name.as_ptr() as usize;
        let mut i = (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57) % KNOWN_SLOTS;
        for _ in 0..KNOWN_SLOTS {
            let k = self.slots[i].get();
            if k.addr == 0 || (k.addr == addr && k.len == name.len()) {
                return Some((i, k));
            }
            i = (i + 1) % KNOWN_SLOTS;
        }
        None
    }

    /// The remembered position (`Some(None)`: not in the header), or `None` when not known.
    fn get(&self, name: &'static str) -> Option<Option<usize>> {
        let (_, k) = self.find(name)?;
        (k.addr != 0).then_some((k.position != usize::MAX).then_some(k.position))
    }

    fn put(&self, name: &'static str, position: Option<usize>) -> Option<usize> {
        if self.used.get() * 4 < KNOWN_SLOTS * 3 {
            if let Some((i, _)) = self.find(name) {
                self.slots[i].set(KnownName {
                    addr: name.as_ptr() as usize,
                    len: name.len(),
                    position: position.unwrap_or(usize::MAX),
                });
                self.used.set(self.used.get() + 1);
            }
        }
        position
    }
}

/// One data record's fields, with the header to look them up by name.
pub(crate) struct Record<'a> {
    pub fields: &'a StringRecord,
    pub columns: &'a Columns,
}

impl Record<'_> {
    /// The trimmed cell under `column`; empty when the column or the cell is missing.
    pub fn get(&self, column: &'static str) -> &str {
        self.cell(self.columns.position_of(column))
    }

    /// [`Record::get`] for a column name made at run time (a configured mapping).
    pub fn get_named(&self, column: &str) -> &str {
        self.cell(self.columns.position(column))
    }

    fn cell(&self, position: Option<usize>) -> &str {
        position
            .and_then(|i| self.fields.get(i))
            .map(super::fields::trim)
            .unwrap_or("")
    }

    /// The trimmed cell under the first of `columns` the header has.
    pub fn get_any(&self, columns: &[&str]) -> &str {
        match self.columns.first_of(columns) {
            Some(c) => self.get_named(c),
            None => "",
        }
    }
}

/// A data record as read, owned.
pub(crate) struct RawRecord {
    pub number: u64,
    pub raw: String,
    pub fields: StringRecord,
    /// A structural defect found while reading (an unterminated quoted field).
    pub defect: Option<Problem>,
}

/// A record that a format writes after its data (eBay's `"3","record(s) downloaded"`): it
/// carries no order data, so it is skipped like a blank line and not counted as a row.
pub(crate) type FooterTest = fn(&StringRecord) -> bool;

/// Reads the header and then the data records of a delimited text stream.
pub(crate) struct RecordSource {
    csv: csv::Reader<TeeReader>,
    pub columns: Columns,
    rows_read: u64,
    done: bool,
    quoting: bool,
    delimiter: u8,
    footer: Option<FooterTest>,
    /// Set when the stream failed part-way (an I/O error); the records after it are unknown.
    pub error: Option<String>,
    /// The longest record's field bytes so far: what the next record's buffer starts with.
    record_bytes: usize,
}

impl RecordSource {
    /// `quoting = false` for formats that never quote (Amazon): `"` is an ordinary character.
    pub fn new(text: Box<dyn Read + Send>, delimiter: u8, quoting: bool) -> Self {
        let tee = TeeReader {
            inner: text,
            kept: Vec::new(),
            claimed: 0,
            base: 0,
            at_end: false,
        };
        let mut csv = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .quoting(quoting)
            .has_headers(false)
            .flexible(true)
            .from_reader(tee);
        let mut header = StringRecord::new();
        let mut error = None;
        let names = match csv.read_record(&mut header) {
            Ok(true) => header.iter().map(|h| h.trim().to_string()).collect(),
            Ok(false) => Vec::new(),
            Err(e) => {
                error = Some(e.to_string());
                Vec::new()
            }
        };
        let mut source = RecordSource {
            csv,
            columns: Columns::new(names),
            rows_read: 0,
            done: error.is_some(),
            quoting,
            delimiter,
            footer: None,
            error,
            record_bytes: 256,
        };
        let _ = source.release_up_to_position();
        source
    }

    /// Skip (and do not count) records that `is_footer` recognises.
    pub fn with_footer(mut self, is_footer: FooterTest) -> Self {
        self.footer = Some(is_footer);
        self
    }

    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// The raw text of the record just read (without its line end), and whether it had one.
    fn release_up_to_position(&mut self) -> (String, bool) {
        let end = self.csv.position().byte();
        let tee = self.csv.get_mut();
        let start = tee.claimed;
        let unclaimed = tee.kept.len() - start;
        let take = end
            .saturating_sub(tee.base + start as u64)
            .min(unclaimed as u64) as usize;
        tee.claimed += take;
        let raw_bytes = &tee.kept[start..start + take];
        let line_end = matches!(raw_bytes.last(), Some(b'\n' | b'\r'));
        let trim = |s: &str| s.trim_matches(['\r', '\n']).to_string();
        let raw = match std::str::from_utf8(raw_bytes) {
            Ok(raw) => trim(raw),
            Err(_) => trim(&String::from_utf8_lossy(raw_bytes)),
        };
        (raw, line_end)
    }

    /// The next data record, skipping records whose cells are all empty (blank lines,
    /// `,,,,` lines): they carry no data and are not counted.
    pub fn next_record(&mut self) -> Option<RawRecord> {
        if self.done {
            return None;
        }
        loop {
            // Sized like the records so far: a record that starts empty grows its buffers
            // several times while the parser fills it (~25 % of the CSV reader's time).
            let mut fields = StringRecord::with_capacity(self.record_bytes, self.columns.len() + 1);
            match self.csv.read_record(&mut fields) {
                Ok(true) => {
                    self.record_bytes = self.record_bytes.max(fields.as_slice().len());
                    let (raw, line_end) = self.release_up_to_position();
                    // Every cell blank ⟺ all of them together are blank (one test, not one
                    // per cell).
                    if fields.as_slice().trim().is_empty() {
                        continue;
                    }
                    if self.footer.is_some_and(|is_footer| is_footer(&fields)) {
                        continue;
                    }
                    self.rows_read += 1;
                    // Only a record that ran into the end of the input can have an open
                    // quote: the others are not walked.
                    let at_end = self.csv.get_ref().at_end;
                    let defect = if self.quoting && at_end {
                        self.unterminated_quote(&raw, &fields)
                    } else {
                        None
                    };
                    let defect = defect.or_else(|| {
                        (at_end && !line_end && self.misses_named_cells(&fields))
                            .then(|| self.cut_short(&fields))
                    });
                    if defect.is_some() {
                        // Everything after the opening quote was swallowed into one cell.
                        self.done = true;
                    }
                    return Some(RawRecord {
                        number: self.rows_read,
                        raw,
                        fields,
                        defect,
                    });
                }
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    self.error = Some(e.to_string());
                    tracing::warn!(error = %e, "stopped reading records");
                    return None;
                }
            }
        }
    }
}

impl RecordSource {
    /// A record whose last quoted field was never closed: the file was cut (or a quote is
    /// missing) and the parser took the rest of the file into that cell. Only the last record
    /// of a file can be in this state.
    fn unterminated_quote(&self, raw: &str, fields: &StringRecord) -> Option<Problem> {
        if !ends_inside_quotes(raw, self.csv_delimiter()) {
            return None;
        }
        let index = fields.len().saturating_sub(1);
        let column = self.columns.names.get(index).cloned().unwrap_or_default();
        let shown = if column.is_empty() {
            format!("field {}", index + 1)
        } else {
            format!("column {column:?}")
        };
        Some(Problem::new(
            &column,
            "unterminated_quote",
            format!(
                "record {}: the quoted value in {shown} is never closed (file cut short or a \
                 missing quote); it runs to the end of the file, so the record is not used",
                self.rows_read
            ),
        ))
    }

    /// The file's last record, with no line end after it and fewer cells than the header:
    /// the file was most likely cut inside it, so its last cell may be cut too.
    fn cut_short(&self, fields: &StringRecord) -> Problem {
        let index = fields.len().saturating_sub(1);
        let column = self.columns.names.get(index).cloned().unwrap_or_default();
        Problem::new(
            &column,
            "ragged_row",
            format!(
                "record {} has {} cells but the header has {}, and the file ends inside it (no \
                 line end after it): cut short? The record is not used",
                self.rows_read,
                fields.len(),
                self.columns.len()
            ),
        )
    }

    /// Fewer cells than the header has named columns.
    fn misses_named_cells(&self, fields: &StringRecord) -> bool {
        self.columns
            .names
            .get(fields.len()..)
            .is_some_and(|missing| missing.iter().any(|n| !n.is_empty()))
    }

    fn csv_delimiter(&self) -> u8 {
        self.delimiter
    }
}

/// Does a record's raw text end inside a quoted field (RFC 4180 rules: a field is quoted when
/// its first character is `"`; `""` inside is an escaped quote)?
pub(crate) fn ends_inside_quotes(raw: &str, delimiter: u8) -> bool {
    let mut at_field_start = true;
    let mut quoted = false;
    let mut bytes = raw.bytes().peekable();
    while let Some(b) = bytes.next() {
        if quoted {
            if b == b'"' {
                if bytes.peek() == Some(&b'"') {
                    bytes.next();
                } else {
                    quoted = false;
                }
            }
            continue;
        }
        if at_field_start && b == b'"' {
            quoted = true;
            at_field_start = false;
        } else {
            at_field_start = b == delimiter || b == b'\n' || b == b'\r';
        }
    }
    quoted
}

/// Count `,`, `;` and TAB outside double quotes in a header line; the most frequent wins
/// (`,` on a tie or when there are none).
pub(crate) fn sniff_delimiter(header_line: &str) -> u8 {
    let (mut comma, mut semi, mut tab) = (0usize, 0usize, 0usize);
    let mut quoted = false;
    for b in header_line.bytes() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => comma += 1,
            b';' if !quoted => semi += 1,
            b'\t' if !quoted => tab += 1,
            _ => {}
        }
    }
    if tab > comma && tab >= semi {
        b'\t'
    } else if semi > comma {
        b';'
    } else {
        b','
    }
}

/// Split a header line into trimmed cell names (quotes removed) for signature matching.
pub(crate) fn header_cells(header_line: &str, delimiter: u8) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(header_line.as_bytes());
    let mut rec = StringRecord::new();
    match reader.read_record(&mut rec) {
        Ok(true) => rec.iter().map(|c| c.trim().to_string()).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Literal names, more than the table remembers (3/4 of its slots), so that names share
    /// slots and the last ones are looked up by hash; many of one length, so that only the
    /// address tells them apart.
    const POOL: [&str; 112] = [
        "N0", "N1", "N2", "N3", "N4", "N5", "N6", "N7", "N8", "N9", "N10", "N11", "N12", "N13",
        "N14", "N15", "N16", "N17", "N18", "N19", "N20", "N21", "N22", "N23", "N24", "N25", "N26",
        "N27", "N28", "N29", "N30", "N31", "N32", "N33", "N34", "N35", "N36", "N37", "N38", "N39",
        "N40", "N41", "N42", "N43", "N44", "N45", "N46", "N47", "N48", "N49", "N50", "N51", "N52",
        "N53", "N54", "N55", "N56", "N57", "N58", "N59", "N60", "N61", "N62", "N63", "N64", "N65",
        "N66", "N67", "N68", "N69", "N70", "N71", "N72", "N73", "N74", "N75", "N76", "N77", "N78",
        "N79", "N80", "N81", "N82", "N83", "N84", "N85", "N86", "N87", "N88", "N89", "N90", "N91",
        "N92", "N93", "N94", "N95", "N96", "N97", "N98", "N99", "N100", "N101", "N102", "N103",
        "N104", "N105", "N106", "N107", "N108", "N109", "N110", "N111",
    ];

    #[test]
    fn the_pool_overfills_the_table() {
        assert!(POOL.len() > KNOWN_SLOTS * 3 / 4);
    }

    proptest::proptest! {
        /// Remembered positions are the header's, for names in it and not, whatever the order
        /// of the lookups and however the names share slots.
        #[test]
        fn remembered_positions_are_the_headers(
            header in proptest::sample::subsequence(POOL.to_vec(), 0..=POOL.len()),
            lookups in proptest::collection::vec(0..POOL.len(), 0..400),
        ) {
            let columns = Columns::new(header.iter().map(|n| n.to_string()).collect());
            for i in lookups {
                proptest::prop_assert_eq!(columns.position_of(POOL[i]), columns.position(POOL[i]));
            }
        }
    }

    #[test]
    fn each_header_remembers_its_own_positions() {
        let a = Columns::new(vec!["Currency".into(), "Name".into()]);
        let b = Columns::new(vec!["Name".into()]);
        assert_eq!(a.position_of("Currency"), Some(0));
        assert_eq!(a.position_of("Name"), Some(1));
        assert_eq!(b.position_of("Name"), Some(0));
        assert_eq!(b.position_of("Currency"), None);
        assert_eq!(a.position_of("Name"), Some(1));
        assert_eq!(b.position_of("Currency"), None);
        let c = a.clone();
        assert_eq!(c.position_of("Currency"), Some(0));
        // A name made at run time is looked up by its text.
        let fields = StringRecord::from(vec![" EUR ", "#1"]);
        let rec = Record {
            fields: &fields,
            columns: &a,
        };
        assert_eq!(rec.get("Currency"), "EUR");
        assert_eq!(rec.get_named(&String::from("Name")), "#1");
        assert_eq!(rec.get("Email"), "");
    }

    fn source(text: &str, delimiter: u8, quoting: bool) -> RecordSource {
        RecordSource::new(
            Box::new(Cursor::new(text.as_bytes().to_vec())),
            delimiter,
            quoting,
        )
    }

    /// Reads one byte at a time from a few at a time, so records straddle every refill.
    struct Trickle(Cursor<Vec<u8>>, usize);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1 = self.1 % 7 + 1;
            let n = buf.len().min(self.1);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn raw_text_survives_many_buffer_refills() {
        let mut text = String::from("a,b\r\n");
        let mut want = Vec::new();
        for i in 0..20_000 {
            let line = match i % 4 {
                0 => format!("{i},plain"),
                1 => format!("{i},\"quoted, with comma\""),
                2 => format!("{i},\"two\nlines é\""),
                _ => format!("{i},{}", "x".repeat(i % 300)),
            };
            text.push_str(&line);
            text.push_str(if i % 2 == 0 { "\r\n" } else { "\n" });
            want.push(line);
        }
        for reader in [
            Box::new(Cursor::new(text.clone().into_bytes())) as Box<dyn Read + Send>,
            Box::new(Trickle(Cursor::new(text.clone().into_bytes()), 0)),
        ] {
            let mut src = RecordSource::new(reader, b',', true);
            let mut got = Vec::new();
            while let Some(r) = src.next_record() {
                got.push(r.raw);
            }
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g, w);
            }
        }
    }

    #[test]
    fn multi_line_quoted_field_is_one_record_with_its_raw_text() {
        let mut s = source(
            "A,B\r\n1,\"line one\r\nline two\"\r\n2,x\r\n\r\n,,\n3,y",
            b',',
            true,
        );
        assert_eq!(s.columns.names, vec!["A", "B"]);
        let r1 = s.next_record().unwrap();
        assert_eq!(r1.number, 1);
        assert_eq!(&r1.fields[1], "line one\r\nline two");
        assert_eq!(r1.raw, "1,\"line one\r\nline two\"");
        let r2 = s.next_record().unwrap();
        assert_eq!((r2.number, r2.raw.as_str()), (2, "2,x"));
        let r3 = s.next_record().unwrap();
        assert_eq!((r3.number, r3.raw.as_str()), (3, "3,y"));
        assert!(s.next_record().is_none());
        assert_eq!(s.rows_read(), 3);
    }

    #[test]
    fn raw_text_survives_parser_buffer_boundaries() {
        let mut text = String::from("A,B\n");
        for i in 0..5000 {
            text.push_str(&format!("{i},\"value {i}\"\n"));
        }
        let mut s = source(&text, b',', true);
        let mut n = 0;
        while let Some(r) = s.next_record() {
            assert_eq!(r.raw, format!("{n},\"value {n}\""));
            n += 1;
        }
        assert_eq!(n, 5000);
    }

    /// The name hasher mixes only the length and the first and last 8 bytes: names that
    /// share those (or are shorter than 8) must still find their own column.
    #[test]
    fn columns_whose_names_share_their_ends_are_told_apart() {
        let names: Vec<String> = [
            "Billing Address1",
            "Billing Address2",
            "Shipping Address1",
            "Lineitem AA name",
            "Lineitem BB name",
            "Lineitem name",
            "",
            "a",
            "b",
            "ab",
            "Lineitem AA name",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let columns = Columns::new(names.clone());
        for (i, n) in names.iter().enumerate().take(10) {
            assert_eq!(columns.position(n), Some(i), "{n:?}");
        }
        // A repeated name keeps its first position.
        assert_eq!(columns.position("Lineitem AA name"), Some(3));
        for absent in [
            "Lineitem CC name",
            "c",
            "Billing Address3",
            "billing address1",
        ] {
            assert_eq!(columns.position(absent), None, "{absent:?}");
        }
    }

    #[test]
    fn records_of_blank_cells_are_skipped_and_quotes_only_matter_when_open() {
        let mut s = source("A,B,C\n , ,\t\n1,\"x\",2\n\" \", ,\n2,\"open", b',', true);
        let r = s.next_record().unwrap();
        assert_eq!((r.number, r.raw.as_str()), (1, "1,\"x\",2"));
        assert!(r.defect.is_none());
        let r = s.next_record().unwrap();
        assert_eq!((r.number, r.raw.as_str()), (2, "2,\"open"));
        assert_eq!(r.defect.unwrap().reason, "unterminated_quote");
        assert!(s.next_record().is_none());
    }

    #[test]
    fn bare_quotes_stay_when_quoting_is_off() {
        let mut s = source("id\tname\n1\tTV 6.5\"-10\" \"stand\n", b'\t', false);
        let r = s.next_record().unwrap();
        assert_eq!(&r.fields[1], "TV 6.5\"-10\" \"stand");
    }

    #[test]
    fn delimiter_is_sniffed_outside_quotes() {
        assert_eq!(sniff_delimiter("a,b,c"), b',');
        assert_eq!(sniff_delimiter("\"a,x\";\"b,y\";c"), b';');
        assert_eq!(sniff_delimiter("a\tb\tc\t"), b'\t');
        assert_eq!(sniff_delimiter("single"), b',');
        assert_eq!(
            header_cells("\"Order Number\";\"Order Date\"", b';'),
            vec!["Order Number", "Order Date"]
        );
    }
}
