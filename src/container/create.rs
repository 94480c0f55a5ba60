//! `create`: validate the bundle, take the id, set up cgroups, run the create pipeline, record the
//! state. Any failure undoes everything made so far.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use amphi_executors::Workload;
use nix::sys::signal::SigSet;
use nix::sys::socket::{
    bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use oci_spec::runtime::LinuxNamespaceType;

use super::state::{ContainerDir, State, Status};
use crate::bundle::{validate_id, Bundle};
use crate::cgroups::{resolve_path, ContainerCgroup};
use crate::namespaces::NamespacePlan;
use crate::process::{parent, InitConfig, START_SOCKET};
use crate::rootfs::mounts::CgroupMount;
use crate::utils::{proc_stat, write_atomic};

/// The options of `amphi create` (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// `--root`.
    pub root: PathBuf,
    /// Container id.
    pub id: String,
    /// `--bundle` (absolute).
    pub bundle: PathBuf,
    /// `--pid-file` (absolute).
    pub pid_file: Option<PathBuf>,
    /// `--console-socket`: path of a unix socket to receive the pty master.
    pub console_socket: Option<PathBuf>,
    /// `--pidfd-socket`: path of a unix socket to receive a pidfd of the init process.
    pub pidfd_socket: Option<PathBuf>,
    /// `--no-new-keyring`: keep the caller's session keyring instead of a new one named `_ses.<id>`.
    pub no_new_keyring: bool,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
    /// `LISTEN_FDS` of the caller (socket activation): these fds (3..3+N) are passed before the
    /// `--preserve-fds` ones, and the workload gets `LISTEN_FDS=N` and `LISTEN_PID=1`.
    pub listen_fds: u32,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// The name amphi was invoked under (for executor selection).
    pub invoked_as: String,
    /// The directory of the Wasm AOT cache.
    pub wasm_cache_dir: PathBuf,
    /// Rootless mode (`--rootless`): a user namespace is required, and a cgroup is used only when
    /// delegated (see [`crate::rootless::cgroup_plan`]).
    pub rootless: bool,
}

/// A created container, still locked by the creating command.
#[derive(Debug)]
pub struct Created {
    /// The locked state directory.
    pub dir: ContainerDir,
    /// The recorded state (`created`).
    pub state: State,
    /// True when `process.terminal` is set (the pty master went to the console socket).
    pub terminal: bool,
}

/// Creates container `opts.id`. `console`: an already connected console socket (used by a foreground
/// `run -t`, which proxies the pty itself), instead of `--console-socket`. `sigmask`: the signal mask
/// the workload starts with.
///
/// Errors: bad id or config (naming the field), the id exists, or any pipeline step; nothing is left
/// behind (state dir, cgroup, processes, mounts).
pub fn create(
    opts: &CreateOptions,
    console: Option<OwnedFd>,
    sigmask: SigSet,
) -> anyhow::Result<Created> {
    validate_id(&opts.id).map_err(|e| anyhow::anyhow!(e))?;
    let dir = ContainerDir::create(&opts.root, &opts.id)?;
    match create_in(&dir, opts, console, sigmask) {
        Ok((state, terminal)) => Ok(Created {
            dir,
            state,
            terminal,
        }),
        Err(e) => {
            let _ = dir.remove();
            Err(e)
        }
    }
}

fn bind_start_socket(dir: &ContainerDir) -> anyhow::Result<OwnedFd> {
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| anyhow::anyhow!("start socket: {e}"))?;
    // Bound through the directory fd so that a long --root cannot exceed sun_path's 108 bytes.
    let path = format!("/proc/self/fd/{}/{START_SOCKET}", dir.as_fd().as_raw_fd());
    let addr = UnixAddr::new(path.as_str()).map_err(|e| anyhow::anyhow!("start socket: {e}"))?;
    bind(sock.as_raw_fd(), &addr).map_err(|e| anyhow::anyhow!("bind start socket: {e}"))?;
    listen(&sock, Backlog::new(1).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| anyhow::anyhow!("listen on start socket: {e}"))?;
    Ok(sock)
}

fn cgroup_mount(cg: &ContainerCgroup, plan: &NamespacePlan) -> CgroupMount {
    let hierarchies = cg.v1_hierarchies();
    if hierarchies.is_empty() {
        return match cg.dirs().into_iter().next() {
            Some(dir) => CgroupMount::V2 {
                dir,
                new_ns: plan.is_new(LinuxNamespaceType::Cgroup),
            },
            None => CgroupMount::None,
        };
    }
    let mut list: Vec<(String, PathBuf)> = hierarchies
        .into_iter()
        .filter_map(|(mnt, dir)| {
            let name = mnt.file_name()?.to_string_lossy().into_owned();
            Some((name, dir))
        })
        .filter(|(name, _)| name != "unified")
        .collect();
    if let Some(u) = cg.hybrid_unified_dir() {
        list.push(("unified".to_string(), u.to_path_buf()));
    }
    CgroupMount::V1 { hierarchies: list }
}

fn create_in(
    dir: &ContainerDir,
    opts: &CreateOptions,
    console: Option<OwnedFd>,
    sigmask: SigSet,
) -> anyhow::Result<(State, bool)> {
    let mut bundle = Bundle::load(&opts.bundle)?;
    if opts.listen_fds > 0 {
        if let Some(p) = bundle.spec.process_mut() {
            let mut env: Vec<String> = p.env().clone().unwrap_or_default();
            env.retain(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="));
            env.push(format!("LISTEN_FDS={}", opts.listen_fds));
            env.push("LISTEN_PID=1".into());
            p.set_env(Some(env));
        }
    }
    let spec = &bundle.spec;
    let mut state = State {
        oci_version: spec.version().clone(),
        id: opts.id.clone(),
        pid: 0,
        pid_start_time: 0,
        status: Status::Creating,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: crate::logging::now_rfc3339(),
        owner: String::new(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        cgroup_path: None,
        executor: String::new(),
        hooks: spec.hooks().clone(),
        seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
        private_pid_ns: spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| {
                ns.iter()
                    .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none())
            }),
        cgroup_dirs: Vec::new(),
    };
    dir.save(&state)?;

    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("process: missing"))?;
    let terminal = process.terminal().unwrap_or(false);
    let console = match (terminal, console, &opts.console_socket) {
        (true, Some(fd), _) => Some(fd),
        (true, None, Some(path)) => Some(crate::tty::connect_console_socket(path)?),
        (true, None, None) => anyhow::bail!(
            "process.terminal: a terminal was requested but no --console-socket was given"
        ),
        (false, _, Some(_)) => {
            anyhow::bail!("--console-socket: given, but process.terminal is false in config.json")
        }
        (false, _, None) => None,
    };

    let workload = Workload {
        spec,
        rootfs: &bundle.rootfs,
        invoked_as: &opts.invoked_as,
        wasm_cache_dir: &opts.wasm_cache_dir,
    };
    let mut executor = amphi_executors::select(&workload);
    executor
        .prepare(&workload)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    state.executor = executor.name().to_string();

    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("linux: missing"))?;
    let plan = NamespacePlan::from_spec(linux.namespaces().as_deref().unwrap_or_default())?;
    if opts.rootless && !nix::unistd::geteuid().is_root() && !(plan.new_user || plan.joins_user()) {
        anyhow::bail!(
            "linux.namespaces: a rootless container needs a user namespace (with uidMappings and \
             gidMappings for the calling user; `amphi spec --rootless` writes such a config)"
        );
    }

    let cg_path = resolve_path(
        linux.cgroups_path().as_deref(),
        &opts.id,
        opts.systemd_cgroup,
    )?;
    let mut cg = ContainerCgroup::open(&cg_path)?;
    // Another container's cgroup is not ours to join, nor to remove on failure (runc refuses a
    // non-empty cgroup too).
    let busy = cg.pids();
    if !busy.is_empty() {
        anyhow::bail!(
            "linux.cgroupsPath: cgroup {cg_path} is not empty ({} processes): it belongs to another container",
            busy.len()
        );
    }
    let use_cgroup = !opts.rootless
        || crate::rootless::cgroup_plan(
            &cg_path,
            &cg.dirs(),
            linux
                .cgroups_path()
                .as_ref()
                .is_some_and(|p| !p.as_os_str().is_empty()),
            linux.resources().as_ref(),
        )? == crate::rootless::CgroupPlan::Delegated;
    if use_cgroup {
        cg.create(Some(&crate::cgroups::with_linux_devices(
            linux.resources().as_ref(),
            linux.devices().as_deref().unwrap_or_default(),
        )))?;
        state.cgroup_path = Some(cg_path);
        state.cgroup_dirs = cg.dirs();
    }
    // A cgroup that existed before keeps its OOM-kill count: only kills from now on are this create's.
    let oom_kills_before = if use_cgroup { cg.oom_kills() } else { 0 };

    let result = (|| -> anyhow::Result<i32> {
        let start_listener = bind_start_socket(dir)?;
        let mut cfg = InitConfig {
            spec: spec.clone(),
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            cgroup_mount: if use_cgroup {
                cgroup_mount(&cg, &plan)
            } else {
                CgroupMount::None
            },
            namespaces: plan,
            cgroup: use_cgroup.then(|| cg.placement()),
            cgroup_join: None,
            console,
            start_listener,
            preserve_fds: opts.preserve_fds.saturating_add(opts.listen_fds),
            no_pivot: opts.no_pivot,
            executor,
            sigmask,
            close_in_child: vec![dir.as_fd().as_raw_fd()],
            session_keyring: (!opts.no_new_keyring).then(|| format!("_ses.{}", opts.id)),
            hook_state: state.spec_state_json_as(Status::Creating),
            seccomp_listener: crate::security::seccomp::Listener::connect(
                linux.seccomp().as_ref(),
                state.spec_state_json_as(Status::Creating),
            )?,
        };
        let hooks = spec.hooks().clone().unwrap_or_default();
        let mut runtime_hooks = |pid: i32| -> anyhow::Result<()> {
            let mut hs = state.spec_state_json_as(Status::Creating);
            hs["pid"] = pid.into();
            crate::hooks::run(
                "prestart",
                hooks.prestart().as_deref().unwrap_or_default(),
                &hs,
            )?;
            crate::hooks::run(
                "createRuntime",
                hooks.create_runtime().as_deref().unwrap_or_default(),
                &hs,
            )
        };
        let pid = parent::spawn(&mut cfg, &mut runtime_hooks)?;
        // The init process has its own copy of the prepared executor; this process's copy is not
        // dropped. For a Wasm workload, dropping the engine and the compiled module (unmapping its
        // code, unregistering its types) would cost about 0.05 ms on the way to `start` and free no
        // memory while the container runs, since those pages are shared with the init process; the
        // exit of this process frees them.
        std::mem::forget(std::mem::replace(
            &mut cfg.executor,
            Box::new(amphi_executors::linux::LinuxExecutor::default()),
        ));
        state.pid = pid;
        state.pid_start_time = proc_stat(pid)
            .map(|(start, _)| start)
            .ok_or_else(|| anyhow::anyhow!("init process {pid} exited during create"))?;
        if let Some(sock) = &opts.pidfd_socket {
            send_pidfd(sock, pid)?;
        }
        if let Some(pid_file) = &opts.pid_file {
            write_pid_file(pid_file, pid)?;
        }
        state.status = Status::Created;
        dir.save(&state)?;
        Ok(pid)
    })();
    if let Err(mut e) = result {
        if use_cgroup {
            e = name_oom_kill(
                e,
                cg.oom_kills().saturating_sub(oom_kills_before),
                linux.resources().as_ref(),
            );
        }
        if state.pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(state.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if use_cgroup {
            if let Err(ce) = cg.destroy() {
                log::warn!("cleanup after failed create: {ce:#}");
            }
        }
        if let Some(p) = &opts.pid_file {
            if state.pid > 0 {
                let _ = std::fs::remove_file(p);
            }
        }
        return Err(e);
    }
    Ok((state, terminal))
}

/// When the kernel's OOM killer ended `kills` processes of the container's cgroup during create (a
/// memory limit below what the runtime's own processes need before the workload starts), says so on
/// top of `e` and names the limit, instead of only "intermediate process exited during create"
/// (runc: "unable to set memory limit to N"). With no kill, `e` is returned as it is.
fn name_oom_kill(
    e: anyhow::Error,
    kills: u64,
    resources: Option<&oci_spec::runtime::LinuxResources>,
) -> anyhow::Error {
    if kills == 0 {
        return e;
    }
    let limit = resources
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|l| *l > 0);
    match limit {
        Some(l) => e.context(format!(
            "linux.resources.memory.limit: {l} is too low for the container's processes to start \
             (the OOM killer ended {kills} of them during create)"
        )),
        None => e.context(format!(
            "the OOM killer ended {kills} of the container's processes during create (a memory \
             limit of linux.cgroupsPath or of a parent cgroup)"
        )),
    }
}

/// Sends a pidfd of `pid` (pidfd_open(2)) over the unix socket at `path` with SCM_RIGHTS, as runc's
/// `--pidfd-socket` does.
///
/// Errors: the socket cannot be reached or the pidfd cannot be made.
pub fn send_pidfd(path: &Path, pid: i32) -> anyhow::Result<()> {
    // SAFETY: pidfd_open takes a pid and flags; it returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        anyhow::bail!(
            "--pidfd-socket: pidfd_open({pid}): {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: the kernel just returned this new fd; nothing else owns it.
    let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    let sock = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| anyhow::anyhow!("--pidfd-socket {}: {e}", path.display()))?;
    crate::tty::send_fd(
        std::os::fd::AsFd::as_fd(&sock),
        "pidfd",
        std::os::fd::AsFd::as_fd(&pidfd),
    )
    .map_err(|e| anyhow::anyhow!("--pidfd-socket {}: {e}", path.display()))
}

/// Writes `pid` to `path` atomically, without a newline (as runc).
///
/// Errors: the file cannot be written.
pub fn write_pid_file(path: &Path, pid: i32) -> anyhow::Result<()> {
    write_atomic(path, pid.to_string().as_bytes(), 0o644)
        .map_err(|e| anyhow::anyhow!("--pid-file {}: {e}", path.display()))
}
