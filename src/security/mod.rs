//! Process attributes that confine the workload (config.md "POSIX process", config-linux.md):
//! user and groups, capabilities, rlimits, `noNewPrivileges`, `oomScoreAdj`.
//!
//! `linux.seccomp` is in [`seccomp`]; AppArmor and SELinux labels in [`lsm`].

pub mod exe;
pub mod lsm;
pub mod procfs;
pub mod seccomp;

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::{
    Capabilities, LinuxCapabilities, PosixRlimit, PosixRlimitType, Process, User,
};

/// The resource of an rlimit type (getrlimit(2)).
pub fn rlimit_resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// Sets `process.rlimits` on the calling process.
///
/// Errors: setrlimit(2) fails (raising a hard limit needs CAP_SYS_RESOURCE), named as
/// `process.rlimits[i]`.
pub fn set_rlimits(rlimits: &[PosixRlimit]) -> anyhow::Result<()> {
    for (i, r) in rlimits.iter().enumerate() {
        if let Err(e) = setrlimit(rlimit_resource(r.typ()), r.soft(), r.hard()) {
            anyhow::bail!(
                "process.rlimits[{i}]: set {} to soft {} hard {}: {e}",
                r.typ(),
                r.soft(),
                r.hard()
            );
        }
    }
    Ok(())
}

/// Writes `process.oomScoreAdj` to `/proc/self/oom_score_adj`, through the checked procfs handle of
/// [`procfs::write`].
///
/// Errors: the write fails (a negative value needs CAP_SYS_RESOURCE), or `/proc` is not a procfs
/// mount (or something is mounted over the file).
pub fn set_oom_score_adj(value: i32) -> anyhow::Result<()> {
    procfs::write("self/oom_score_adj", value.to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("process.oomScoreAdj: set {value}: {e}"))
}

fn to_caps(set: &Option<Capabilities>, field: &str) -> CapsHashSet {
    let mut out = HashSet::new();
    for c in set.iter().flatten() {
        let name = format!("CAP_{c}");
        match Capability::from_str(&name) {
            Ok(cap) => {
                out.insert(cap);
            }
            Err(_) => log::warn!("{field}: capability {name} is unknown to this build; ignored"),
        }
    }
    out
}

/// The five capability sets of `process.capabilities`, as the caps crate's sets.
#[derive(Debug, Clone, Default)]
pub struct CapSets {
    /// Bounding set.
    pub bounding: CapsHashSet,
    /// Effective set.
    pub effective: CapsHashSet,
    /// Inheritable set (kept exactly as configured).
    pub inheritable: CapsHashSet,
    /// Permitted set.
    pub permitted: CapsHashSet,
    /// Ambient set.
    pub ambient: CapsHashSet,
}

impl CapSets {
    /// Converts `process.capabilities` (absent: every set empty, as runc).
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> CapSets {
        let Some(c) = c else {
            return CapSets::default();
        };
        CapSets {
            bounding: to_caps(c.bounding(), "process.capabilities.bounding"),
            effective: to_caps(c.effective(), "process.capabilities.effective"),
            inheritable: to_caps(c.inheritable(), "process.capabilities.inheritable"),
            permitted: to_caps(c.permitted(), "process.capabilities.permitted"),
            ambient: to_caps(c.ambient(), "process.capabilities.ambient"),
        }
    }
}

/// Switches to `process.user` and sets the capability sets, in the order that keeps the needed
/// privileges until the end: drop the bounding set (needs CAP_SETPCAP), keep capabilities across the
/// uid change, set groups, gid, uid, then the effective, permitted, inheritable and ambient sets.
///
/// Errors: the step that failed, naming the config field.
pub fn apply_user_and_caps(user: &User, caps: &CapSets) -> anyhow::Result<()> {
    let all = caps::all();
    for cap in all.difference(&caps.bounding) {
        // A capability the running kernel does not know cannot be dropped: skip it.
        if let Err(e) = caps::drop(None, CapSet::Bounding, *cap) {
            if caps::runtime::thread_all_supported().contains(cap) {
                anyhow::bail!("process.capabilities.bounding: drop {cap}: {e}");
            }
        }
    }
    // SAFETY: prctl(PR_SET_KEEPCAPS) takes integer arguments only and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        anyhow::bail!(
            "prctl(PR_SET_KEEPCAPS): {}",
            std::io::Error::last_os_error()
        );
    }
    let gids: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // setgroups is denied in a user namespace whose setgroups file says "deny"; only fail when
    // groups were asked for.
    if let Err(e) = setgroups(&gids) {
        if !gids.is_empty() {
            anyhow::bail!("process.user.additionalGids: setgroups: {e}");
        }
    }
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid)
        .map_err(|e| anyhow::anyhow!("process.user.gid {}: {e}", user.gid()))?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid)
        .map_err(|e| anyhow::anyhow!("process.user.uid {}: {e}", user.uid()))?;
    // SAFETY: as above, integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    // Each capset(2) call must leave effective within permitted: set effective and inheritable
    // while permitted is still full, then shrink permitted.
    caps::set(
        None,
        CapSet::Effective,
        &caps
            .effective
            .intersection(&caps.permitted)
            .copied()
            .collect(),
    )
    .map_err(|e| anyhow::anyhow!("process.capabilities.effective: {e}"))?;
    caps::set(None, CapSet::Inheritable, &caps.inheritable)
        .map_err(|e| anyhow::anyhow!("process.capabilities.inheritable: {e}"))?;
    caps::set(None, CapSet::Permitted, &caps.permitted)
        .map_err(|e| anyhow::anyhow!("process.capabilities.permitted: {e}"))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| anyhow::anyhow!("clear ambient set: {e}"))?;
    for cap in &caps.ambient {
        // The kernel only allows ambient capabilities that are permitted and inheritable.
        if let Err(e) = caps::raise(None, CapSet::Ambient, *cap) {
            log::warn!("process.capabilities.ambient: cannot raise {cap}: {e}");
        }
    }
    Ok(())
}

/// Sets `no_new_privs` (prctl(2) PR_SET_NO_NEW_PRIVS).
///
/// Errors: the prctl fails.
pub fn set_no_new_privileges() -> anyhow::Result<()> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        anyhow::bail!(
            "process.noNewPrivileges: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The last step before the workload, shared by a container's init and `exec`: user, groups and
/// capabilities, `umask` (default 0022), `noNewPrivileges`. Call [`mark_fds_cloexec`] first: it must
/// run before a seccomp filter is loaded (profiles may not allow `close_range`).
///
/// Errors: the step that failed, naming the config field.
pub fn finalize(process: &Process) -> anyhow::Result<()> {
    let caps = CapSets::from_spec(process.capabilities().as_ref());
    apply_user_and_caps(process.user(), &caps)?;
    umask(Mode::from_bits_truncate(
        process.user().umask().unwrap_or(0o022),
    ));
    if process.no_new_privileges().unwrap_or(false) {
        set_no_new_privileges()?;
    }
    Ok(())
}

/// Marks every fd except stdio and the `preserve_fds` fds after it (3..3+N) close-on-exec, and makes
/// those N inheritable, so that no fd of the runtime reaches the workload.
///
/// Errors: close_range(2) fails.
pub fn mark_fds_cloexec(preserve_fds: u32) -> anyhow::Result<()> {
    // No fd can reach fs.nr_open, so a huge --preserve-fds neither overflows nor loops for ages.
    let nr_open = procfs::read_to_string("sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(1 << 20);
    let first = 3u32.saturating_add(preserve_fds).min(nr_open.max(3));
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on fds; it frees no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        anyhow::bail!("close_range: {}", std::io::Error::last_os_error());
    }
    for fd in 3..first {
        // SAFETY: F_SETFD on an fd number; a closed fd just yields EBADF, which is ignored.
        unsafe { libc::fcntl(fd as i32, libc::F_SETFD, 0) };
    }
    Ok(())
}

/// Closes every fd from `first` up (the workload's configured fds are 0..first) except those in
/// `keep`, for a workload that never `execve`s (a Wasm guest runs in amphi's own process, so
/// close-on-exec does not help): no fd that amphi opened or inherited from its caller stays open in
/// the container's pid 1. Uses close_range(2); when a seccomp filter denies it, closes the fds one by
/// one, up to the highest fd number the `RLIMIT_NOFILE` soft limit allows (at most 2^20).
///
/// Logging is switched off first ([`log::set_max_level`]): the log file's fd is closed too, and a
/// later log line must not land in whatever file reuses its number.
///
/// Errors: none are fatal; fds that are already closed are skipped.
pub fn close_fds_except(first: u32, keep: &[std::os::fd::RawFd]) {
    log::set_max_level(log::LevelFilter::Off);
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|k| **k >= 0 && (**k as u32) >= first)
        .map(|k| *k as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut ranges = Vec::new();
    let mut lo = first;
    for k in &keep {
        if *k > lo {
            ranges.push((lo, *k - 1));
        }
        lo = k.saturating_add(1);
    }
    ranges.push((lo, u32::MAX));
    for (a, b) in ranges {
        // SAFETY: close_range closes fds of this process only; nothing in this process uses them
        // afterwards (the callers keep the ones they still need in `keep`).
        let rc = unsafe { libc::syscall(libc::SYS_close_range, a, b, 0) };
        if rc == 0 {
            continue;
        }
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit struct into `lim`.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        let top = (lim.rlim_cur.min(1 << 20) as u32).min(b.saturating_add(1));
        for fd in a..top {
            // SAFETY: as above; a closed fd number yields EBADF, which is ignored.
            unsafe { libc::close(fd as i32) };
        }
    }
}

/// Checks that the current working directory is reachable from the process's root directory, right
/// after `chdir(process.cwd)` (CVE-2024-21626: a `cwd` such as `/proc/self/fd/N` naming an fd that
/// points at a host directory would otherwise leave the workload with a working directory outside
/// the container). getcwd(2) reports a directory outside the root as `(unreachable)/...`.
///
/// Errors: the working directory is outside the root, or getcwd(2) fails; the message names
/// `process.cwd`.
pub fn check_cwd_inside_root(cwd: &std::path::Path) -> anyhow::Result<()> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: the raw getcwd syscall writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        anyhow::bail!(
            "process.cwd: {}: cannot tell where the working directory is: {e}",
            cwd.display()
        );
    }
    if buf.first() != Some(&b'/') {
        anyhow::bail!(
            "process.cwd: {} resolves to a directory outside the container's root",
            cwd.display()
        );
    }
    Ok(())
}

/// Makes the calling process non-dumpable (prctl(2) `PR_SET_DUMPABLE` 0) so that processes of the
/// container without CAP_SYS_PTRACE in the host's user namespace cannot open its `/proc/<pid>/`
/// files (`exe`, `mem`, `fd/`, `environ`); for processes that stay amphi's image (init waiting for
/// `start`, a Wasm guest's pid 1). An `execve` of the workload makes it dumpable again, as usual.
///
/// Errors: the prctl fails.
pub fn set_non_dumpable() -> anyhow::Result<()> {
    // SAFETY: prctl(PR_SET_DUMPABLE) takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        anyhow::bail!(
            "prctl(PR_SET_DUMPABLE, 0): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
