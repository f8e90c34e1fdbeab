//! Measurements shared by the benchmarks.

use std::time::Duration;

/// CPU time of the whole process so far (user + system, every thread,
/// librdkafka's and the runtime's included).
pub fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Peak resident memory of the process, in KiB.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// The number of rows in the archive of view `view`, by an ad-hoc query.
#[allow(dead_code)] // not every bench reads an archive back
pub async fn archived_rows(engine: &fibers_engine::Engine, view: &str) -> anyhow::Result<u64> {
    use anyhow::Context;
    use arrow::array::AsArray;
    let results = engine
        .execute_script(&format!("SELECT count(*) AS n FROM {view}"))
        .await?;
    match results.first() {
        Some(fibers_engine::StatementResult::Rows { batches, .. }) => batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_primitive_opt::<arrow::datatypes::Int64Type>()
            })
            .map(|a| a.value(0) as u64)
            .context("count(*) returned no number"),
        _ => anyhow::bail!("count(*) returned no rows"),
    }
}
