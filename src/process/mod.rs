//! The create pipeline, one file per process: [`parent`] (the `amphi create` process) forks the
//! [`intermediate`], which enters the namespaces and forks [`init`], which builds the rootfs, applies
//! the process attributes, reports ready over the [`channel`] and waits for `start`.
//!
//! No process re-executes amphi's binary: the children are forks (the intermediate is born in the
//! container's cgroup2 directory where the kernel can, see [`fork`]) and share the parent's
//! already-validated config.

pub mod channel;
pub mod exec;
pub mod fork;
pub mod init;
pub mod intermediate;
pub mod parent;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use amphi_executors::Executor;
use nix::sys::signal::SigSet;
use oci_spec::runtime::Spec;

use crate::cgroups::Placement;
use crate::namespaces::NamespacePlan;
use crate::rootfs::mounts::CgroupMount;

/// The name of the start socket in the container's state directory.
pub const START_SOCKET: &str = "start.sock";

/// Everything the children need, prepared by the parent before the first fork.
pub struct InitConfig {
    /// The validated config.
    pub spec: Spec,
    /// The bundle directory (relative bind sources are taken from it).
    pub bundle: PathBuf,
    /// The rootfs on the host.
    pub rootfs: PathBuf,
    /// New and joined namespaces.
    pub namespaces: NamespacePlan,
    /// The cgroup the intermediate joins before any namespace is unshared.
    pub cgroup: Option<Placement>,
    /// The directories of `cgroup` the intermediate still joins itself: set in the intermediate
    /// right after the fork, without the cgroup2 directory it was born in (see [`fork`]); `None`:
    /// all of them.
    pub cgroup_join: Option<Vec<PathBuf>>,
    /// How to build the container's `cgroup` mount.
    pub cgroup_mount: CgroupMount,
    /// Connected console socket, when `process.terminal` is set.
    pub console: Option<OwnedFd>,
    /// Listening socket on which init waits for `start`.
    pub start_listener: OwnedFd,
    /// `--preserve-fds N`: fds 3..3+N stay open in the workload.
    pub preserve_fds: u32,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// The executor chosen for this container.
    pub executor: Box<dyn Executor>,
    /// The signal mask the workload starts with (the caller's, before any blocking by `run`).
    pub sigmask: SigSet,
    /// Fds of the parent that the children must not keep (the state directory's lock).
    pub close_in_child: Vec<std::os::fd::RawFd>,
    /// Name of a new session keyring to join (`_ses.<id>`), unless `--no-new-keyring`.
    pub session_keyring: Option<String>,
    /// The runtime-spec state JSON (status `creating`) for the container's own hooks; init fills in
    /// its host pid and status.
    pub hook_state: serde_json::Value,
    /// The connection to the seccomp agent (`linux.seccomp.listenerPath`), when a rule uses
    /// `SCMP_ACT_NOTIFY`; init sends the notify fd over it right after loading the filter.
    pub seccomp_listener: Option<crate::security::seccomp::Listener>,
}

impl std::fmt::Debug for InitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitConfig")
            .field("rootfs", &self.rootfs)
            .field("executor", &self.executor.name())
            .field("start_listener", &self.start_listener.as_raw_fd())
            .finish()
    }
}

/// Ends a forked child without running destructors or atexit handlers of the parent's state.
pub(crate) fn exit_child(code: i32) -> ! {
    // SAFETY: _exit(2) ends the process immediately; no Rust invariant depends on code after it.
    unsafe { libc::_exit(code) }
}
