//! The exec pipeline: a new process in a running container (runc-exec(8)).
//!
//! parent (`amphi exec`) -> intermediate: joins the container's cgroup, then its namespaces (user
//! first, mount last) -> forks the process (so it is inside the container's pid and time namespaces),
//! which sets up its terminal, cwd, rlimits, user, capabilities, `no_new_privs` and the container's
//! seccomp filter, and hands over to the executor. The parent learns the outcome from the channel:
//! end-of-file once the workload runs (the child's end is close-on-exec), or an error message.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use amphi_executors::Executor;
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, setsid, ForkResult};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::channel::{Channel, Msg};
use super::exit_child;
use crate::namespaces::clone_flag;
use crate::security;

/// Everything the exec'd process needs, prepared by the parent.
pub struct ExecConfig {
    /// A spec whose `process` is the process to run.
    pub spec: Spec,
    /// The container's cgroup directories to join (one per hierarchy).
    pub cgroup_dirs: Vec<PathBuf>,
    /// The container's namespaces that differ from the caller's, in join order.
    pub namespaces: Vec<(LinuxNamespaceType, OwnedFd)>,
    /// Connected console socket, when `process.terminal` is set.
    pub console: Option<OwnedFd>,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
    /// The executor of the command.
    pub executor: Box<dyn Executor>,
    /// The signal mask the process starts with.
    pub sigmask: SigSet,
    /// Fds of the parent that the children must not keep.
    pub close_in_child: Vec<RawFd>,
    /// The container runs a Wasm guest, whose executor hid `/proc` in the container's mount namespace:
    /// a native command gets it back in a mount namespace of its own.
    pub reveal_proc: bool,
    /// The container's `linux.seccomp`: the process is confined by the same filter as its init.
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// The connection to the seccomp agent (`linux.seccomp.listenerPath`), when a rule uses
    /// `SCMP_ACT_NOTIFY`; its state is the container's (status `running`).
    pub seccomp_listener: Option<security::seccomp::Listener>,
}

/// The order namespaces are joined in: user first (it grants the rights for the rest), mount last.
pub const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
];

/// The `/proc/<pid>/ns/` name of a namespace type.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Starts the process; returns its pid (in the caller's pid namespace) once the workload runs.
///
/// Errors: any step, with its message; every process forked is reaped (or killed) first.
pub fn spawn(cfg: &mut ExecConfig) -> anyhow::Result<i32> {
    let (parent_ch, child_ch) = Channel::pair()?;
    // SAFETY: amphi is single-threaded here, so the child may run any code.
    let (forked, to_join) = unsafe { super::fork::fork_for_cgroup(&cfg.cgroup_dirs) }?;
    let child = match forked {
        ForkResult::Child => {
            drop(parent_ch);
            cfg.cgroup_dirs = to_join;
            let code = match intermediate(cfg, &child_ch) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = child_ch.send(&Msg::Error(format!("{e:#}")));
                    1
                }
            };
            exit_child(code);
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_ch);
    // Only the exec'd process uses the agent's connection (see `HostPid`).
    let seccomp_listener = cfg.seccomp_listener.take().is_some();
    let mut pid = None;
    let result = (|| -> anyhow::Result<i32> {
        let p = match parent_ch.recv()? {
            Some(Msg::InitPid(p)) => p,
            Some(Msg::Error(e)) => return Err(anyhow::anyhow!(e)),
            Some(other) => anyhow::bail!("exec: unexpected {other:?}"),
            None => anyhow::bail!("exec: the intermediate process exited early"),
        };
        pid = Some(p);
        if seccomp_listener {
            parent_ch.send(&Msg::HostPid(p))?;
        }
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => {}
            other => anyhow::bail!("exec: intermediate process ended with {other:?}"),
        }
        match parent_ch.recv()? {
            None => Ok(p),
            Some(Msg::Error(e)) => Err(anyhow::anyhow!(e)),
            Some(other) => anyhow::bail!("exec: unexpected {other:?}"),
        }
    })();
    if result.is_err() {
        if let Some(p) = pid {
            let _ = kill(nix::unistd::Pid::from_raw(p), Signal::SIGKILL);
        }
        let _ = kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
    }
    result
}

fn intermediate(cfg: &mut ExecConfig, ch: &Channel) -> anyhow::Result<()> {
    for fd in &cfg.close_in_child {
        // SAFETY: the fd belongs to the parent's lock File, of which this forked child holds a copy
        // that it never uses; closing the number releases only this process's reference.
        unsafe { libc::close(*fd) };
    }
    crate::cgroups::join_current(&cfg.cgroup_dirs)
        .map_err(|(dir, e)| anyhow::anyhow!("join cgroup {}: {e}", dir.display()))?;
    for (t, fd) in &cfg.namespaces {
        setns(fd.as_fd(), clone_flag(*t))
            .map_err(|e| anyhow::anyhow!("join {t} namespace: {e}"))?;
    }
    // The child waits until its pid is reported: if this process dies first, the child gives up
    // instead of running a process that `amphi exec` could neither report nor kill.
    let gate = super::fork::Gate::new()?;
    // SAFETY: this process is single-threaded (a fork of a single-threaded parent).
    match unsafe { fork() }.map_err(|e| anyhow::anyhow!("fork: {e}"))? {
        ForkResult::Child => run_child(cfg, ch, gate.child()),
        ForkResult::Parent { child } => {
            let gate = gate.parent();
            ch.send(&Msg::InitPid(child.as_raw()))?;
            gate.release()
        }
    }
}

fn run_child(cfg: &mut ExecConfig, ch: &Channel, gate: super::fork::GateWait) -> ! {
    if !gate.wait() {
        let _ = ch.send(&Msg::Error(
            "intermediate process ended before reporting the process's pid".into(),
        ));
        exit_child(1);
    }
    let err = match child_steps(cfg, ch) {
        Err(e) => format!("{e:#}"),
        Ok(never) => match never {},
    };
    let _ = ch.send(&Msg::Error(err));
    exit_child(255);
}

fn child_steps(cfg: &mut ExecConfig, ch: &Channel) -> anyhow::Result<std::convert::Infallible> {
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&cfg.sigmask), None)
        .map_err(|e| anyhow::anyhow!("restore signal mask: {e}"))?;
    if let Some(l) = cfg.seccomp_listener.as_mut() {
        match ch.recv()? {
            Some(Msg::HostPid(pid)) => l.set_pid(pid, false),
            other => anyhow::bail!("waiting for the process's host pid: unexpected {other:?}"),
        }
    }
    let spec = cfg.spec.clone();
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("process: missing"))?;
    if let Some(console) = cfg.console.take() {
        setsid().map_err(|e| anyhow::anyhow!("setsid: {e}"))?;
        let size = process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        crate::tty::setup_console(console.as_fd(), process.user().uid(), size)?;
    }
    let cwd = process.cwd();
    nix::unistd::chdir(cwd)
        .map_err(|e| anyhow::anyhow!("process.cwd: chdir {}: {e}", cwd.display()))?;
    // `--cwd /proc/self/fd/N` naming an fd of the caller must not land outside the root (class 2).
    security::check_cwd_inside_root(cwd)?;
    security::set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    let wasm = cfg.executor.name() == "wasm";
    let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    // A Wasm command's label files must be opened on the container's procfs, which its guest has
    // hidden: uncover it in this process's own mount namespace (the executor's `load` hides it
    // again before the guest runs).
    let wants_labels = has(process.apparmor_profile()) || has(process.selinux_label());
    if wasm || cfg.reveal_proc {
        // Changes to /proc are made in a mount namespace of this process only, never in the
        // container's: a Wasm guest gets /proc hidden (by the executor's `load`), a native command in
        // a Wasm container gets back the procfs that the container's guest has hidden.
        unshare(CloneFlags::CLONE_NEWNS)
            .map_err(|e| anyhow::anyhow!("unshare mount namespace: {e}"))?;
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_SLAVE | nix::mount::MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| anyhow::anyhow!("make / rslave: {e}"))?;
        if !wasm || wants_labels {
            let hidden = nix::sys::statfs::statfs("/proc")
                .map(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
                .unwrap_or(false);
            if hidden {
                nix::mount::umount2("/proc", nix::mount::MntFlags::MNT_DETACH)
                    .map_err(|e| anyhow::anyhow!("uncover /proc: {e}"))?;
            }
        }
    }
    let transition = if wasm {
        security::lsm::Transition::Now
    } else {
        security::lsm::Transition::OnExec
    };
    let labels = security::lsm::ProcessLabels::open(process, transition)?;
    cfg.executor
        .load(&spec)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Seccomp in the order of init's (see `seccomp::load_early`): without noNewPrivileges, loaded
    // now while the process still has CAP_SYS_ADMIN; with it, after finalize, right before the
    // workload. The filter is kept alive until the workload replaces or ends this process.
    security::mark_fds_cloexec(cfg.preserve_fds)?;
    let mut late_filter = None;
    if let Some(s) = &cfg.seccomp {
        let filter = security::seccomp::build(s)?;
        if security::seccomp::load_early(process.no_new_privileges().unwrap_or(false)) {
            let listener = cfg.seccomp_listener.take();
            security::seccomp::load_and_notify(&filter, listener, "running")?;
        } else {
            late_filter = Some(filter);
        }
    }
    security::finalize(process)?;
    // AppArmor profile and SELinux label: at the execve of a Linux command, now for a Wasm one.
    labels.apply()?;
    let ch_fd = ch.as_fd().as_raw_fd();
    if wasm {
        // Escape classes 1 and 2: a Wasm command runs in amphi's own image and never execs, so
        // close-on-exec closes nothing: close every fd above the configured ones now (the channel
        // reports the start), and keep container processes without CAP_SYS_PTRACE out of its
        // /proc/<pid>/ files unless it runs in a user namespace.
        let keep: Vec<RawFd> = std::iter::once(ch_fd)
            .chain(cfg.seccomp_listener.as_ref().map(|l| l.as_raw_fd()))
            .collect();
        security::close_fds_except(3u32.saturating_add(cfg.preserve_fds), &keep);
        let in_user_ns = cfg
            .namespaces
            .iter()
            .any(|(t, _)| *t == LinuxNamespaceType::User);
        if !in_user_ns {
            security::set_non_dumpable()?;
        }
    }
    if let Some(filter) = &late_filter {
        let listener = cfg.seccomp_listener.take();
        security::seccomp::load_and_notify(filter, listener, "running")?;
    }
    let err = match cfg.executor.exec(&mut || {
        // SAFETY: closes this process's end of the channel, which nothing uses afterwards; the parent
        // reads end-of-file as "the workload runs".
        unsafe { libc::close(ch_fd) };
    }) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    Err(anyhow::anyhow!("{err}"))
}
