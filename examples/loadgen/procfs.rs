//! The server's CPU time and resident memory, read from /proc (Linux).
//! CPU time is process-wide: utime + stime of every thread, in clock ticks.

use std::sync::OnceLock;

/// Clock ticks per second (`getconf CLK_TCK`, 100 on every Linux we know).
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds consumed so far by process `pid`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it are
    // numbered from 3 ("state"). utime and stime are fields 14 and 15.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck())
}

/// VmRSS of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The host's UDP receive-buffer overflow count (RcvbufErrors in
/// /proc/net/snmp, all sockets): datagrams the kernel dropped because a
/// socket's queue was full.
pub fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let at = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(at)?.parse().ok()
}

/// Run time (seconds on a CPU) of every task on the machine so far, by
/// thread id: the first field of /proc/PID/task/TID/schedstat, in
/// nanoseconds, kernel threads included. This kernel charges softirq work
/// (packet processing, an XDP program) to whichever task it interrupted,
/// so the sum over all tasks is the machine's whole work, unlike
/// /proc/stat's tick-sampled counters, which undercount short bursts.
pub fn task_run_ns() -> std::collections::HashMap<u64, u64> {
    let mut out = std::collections::HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Ok(tid) = t.file_name().to_string_lossy().parse::<u64>() else {
                continue;
            };
            let ns = std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
            if let Some(ns) = ns {
                out.insert(tid, ns);
            }
        }
    }
    out
}

/// Seconds every task ran between two [`task_run_ns`] snapshots (a task
/// born in between counts from zero; one that exited is lost).
pub fn machine_seconds_between(
    a: &std::collections::HashMap<u64, u64>,
    b: &std::collections::HashMap<u64, u64>,
) -> f64 {
    let ns: u64 = b
        .iter()
        .map(|(tid, end)| end.saturating_sub(a.get(tid).copied().unwrap_or(0)))
        .sum();
    ns as f64 / 1e9
}
