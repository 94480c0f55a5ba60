//! `amphi events` (runc-events(8)): container statistics and OOM notifications as JSON lines.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::{ExitCode, Global};
use crate::cgroups::ContainerCgroup;
use crate::container::{self, Status};

/// `amphi events [--stats] [--interval DURATION] ID`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Display the container's stats once, then exit.
    #[arg(long)]
    stats: bool,
    /// Interval between stats events (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse_interval)]
    interval: Duration,
    /// The container id.
    id: String,
}

/// `--interval`: a humantime duration of at least 1 ms (runc refuses 0: "duration interval must be
/// greater than 0"; a shorter one would print stats in a busy loop).
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("duration interval must be greater than 0".into());
    }
    if d < Duration::from_millis(1) {
        return Err("duration interval must be at least 1ms".into());
    }
    Ok(d)
}

/// runc's `stats` event data (libcontainer `types.Stats`), from the container's cgroup.
pub fn stats_json(cg: &ContainerCgroup) -> serde_json::Value {
    let s = cg.stats();
    let mut acct = s.cpu.cpu_acct.unwrap_or_default();
    if let Some(dir) = cg.controller_dir("cpuacct") {
        v1_cpu_usage(&dir, &mut acct);
    }
    let thr = s.cpu.cpu_throttling.unwrap_or_default();
    let mem = |m: Option<cgroups_rs::stats::MemoryStats>| {
        let m = m.unwrap_or_default();
        json!({"limit": m.limit, "usage": m.usage, "max": m.max_usage, "failcnt": m.fail_cnt})
    };
    json!({
        "cpu": {
            "usage": {
                "total": acct.total_usage,
                "percpu": acct.usage_percpu,
                "kernel": acct.system_usage,
                "user": acct.user_usage,
            },
            "throttling": {
                "periods": thr.periods,
                "throttled_periods": thr.throttled_periods,
                "throttled_time": thr.throttled_time,
            },
        },
        "memory": {
            "cache": s.memory.cache,
            "usage": mem(s.memory.memory),
            "swap": mem(s.memory.memory_swap),
            "kernel": mem(s.memory.kernel_memory),
        },
        "pids": {"current": s.pids.current, "limit": s.pids.limit},
        "blkio": {},
        "hugetlb": {},
        "intel_rdt": {},
        "network_interfaces": null,
    })
}

/// On cgroup v1, fills `acct` from the cpuacct files in `dir` as runc does (libcontainer
/// `getCpuUsageBreakdown`, `getPercpuUsage`): `percpu` from `cpuacct.usage_percpu` (ns, one
/// space-separated line, which cgroups-rs 0.5 reads as lines and loses), `kernel`/`user` from
/// `cpuacct.stat`, converted from clock ticks (USER_HZ) to nanoseconds. Files that do not exist (cgroup
/// v2) leave `acct` as cgroups-rs made it.
fn v1_cpu_usage(dir: &std::path::Path, acct: &mut cgroups_rs::stats::CpuAcctStats) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cpuacct.usage_percpu")) {
        acct.usage_percpu = text
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
    }
    let Ok(stat) = std::fs::read_to_string(dir.join("cpuacct.stat")) else {
        return;
    };
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ns_per_tick = if ticks > 0 {
        1_000_000_000 / ticks as u64
    } else {
        return;
    };
    for line in stat.lines() {
        let mut f = line.split_whitespace();
        let (Some(key), Some(Ok(v))) = (f.next(), f.next().map(str::parse::<u64>)) else {
            continue;
        };
        match key {
            "user" => acct.user_usage = v.saturating_mul(ns_per_tick),
            "system" => acct.system_usage = v.saturating_mul(ns_per_tick),
            _ => {}
        }
    }
}

/// Prints stats events every `--interval` and an `oom` event whenever the kernel OOM-kills a
/// process of the container, until the container stops; with `--stats`, one stats event.
pub fn run(g: &Global, a: EventsArgs) -> anyhow::Result<ExitCode> {
    let state = container::load(&g.root, &a.id)?;
    if state.status() == Status::Stopped {
        anyhow::bail!("container {} is not running", a.id);
    }
    let path = state
        .cgroup_path
        .clone()
        .ok_or_else(|| anyhow::anyhow!("container {} has no cgroup", a.id))?;
    let cg = ContainerCgroup::open(&path)?;
    let emit = |kind: &str, data: Option<serde_json::Value>| {
        let mut ev = json!({"type": kind, "id": a.id});
        if let Some(d) = data {
            ev["data"] = d;
        }
        println!("{ev}");
    };
    if a.stats {
        emit("stats", Some(stats_json(&cg)));
        return Ok(0);
    }
    let mut ooms = cg.oom_kills();
    let mut next_stats = Instant::now();
    loop {
        if Instant::now() >= next_stats {
            emit("stats", Some(stats_json(&cg)));
            next_stats = Instant::now() + a.interval;
        }
        let now = cg.oom_kills();
        if now > ooms {
            emit("oom", None);
            ooms = now;
        }
        if state.status() == Status::Stopped {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100).min(a.interval));
    }
}
