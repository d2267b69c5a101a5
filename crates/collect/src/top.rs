//! The busiest processes now: every process's CPU time read twice, an interval apart, and
//! its resident memory — what `top` shows, for state snapshots.

use std::collections::HashMap;
use std::time::Duration;

pub use lookout_model::status::TopProcess;

/// Most bytes of a command line kept.
const MAX_CMDLINE: usize = 256;

/// CPU ticks (user + system) of every process, with what a snapshot shows of it.
fn ticks() -> HashMap<i32, (u64, String, String, u64)> {
    let page = procfs::page_size();
    let Ok(all) = procfs::process::all_processes() else {
        return HashMap::new();
    };
    all.flatten()
        .filter_map(|p| {
            let stat = p.stat().ok()?;
            let mut cmdline = p.cmdline().map(|c| c.join(" ")).unwrap_or_default();
            lookout_model::truncate_utf8(&mut cmdline, MAX_CMDLINE);
            Some((
                stat.pid,
                (stat.utime + stat.stime, stat.comm, cmdline, stat.rss * page),
            ))
        })
        .collect()
}

/// The `n` processes that used the most CPU over `interval`, and the `n` with the most
/// resident memory (blocking: it sleeps for the interval).
pub fn top_processes(interval: Duration, n: usize) -> (Vec<TopProcess>, Vec<TopProcess>) {
    let tps = procfs::ticks_per_second() as f64;
    let before = ticks();
    std::thread::sleep(interval);
    let after = ticks();
    let secs = interval.as_secs_f64().max(1e-3);
    let all: Vec<TopProcess> = after
        .into_iter()
        .map(|(pid, (t, comm, cmdline, rss))| {
            let used = before.get(&pid).map_or(0, |b| t.saturating_sub(b.0));
            TopProcess {
                pid: i64::from(pid),
                comm,
                cmdline,
                cpu_cores: used as f64 / tps / secs,
                rss_bytes: rss as f64,
            }
        })
        .collect();
    let mut by_cpu = all.clone();
    by_cpu.sort_by(|a, b| b.cpu_cores.total_cmp(&a.cpu_cores));
    by_cpu.truncate(n);
    let mut by_mem = all;
    by_mem.sort_by(|a, b| b.rss_bytes.total_cmp(&a.rss_bytes));
    by_mem.truncate(n);
    (by_cpu, by_mem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_busy_thread_puts_this_process_on_top() {
        let until = Instant::now() + Duration::from_millis(900);
        let busy = std::thread::spawn(move || {
            let mut x = 1u64;
            while Instant::now() < until {
                x = std::hint::black_box(x.wrapping_mul(3).wrapping_add(1));
            }
        });
        let (cpu, mem) = top_processes(Duration::from_millis(500), 5);
        busy.join().unwrap();
        let me = i64::from(std::process::id() as i32);
        let mine = cpu
            .iter()
            .find(|p| p.pid == me)
            .expect("this process is busy");
        assert!(mine.cpu_cores > 0.5, "{cpu:?}");
        assert!(mine.rss_bytes > 0.0);
        assert_eq!(mem.len(), 5);
        assert!(mem.windows(2).all(|w| w[0].rss_bytes >= w[1].rss_bytes));
    }
}
