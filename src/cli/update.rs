//! `amphi update` (runc-update(8)): change a container's resource limits.

use std::path::PathBuf;

use clap::Args;
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use super::{ExitCode, Global};
use crate::cgroups::ContainerCgroup;
use crate::container;

/// `amphi update [--resources FILE|-] [flags] ID`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Path to a JSON file of linux.resources to apply, or `-` for stdin (what containerd sends).
    #[arg(short = 'r', long)]
    resources: Option<PathBuf>,
    /// Block IO weight (10-1000).
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    /// CPU CFS period in microseconds.
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds (-1: unlimited).
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CPU realtime period in microseconds.
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds.
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    cpu_rt_runtime: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-share")]
    cpu_share: Option<u64>,
    /// CPUs to use (0-3, 0,1).
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Memory nodes to use (0-3, 0,1).
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Memory limit in bytes (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<i64>,
    /// Memory reservation (soft limit) in bytes.
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    memory_reservation: Option<i64>,
    /// Memory plus swap limit in bytes (-1: unlimited).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<i64>,
    /// Maximum number of pids (0 or -1: unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// The container id.
    id: String,
}

fn from_flags(a: &UpdateArgs) -> anyhow::Result<LinuxResources> {
    let mut res = LinuxResources::default();
    if a.memory.is_some() || a.memory_reservation.is_some() || a.memory_swap.is_some() {
        let mut m = LinuxMemory::default();
        m.set_limit(a.memory);
        m.set_reservation(a.memory_reservation);
        m.set_swap(a.memory_swap);
        res.set_memory(Some(m));
    }
    if a.cpu_period.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_share.is_some()
        || a.cpu_rt_period.is_some()
        || a.cpu_rt_runtime.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
    {
        let mut c = LinuxCpu::default();
        c.set_period(a.cpu_period);
        c.set_quota(a.cpu_quota);
        c.set_shares(a.cpu_share);
        c.set_realtime_period(a.cpu_rt_period);
        c.set_realtime_runtime(a.cpu_rt_runtime);
        c.set_cpus(a.cpuset_cpus.clone());
        c.set_mems(a.cpuset_mems.clone());
        res.set_cpu(Some(c));
    }
    if let Some(limit) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        res.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        if !(10..=1000).contains(&w) {
            anyhow::bail!("--blkio-weight {w}: must be between 10 and 1000");
        }
        let mut b = oci_spec::runtime::LinuxBlockIo::default();
        b.set_weight(Some(w));
        res.set_block_io(Some(b));
    }
    Ok(res)
}

/// Applies the new limits to the container's cgroup.
pub fn run(g: &Global, a: UpdateArgs) -> anyhow::Result<ExitCode> {
    let state = container::load(&g.root, &a.id)?;
    if state.status() == container::Status::Stopped {
        anyhow::bail!("container {} is stopped", a.id);
    }
    let res = match &a.resources {
        Some(path) => {
            let text = if path.as_os_str() == "-" {
                crate::utils::read_json_text(std::io::stdin())
                    .map_err(|e| anyhow::anyhow!("--resources -: read stdin: {e}"))?
            } else {
                crate::utils::read_json_file(path)
                    .map_err(|e| anyhow::anyhow!("--resources {}: {e}", path.display()))?
            };
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("--resources: invalid linux.resources JSON: {e}"))?;
            // serde would also take a JSON array for the struct (its fields in order): `[]`
            // must not pass as "no change".
            if !v.is_object() {
                anyhow::bail!("--resources: linux.resources must be a JSON object, got {v}");
            }
            let wrapped = serde_json::json!({ "linux": { "resources": &v } });
            if let Some(e) = crate::cgroups::check_resources_json(&wrapped) {
                anyhow::bail!("--resources: {e}");
            }
            serde_json::from_value::<LinuxResources>(v)
                .map_err(|e| anyhow::anyhow!("--resources: invalid linux.resources JSON: {e}"))?
        }
        None => from_flags(&a)?,
    };
    let path = state
        .cgroup_path
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("container {} has no cgroup", a.id))?;
    let mut cg = ContainerCgroup::open(path)?;
    // Device rules given (as containerd's CRI sends them) replace the container's rules, with the
    // default allow list and the config's `linux.devices` nodes appended as at create; without
    // rules the devices stay as created (runc keeps them in every case). They are checked before
    // anything is written, so that a bad rule leaves every limit as it was.
    let devices = if res.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        let nodes = oci_spec::runtime::Spec::load(state.bundle.join("config.json"))
            .ok()
            .and_then(|s| s.linux().as_ref().and_then(|l| l.devices().clone()))
            .unwrap_or_default();
        let all = crate::cgroups::with_linux_devices(Some(&res), &nodes);
        let all = all.devices().clone().unwrap_or_default();
        crate::cgroups::device_rules(&all)?;
        Some(all)
    } else {
        None
    };
    cg.update(&res)?;
    if let Some(all) = devices {
        cg.set_devices(&all)?;
    }
    Ok(0)
}
