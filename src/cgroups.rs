//! Cgroups of a container, a thin layer over cgroups-rs (cgroupfs).
//!
//! Host modes (see config-linux.md "Control groups"):
//! - pure v1: one directory per v1 hierarchy (cpu, memory, pids, ...);
//! - pure v2: one directory in the unified hierarchy;
//! - hybrid (v1 controllers plus a cgroup2 mount at `/sys/fs/cgroup/unified`): the v1 directories
//!   through cgroups-rs plus the same path in the cgroup2 mount, which amphi manages itself, as runc
//!   does.
//!
//! `linux.cgroupsPath` is resolved by [`resolve_path`]: an absolute path is taken from the root of each
//! hierarchy; a relative one is also taken from the root (runtime-spec: "relative to a
//! runtime-determined location"); no path means `/amphi/<id>`.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

pub mod devices_bpf;
pub mod systemd;
pub mod v2;

use cgroups_rs::manager::{FsManager, Manager};
use oci_spec::runtime::LinuxResources;

/// Where the cgroup2 mount sits on a hybrid host.
const HYBRID_UNIFIED: &str = "/sys/fs/cgroup/unified";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup layout of this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMode {
    /// Only v1 hierarchies.
    Legacy,
    /// v1 hierarchies plus a cgroup2 mount at `/sys/fs/cgroup/unified`.
    Hybrid,
    /// Only the unified (v2) hierarchy at `/sys/fs/cgroup`.
    Unified,
}

fn is_cgroup2(path: &str) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// Detects the cgroup layout of this host from the file system types under `/sys/fs/cgroup`.
pub fn host_mode() -> HostMode {
    if is_cgroup2(CGROUP_ROOT) {
        HostMode::Unified
    } else if is_cgroup2(HYBRID_UNIFIED) {
        HostMode::Hybrid
    } else {
        HostMode::Legacy
    }
}

/// Resolves `linux.cgroupsPath` to a path from the root of each hierarchy, always starting with `/`.
///
/// With `systemd` (`--systemd-cgroup`) the path is `slice:prefix:name` (see [`systemd::parse`]).
///
/// Errors: a path with `..` (escaping the hierarchy) or naming the root; with `systemd`, a malformed
/// `slice:prefix:name`, systemd not running on this host, or (systemd running) the driver not
/// wired into container creation yet. Nothing is created in any case.
pub fn resolve_path(
    cgroups_path: Option<&Path>,
    id: &str,
    systemd: bool,
) -> anyhow::Result<String> {
    if systemd {
        let p = systemd::parse(cgroups_path, id)?;
        if !systemd::running() {
            anyhow::bail!(
                "--systemd-cgroup: systemd is not running on this host ({} is missing); run without --systemd-cgroup to use cgroupfs paths",
                systemd::SYSTEMD_RUNNING
            );
        }
        anyhow::bail!(
            "--systemd-cgroup: unit {} in {}: creating systemd scopes is not wired into amphi yet; run without --systemd-cgroup",
            p.unit,
            p.slice
        );
    }
    let Some(p) = cgroups_path.filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(format!("/amphi/{id}"));
    };
    let s = p.to_string_lossy();
    if p.components().any(|c| c == std::path::Component::ParentDir) {
        anyhow::bail!("linux.cgroupsPath: {s:?} must not contain '..'");
    }
    // Normalised: `.` and empty components would otherwise name a parent (or the root) cgroup under
    // a spelling that its removal later refuses.
    let parts: Vec<String> = p
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    if parts.is_empty() {
        anyhow::bail!("linux.cgroupsPath: {s:?} names the root cgroup");
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The cgroup of one container in every hierarchy of the host. A clone is another handle on the same
/// cgroup; cgroups-rs reads the mount table again for it (`/proc/self/mountinfo`), so a process
/// that only joins the cgroup takes a [`Placement`] instead.
#[derive(Clone)]
pub struct ContainerCgroup {
    path: String,
    manager: FsManager,
    unified: Option<PathBuf>,
}

impl std::fmt::Debug for ContainerCgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerCgroup")
            .field("path", &self.path)
            .field("unified", &self.unified)
            .finish()
    }
}

fn cg_err(what: &str, path: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cgroup {path}: {what}: {e}")
}

impl ContainerCgroup {
    /// A handle on the cgroup at `path` (as returned by [`resolve_path`]); nothing is created.
    ///
    /// Errors: the cgroup mounts cannot be read.
    pub fn open(path: &str) -> anyhow::Result<ContainerCgroup> {
        let rel = path.trim_start_matches('/');
        let manager = FsManager::new(rel).map_err(|e| cg_err("open", path, e))?;
        let unified = match host_mode() {
            HostMode::Hybrid => Some(Path::new(HYBRID_UNIFIED).join(rel)),
            _ => None,
        };
        Ok(ContainerCgroup {
            path: path.to_string(),
            manager,
            unified,
        })
    }

    /// The path from each hierarchy's root, e.g. `/amphi-test/c1`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Host directories of this cgroup, one per mounted hierarchy (v1 controllers, or the unified one).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let rel = self.path.trim_start_matches('/');
        let mut dirs: Vec<PathBuf> = if self.manager.v2() {
            vec![Path::new(CGROUP_ROOT).join(rel)]
        } else {
            let mut mounts: Vec<&String> = self.manager.mounts().values().collect();
            mounts.sort();
            mounts.dedup();
            mounts
                .into_iter()
                .map(|m| Path::new(m).join(rel))
                .filter(|d| !d.starts_with(HYBRID_UNIFIED))
                .collect()
        };
        dirs.extend(self.unified.iter().cloned());
        dirs
    }

    /// Creates the cgroup in every hierarchy and applies `resources` (devices excepted: the device
    /// controller is not configured yet).
    ///
    /// Errors: a directory cannot be created or a value cannot be written; what was created is
    /// removed again.
    pub fn create(&mut self, resources: Option<&LinuxResources>) -> anyhow::Result<()> {
        let result = self.create_inner(resources);
        if result.is_err() {
            let _ = self.destroy();
        }
        result
    }

    fn create_inner(&mut self, resources: Option<&LinuxResources>) -> anyhow::Result<()> {
        let v2_dir = self.v2_dir();
        for dir in self.dirs() {
            if Some(&dir) == v2_dir.as_ref() {
                let root = if self.manager.v2() {
                    Path::new(CGROUP_ROOT)
                } else {
                    Path::new(HYBRID_UNIFIED)
                };
                v2::create_dir(root, &self.path)?;
            } else {
                create_dir_all_retry(&dir).map_err(|e| cg_err("create", &self.path, e))?;
            }
        }
        if let Some(cpuset) = self.controller_dir("cpuset").filter(|_| !self.manager.v2()) {
            init_cpuset(&cpuset).map_err(|e| cg_err("initialise cpuset", &self.path, e))?;
        }
        if let Some(res) = resources {
            self.update(res)?;
        }
        // Always, as runc: the device cgroup starts from "deny all" even without rules.
        let devices = self.set_devices(
            resources
                .and_then(|r| r.devices().as_deref())
                .unwrap_or_default(),
        );
        match devices {
            // An unprivileged caller (rootless, in a delegated cgroup) cannot program the device
            // controller (v1 `devices.*` need CAP_SYS_ADMIN, v2 a BPF program): runc ignores these
            // errors in rootless mode too; the user namespace already keeps mknod out.
            Err(e) if !nix::unistd::geteuid().is_root() => {
                log::debug!("rootless: device cgroup not set: {e:#}");
                Ok(())
            }
            other => other,
        }
    }

    /// Applies `linux.resources` except `devices` (memory, cpu, pids, blockIO, hugepageLimits,
    /// network) through cgroups-rs; used at create and by `update`.
    ///
    /// Errors: a value the kernel refuses, or a controller missing on this host, naming the cgroup.
    pub fn update(&mut self, resources: &LinuxResources) -> anyhow::Result<()> {
        let mut res = resources.clone();
        res.set_devices(None);
        res.set_unified(None);
        zero_means_unset(&mut res);
        // hugetlb only on cgroup v2 (pure v2, or the cgroup2 mount of a hybrid host like Debian's
        // with hugetlb moved there): amphi writes hugetlb.<size>.max itself.
        let hugetlb_v2 = !self.manager.mounts().contains_key("hugetlb") || self.manager.v2();
        let huge = res.hugepage_limits().clone().unwrap_or_default();
        if hugetlb_v2 {
            res.set_hugepage_limits(None);
        }
        self.manager
            .set(&res)
            .map_err(|e| cg_err("apply linux.resources", &self.path, e))?;
        if hugetlb_v2 && !huge.is_empty() {
            let dir = self.v2_dir().ok_or_else(|| {
                anyhow::anyhow!(
                    "linux.resources.hugepageLimits: this host has no hugetlb controller (neither v1 nor cgroup v2)"
                )
            })?;
            let limits: Vec<(String, i64)> = huge
                .iter()
                .map(|l| (l.page_size().clone(), l.limit()))
                .collect();
            v2::write_hugetlb(&dir, &limits)?;
        }
        if let Some(unified) = resources.unified() {
            self.set_unified(unified)?;
        }
        Ok(())
    }

    /// The container's directory in the cgroup v2 hierarchy: the unified hierarchy of a pure-v2
    /// host, or the cgroup2 mount of a hybrid host; `None` on a pure-v1 host.
    pub fn v2_dir(&self) -> Option<PathBuf> {
        if self.manager.v2() {
            Some(Path::new(CGROUP_ROOT).join(self.path.trim_start_matches('/')))
        } else {
            self.unified.clone()
        }
    }

    /// `linux.resources.unified`: writes each `<controller>.<file>` value into the container's
    /// cgroup v2 directory (the unified hierarchy, or its cgroup2 mount on a hybrid host).
    ///
    /// Errors: a key that is not a plain `<controller>.<file>` name, a file the kernel does not have
    /// (an unknown or unavailable controller), a host without cgroup v2.
    pub fn set_unified(
        &self,
        unified: &std::collections::HashMap<String, String>,
    ) -> anyhow::Result<()> {
        if unified.is_empty() {
            return Ok(());
        }
        let dir = self.v2_dir().ok_or_else(|| {
            anyhow::anyhow!("linux.resources.unified: this host has no cgroup v2 hierarchy")
        })?;
        v2::write_unified(&dir, unified)
    }

    /// Applies `linux.resources.devices` as runc does: starting from "deny all" (whatever the
    /// rules), then the rules in order, then the devices every container may use (runc's default
    /// allow list: null, zero, full, random, urandom, tty, the pty master and slaves, and mknod of
    /// any node); the caller appends allow rules for `linux.devices` (see [`with_linux_devices`]).
    /// The same list goes to the v1 devices controller (`devices.deny`/`devices.allow`) when the
    /// host has one, and to the cgroup v2 directory as a `BPF_CGROUP_DEVICE` program (see
    /// [`devices_bpf`]; on a hybrid host both apply). Calling it again replaces the rules.
    ///
    /// Errors: an invalid rule (type, numbers, access), checked before anything is written; a rule
    /// the kernel refuses; the eBPF program cannot be loaded or attached.
    pub fn set_devices(
        &self,
        rules: &[oci_spec::runtime::LinuxDeviceCgroup],
    ) -> anyhow::Result<()> {
        let (lines, bpf_rules) = device_rules(rules)?;
        if let Some(dir) = self
            .controller_dir("devices")
            .filter(|_| !self.manager.v2())
        {
            // Each write(2) to devices.allow or devices.deny is one rule (cgroup-v1/devices.rst), so
            // each file is opened once for all its rules (the default allow list alone has eleven).
            use std::io::Write;
            let open = |file: &str| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join(file))
                    .map_err(|e| anyhow::anyhow!("linux.resources.devices: open {file}: {e}"))
            };
            let mut deny = open("devices.deny")?;
            let mut allow_file = open("devices.allow")?;
            deny.write_all(b"a").map_err(|e| {
                anyhow::anyhow!("linux.resources.devices: write \"a\" to devices.deny: {e}")
            })?;
            for (i, (allow, line)) in lines.iter().enumerate() {
                let (file, name) = if *allow {
                    (&mut allow_file, "devices.allow")
                } else {
                    (&mut deny, "devices.deny")
                };
                file.write_all(line.as_bytes()).map_err(|e| {
                    anyhow::anyhow!("linux.resources.devices[{i}]: write {line:?} to {name}: {e}")
                })?;
            }
        }
        if let Some(dir) = self.v2_dir() {
            devices_bpf::apply(&dir, &bpf_rules)?;
        }
        Ok(())
    }

    /// What a child process needs to join this cgroup: its path and [`ContainerCgroup::dirs`].
    pub fn placement(&self) -> Placement {
        Placement {
            path: self.path.clone(),
            dirs: self.dirs(),
        }
    }

    /// Host pids of the processes in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        pids_in(&self.dirs())
    }

    /// Sends `signal` to every process in the cgroup: on a host with cgroup v2 (pure or hybrid),
    /// SIGKILL through `cgroup.kill` where the kernel has it (see [`v2::kill_all`]).
    pub fn signal_all(&self, signal: i32) {
        if let Some(dir) = self.v2_dir() {
            v2::kill_all(&dir, signal);
            return;
        }
        for pid in self.pids() {
            // SAFETY: kill(2) takes a pid and a signal number; errors (a process gone) are ignored.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// Kills every process left in the cgroup, waits for them to leave (up to 5 s), and removes the
    /// cgroup from every hierarchy. A missing cgroup is not an error.
    ///
    /// Errors: a directory cannot be removed (processes still inside).
    pub fn destroy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            self.signal_all(libc::SIGKILL);
            std::thread::sleep(Duration::from_millis(5));
        }
        remove_dirs(&self.dirs(), deadline)
    }

    /// Freezes (`true`) or thaws (`false`) every process of the cgroup: the v1 freezer controller, or
    /// `cgroup.freeze` on v2. Waits (up to 5 s) until the kernel reports the new state.
    ///
    /// Errors: no freezer, or the state cannot be written or is not reached.
    pub fn set_frozen(&self, frozen: bool) -> anyhow::Result<()> {
        use cgroups_rs::FreezerState;
        if self.manager.v2() {
            let dir = Path::new(CGROUP_ROOT).join(self.path.trim_start_matches('/'));
            return v2::freeze(&dir, frozen, Duration::from_secs(5));
        }
        let want = if frozen {
            FreezerState::Frozen
        } else {
            FreezerState::Thawed
        };
        self.manager
            .freeze(want)
            .map_err(|e| cg_err(if frozen { "freeze" } else { "thaw" }, &self.path, e))?;
        let Some(dir) = self.controller_dir("freezer") else {
            return Ok(());
        };
        let (file, done) = if self.manager.v2() {
            (
                "cgroup.events",
                if frozen { "frozen 1" } else { "frozen 0" },
            )
        } else {
            ("freezer.state", if frozen { "FROZEN" } else { "THAWED" })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            if now.lines().any(|l| l.trim() == done) {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("cgroup {}: {file} did not reach {done:?}", self.path);
            }
            if frozen && !self.manager.v2() {
                // A v1 freezer can stay FREEZING: ask again, as runc does.
                let _ = std::fs::write(dir.join(file), "FROZEN");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Resource usage of the cgroup (cgroups-rs stats: cpu, memory, pids, blkio, hugetlb).
    pub fn stats(&self) -> cgroups_rs::CgroupStats {
        self.manager.stats()
    }

    /// How many processes of the cgroup the kernel has OOM-killed (`oom_kill` of v1
    /// `memory.oom_control` or v2 `memory.events`); 0 when unknown.
    pub fn oom_kills(&self) -> u64 {
        let Some(dir) = self.controller_dir("memory") else {
            return 0;
        };
        if self.manager.v2() {
            return v2::oom_kills(&dir);
        }
        v2::oom_kill_line(&dir.join("memory.oom_control"))
    }

    /// The directory of `controller` (a v1 subsystem name such as `memory`; ignored on v2), as a path
    /// seen from the host.
    pub fn controller_dir(&self, controller: &str) -> Option<PathBuf> {
        let rel = self.path.trim_start_matches('/');
        if self.manager.v2() {
            return Some(Path::new(CGROUP_ROOT).join(rel));
        }
        self.manager
            .mounts()
            .get(controller)
            .map(|m| Path::new(m).join(rel))
    }

    /// The v1 hierarchies as (mount point on the host, directory of this cgroup) pairs, one per mount
    /// (co-mounted controllers appear once), for the container's `cgroup` mount.
    pub fn v1_hierarchies(&self) -> Vec<(PathBuf, PathBuf)> {
        if self.manager.v2() {
            return Vec::new();
        }
        let rel = self.path.trim_start_matches('/');
        let mut mounts: Vec<&String> = self.manager.mounts().values().collect();
        mounts.sort();
        mounts.dedup();
        mounts
            .into_iter()
            .map(|m| (PathBuf::from(m), Path::new(m).join(rel)))
            .collect()
    }

    /// The cgroup2 directory of this cgroup on a hybrid host.
    pub fn hybrid_unified_dir(&self) -> Option<&Path> {
        self.unified.as_deref()
    }
}

/// A container's cgroup as a process that joins it sees it: the cgroup's path (as returned by
/// [`resolve_path`]) and its host directories, one per hierarchy. Made by
/// [`ContainerCgroup::placement`] without reading the mount table again.
#[derive(Debug, Clone)]
pub struct Placement {
    path: String,
    dirs: Vec<PathBuf>,
}

impl Placement {
    /// The placement of the cgroup at `path` from directories recorded earlier (the container's
    /// state), or `None` unless every one of them is a directory of that cgroup under
    /// `/sys/fs/cgroup` (`..` components refused).
    pub fn recorded(path: &str, dirs: &[PathBuf]) -> Option<Placement> {
        let rel = Path::new(path.trim_start_matches('/'));
        let fits = |d: &PathBuf| {
            d.starts_with(CGROUP_ROOT)
                && d.ends_with(rel)
                && d.components()
                    .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        };
        (!rel.as_os_str().is_empty() && !dirs.is_empty() && dirs.iter().all(fits)).then(|| {
            Placement {
                path: path.to_string(),
                dirs: dirs.to_vec(),
            }
        })
    }

    /// The cgroup's host directories, as [`ContainerCgroup::dirs`].
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Host pids of the processes in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        pids_in(&self.dirs)
    }

    /// Removes the cgroup unless it holds processes, signalling nothing: for a container whose own
    /// processes are known to be gone (its pid namespace ended with its init). Processes found in it
    /// then belong to someone else (another container given the same `cgroupsPath`), and the cgroup
    /// is left to them: `Ok(false)`, as runc's delete leaves a busy cgroup. `Ok(true)`: removed.
    ///
    /// Errors: a directory cannot be removed although the cgroup is empty.
    pub fn remove_unless_busy(&self) -> anyhow::Result<bool> {
        if !self.pids().is_empty() {
            return Ok(false);
        }
        remove_dirs(&self.dirs, Instant::now() + Duration::from_secs(5))?;
        Ok(true)
    }

    /// Moves the calling process into `dirs`, directories of this cgroup (see [`join_current`]).
    ///
    /// Errors: a write fails, named with the cgroup.
    pub fn join(&self, dirs: &[PathBuf]) -> anyhow::Result<()> {
        join_current(dirs).map_err(|(_, e)| cg_err("add process", &self.path, e))
    }
}

/// Host pids of the processes in the cgroup whose directories are `dirs` (its first hierarchy's
/// `cgroup.procs`; empty when it cannot be read).
fn pids_in(dirs: &[PathBuf]) -> Vec<i32> {
    let Some(dir) = dirs.first() else {
        return Vec::new();
    };
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// rmdir of every directory of a cgroup, retried until `deadline` (a cgroup stays busy for a moment
/// after its last process exits). Directories already gone are skipped.
///
/// Errors: the first directory that could not be removed.
fn remove_dirs(dirs: &[PathBuf], deadline: Instant) -> anyhow::Result<()> {
    let mut first_err = None;
    for dir in dirs {
        if !dir.exists() {
            continue;
        }
        let mut delay = Duration::from_millis(2);
        let mut result = std::fs::remove_dir(dir);
        while result.is_err() && Instant::now() < deadline {
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(100));
            result = std::fs::remove_dir(dir);
        }
        if let Err(e) = result {
            if e.kind() != std::io::ErrorKind::NotFound && first_err.is_none() {
                first_err = Some(cg_err("remove", &dir.display().to_string(), e));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// How often a cgroup directory is made again when a parent vanished meanwhile (v1 and v2).
pub(crate) const CREATE_ATTEMPTS: usize = 5;

/// `create_dir_all`, made again when it fails with ENOENT: a parent directory can vanish between
/// two of its mkdirs when another runtime, engine or container's cleanup removes a shared parent
/// that was empty for a moment (seen with parallel containers under one parent).
fn create_dir_all_retry(dir: &Path) -> std::io::Result<()> {
    let mut attempt = 1;
    loop {
        match std::fs::create_dir_all(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < CREATE_ATTEMPTS => {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Moves the calling process into each cgroup directory of `dirs` (host paths, v1 or v2), with the
/// same result as writing its pid to each `cgroup.procs`, but without the cost of that write on
/// cgroup v1: a `cgroup.procs` write takes the kernel's global `cgroup_threadgroup_rwsem` for writing,
/// and the first such write after a quiet moment waits for an RCU grace period (measured here: 5 to
/// 30 ms per container, the largest single cost of `create`). When the caller is its process's only
/// thread (a freshly forked child always is), the v1 `tasks` file gets "0" (the calling thread,
/// cgroups(7) "Tasks (threads) versus processes"), which moves the whole process and which the kernel
/// (6.x) does without that lock. cgroup v2 has no `tasks` file (and refuses moving single threads
/// across domains): there, and whenever the `tasks` write fails, the pid goes to `cgroup.procs` as
/// before.
///
/// Errors: a `cgroup.procs` write fails, with the directory it failed in.
pub fn join_current(dirs: &[PathBuf]) -> Result<(), (PathBuf, std::io::Error)> {
    use std::io::Write;
    let single = single_threaded();
    let pid = nix::unistd::getpid().as_raw().to_string();
    for dir in dirs {
        if single {
            let moved = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("tasks"))
                .and_then(|mut f| f.write_all(b"0"));
            if moved.is_ok() {
                continue;
            }
        }
        std::fs::write(dir.join("cgroup.procs"), &pid).map_err(|e| (dir.clone(), e))?;
    }
    Ok(())
}

/// True when the calling process has exactly one thread (field 20, `num_threads`, of
/// `/proc/self/stat`, proc(5)); false when that cannot be read.
fn single_threaded() -> bool {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return false;
    };
    // The command name (field 2) is in parentheses and may hold spaces or ')'.
    stat.rfind(')')
        .and_then(|i| stat.get(i + 1..))
        .and_then(|rest| rest.split_whitespace().nth(17))
        == Some("1")
}

/// Device rules every container gets after its own (runc's `AllowedDevices`).
const DEFAULT_ALLOWED: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// Drops the `linux.resources` numbers that are 0, which runc treats as "not set" (its cgroup
/// managers write blkio weights, cpu shares/quota/period/realtime and memory reservation/kernel
/// only when non-zero): dockerd 20.10 sends `"blockIO": {"weight": 0}` in every config.json and
/// `{"cpu": {"shares": 0, "quota": 0, "period": 0}, "memory": {"reservation": 0, "kernel": 0}}`
/// with every `update`; the kernel refuses 0 for blkio.weight (10..1000, and the file is absent
/// without BFQ/CFQ) and for cpu.cfs_quota_us / cfs_period_us.
fn zero_means_unset(res: &mut LinuxResources) {
    if let Some(mut bio) = res.block_io().clone() {
        if bio.weight() == Some(0) {
            bio.set_weight(None);
        }
        if bio.leaf_weight() == Some(0) {
            bio.set_leaf_weight(None);
        }
        res.set_block_io(Some(bio));
    }
    if let Some(mut cpu) = res.cpu().clone() {
        if cpu.shares() == Some(0) {
            cpu.set_shares(None);
        }
        if cpu.quota() == Some(0) {
            cpu.set_quota(None);
        }
        if cpu.period() == Some(0) {
            cpu.set_period(None);
        }
        if cpu.realtime_runtime() == Some(0) {
            cpu.set_realtime_runtime(None);
        }
        if cpu.realtime_period() == Some(0) {
            cpu.set_realtime_period(None);
        }
        res.set_cpu(Some(cpu));
    }
    if let Some(mut mem) = *res.memory() {
        if mem.reservation() == Some(0) {
            mem.set_reservation(None);
        }
        if mem.kernel() == Some(0) {
            mem.set_kernel(None);
        }
        if mem.kernel_tcp() == Some(0) {
            mem.set_kernel_tcp(None);
        }
        res.set_memory(Some(mem));
    }
}

/// Names a `linux.resources` number that is out of range for its unsigned field (a negative weight,
/// shares or period), which serde reports only by line and column; `v` is the whole config.
pub fn check_resources_json(v: &serde_json::Value) -> Option<crate::bundle::ConfigError> {
    const U16: u64 = u16::MAX as u64;
    let res = v.pointer("/linux/resources")?;
    if let Some(e) = check_devices_json(res) {
        return Some(e);
    }
    let mut fields: Vec<(String, &serde_json::Value, u64)> = Vec::new();
    for (f, max) in [
        ("blockIO.weight", U16),
        ("blockIO.leafWeight", U16),
        ("cpu.shares", u64::MAX),
        ("cpu.period", u64::MAX),
        ("cpu.realtimePeriod", u64::MAX),
        ("memory.swappiness", u64::MAX),
    ] {
        if let Some(n) = res.pointer(&format!("/{}", f.replace('.', "/"))) {
            fields.push((f.to_string(), n, max));
        }
    }
    if let Some(list) = res
        .pointer("/blockIO/weightDevice")
        .and_then(|l| l.as_array())
    {
        for (i, d) in list.iter().enumerate() {
            for k in ["weight", "leafWeight"] {
                if let Some(n) = d.get(k) {
                    fields.push((format!("blockIO.weightDevice[{i}].{k}"), n, U16));
                }
            }
        }
    }
    fields.into_iter().find_map(|(f, n, max)| {
        let bad = !n.is_null() && n.as_u64().is_none_or(|x| x > max);
        bad.then(|| crate::bundle::ConfigError {
            field: format!("linux.resources.{f}"),
            problem: format!("{n} is not an integer from 0 to {max}"),
        })
    })
}

/// Names the field of a `linux.resources.devices` entry of the wrong JSON type (`type` not one of
/// `a b c u p`, a `major`/`minor` that is not an integer, `access` not a string, `allow` not a
/// boolean), which serde reports only by line and column; `res` is `linux.resources`.
fn check_devices_json(res: &serde_json::Value) -> Option<crate::bundle::ConfigError> {
    let list = res.get("devices")?.as_array()?;
    for (i, d) in list.iter().enumerate() {
        let bad = |k: &str, problem: &str| {
            Some(crate::bundle::ConfigError {
                field: format!("linux.resources.devices[{i}].{k}"),
                problem: format!("{} {problem}", d[k]),
            })
        };
        let given = |k: &str| d.get(k).is_some_and(|x| !x.is_null());
        if given("type")
            && !d["type"]
                .as_str()
                .is_some_and(|t| ["a", "b", "c", "u", "p"].contains(&t))
        {
            return bad("type", "is not \"a\", \"b\", \"c\", \"u\" or \"p\"");
        }
        for k in ["major", "minor"] {
            if given(k) && d[k].as_i64().is_none() {
                return bad(k, "is not an integer");
            }
        }
        if given("access") && !d["access"].is_string() {
            return bad("access", "is not a string of r, w and m");
        }
        if given("allow") && !d["allow"].is_boolean() {
            return bad("allow", "is not true or false");
        }
    }
    None
}

/// Checks `linux.resources.devices` (before anything is written) and gives each rule, followed by
/// the default allow list, in the v1 `devices.allow` format and in the form of the cgroup v2
/// program ([`devices_bpf::Rule`]).
///
/// Errors: an empty access, a major or minor below -1, or a rule [`devices_bpf::parse_rule`]
/// refuses; the message names `linux.resources.devices[i]` and the field.
#[allow(clippy::type_complexity)]
pub fn device_rules(
    rules: &[oci_spec::runtime::LinuxDeviceCgroup],
) -> anyhow::Result<(Vec<(bool, String)>, Vec<devices_bpf::Rule>)> {
    for (i, r) in rules.iter().enumerate() {
        if r.access().as_deref() == Some("") {
            anyhow::bail!("linux.resources.devices[{i}].access: empty (use r, w and m)");
        }
        for (what, n) in [("major", r.major()), ("minor", r.minor())] {
            if n.is_some_and(|n| n < -1) {
                anyhow::bail!(
                    "linux.resources.devices[{i}].{what}: {} is negative (-1 or absent means all)",
                    n.unwrap_or_default()
                );
            }
        }
    }
    let mut lines: Vec<(bool, String)> =
        rules.iter().map(|r| (r.allow(), device_rule(r))).collect();
    lines.extend(DEFAULT_ALLOWED.iter().map(|l| (true, l.to_string())));
    let mut bpf_rules = Vec::with_capacity(lines.len());
    for (i, (allow, line)) in lines.iter().enumerate() {
        let r = devices_bpf::parse_rule(*allow, line).map_err(|e| {
            if i < rules.len() {
                anyhow::anyhow!("linux.resources.devices[{i}]: {e}")
            } else {
                e
            }
        })?;
        bpf_rules.push(r);
    }
    Ok((lines, bpf_rules))
}

/// `resources` with an allow rule (`rwm`) appended for each `linux.devices` node, which runc allows in
/// the device cgroup without a rule of its own.
pub fn with_linux_devices(
    resources: Option<&LinuxResources>,
    devices: &[oci_spec::runtime::LinuxDevice],
) -> LinuxResources {
    let mut res = resources.cloned().unwrap_or_default();
    let mut rules = res.devices().clone().unwrap_or_default();
    use oci_spec::runtime::LinuxDeviceType;
    for d in devices {
        let typ = match d.typ() {
            LinuxDeviceType::B => LinuxDeviceType::B,
            LinuxDeviceType::C | LinuxDeviceType::U => LinuxDeviceType::C,
            // FIFOs (and "all") are not device nodes the device cgroup checks.
            LinuxDeviceType::P | LinuxDeviceType::A => continue,
        };
        let mut r = oci_spec::runtime::LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(Some(d.major()));
        r.set_minor(Some(d.minor()));
        r.set_access(Some("rwm".to_string()));
        rules.push(r);
    }
    res.set_devices(Some(rules));
    res
}

/// A device rule in the v1 `devices.allow`/`devices.deny` format: `TYPE MAJOR:MINOR ACCESS`, with `*`
/// for an absent number and `a` for an absent type.
pub fn device_rule(r: &oci_spec::runtime::LinuxDeviceCgroup) -> String {
    let typ = match r.typ() {
        None => "a".to_string(),
        // "u" (unbuffered character device) is a character device to the device cgroup.
        Some(oci_spec::runtime::LinuxDeviceType::U) => "c".to_string(),
        Some(t) => t.as_str().to_string(),
    };
    let num = |n: Option<i64>| {
        n.filter(|n| *n >= 0)
            .map(|n| n.to_string())
            .unwrap_or_else(|| "*".into())
    };
    let access = r.access().clone().unwrap_or_else(|| "rwm".into());
    format!("{typ} {}:{} {access}", num(r.major()), num(r.minor()))
}

/// A new v1 cpuset cgroup starts with empty `cpuset.cpus` and `cpuset.mems`, and no process can join
/// it: fill each empty one from its parent, top-down from the hierarchy's root to `dir`.
fn init_cpuset(dir: &Path) -> std::io::Result<()> {
    let mut chain: Vec<&Path> = dir
        .ancestors()
        .take_while(|p| p.join("cpuset.cpus").exists())
        .collect();
    chain.reverse();
    for pair in chain.windows(2) {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let current = std::fs::read_to_string(pair[1].join(file))?;
            if current.trim().is_empty() {
                let parent = std::fs::read_to_string(pair[0].join(file))?;
                std::fs::write(pair[1].join(file), parent.trim())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(resolve_path(None, "c1", false).unwrap(), "/amphi/c1");
        assert_eq!(
            resolve_path(Some(Path::new("/a/b/")), "c1", false).unwrap(),
            "/a/b"
        );
        assert_eq!(
            resolve_path(Some(Path::new("a/b")), "c1", false).unwrap(),
            "/a/b"
        );
        assert!(resolve_path(Some(Path::new("/a/../../etc")), "c1", false).is_err());
        assert!(resolve_path(Some(Path::new("/")), "c1", false).is_err());
        assert!(resolve_path(Some(Path::new("system.slice:amphi:c1")), "c1", true).is_err());
    }
}
