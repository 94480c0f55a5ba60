//! Forking straight into a cgroup2 directory: clone3(2) with `CLONE_INTO_CGROUP` (Linux 5.7).
//!
//! Moving a process into a cgroup2 directory afterwards (a `cgroup.procs` write) takes the kernel's
//! `cgroup_threadgroup_rwsem` for writing, which waits for an RCU grace period unless the hierarchy
//! is mounted with `favordynmods`: measured on this project's hosts at 5 to 30 ms for a single
//! `create`, more than everything else it does. A child created inside the cgroup needs no
//! migration at all (the kernel only takes that lock for reading during the fork). cgroup v1
//! hierarchies have no such flag; their cheap `tasks` write stays (see [`crate::cgroups::join_current`]).

use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::unistd::{ForkResult, Pid};

/// `CLONE_INTO_CGROUP` (linux/sched.h).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of clone3(2), version 2 (88 bytes, the first with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Forks the calling process as fork(2) does, with the child born in the cgroup2 directory open as
/// `cgroup`. Returns `None` when the kernel cannot (no clone3 or no `CLONE_INTO_CGROUP`: ENOSYS,
/// E2BIG, EINVAL; a directory it refuses, e.g. EOPNOTSUPP for a threaded cgroup, or EACCES): the
/// caller then forks normally and joins by writing `cgroup.procs`, which reports the real error if
/// there is one.
///
/// # Safety
/// As for fork(2): the caller must be single-threaded, because the child runs on a copy of this
/// thread only and fork handlers (pthread_atfork) are not run.
pub unsafe fn fork_into_cgroup(cgroup: BorrowedFd<'_>) -> Option<ForkResult> {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid, initialised clone_args of the size passed, alive for the call;
    // without CLONE_VM and with a null stack the child gets a copy of this address space and
    // returns here on a copy of this stack, as with fork(2). Single-threadedness is the caller's
    // contract (above).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        0 => Some(ForkResult::Child),
        pid if pid > 0 => Some(ForkResult::Parent {
            child: Pid::from_raw(pid as i32),
        }),
        _ => {
            log::debug!(
                "clone3(CLONE_INTO_CGROUP): {}; forking and joining instead",
                std::io::Error::last_os_error()
            );
            None
        }
    }
}

/// The one directory of `dirs` that is on a cgroup2 file system (pure v2, or the unified hierarchy
/// of a hybrid host), opened for [`fork_into_cgroup`], with the other directories (v1 hierarchies)
/// still to be joined. `None` when there is no such directory or it cannot be opened.
pub fn split_cgroup2(dirs: &[PathBuf]) -> Option<(std::fs::File, Vec<PathBuf>)> {
    use std::os::unix::fs::OpenOptionsExt;
    let i = dirs.iter().position(|d| is_cgroup2(d))?;
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(&dirs[i])
        .ok()?;
    let mut rest = dirs.to_vec();
    rest.remove(i);
    Some((dir, rest))
}

fn is_cgroup2(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// Forks a process that must end up in the cgroup directories `dirs` (one per hierarchy): born in
/// the cgroup2 one when the kernel can ([`fork_into_cgroup`]), else a plain fork(2). Returns the
/// directories the child still has to join itself (all of `dirs` after a plain fork).
///
/// Errors: fork(2) fails.
///
/// # Safety
/// As for fork(2): the caller must be single-threaded.
pub unsafe fn fork_for_cgroup(dirs: &[PathBuf]) -> anyhow::Result<(ForkResult, Vec<PathBuf>)> {
    use std::os::fd::AsFd;
    if let Some((dir, rest)) = split_cgroup2(dirs) {
        // SAFETY: the caller is single-threaded (this function's contract).
        if let Some(forked) = unsafe { fork_into_cgroup(dir.as_fd()) } {
            return Ok((forked, rest));
        }
    }
    // SAFETY: as above.
    let forked = unsafe { nix::unistd::fork() }.map_err(|e| anyhow::anyhow!("fork: {e}"))?;
    Ok((forked, dirs.to_vec()))
}

/// A one-shot pipe that holds a freshly forked child until its parent (the intermediate process)
/// has reported the child's pid to `amphi`: the child's own messages on the shared channel then
/// always follow that pid, and if the intermediate dies before reporting it, the child learns so
/// (end-of-file) and gives up instead of running unreported. Both ends are close-on-exec.
pub struct Gate {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
}

/// The child's end of a [`Gate`].
pub struct GateWait(std::os::fd::OwnedFd);

/// The parent's end of a [`Gate`].
pub struct GateRelease(std::os::fd::OwnedFd);

impl Gate {
    /// Makes the pipe; call before forking, then [`Gate::child`] or [`Gate::parent`] on each side.
    ///
    /// Errors: pipe2(2) fails (EMFILE, ENFILE).
    pub fn new() -> anyhow::Result<Gate> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| anyhow::anyhow!("pipe: {e}"))?;
        Ok(Gate { read, write })
    }

    /// The child's end (the write end is closed here, so that the parent's death reads as EOF).
    pub fn child(self) -> GateWait {
        GateWait(self.read)
    }

    /// The parent's end.
    pub fn parent(self) -> GateRelease {
        GateRelease(self.write)
    }
}

impl GateWait {
    /// Blocks until the parent releases the gate (`true`) or ends without releasing it (`false`).
    pub fn wait(self) -> bool {
        let mut byte = [0u8; 1];
        loop {
            match nix::unistd::read(&self.0, &mut byte) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return matches!(r, Ok(1)),
            }
        }
    }
}

impl GateRelease {
    /// Lets the child go on.
    ///
    /// Errors: write(2) fails: EPIPE when the child has already died (unless SIGPIPE, at its default
    /// disposition in amphi's children, ends the caller first).
    pub fn release(self) -> anyhow::Result<()> {
        nix::unistd::write(&self.0, &[1]).map_err(|e| anyhow::anyhow!("release the child: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn split_picks_only_a_cgroup2_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = vec![tmp.path().to_path_buf()];
        assert!(split_cgroup2(&plain).is_none());
        // On a host with a cgroup2 mount (pure v2 or hybrid), its root is picked out of the list.
        for root in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
            let root = PathBuf::from(root);
            if is_cgroup2(&root) {
                let dirs = vec![tmp.path().to_path_buf(), root.clone()];
                let (_, rest) = split_cgroup2(&dirs).unwrap();
                assert_eq!(rest, vec![tmp.path().to_path_buf()]);
                return;
            }
        }
    }

    #[test]
    fn a_directory_that_is_no_cgroup_is_refused_without_a_child() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = std::fs::File::open(dir.path()).unwrap();
        // SAFETY: a child, should the kernel ever create one, only calls _exit.
        match unsafe { fork_into_cgroup(tmp.as_fd()) } {
            None => {}
            // SAFETY: _exit(2) ends the (unexpected) child at once, touching no shared state.
            Some(ForkResult::Child) => unsafe { libc::_exit(0) },
            Some(ForkResult::Parent { child }) => {
                let _ = nix::sys::wait::waitpid(child, None);
                panic!("clone3 accepted a plain directory as a cgroup");
            }
        }
    }
}
