//! The ingest pipeline: files → channel adapters → staging, with per-file accounting.
//!
//! Each file is parsed on its own thread and written in chunks (one transaction per chunk),
//! so parsing and database writes overlap and memory stays flat. A file whose bytes were
//! already ingested is a duplicate; a file that cannot be read is recorded as rejected with
//! every one of its lines kept as a rejected row; neither stops the other files.

use crate::channels::{self, ChannelSpec, FileError, Item, RejectedRow};
use crate::model::Order;
use crate::staging::{
    FileRecord, FileStart, FileTotals, PreparedChunk, ReadMemory, Staging, StagingError,
};
use serde::Serialize;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tracing::{info, info_span, warn, Instrument};

/// One file to read, with the channel it belongs to.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub spec: ChannelSpec,
    pub archive: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Orders per write transaction.
    pub chunk_orders: usize,
    /// Set when this run's lease was taken over (it stalled past the lease's lifetime): the
    /// ingest stops before its next chunk rather than write beside the run that took over.
    pub lease_lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// What happened to one file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileOutcome {
    pub path: String,
    pub channel: String,
    /// `ingested`, `duplicate`, `rejected`, `unsettled` (still being written; left for later).
    pub status: String,
    pub file_id: Option<i64>,
    pub format: Option<String>,
    pub rows: u64,
    pub rows_staged: u64,
    pub rejected: u64,
    pub orders: u64,
    pub orders_new: u64,
    pub orders_updated: u64,
    pub orders_unchanged: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestSummary {
    pub files: Vec<FileOutcome>,
}

impl IngestSummary {
    pub fn count(&self, status: &str) -> usize {
        self.files.iter().filter(|f| f.status == status).count()
    }
    pub fn sum(&self, f: impl Fn(&FileOutcome) -> u64) -> u64 {
        self.files.iter().map(f).sum()
    }
    /// Rows rejected or files rejected: the run finished with something to look at.
    pub fn has_rejections(&self) -> bool {
        self.files
            .iter()
            .any(|f| f.rejected > 0 || f.status == "rejected")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Staging(#[from] StagingError),
    #[error("stopped reading {path} after staging {rows} of its rows: this run's lease was taken over by another run (this one stalled, or could not reach the database, for longer than submit.lease_secs); the file is left to the run that took over, or to the next ingest of it, which reads it again from the start")]
    LeaseLost { path: String, rows: u64 },
    #[error("cannot list {path}: {source}")]
    List {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Files in `dir` (not recursive, sorted by name) that look like exports: hidden files,
/// `*.part`/`*.tmp`/`*.crdownload`/`*.done` and folders are skipped.
pub fn list_folder(dir: &Path) -> Result<Vec<PathBuf>, IngestError> {
    let entries = std::fs::read_dir(dir).map_err(|source| IngestError::List {
        path: dir.display().to_string(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !(name.starts_with('.')
                || [".part", ".tmp", ".crdownload", ".done", ".partial"]
                    .iter()
                    .any(|s| name.ends_with(s)))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// True when the file has not been modified for `settle` (a writer would have touched it).
pub fn is_settled(path: &Path, settle: Duration) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let Ok(modified) = meta.modified() else {
        return true;
    };
    SystemTime::now()
        .duration_since(modified)
        .map(|age| age >= settle)
        .unwrap_or(false)
}

/// What the parser thread hands over: a chunk of orders and rejected rows, the records read so
/// far, and (with the last chunk) the notes the reader made while parsing.
struct ParsedChunk {
    orders: Vec<Order>,
    rejected: Vec<RejectedRow>,
    rows_read: u64,
    notes: Vec<String>,
}

/// A parsed chunk after the preparer: orders merged, serialized and hashed.
struct PreparedChunkOf {
    chunk: PreparedChunk,
    /// Orders as read, before repeated keys in the chunk were merged.
    orders_read: u64,
    rejected: Vec<RejectedRow>,
    rows_read: u64,
    notes: Vec<String>,
}

/// Ingest every source in order; one bad file never stops the others.
pub async fn ingest(
    staging: &dyn Staging,
    run_id: i64,
    sources: &[Source],
    options: &IngestOptions,
) -> Result<IngestSummary, IngestError> {
    let mut summary = IngestSummary::default();
    for source in sources {
        let span = info_span!("file", path = %source.path.display(), channel = %source.spec.name, file_id = tracing::field::Empty);
        let outcome = ingest_file(staging, run_id, source, options)
            .instrument(span)
            .await?;
        summary.files.push(outcome);
    }
    Ok(summary)
}

/// Chunks each stage of a file's pipeline may run ahead of the next. With 1, a stage that
/// finished a chunk waited for the next stage to take the previous one, and the writer, the
/// slowest, often found nothing ready after a slow chunk of the parser: 4 took a 1,000,000-row
/// ingest from 4.4 to 4.0 s (medians of 8 alternated runs, 7 of 8 pairs faster), for ~3 MiB
/// more at peak (250-order chunks); 8 did no better.
const CHUNKS_AHEAD: usize = 4;

fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    // ring's SHA-256 (OpenSSL's assembly) runs ~1.7x faster here than the portable one.
    let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finish()), size))
}

fn blank_outcome(source: &Source, status: &str) -> FileOutcome {
    FileOutcome {
        path: source.path.display().to_string(),
        channel: source.spec.name.clone(),
        status: status.into(),
        file_id: None,
        format: None,
        rows: 0,
        rows_staged: 0,
        rejected: 0,
        orders: 0,
        orders_new: 0,
        orders_updated: 0,
        orders_unchanged: 0,
        error: None,
    }
}

/// The outcome for a file whose bytes were already ingested (it is archived like one read).
fn duplicate(source: &Source, previous: &FileRecord) -> FileOutcome {
    info!(first_seen = %previous.ingested_at, first_path = %previous.path, "duplicate file: these bytes were already ingested");
    let mut out = blank_outcome(source, "duplicate");
    out.file_id = Some(previous.id);
    out.error = Some(format!(
        "same content as {} (file {}, ingested {})",
        previous.path, previous.id, previous.ingested_at
    ));
    archive(source);
    out
}

async fn ingest_file(
    staging: &dyn Staging,
    run_id: i64,
    source: &Source,
    options: &IngestOptions,
) -> Result<FileOutcome, IngestError> {
    let path_text = source.path.display().to_string();
    // Open the file (format detection and the encoding survey read all of it) while hashing
    // it: both are a full pass over the bytes, on two threads instead of one after the other.
    // A duplicate's opened reader is simply dropped.
    let opening = {
        let path = source.path.clone();
        let spec = source.spec.clone();
        tokio::task::spawn_blocking(move || channels::open_file(&path, &spec))
    };
    let hashed = {
        let path = source.path.clone();
        tokio::task::spawn_blocking(move || hash_file(&path))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(format!("hashing crashed: {e}"))))
    };
    let (sha256, size) = match hashed {
        Ok(v) => v,
        Err(e) => {
            warn!(error = %e, "cannot read file");
            let mut out = blank_outcome(source, "rejected");
            out.error = Some(format!("{path_text}: cannot read file: {e}"));
            return Ok(out);
        }
    };
    // A file whose row is still `reading` was not read to its end: its ingest was killed or
    // failed. This ingest holds the lease, so nobody is reading it now: read it again.
    let interrupted = match staging.find_file(&sha256).await? {
        None => None,
        Some(previous) if previous.status != "reading" => {
            return Ok(duplicate(source, &previous));
        }
        Some(previous) if previous.channel != source.spec.name => {
            warn!(first_channel = %previous.channel, "an interrupted ingest of this file was for another channel");
            let mut out = blank_outcome(source, "rejected");
            out.file_id = Some(previous.id);
            out.error = Some(format!(
                "{path_text}: same content as {} (file {}), whose ingest as channel {} stopped before the end of the file; ingest it again as channel {} (this file was left in place)",
                previous.path, previous.id, previous.channel, previous.channel
            ));
            return Ok(out);
        }
        Some(previous) => Some(previous),
    };

    let opened = opening.await.unwrap_or_else(|e| {
        Err(FileError::Invalid {
            path: path_text.clone(),
            detail: format!("adapter crashed: {e}"),
        })
    });
    let start = FileStart {
        sha256,
        path: path_text.clone(),
        channel: source.spec.name.clone(),
        format: opened.as_ref().ok().map(|o| o.format.as_str().to_string()),
        encoding: opened
            .as_ref()
            .map(|o| o.encoding.to_string())
            .unwrap_or_else(|_| "unknown".into()),
        notes: opened.as_ref().map(|o| o.notes.clone()).unwrap_or_default(),
        size_bytes: size,
    };
    let mut resumed = None;
    let file_id = match &interrupted {
        Some(previous) => {
            if !staging.reopen_file(previous.id, &start, run_id).await? {
                // Finished meanwhile (only if its holder outlived the lease): a duplicate now.
                return Ok(duplicate(source, previous));
            }
            warn!(file_id = previous.id, "this file's earlier ingest stopped before the end of the file; reading it again from the start (orders it staged are compared, not staged twice)");
            resumed = Some(format!(
                "read again from the start: an earlier ingest (started {}) stopped before the end of the file; orders it had staged count as unchanged (also one this read completed with lines the first read had not reached, or updated if its stored part differs), and its rejected rows were replaced by this read's",
                previous.ingested_at
            ));
            previous.id
        }
        None => staging.start_file(&start, run_id).await?,
    };
    tracing::Span::current().record("file_id", file_id);

    let mut out = blank_outcome(source, "ingested");
    out.file_id = Some(file_id);
    out.format = start.format.clone();
    let mut totals = FileTotals {
        format: start.format.clone(),
        encoding: Some(start.encoding.clone()),
        notes: start.notes.iter().cloned().chain(resumed).collect(),
        ..Default::default()
    };

    let opened = match opened {
        Ok(o) => o,
        Err(err) => {
            // The whole file is rejected; keep every line of it as a rejected row.
            warn!(error = %err, "file rejected");
            let rejected = reject_all_lines(&source.path, &err);
            totals.rows = rejected.len() as u64;
            totals.rejected = rejected.len() as u64;
            let mut read = ReadMemory::default();
            for part in rejected.chunks(1000) {
                staging
                    .stage_chunk(
                        file_id,
                        run_id,
                        PreparedChunk::empty(),
                        part.to_vec(),
                        &mut read,
                    )
                    .await?;
            }
            staging
                .finish_file(
                    file_id,
                    run_id,
                    &totals,
                    Some((err.reason_code(), &err.to_string())),
                )
                .await?;
            out.status = "rejected".into();
            out.rows = totals.rows;
            out.rejected = totals.rejected;
            out.error = Some(err.to_string());
            return Ok(out);
        }
    };

    // Three stages, each on a thread of its own, joined by bounded channels: the parser reads
    // orders; the preparer merges, serializes and hashes them; this task writes them. The
    // writer (the database's one connection thread) then only writes. The last chunk carries
    // the notes the reader made while parsing. Each channel holds [`CHUNKS_AHEAD`] chunks.
    let (parsed_tx, parsed_rx) = std::sync::mpsc::sync_channel::<ParsedChunk>(CHUNKS_AHEAD);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<PreparedChunkOf>(CHUNKS_AHEAD);
    let chunk_orders = options.chunk_orders;
    let mut reader = opened.reader;
    let repeats = reader.repeats();
    let parser = std::thread::spawn(move || {
        let mut orders = Vec::with_capacity(chunk_orders);
        let mut rejected = Vec::new();
        while let Some(item) = reader.next_item() {
            match item {
                Item::Order(o) => orders.push(*o),
                Item::Rejected(r) => rejected.push(r),
            }
            if orders.len() >= chunk_orders || rejected.len() >= chunk_orders {
                let chunk = ParsedChunk {
                    orders: std::mem::replace(&mut orders, Vec::with_capacity(chunk_orders)),
                    rejected: std::mem::take(&mut rejected),
                    rows_read: reader.rows_read(),
                    notes: Vec::new(),
                };
                if parsed_tx.send(chunk).is_err() {
                    return;
                }
            }
        }
        let _ = parsed_tx.send(ParsedChunk {
            orders,
            rejected,
            rows_read: reader.rows_read(),
            notes: reader.notes(),
        });
    });
    let preparer = std::thread::spawn(move || {
        for parsed in parsed_rx {
            let prepared = PreparedChunkOf {
                orders_read: parsed.orders.len() as u64,
                chunk: PreparedChunk::of_file(file_id, parsed.orders, repeats),
                rejected: parsed.rejected,
                rows_read: parsed.rows_read,
                notes: parsed.notes,
            };
            if tx.blocking_send(prepared).is_err() {
                return;
            }
        }
    });

    let mut read = ReadMemory::default();
    let mut held_back = 0u64;
    let mut adopted = 0u64;
    while let Some(PreparedChunkOf {
        chunk,
        orders_read,
        rejected,
        rows_read,
        notes,
    }) = rx.recv().await
    {
        totals.rows = rows_read;
        totals.orders += orders_read;
        totals.notes.extend(notes);
        for r in &rejected {
            warn!(row = r.row_number, column = r.column.as_deref().unwrap_or(""), reason = %r.reason_code, "{}", r.message);
        }
        if chunk.is_empty() && rejected.is_empty() {
            continue;
        }
        // Stop once the lease is lost; a chunk that gets past this still checks, in its own
        // transaction, that the file is this run's (`StagingError::FileTakenOver`).
        let rows = totals.rows_staged + totals.rejected;
        let lease_lost = || IngestError::LeaseLost {
            path: path_text.clone(),
            rows,
        };
        if options.lease_lost.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(lease_lost());
        }
        let counts = staging
            .stage_chunk(file_id, run_id, chunk, rejected, &mut read)
            .await
            .map_err(|e| match e {
                StagingError::FileTakenOver { .. } => lease_lost(),
                e => e.into(),
            })?;
        totals.rows_staged += counts.rows_staged;
        totals.rejected += counts.rejected;
        totals.orders_new += counts.new;
        totals.orders_updated += counts.updated;
        totals.orders_unchanged =
            (totals.orders_unchanged + counts.unchanged).saturating_sub(counts.restated);
        held_back += counts.held_back;
        adopted += counts.adopted;
    }
    let _ = parser.join();
    let _ = preparer.join();

    if held_back > 0 {
        let msg = format!(
            "{held_back} order(s) held back (failed, order_incomplete): staged from some of their rows while other rows of each, further down the file, were rejected; `orderload report --failed` lists them with the rows to fix"
        );
        warn!("{msg}");
        totals.notes.push(msg);
    }
    if adopted > 0 {
        let msg = format!(
            "{adopted} order(s) staged by an interrupted read of file {}, found here unchanged, now count as this file's: they are sent after this file, not held until that one is read again",
            read.adopted_files()
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        info!("{msg}");
        totals.notes.push(msg);
    }
    let settled = staging
        .settle_requeued(file_id, run_id, &read.take_requeued_after_success())
        .await?;
    if settled > 0 {
        let msg = format!(
            "{settled} order(s) whose rows are far apart in the file were sent back to pending part by part and ended with the content Dynamics already has: back to succeeded, not sent again"
        );
        info!("{msg}");
        totals.notes.push(msg);
    }
    let mut error = None;
    if totals.rows != totals.rows_staged + totals.rejected {
        let msg = format!(
            "accounting mismatch: {} rows read, {} staged, {} rejected",
            totals.rows, totals.rows_staged, totals.rejected
        );
        warn!("{msg}");
        totals.notes.push(msg.clone());
        error = Some(msg);
    }
    staging.finish_file(file_id, run_id, &totals, None).await?;
    info!(
        rows = totals.rows,
        orders = totals.orders,
        new = totals.orders_new,
        updated = totals.orders_updated,
        rejected = totals.rejected,
        "file ingested"
    );
    out.rows = totals.rows;
    out.rows_staged = totals.rows_staged;
    out.rejected = totals.rejected;
    out.orders = totals.orders;
    out.orders_new = totals.orders_new;
    out.orders_updated = totals.orders_updated;
    out.orders_unchanged = totals.orders_unchanged;
    out.error = error;
    archive(source);
    Ok(out)
}

/// Every non-blank line of a rejected file, as rejected rows carrying the file's reason.
fn reject_all_lines(path: &Path, err: &FileError) -> Vec<RejectedRow> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    let mut reader = std::io::BufReader::new(file);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    while let Ok(n) = reader.read_until(b'\n', &mut buf) {
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if !text.trim().is_empty() {
            rows.push(RejectedRow {
                row_number: line_no,
                column: None,
                reason_code: err.reason_code().to_string(),
                message: format!("line {line_no}: {err}"),
                raw: text,
                order_key: None,
            });
        }
        buf.clear();
    }
    rows
}

/// Move an ingested (or duplicate) file to the channel's archive folder, if configured.
fn archive(source: &Source) {
    let Some(dir) = &source.archive else { return };
    if let Err(e) = std::fs::create_dir_all(dir) {
        warn!(archive = %dir.display(), error = %e, "cannot create archive folder; file left in place");
        return;
    }
    let name = source.path.file_name().unwrap_or_default();
    let mut target = dir.join(name);
    if target.exists() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        target = dir.join(format!("{}.{stamp}", name.to_string_lossy()));
    }
    if let Err(e) = std::fs::rename(&source.path, &target) {
        warn!(target = %target.display(), error = %e, "cannot move file to archive; file left in place");
    }
}
