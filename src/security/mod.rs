//! Process attributes that confine the workload (config.md "POSIX process", config-linux.md):
//! user and groups, capabilities, rlimits, `noNewPrivileges`, `oomScoreAdj`.
//!
//! `linux.seccomp` is in [`seccomp`]. AppArmor and SELinux are refused by config validation until they
//! are built, so that no container runs with less confinement than its config asks for.

pub mod seccomp;

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::{
    Capabilities, LinuxCapabilities, PosixRlimit, PosixRlimitType, Process, User,
};

/// The resource number of an rlimit type (getrlimit(2)).
pub fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Sets `process.rlimits` on the calling process.
///
/// Errors: setrlimit(2) fails (raising a hard limit needs CAP_SYS_RESOURCE), named as
/// `process.rlimits[i]`.
pub fn set_rlimits(rlimits: &[PosixRlimit]) -> anyhow::Result<()> {
    for (i, r) in rlimits.iter().enumerate() {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: `lim` is a valid, initialised rlimit that outlives the call; setrlimit only reads it.
        let rc = unsafe { libc::setrlimit(rlimit_resource(r.typ()), &lim) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
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

/// Writes `process.oomScoreAdj` to `/proc/self/oom_score_adj`.
///
/// Errors: the write fails (a negative value needs CAP_SYS_RESOURCE).
pub fn set_oom_score_adj(value: i32) -> anyhow::Result<()> {
    std::fs::write("/proc/self/oom_score_adj", value.to_string())
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
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
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
