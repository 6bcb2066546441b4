//! Running a child process and measuring it: wall time and peak resident memory (from
//! `wait4`'s rusage, which is the child's own high-water mark), plus small formatting helpers.

use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One finished child process.
#[derive(Debug, Clone)]
pub struct ChildRun {
    pub wall: Duration,
    /// Peak resident set size, KiB.
    pub max_rss_kib: u64,
    /// User + system CPU seconds of the child.
    pub cpu_secs: f64,
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl ChildRun {
    pub fn rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 / 1024.0
    }
}

/// Run `cmd` to completion with stdout/stderr captured in files under `dir`.
pub fn run_child(cmd: &mut Command, dir: &Path, label: &str) -> anyhow::Result<ChildRun> {
    let out_path = dir.join(format!("{label}.stdout"));
    let err_path = dir.join(format!("{label}.stderr"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {label}: {cmd:?}"))?;
    let (exit_code, max_rss_kib, cpu_secs) = wait_with_rusage(child.id())?;
    let wall = start.elapsed();
    // The child was reaped by wait4; `child` must not be waited on again.
    drop(child);
    Ok(ChildRun {
        wall,
        max_rss_kib,
        cpu_secs,
        exit_code,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    })
}

/// Like [`run_child`], but an exit code outside `ok_codes` is an error showing stderr.
pub fn run_checked(
    cmd: &mut Command,
    dir: &Path,
    label: &str,
    ok_codes: &[i32],
) -> anyhow::Result<ChildRun> {
    let r = run_child(cmd, dir, label)?;
    if !ok_codes.contains(&r.exit_code) {
        bail!(
            "{label} exited {}\n--- stdout\n{}\n--- stderr (last 3000 bytes)\n{}",
            r.exit_code,
            tail(&r.stdout, 3000),
            tail(&r.stderr, 3000)
        );
    }
    Ok(r)
}

fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = s.len() - n;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// `wait4(pid)`: exit code (128 + signal when killed), the child's `ru_maxrss` in KiB and its
/// CPU seconds.
#[allow(unsafe_code)]
fn wait_with_rusage(pid: u32) -> anyhow::Result<(i32, u64, f64)> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own child; status and usage point to live locals.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r == pid as libc::pid_t {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            bail!("wait4({pid}): {err}");
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    };
    Ok((code, usage.ru_maxrss.max(0) as u64, cpu_secs(&usage)))
}

/// User + system seconds of a `rusage`.
fn cpu_secs(usage: &libc::rusage) -> f64 {
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU seconds (user + system) this process has used so far, all threads: around a child's
/// run, what the in-process emulator spent serving it.
#[allow(unsafe_code)]
pub fn own_cpu_secs() -> f64 {
    // SAFETY: an all-zero rusage is a valid value; getrusage fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage points to a live local.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    cpu_secs(&usage)
}

/// The release binary under test: the one cargo built for this bench run, or
/// `target/release/orderload` (built with `cargo build --release` when missing).
pub fn orderload_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = option_env!("CARGO_BIN_EXE_orderload") {
        let p = PathBuf::from(p);
        if p.exists() {
            return Ok(p);
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = root.join("target/release/orderload");
    if !p.exists() {
        eprintln!("building {} (cargo build --release)", p.display());
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--bin", "orderload"])
            .current_dir(root)
            .status()?;
        if !status.success() {
            bail!("cargo build --release failed");
        }
    }
    Ok(p)
}

/// The orderload binary with a clean `ORDERLOAD_*` environment and quiet logs.
pub fn orderload(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("ORDERLOAD_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c.env("ORDERLOAD_CLIENT_SECRET", "emulator-secret")
        .env("RUST_LOG", "warn");
    c
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `target ≤ 1.5×: met` / `missed by 23 %`.
pub fn verdict_at_most(ratio: f64, limit: f64) -> String {
    if ratio <= limit {
        format!("target ≤ {limit}×: met")
    } else {
        format!(
            "target ≤ {limit}×: MISSED by {:.0} %",
            (ratio / limit - 1.0) * 100.0
        )
    }
}
