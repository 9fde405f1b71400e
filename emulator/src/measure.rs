//! Measurements for benchmarks that run the emulator in their own process.

/// The peak resident set size of this process so far, in MiB (`VmHWM` of
/// `/proc/self/status`; 0 where that file does not exist, as outside Linux).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
