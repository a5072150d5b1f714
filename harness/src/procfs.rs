//! What `/proc` says about a process the test started: its resident
//! memory ([`rss_kib`], [`status_kib`]), its open descriptors
//! ([`open_fds`]) and the CPU it has used ([`cpu_seconds`]). Each answers
//! `None` once the process is gone, so a watcher polling it never panics.

use std::fs;
use std::process::Command;
use std::sync::OnceLock;

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`...), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The process's resident memory (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// How many descriptors the process has open (entries of `/proc/PID/fd`).
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// CPU seconds the process has used so far, user and system, all threads.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // fields from after its closing parenthesis (field 3 is the state).
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on every
/// Linux this runs on, the fallback if `getconf` is missing).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .filter(|ticks: &f64| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_kib(me).is_some_and(|kib| kib > 0));
        assert!(open_fds(me).is_some_and(|n| n >= 3));
        assert!(cpu_seconds(me).is_some_and(|s| s >= 0.0));
        assert_eq!(rss_kib(u32::MAX), None);
    }
}
