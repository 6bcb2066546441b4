//! Byte-level handling of an export file: the first streaming pass (text or binary? UTF-8 or
//! Windows-1252? mojibake?) and the decoded UTF-8 stream the parsers read in the second pass.
//!
//! Nothing here loads a whole file: both passes read fixed-size chunks.

use super::FileError;
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::Path;

mod mixed;
use mixed::{lead_bytes, MixedDecoder, Utf8Tally};

const CHUNK: usize = 64 * 1024;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What the first pass learned about the bytes of a file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Survey {
    pub utf8: bool,
    /// Not valid UTF-8 as a whole, but its non-ASCII text is mostly UTF-8 (a UTF-8 export
    /// with a few bytes pasted in from a Windows-1252 source): decoded sequence by sequence,
    /// the bytes that are not UTF-8 as Windows-1252 ([`MixedDecoder`]).
    pub mixed: bool,
    pub bom: bool,
    pub notes: Vec<String>,
    /// The channel's configured encoding, used when the file is not UTF-8.
    pub configured: Option<&'static encoding_rs::Encoding>,
}

impl Survey {
    /// Read the file in the channel's `encoding` unless it is valid UTF-8: no guessing
    /// between Windows-1252 and the mix of it with UTF-8 then.
    pub fn with_configured(mut self, encoding: Option<&'static encoding_rs::Encoding>) -> Self {
        let Some(e) = encoding.filter(|_| !self.utf8) else {
            return self;
        };
        self.mixed = false;
        self.configured = Some(e);
        self.notes.retain(|n| !n.starts_with("not valid UTF-8"));
        self.notes.push(format!(
            "not UTF-8: decoded as {} (the channel's encoding)",
            e.name()
        ));
        self
    }

    /// How the file's text was decoded (`source_files.encoding`).
    pub fn encoding(&self) -> &'static str {
        if self.utf8 {
            "utf-8"
        } else if let Some(e) = self.configured {
            e.name()
        } else if self.mixed {
            "utf-8+windows-1252"
        } else {
            "windows-1252"
        }
    }
}

fn io_err(path: &Path, source: std::io::Error) -> FileError {
    FileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// First pass: read the file once, in chunks, and decide how to decode it.
pub(crate) fn survey(path: &Path) -> Result<Survey, FileError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    survey_reader(path, file)
}

pub(crate) fn survey_reader(path: &Path, mut input: impl Read) -> Result<Survey, FileError> {
    let p = || path.display().to_string();
    let mut chunk = vec![0u8; CHUNK];
    let mut carry: Vec<u8> = Vec::new();
    let mut offset: u64 = 0;
    let mut utf8 = true;
    let mut first = true;
    let mut bom = false;
    let mut saw_content = false;
    let mut controls: u64 = 0;
    let mut mojibake = MojibakeScan::default();
    let mut tally = Utf8Tally::default();
    let mut tally_carry: Vec<u8> = Vec::new();
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path, e)),
        };
        let mut bytes = &chunk[..n];
        if first {
            first = false;
            if let Some(kind) = binary_magic(bytes) {
                return Err(FileError::NotText {
                    path: p(),
                    detail: format!("looks like {kind}, not a text export"),
                });
            }
            if bytes.starts_with(BOM) {
                bom = true;
                bytes = &bytes[BOM.len()..];
            }
        }
        if let Some(i) = bytes.iter().position(|&b| b == 0) {
            return Err(FileError::NotText {
                path: p(),
                detail: format!("NUL byte at offset {}", offset + i as u64),
            });
        }
        controls += bytes
            .iter()
            .filter(|&&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c))
            .count() as u64;
        if !saw_content {
            saw_content = bytes
                .iter()
                .any(|b| !b.is_ascii_whitespace() && !matches!(b, b',' | b';' | b'"'));
        }
        if utf8 {
            carry.extend_from_slice(bytes);
            match std::str::from_utf8(&carry) {
                Ok(text) => {
                    mojibake.scan(text);
                    tally.sequences += lead_bytes(text.as_bytes());
                    carry.clear();
                }
                Err(e) if e.error_len().is_none() => {
                    // An incomplete sequence at the chunk end: keep it for the next chunk.
                    let valid = e.valid_up_to();
                    if let Ok(text) = std::str::from_utf8(&carry[..valid]) {
                        mojibake.scan(text);
                    }
                    tally.sequences += lead_bytes(&carry[..valid]);
                    carry.drain(..valid);
                }
                Err(e) => {
                    // Not UTF-8 throughout: from here on, count what is and what is not
                    // (only files that get here pay for it).
                    utf8 = false;
                    let valid = e.valid_up_to();
                    tally.sequences += lead_bytes(&carry[..valid]);
                    let at = offset + n as u64 - (carry.len() - valid) as u64;
                    let rest = tally.count(&carry[valid..], at);
                    tally_carry = carry.split_off(carry.len() - rest);
                    carry.clear();
                }
            }
        } else {
            tally_carry.extend_from_slice(bytes);
            let start = offset + n as u64 - tally_carry.len() as u64;
            let rest = tally.count(&tally_carry, start);
            tally_carry.drain(..tally_carry.len() - rest);
        }
        offset += n as u64;
    }
    if utf8 && !carry.is_empty() {
        utf8 = false; // truncated multi-byte sequence at the very end
        tally.invalid += carry.len() as u64;
        tally.first_invalid = Some(offset - carry.len() as u64);
    }
    if !saw_content {
        return Err(FileError::Empty { path: p() });
    }
    if offset > 0 && controls * 100 > offset {
        return Err(FileError::NotText {
            path: p(),
            detail: format!("{controls} control bytes in {offset} bytes"),
        });
    }
    let mut notes = Vec::new();
    if bom {
        notes.push("UTF-8 byte order mark stripped".to_string());
    }
    tally.invalid += tally_carry.len() as u64;
    // Mostly UTF-8: more valid multi-byte sequences than stray bytes. Decoding the whole file
    // as Windows-1252 would turn every one of those sequences into mojibake.
    let mixed = !utf8 && tally.sequences > tally.invalid;
    if mixed {
        notes.push(format!(
            "not valid UTF-8 throughout: {} byte(s) that are not UTF-8 (the first at byte {}) \
             decoded as Windows-1252, the {} UTF-8 character(s) around them as UTF-8",
            tally.invalid,
            tally.first_invalid.unwrap_or(0),
            tally.sequences
        ));
    } else if !utf8 {
        notes.push("not valid UTF-8: decoded as Windows-1252".to_string());
    }
    if let Some(note) = mojibake.note() {
        notes.push(note);
    }
    Ok(Survey {
        utf8,
        mixed,
        bom,
        notes,
        configured: None,
    })
}

fn binary_magic(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Some("a gzip-compressed file (decompress it first)")
    } else if bytes.starts_with(b"PK\x03\x04") {
        Some("a ZIP archive or an Excel .xlsx workbook (export as CSV)")
    } else if bytes.starts_with(b"%PDF") {
        Some("a PDF document")
    } else if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
        Some("an Excel .xls workbook (export as CSV)")
    } else if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        Some("UTF-16 text (save as UTF-8)")
    } else {
        None
    }
}

/// Finds text that was UTF-8, read as Windows-1252 and written back as UTF-8 (`MontrÃ©al`),
/// and U+FFFD replacement characters. It only reports; the text is never "fixed".
#[derive(Default)]
struct MojibakeScan {
    prev: Option<char>,
    count: u64,
    replacement: u64,
    sample: Option<String>,
    /// The first (up to) [`WINDOW_CHARS`] characters after the last field or line separator:
    /// the context a sample shows.
    window: String,
    window_chars: usize,
}

const WINDOW_CHARS: usize = 24;

fn is_separator(b: u8) -> bool {
    matches!(b, b'\n' | b',' | b'\t' | b';')
}

impl MojibakeScan {
    /// Every pair and replacement character involves a non-ASCII character, so runs of ASCII
    /// only move the window and `prev`: they are handled a run at a time, not per character.
    fn scan(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let ascii = ascii_prefix_len(&bytes[i..]);
            if ascii > 0 {
                self.ascii_run(&bytes[i..i + ascii]);
                i += ascii;
                continue;
            }
            let c = text[i..].chars().next().expect("i is on a char boundary");
            self.char(c);
            i += c.len_utf8();
        }
    }

    fn ascii_run(&mut self, run: &[u8]) {
        let fresh = match run.iter().rposition(|&b| is_separator(b)) {
            Some(k) => {
                self.window.clear();
                self.window_chars = 0;
                &run[k + 1..]
            }
            None => run,
        };
        let take = fresh.len().min(WINDOW_CHARS - self.window_chars);
        // ASCII bytes are characters of their own.
        self.window
            .extend(fresh[..take].iter().map(|&b| char::from(b)));
        self.window_chars += take;
        self.prev = run.last().map(|&b| char::from(b));
    }

    fn char(&mut self, c: char) {
        if c == '\u{FFFD}' {
            self.replacement += 1;
            self.remember();
        }
        if let Some(p) = self.prev {
            if is_mojibake_pair(p, c) {
                self.count += 1;
                self.remember_with(c);
            }
        }
        self.prev = Some(c);
        if c == '\n' || c == ',' || c == '\t' || c == ';' {
            self.window.clear();
            self.window_chars = 0;
        } else if self.window_chars < WINDOW_CHARS {
            self.window.push(c);
            self.window_chars += 1;
        }
    }

    fn remember(&mut self) {
        if self.sample.is_none() {
            self.sample = Some(format!("{}\u{FFFD}", self.window));
        }
    }

    fn remember_with(&mut self, c: char) {
        if self.sample.is_none() {
            self.sample = Some(format!("{}{c}", self.window));
        }
    }

    fn note(&self) -> Option<String> {
        if self.count == 0 && self.replacement == 0 {
            return None;
        }
        let sample = self.sample.clone().unwrap_or_default();
        Some(format!(
            "mojibake suspected: {} double-encoded sequence(s) and {} U+FFFD replacement \
             character(s), first in {sample:?}; text left as is",
            self.count, self.replacement
        ))
    }
}

/// How many bytes at the start of `bytes` are ASCII (eight at a time).
fn ascii_prefix_len(bytes: &[u8]) -> usize {
    let mut n = 0;
    for word in bytes.chunks_exact(8) {
        if u64::from_le_bytes(word.try_into().expect("8 bytes")) & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        n += 8;
    }
    n + bytes[n..].iter().take_while(|b| b.is_ascii()).count()
}

/// `Ã`/`Â`/`â` followed by a character that a UTF-8 continuation byte becomes in Windows-1252.
fn is_mojibake_pair(prev: char, c: char) -> bool {
    let cp1252_high = matches!(c, '\u{80}'..='\u{BF}')
        || matches!(
            c,
            '€' | '‚'
                | 'ƒ'
                | '„'
                | '…'
                | '†'
                | '‡'
                | 'ˆ'
                | '‰'
                | 'Š'
                | '‹'
                | 'Œ'
                | 'Ž'
                | '‘'
                | '’'
                | '“'
                | '”'
                | '•'
                | '–'
                | '—'
                | '˜'
                | '™'
                | 'š'
                | '›'
                | 'œ'
                | 'ž'
                | 'Ÿ'
        );
    match prev {
        'Ã' => cp1252_high,
        'Â' => matches!(c, '\u{A0}'..='\u{BF}'),
        'â' => c == '€',
        _ => false,
    }
}

/// A decoded text stream (UTF-8 bytes) positioned at the first non-blank line.
pub(crate) struct TextStream {
    /// The first non-blank, non-delimiter-only line, without its line terminator.
    pub first_line: String,
    /// Everything from the start of `first_line` on, as UTF-8.
    pub reader: Box<dyn Read + Send>,
}

/// Second pass: open the file, strip the BOM, decode, and skip blank or delimiter-only lines
/// before the header. `Ok(None)` when nothing but blank lines is left.
pub(crate) fn open_text(path: &Path, survey: &Survey) -> Result<Option<TextStream>, FileError> {
    let mut file = File::open(path).map_err(|e| io_err(path, e))?;
    if survey.bom {
        let mut skip = [0u8; 3];
        file.read_exact(&mut skip).map_err(|e| io_err(path, e))?;
    }
    let decoded: Box<dyn Read + Send> = if survey.utf8 {
        Box::new(file)
    } else if survey.mixed {
        Box::new(MixedDecoder::new(file))
    } else {
        Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(survey.configured.unwrap_or(encoding_rs::WINDOWS_1252)))
                .bom_sniffing(false)
                .build(file),
        )
    };
    skip_blank_lines(path, decoded)
}

pub(crate) fn skip_blank_lines(
    path: &Path,
    decoded: Box<dyn Read + Send>,
) -> Result<Option<TextStream>, FileError> {
    let mut buffered = BufReader::with_capacity(CHUNK, decoded);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = buffered
            .read_until(b'\n', &mut line)
            .map_err(|e| io_err(path, e))?;
        if n == 0 {
            return Ok(None);
        }
        let blank = line
            .iter()
            .all(|b| b.is_ascii_whitespace() || matches!(b, b',' | b';' | b'"'));
        if blank {
            continue;
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let first_line = text.trim_end_matches(['\r', '\n']).to_string();
        let reader: Box<dyn Read + Send> = Box::new(Cursor::new(line.clone()).chain(buffered));
        return Ok(Some(TextStream { first_line, reader }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn survey_bytes(bytes: &[u8]) -> Result<Survey, FileError> {
        survey_reader(Path::new("t.csv"), bytes)
    }

    /// A reader that hands out one byte per call: every multi-byte sequence is split.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn a_utf8_file_with_a_stray_windows_1252_byte_keeps_its_utf8_text() {
        let bytes = b"Name,City\n#1,J\xc3\xbcrgen Wei\xc3\x9f K\xc3\xb6ln\n#2,A \x96 B\n";
        let s = survey_bytes(bytes).unwrap();
        assert!(!s.utf8 && s.mixed, "{s:?}");
        assert_eq!(s.encoding(), "utf-8+windows-1252");
        assert!(
            s.notes[0].contains("1 byte(s) that are not UTF-8 (the first at byte 38)"),
            "{:?}",
            s.notes
        );
        for whole in [true, false] {
            let mut text = String::new();
            if whole {
                MixedDecoder::new(&bytes[..])
                    .read_to_string(&mut text)
                    .unwrap();
            } else {
                MixedDecoder::new(Trickle(bytes))
                    .read_to_string(&mut text)
                    .unwrap();
            }
            assert_eq!(
                text,
                "Name,City\n#1,J\u{fc}rgen Wei\u{df} K\u{f6}ln\n#2,A \u{2013} B\n"
            );
        }
        // A truncated sequence at the very end is a Windows-1252 byte too.
        let mut text = String::new();
        MixedDecoder::new(&b"\xc3\xbc,\xc3"[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "\u{fc},\u{c3}");
        // A Windows-1252 file (no UTF-8 sequences) is decoded as one, as before.
        let s = survey_bytes(b"Name,City\n#1,J\xfcrgen\n").unwrap();
        assert!(!s.utf8 && !s.mixed);
        assert_eq!(s.encoding(), "windows-1252");
    }

    #[test]
    fn utf8_with_bom_is_noted() {
        let s = survey_bytes(b"\xEF\xBB\xBFName,Email\n#1,a@b\n").unwrap();
        assert!(s.utf8 && s.bom);
        assert!(s.notes[0].contains("byte order mark"));
    }

    #[test]
    fn invalid_utf8_falls_back_to_windows_1252() {
        let s = survey_bytes(b"Name,City\n#1,Montr\xe9al\n").unwrap();
        assert!(!s.utf8);
        assert!(s.notes.iter().any(|n| n.contains("Windows-1252")));
    }

    #[test]
    fn multibyte_sequence_split_across_chunks_is_still_utf8() {
        let mut data = vec![b'a'; CHUNK - 1];
        data.extend_from_slice("é,ü\n".as_bytes());
        let s = survey_bytes(&data).unwrap();
        assert!(s.utf8);
    }

    #[test]
    fn mojibake_is_flagged_not_fixed() {
        let s = survey_bytes("Name,City\n#1,MontrÃ©al\n".as_bytes()).unwrap();
        let note = s.notes.iter().find(|n| n.contains("mojibake")).unwrap();
        assert!(note.contains("MontrÃ©"), "{note}");
        let s = survey_bytes("Name,City\n#1,K\u{FFFD}ln\n".as_bytes()).unwrap();
        assert!(s.notes.iter().any(|n| n.contains("1 U+FFFD")));
        let clean = survey_bytes("Name,City\n#1,Montréal Ölstraße\n".as_bytes()).unwrap();
        assert!(clean.notes.is_empty(), "{:?}", clean.notes);
    }

    /// The scan as it was written first, one character at a time.
    fn reference_scan(pieces: &[&str]) -> (u64, u64, Option<String>) {
        let (mut prev, mut count, mut replacement) = (None::<char>, 0, 0);
        let (mut sample, mut window) = (None::<String>, String::new());
        for c in pieces.iter().flat_map(|p| p.chars()) {
            if c == '\u{FFFD}' {
                replacement += 1;
                sample.get_or_insert_with(|| format!("{window}\u{FFFD}"));
            }
            if prev.is_some_and(|p| is_mojibake_pair(p, c)) {
                count += 1;
                sample.get_or_insert_with(|| format!("{window}{c}"));
            }
            prev = Some(c);
            if matches!(c, '\n' | ',' | '\t' | ';') {
                window.clear();
            } else if window.chars().count() < 24 {
                window.push(c);
            }
        }
        (count, replacement, sample)
    }

    proptest::proptest! {
        #[test]
        fn mojibake_scan_matches_the_per_character_scan(
            pieces in proptest::collection::vec(
                "([a-z ,;\t\n]{0,40}|Ã©|Ã|Â|â€|é|\u{FFFD}|ü|[a-zÃÂâ€©€é]{1,30}){0,12}",
                1..4,
            )
        ) {
            let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
            let mut scan = MojibakeScan::default();
            for p in &pieces {
                scan.scan(p);
            }
            proptest::prop_assert_eq!(
                (scan.count, scan.replacement, scan.sample),
                reference_scan(&pieces)
            );
        }
    }

    #[test]
    fn ascii_prefix_stops_at_the_first_non_ascii_byte() {
        assert_eq!(ascii_prefix_len(b""), 0);
        assert_eq!(ascii_prefix_len(b"abc"), 3);
        assert_eq!(ascii_prefix_len("abcdefghijé".as_bytes()), 10);
        assert_eq!(ascii_prefix_len("abcdefgé".as_bytes()), 7);
        assert_eq!(ascii_prefix_len("éa".as_bytes()), 0);
    }

    #[test]
    fn binary_and_empty_files_are_refused() {
        assert!(matches!(
            survey_bytes(b"Name\0\x01\x02"),
            Err(FileError::NotText { .. })
        ));
        assert!(matches!(
            survey_bytes(b"\x1f\x8b\x08\x00abc"),
            Err(FileError::NotText { .. })
        ));
        assert!(matches!(survey_bytes(b""), Err(FileError::Empty { .. })));
        assert!(matches!(
            survey_bytes(b"\xEF\xBB\xBF\r\n,,,\n \n"),
            Err(FileError::Empty { .. })
        ));
    }

    #[test]
    fn blank_and_comma_only_lines_before_header_are_skipped() {
        let data: Box<dyn Read + Send> = Box::new(Cursor::new(b"\r\n,,,\n\nA,B\r\n1,2".to_vec()));
        let mut t = skip_blank_lines(Path::new("t"), data).unwrap().unwrap();
        assert_eq!(t.first_line, "A,B");
        let mut rest = String::new();
        t.reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "A,B\r\n1,2");
    }
}
