//! The init process: builds the container from the inside, reports ready, waits for `start`, and
//! hands over to the executor.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::sys::signal::{sigprocmask, SigmaskHow};
use nix::sys::socket::{accept4, SockFlag};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{sethostname, setsid};
use oci_spec::runtime::LinuxNamespaceType;

use super::channel::{Channel, Msg};
use super::fork::GateWait;
use super::{exit_child, InitConfig};
use crate::rootfs::resolve::{Kind, Root};
use crate::rootfs::{self, devices, mounts, paths, pivot};
use crate::security;

/// Runs the init process. Never returns: it becomes the workload, or exits with status 1 (setup
/// error, reported to the parent) or 127 (the workload could not be started, reported to `start`).
/// `gate`: released by the intermediate process once it has reported init's pid (see
/// [`super::fork::Gate`]).
pub fn run(cfg: &mut InitConfig, ch: &Channel, gate: GateWait) -> ! {
    if !gate.wait() {
        let _ = ch.send(&Msg::Error(
            "intermediate process ended before reporting init's pid".into(),
        ));
        exit_child(1);
    }
    let (late_filter, labels) = match setup(cfg, ch) {
        Ok(f) => f,
        Err(e) => {
            let _ = ch.send(&Msg::Error(format!("{e:#}")));
            exit_child(1);
        }
    };
    // Escape class 1: until `start` (and for a Wasm guest's whole life) this process runs amphi's
    // image; without a user namespace, container processes lacking CAP_SYS_PTRACE must not open its
    // /proc/<pid>/ files (in a user namespace the rootless caller itself needs them, and they are
    // owned by an id unmapped in the container anyway). The image is protected in any case (see
    // `security::exe`).
    if !(cfg.namespaces.new_user || cfg.namespaces.joins_user()) {
        if let Err(e) = security::set_non_dumpable() {
            let _ = ch.send(&Msg::Error(format!("{e:#}")));
            exit_child(1);
        }
    }
    if ch.send(&Msg::Ready).is_err() {
        exit_child(1);
    }
    // As pid 1 of its namespace, init ignores every signal it has no handler for, so `kill` of a
    // created container with SIGTERM, SIGINT or SIGHUP would do nothing (runc's init exits on them):
    // until `start`, they end it with status 128+signal.
    let before = amphi_executors::signals::exit_on_stop_signals();
    let mut conn = match wait_for_start(cfg) {
        Ok(c) => Some(c),
        Err(_) => exit_child(1),
    };
    amphi_executors::signals::restore_stop_signals(&before);
    if let Some(list) = cfg
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().clone())
    {
        cfg.hook_state["status"] = "created".into();
        if let Err(e) = crate::hooks::run("startContainer", &list, &cfg.hook_state) {
            if let Some(c) = conn.as_mut() {
                let _ = c.write_all(format!("{e:#}").as_bytes());
            }
            exit_child(1);
        }
    }
    // AppArmor profile and SELinux label (security::lsm): for a Linux workload they take effect at
    // its execve, for a Wasm guest now, as the last steps before the workload.
    if let Err(e) = labels.apply() {
        if let Some(c) = conn.as_mut() {
            let _ = c.write_all(format!("{e:#}").as_bytes());
        }
        exit_child(127);
    }
    // Escape class 2: a workload that does not execve (a Wasm guest) would keep every fd that
    // close-on-exec was meant to close; close them now, before a late seccomp filter may deny
    // close_range. Only the start connection stays, until the executor reports the start.
    if cfg.executor.name() == "wasm" {
        let keep: Vec<i32> = conn
            .iter()
            .map(|c| c.as_raw_fd())
            .chain(cfg.seccomp_listener.as_ref().map(|l| l.as_raw_fd()))
            .collect();
        security::close_fds_except(3u32.saturating_add(cfg.preserve_fds), &keep);
    }
    // With noNewPrivileges, the seccomp filter is loaded here, the last step before the workload
    // (see `seccomp::load_early`); it confines a Wasm guest's runtime too, which runs in this process.
    // The filter is kept alive until the workload replaces or ends this process.
    if let Some(filter) = &late_filter {
        let listener = cfg.seccomp_listener.take();
        if let Err(e) = security::seccomp::load_and_notify(filter, listener, "created") {
            if let Some(c) = conn.as_mut() {
                let _ = c.write_all(format!("{e:#}").as_bytes());
            }
            exit_child(127);
        }
    }
    // Executors that do not execve report the start by closing the connection themselves.
    let err = match cfg.executor.exec(&mut || drop(conn.take())) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    if let Some(c) = conn.as_mut() {
        let _ = c.write_all(format!("{err}").as_bytes());
    } else {
        let _ = writeln!(std::io::stderr(), "amphi: {err}");
    }
    exit_child(127);
}

/// Blocks until `amphi start` connects to the start socket and sends its byte. The connection is
/// close-on-exec: `start` reads EOF once the workload runs, or an error text if it could not start.
fn wait_for_start(cfg: &InitConfig) -> anyhow::Result<std::fs::File> {
    loop {
        match accept4(cfg.start_listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            Ok(fd) => {
                // SAFETY: accept4 returned a new fd that nothing else owns.
                let mut conn = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
                let mut byte = [0u8; 1];
                if matches!(conn.read(&mut byte), Ok(1)) {
                    return Ok(conn);
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => anyhow::bail!("accept on start socket: {e}"),
        }
    }
}

fn write_sysctls(cfg: &InitConfig) -> anyhow::Result<()> {
    let Some(sysctl) = cfg.spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    let mut keys: Vec<&String> = sysctl.keys().collect();
    keys.sort();
    for key in keys {
        // Through a verified procfs handle: a mount over part of /proc/sys cannot redirect the
        // write (escape class 6).
        let rel = format!("sys/{}", key.replace('.', "/"));
        security::procfs::write(&rel, sysctl[key].as_bytes())
            .map_err(|e| anyhow::anyhow!("linux.sysctl.{key}: {e}"))?;
    }
    Ok(())
}

/// Joins a new session keyring named `name` (keyctl(2) KEYCTL_JOIN_SESSION_KEYRING), so the container
/// does not share the caller's keys. Kernels without keyrings (ENOSYS) are tolerated, as runc does.
fn join_session_keyring(name: &str) -> anyhow::Result<()> {
    let c =
        std::ffi::CString::new(name).map_err(|_| anyhow::anyhow!("keyring name has a NUL byte"))?;
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: `c` is a valid C string that outlives the call; keyctl only reads it.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, c.as_ptr()) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOSYS) {
            anyhow::bail!("join session keyring {name}: {e}");
        }
    }
    Ok(())
}

/// Asks the parent to run the runtime's hooks (when the config has hooks of the create phase), then
/// runs `createContainer` hooks in the container's namespaces, before `pivot_root`.
fn create_phase_hooks(cfg: &mut InitConfig, ch: &Channel) -> anyhow::Result<()> {
    let Some(hooks) = cfg.spec.hooks().clone() else {
        return Ok(());
    };
    let any = |h: &Option<Vec<oci_spec::runtime::Hook>>| h.as_ref().is_some_and(|v| !v.is_empty());
    if any(hooks.prestart())
        || any(hooks.create_runtime())
        || any(hooks.create_container())
        || any(hooks.start_container())
    {
        ch.send(&Msg::HooksPoint)?;
        match ch.recv()? {
            Some(Msg::HooksDone(pid)) => cfg.hook_state["pid"] = pid.into(),
            other => anyhow::bail!("waiting for the runtime's hooks: unexpected {other:?}"),
        }
    }
    if let Some(list) = hooks.create_container() {
        crate::hooks::run("createContainer", list, &cfg.hook_state)?;
    }
    Ok(())
}

/// Builds the container; returns the seccomp filter still to be loaded right before the workload.
fn setup(
    cfg: &mut InitConfig,
    ch: &Channel,
) -> anyhow::Result<(
    Option<libseccomp::ScmpFilterContext>,
    security::lsm::ProcessLabels,
)> {
    setsid().map_err(|e| anyhow::anyhow!("setsid: {e}"))?;
    if let Some(l) = cfg.seccomp_listener.as_mut() {
        // The parent sends it right after learning it (before anything else it sends to init).
        match ch.recv()? {
            Some(Msg::HostPid(pid)) => l.set_pid(pid, true),
            other => anyhow::bail!("waiting for init's host pid: unexpected {other:?}"),
        }
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&cfg.sigmask), None)
        .map_err(|e| anyhow::anyhow!("restore signal mask: {e}"))?;
    let spec = cfg.spec.clone();
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("process: missing"))?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("linux: missing"))?;
    let rootfs = cfg.rootfs.clone();
    umask(Mode::empty());
    let selinux_label = process.selinux_label().clone().unwrap_or_default();
    if let Some(name) = &cfg.session_keyring {
        // The keyring gets the process's SELinux context, as with runc.
        if !selinux_label.is_empty() {
            security::lsm::set_key_label(&selinux_label)?;
        }
        join_session_keyring(name)?;
        if !selinux_label.is_empty() {
            let _ = security::lsm::set_key_label("");
        }
    }

    // Mounts and devices, while host paths are still reachable.
    rootfs::prepare_root(&rootfs, linux.rootfs_propagation().as_deref())?;
    // Every path inside the rootfs is resolved from this descriptor (rootfs::resolve).
    let root = Root::open(&rootfs)
        .map_err(|e| anyhow::anyhow!("root.path: open {}: {e}", rootfs.display()))?;
    let mounts_list = spec.mounts().clone().unwrap_or_default();
    // linux.mountLabel (checked at create: SELinux is enabled when it is set).
    let mount_label = linux.mount_label().clone().unwrap_or_default();
    security::lsm::set_mount_label(&mount_label);
    let mounts_list = security::lsm::label_mounts(&mounts_list, &mount_label);
    mounts::mount_all(&root, &cfg.bundle, &mounts_list, &cfg.cgroup_mount)?;
    security::lsm::label_mqueue_mounts(&root, &mounts_list, &mount_label)?;
    let dev_is_bind = mounts_list.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"))
    });
    let mut nodes = Vec::new();
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        nodes.push(devices::from_spec(i, d)?);
    }
    let in_user_ns = cfg.namespaces.new_user || cfg.namespaces.joins_user();
    // Mount destinations, cleaned (`/dev//random/` is `/dev/random`): a device is not made there.
    let mounted: Vec<std::path::PathBuf> = mounts_list
        .iter()
        .map(|m| m.destination().components().collect())
        .collect();
    devices::setup(&root, &nodes, in_user_ns, dev_is_bind, &mounted)?;
    // The working directory is created if missing, as runc does.
    let cwd = process.cwd().clone();
    root.ensure(&cwd, Kind::Dir, false)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR) => {
                anyhow::anyhow!("process.cwd: {} is not a directory", cwd.display())
            }
            _ => anyhow::anyhow!("process.cwd: create {}: {e}", cwd.display()),
        })?;
    drop(root);

    if cfg.namespaces.is_private(LinuxNamespaceType::Uts) {
        if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            sethostname(h).map_err(|e| anyhow::anyhow!("hostname {h:?}: {e}"))?;
        }
        if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            let c = std::ffi::CString::new(d.as_bytes())
                .map_err(|_| anyhow::anyhow!("domainname: contains a NUL byte"))?;
            // SAFETY: `c` is a valid C string of the given length that outlives the call.
            if unsafe { libc::setdomainname(c.as_ptr(), d.len()) } != 0 {
                anyhow::bail!("domainname {d:?}: {}", std::io::Error::last_os_error());
            }
        }
    }

    create_phase_hooks(cfg, ch)?;
    pivot::pivot_root(&rootfs, cfg.no_pivot)?;
    if let Some(flag) = linux
        .rootfs_propagation()
        .as_deref()
        .and_then(rootfs::propagation_flag)
    {
        nix::mount::mount(None::<&str>, "/", None::<&str>, flag, None::<&str>)
            .map_err(|e| anyhow::anyhow!("linux.rootfsPropagation: {e}"))?;
    }
    write_sysctls(cfg)?;
    let root =
        Root::open(Path::new("/")).map_err(|e| anyhow::anyhow!("open / after pivot_root: {e}"))?;
    paths::readonly_paths(&root, linux.readonly_paths().as_deref().unwrap_or_default())?;
    paths::masked_paths(&root, linux.masked_paths().as_deref().unwrap_or_default())?;
    drop(root);
    if let Some(console) = cfg.console.take() {
        let size = process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        crate::tty::setup_console(console.as_fd(), process.user().uid(), size)?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        paths::readonly_root()?;
    }
    nix::unistd::chdir(&cwd)
        .map_err(|e| anyhow::anyhow!("process.cwd: chdir {}: {e}", cwd.display()))?;
    // A cwd through a magic link (/proc/self/fd/N) must not land outside the root (escape class 2).
    security::check_cwd_inside_root(&cwd)?;

    if let Some(adj) = process.oom_score_adj() {
        security::set_oom_score_adj(adj)?;
    }
    security::set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    // The label files are opened while /proc is the container's procfs (a Wasm executor's `load`
    // hides it); they are written in `run`, right before the workload.
    let transition = if cfg.executor.name() == "wasm" {
        security::lsm::Transition::Now
    } else {
        security::lsm::Transition::OnExec
    };
    let labels = security::lsm::ProcessLabels::open(process, transition)?;
    // Last step with full privileges and /proc in place: the executor locates its workload (a
    // missing binary fails create here) and may adjust the mount namespace.
    cfg.executor
        .load(&spec)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Seccomp: loading a filter needs no_new_privs or CAP_SYS_ADMIN. With noNewPrivileges it is
    // loaded after finalize (user switch, capability drop, no_new_privs), as late as possible: right
    // before the workload, in `run`. Without it, the filter is loaded now, while init still has
    // CAP_SYS_ADMIN, and so also confines finalize and the start handshake (as runc does).
    security::mark_fds_cloexec(cfg.preserve_fds)?;
    let mut late_filter = None;
    if let Some(s) = linux.seccomp() {
        let filter = security::seccomp::build(s)?;
        if security::seccomp::load_early(process.no_new_privileges().unwrap_or(false)) {
            let listener = cfg.seccomp_listener.take();
            security::seccomp::load_and_notify(&filter, listener, "creating")?;
        } else {
            late_filter = Some(filter);
        }
    }
    security::finalize(process)?;
    Ok((late_filter, labels))
}
