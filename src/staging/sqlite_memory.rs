//! SQLite's memory, set once per process before its first connection opens.
//!
//! By default SQLite allocates with the C library's `malloc` and counts every allocation
//! under a global mutex (its memory statistics). The writer thread of an ingest or a submit
//! makes hundreds of thousands of them (records, cursors, statement values): under
//! callgrind, allocation, freeing and that mutex were ~15 % of its instructions. Here SQLite
//! allocates through Rust's global allocator (mimalloc in the binary) and keeps no
//! statistics (orderload never reads them). Both are process-wide settings SQLite accepts
//! only before it initializes; if something opened SQLite first (a test that used it
//! directly), the defaults stay and nothing else changes.

// The one module with unsafe code: SQLite's allocator hooks are C callbacks.
#![allow(unsafe_code)]

use libsqlite3_sys as ffi;
use std::alloc::Layout;
use std::os::raw::{c_int, c_void};

/// Each block starts with its size (SQLite asks for sizes back; Rust's deallocation needs
/// them). 8 bytes keeps the block 8-byte aligned, as SQLite requires.
const HEADER: usize = 8;
const ALIGN: usize = 8;

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, ALIGN).ok()
}

/// Whether SQLite took these settings (it was not initialized before the first call).
static IN_USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Apply the settings; later calls do nothing. Returns whether SQLite uses them.
pub(super) fn configure() -> bool {
    *IN_USE.get_or_init(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(x_malloc),
            xFree: Some(x_free),
            xRealloc: Some(x_realloc),
            xSize: Some(x_size),
            xRoundup: Some(x_roundup),
            xInit: Some(x_init),
            xShutdown: Some(x_shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: sqlite3_config with these two options takes an int and a pointer to a
        // sqlite3_mem_methods that it copies before returning. It is not thread-safe, which
        // `get_or_init` covers for our calls; it returns SQLITE_MISUSE (and changes nothing)
        // once SQLite is initialized.
        let (memstatus, malloc) = unsafe {
            (
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int),
                ffi::sqlite3_config(
                    ffi::SQLITE_CONFIG_MALLOC,
                    &methods as *const ffi::sqlite3_mem_methods,
                ),
            )
        };
        let took = memstatus == ffi::SQLITE_OK && malloc == ffi::SQLITE_OK;
        if !took {
            tracing::debug!(
                memstatus,
                malloc,
                "SQLite was initialized already; its default allocator stays"
            );
        }
        took
    })
}

/// Record the user size `n` in the header of the block at `base` and return its user part.
///
/// # Safety
/// `base` is a live block of `layout(n)`.
unsafe fn publish(base: *mut u8, n: usize) -> *mut c_void {
    // SAFETY: the block holds HEADER + n bytes, 8-byte aligned.
    unsafe {
        base.cast::<usize>().write(n);
        base.add(HEADER).cast()
    }
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    let Some(layout) = usize::try_from(n).ok().and_then(layout) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the layout has a non-zero size (HEADER is part of it).
    let base = unsafe { std::alloc::alloc(layout) };
    if base.is_null() {
        return base.cast();
    }
    // SAFETY: just allocated with `layout(n)`.
    unsafe { publish(base, layout.size() - HEADER) }
}

/// The block's start and the size it was allocated with.
///
/// # Safety
/// `p` came from `x_malloc` or `x_realloc` and was not freed.
unsafe fn block(p: *mut c_void) -> (*mut u8, Layout) {
    // SAFETY: per the contract, HEADER bytes before `p` hold the size it was allocated with,
    // which made a valid layout then.
    unsafe {
        let base = p.cast::<u8>().sub(HEADER);
        let size = base.cast::<usize>().read();
        (
            base,
            Layout::from_size_align_unchecked(size + HEADER, ALIGN),
        )
    }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: SQLite frees only what its xMalloc/xRealloc returned, once.
    unsafe {
        let (base, layout) = block(p);
        std::alloc::dealloc(base, layout);
    }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    if p.is_null() {
        // SAFETY: plain allocation.
        return unsafe { x_malloc(n) };
    }
    let Some(new) = usize::try_from(n).ok().and_then(layout) else {
        return std::ptr::null_mut();
    };
    // SAFETY: `p` is a live block of ours (SQLite's contract); on failure it stays valid, as
    // SQLite expects of xRealloc.
    unsafe {
        let (base, old) = block(p);
        let moved = std::alloc::realloc(base, old, new.size());
        if moved.is_null() {
            return std::ptr::null_mut();
        }
        publish(moved, new.size() - HEADER)
    }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    // SAFETY: `p` is a live block of ours.
    unsafe { (block(p).1.size() - HEADER) as c_int }
}

extern "C" fn x_roundup(n: c_int) -> c_int {
    n.saturating_add(7) & !7
}

extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

extern "C" fn x_shutdown(_: *mut c_void) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_remember_their_size_and_keep_their_bytes_when_grown_or_shrunk() {
        // SAFETY: the hooks' own contract: live blocks only, each freed once.
        unsafe {
            let p = x_malloc(100).cast::<u8>();
            assert!(!p.is_null());
            assert_eq!(p as usize % 8, 0, "SQLite needs 8-byte alignment");
            assert_eq!(x_size(p.cast()), 100);
            for i in 0..100 {
                p.add(i).write(i as u8);
            }
            let q = x_realloc(p.cast(), 100_000).cast::<u8>();
            assert!(!q.is_null());
            assert_eq!(q as usize % 8, 0);
            assert_eq!(x_size(q.cast()), 100_000);
            assert!((0..100).all(|i| q.add(i).read() == i as u8));
            q.add(99_999).write(7);
            let r = x_realloc(q.cast(), 10).cast::<u8>();
            assert_eq!(x_size(r.cast()), 10);
            assert!((0..10).all(|i| r.add(i).read() == i as u8));
            x_free(r.cast());
            let s = x_realloc(std::ptr::null_mut(), 24);
            assert_eq!(x_size(s), 24);
            x_free(s);
            x_free(std::ptr::null_mut());
            assert_eq!(x_size(std::ptr::null_mut()), 0);
            assert!(x_malloc(-1).is_null());
        }
    }

    #[test]
    fn sizes_round_up_to_eight() {
        assert_eq!(
            [1, 7, 8, 9, 1200].map(|n| x_roundup(n)),
            [8, 8, 8, 16, 1200]
        );
    }

    #[tokio::test]
    async fn sqlite_runs_on_these_hooks() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let staging = super::super::SqliteStaging::open(&url).await.unwrap();
        // A 3 MB value and a sort of 20,000 rows: allocations, growth and frees of every size.
        let (len, n): (i64, i64) = sqlx::query_as(
            "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 20000)
             SELECT (SELECT length(group_concat(printf('%0150d', i), '')) FROM r),
                    (SELECT count(DISTINCT printf('%08d', 20000 - i)) FROM (SELECT i FROM r ORDER BY -i))",
        )
        .fetch_one(staging.pool())
        .await
        .unwrap();
        assert_eq!((len, n), (3_000_000, 20_000));
        // Every SQLite connection of this test process is opened by `SqliteStaging::open`,
        // so the hooks were installed before SQLite initialized.
        assert!(configure());
        super::super::Staging::close(&staging).await;
    }
}
