//! Decoding a file that is UTF-8 but for a few bytes: counting what is UTF-8 and what is not
//! (the survey's decision) and reading each sequence as what it is.

use super::CHUNK;
use std::io::Read;

/// Valid multi-byte UTF-8 sequences and bytes that are not UTF-8, counted over a file.
#[derive(Default)]
pub(super) struct Utf8Tally {
    pub sequences: u64,
    pub invalid: u64,
    pub first_invalid: Option<u64>,
}

impl Utf8Tally {
    /// Count `bytes` (starting at file offset `at`); returns how many bytes at the end are an
    /// incomplete sequence, to be counted with the next chunk.
    pub fn count(&mut self, mut bytes: &[u8], mut at: u64) -> usize {
        loop {
            match std::str::from_utf8(bytes) {
                Ok(text) => {
                    self.sequences += lead_bytes(text.as_bytes());
                    return 0;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    self.sequences += lead_bytes(&bytes[..valid]);
                    let Some(bad) = e.error_len() else {
                        return bytes.len() - valid;
                    };
                    self.invalid += bad as u64;
                    self.first_invalid.get_or_insert(at + valid as u64);
                    bytes = &bytes[valid + bad..];
                    at += (valid + bad) as u64;
                }
            }
        }
    }
}

/// Multi-byte sequences in valid UTF-8: their lead bytes (one pass the compiler vectorises).
pub(super) fn lead_bytes(valid: &[u8]) -> u64 {
    valid.iter().filter(|&&b| b >= 0xC0).count() as u64
}

/// UTF-8 where the bytes are UTF-8, Windows-1252 for each byte that is not: the text of a
/// mostly-UTF-8 file with a few bytes from a Windows-1252 source.
pub(super) struct MixedDecoder<R> {
    inner: R,
    raw: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl<R: Read> MixedDecoder<R> {
    pub fn new(inner: R) -> Self {
        MixedDecoder {
            inner,
            raw: Vec::with_capacity(CHUNK),
            out: Vec::with_capacity(CHUNK * 2),
            pos: 0,
            eof: false,
        }
    }

    /// Decode what `raw` holds, leaving an incomplete sequence at its end (unless at EOF).
    fn decode(&mut self) {
        self.out.clear();
        self.pos = 0;
        let mut bytes = &self.raw[..];
        loop {
            match std::str::from_utf8(bytes) {
                Ok(text) => {
                    self.out.extend_from_slice(text.as_bytes());
                    bytes = &[];
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    self.out.extend_from_slice(&bytes[..valid]);
                    let bad = match e.error_len() {
                        Some(n) => n,
                        None if self.eof => bytes.len() - valid,
                        None => {
                            bytes = &bytes[valid..];
                            break;
                        }
                    };
                    for &b in &bytes[valid..valid + bad] {
                        let one = [b];
                        let (c, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(&one);
                        self.out.extend_from_slice(c.as_bytes());
                    }
                    bytes = &bytes[valid + bad..];
                }
            }
        }
        let keep = bytes.len();
        let len = self.raw.len();
        self.raw.drain(..len - keep);
    }
}

impl<R: Read> Read for MixedDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.out.len() {
            if self.eof && self.raw.is_empty() {
                return Ok(0);
            }
            let mut chunk = [0u8; CHUNK];
            let n = if self.eof {
                0
            } else {
                self.inner.read(&mut chunk)?
            };
            if n == 0 {
                self.eof = true;
            }
            self.raw.extend_from_slice(&chunk[..n]);
            self.decode();
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
