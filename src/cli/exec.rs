//! `amphi exec` (runc-exec(8)): run a new process in a container.

use std::path::PathBuf;

use clap::Args;
use nix::sys::signal::SigSet;
use nix::unistd::Pid;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, Process};

use super::foreground::{supervise, wait_foreground, Supervisor};
use super::{ExitCode, Global, WithCode};
use crate::container::exec::{ensure_home, exec, parse_user, ExecOptions};
use crate::container::ContainerDir;
use crate::utils::absolute;

/// Exit status when the command could not be started (as runc).
pub const START_FAILED: i32 = 255;

/// `amphi exec [flags] ID [COMMAND [ARGS...]]`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Path to a process.json (runtime-spec `process`) to run instead of COMMAND.
    #[arg(short = 'p', long)]
    process: Option<PathBuf>,
    /// Path to a unix socket which will receive the pty master when a terminal is allocated.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Path to a unix socket which will receive a pidfd of the process.
    #[arg(long = "pidfd-socket")]
    pidfd_socket: Option<PathBuf>,
    /// Current working directory in the container.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Set environment variables (KEY=value), repeatable.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    tty: bool,
    /// UID (format: <uid>[:<gid>]) or name (format: <name>[:<group>]).
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Additional gids, repeatable or comma separated.
    #[arg(short = 'g', long = "additional-gids", value_delimiter = ',')]
    additional_gids: Vec<u32>,
    /// Detach from the process; return once it runs.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Specify the file to write the process id to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Set the asm process label for the process commonly used with selinux (`process.selinuxLabel`;
    /// refused when SELinux is not enabled).
    #[arg(long = "process-label")]
    process_label: Option<String>,
    /// Set the apparmor profile for the process (`process.apparmorProfile`; refused when AppArmor is
    /// not enabled).
    #[arg(long)]
    apparmor: Option<String>,
    /// Set the no new privileges value for the process.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Add a capability to the bounding, effective and permitted sets, repeatable.
    #[arg(short = 'c', long = "cap")]
    cap: Vec<String>,
    /// Pass N additional file descriptors to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Run the process in a sub-cgroup of the container's: PATH (relative to the container's cgroup,
    /// every hierarchy) or CONTROLLER[,CONTROLLER...]:PATH (cgroup v1); repeatable, as runc's.
    #[arg(long)]
    cgroup: Vec<String>,
    /// Allow exec in a paused container.
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// The container id.
    id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn add_cap(set: &Option<Capabilities>, cap: Capability) -> Option<Capabilities> {
    let mut s = set.clone().unwrap_or_default();
    s.insert(cap);
    Some(s)
}

/// Builds the process: `--process` as given, or the container's own process with COMMAND, then the
/// flags on top.
fn build_process(
    a: &ExecArgs,
    bundle: &std::path::Path,
    root: &std::path::Path,
) -> anyhow::Result<Process> {
    let mut p: Process = match &a.process {
        Some(path) => {
            let text = crate::utils::read_json_file(path)
                .map_err(|e| anyhow::anyhow!("--process {}: {e}", path.display()))?;
            let text = crate::bundle::process_only_capability_names(&text).unwrap_or(text);
            serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("--process {}: invalid: {e}", path.display()))?
        }
        None => {
            if a.command.is_empty() {
                anyhow::bail!("exec: a COMMAND or --process is required");
            }
            let base = crate::utils::read_json_file(&bundle.join("config.json"))
                .ok()
                .and_then(|t| crate::bundle::parse_config(&t).ok())
                .and_then(|s| s.process().clone())
                .unwrap_or_default();
            let mut p = base;
            p.set_args(Some(a.command.clone()));
            p.set_terminal(Some(false));
            p.set_console_size(None);
            p
        }
    };
    // As runc: the flags override the process's own profile and label.
    if let Some(label) = &a.process_label {
        let on = label.is_empty() || crate::security::lsm::selinux_enabled();
        crate::security::lsm::check_selinux("--process-label", label, on)?;
        p.set_selinux_label(Some(label.clone()));
    }
    if let Some(profile) = &a.apparmor {
        let on = profile.is_empty() || crate::security::lsm::apparmor_enabled();
        crate::security::lsm::check_apparmor("--apparmor", profile, on)?;
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if !a.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for e in &a.env {
            let key = e.split('=').next().unwrap_or("");
            if !e.contains('=') || key.is_empty() {
                anyhow::bail!("--env {e:?}: expected KEY=value");
            }
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(cwd) = &a.cwd {
        if !cwd.is_absolute() {
            anyhow::bail!("--cwd {}: must be an absolute path", cwd.display());
        }
        p.set_cwd(cwd.clone());
    }
    if a.tty {
        p.set_terminal(Some(true));
    }
    if let Some(u) = &a.user {
        let (uid, gid) = parse_user(u, root)?;
        p.user_mut().set_uid(uid);
        p.user_mut().set_gid(gid);
    }
    if !a.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(a.additional_gids.clone()));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_else(|| {
            let empty = Some(Capabilities::new());
            let mut c = LinuxCapabilities::default();
            c.set_bounding(empty.clone());
            c.set_effective(empty.clone());
            c.set_inheritable(empty.clone());
            c.set_permitted(empty.clone());
            c.set_ambient(empty);
            c
        });
        for name in &a.cap {
            if !crate::bundle::is_capability_name(name) {
                anyhow::bail!(
                    "--cap {name:?}: not a capability name (CAP_ and upper case, e.g. CAP_NET_ADMIN)"
                );
            }
            let cap: Capability =
                serde_json::from_value(serde_json::Value::String(name.clone()))
                    .map_err(|_| anyhow::anyhow!("--cap {name:?}: unknown capability"))?;
            caps.set_bounding(add_cap(caps.bounding(), cap));
            caps.set_effective(add_cap(caps.effective(), cap));
            caps.set_permitted(add_cap(caps.permitted(), cap));
        }
        p.set_capabilities(Some(caps));
    }
    ensure_home(&mut p, root);
    Ok(p)
}

/// Runs the command; in the foreground, exits with its status (255 if it could not start).
pub fn run(g: &Global, a: ExecArgs) -> anyhow::Result<ExitCode> {
    crate::bundle::validate_id(&a.id).map_err(|e| anyhow::anyhow!(e))?;
    let dir = ContainerDir::open(&g.root, &a.id)?;
    let state = dir.load()?;
    let root = PathBuf::from(format!("/proc/{}/root", state.pid));
    let process = build_process(&a, &state.bundle, &root).map_err(|e| WithCode(START_FAILED, e))?;
    // The same checks as create's: e.g. uid 4294967295 ((uid_t)-1) would leave the process root.
    crate::bundle::validate_process(&process)
        .map_err(|e| WithCode(START_FAILED, anyhow::anyhow!("exec: {e}")))?;
    let terminal = process.terminal().unwrap_or(false);
    let opts = ExecOptions {
        console_socket: a.console_socket.as_deref().map(absolute).transpose()?,
        preserve_fds: a.preserve_fds,
        sub_cgroup: a.cgroup.clone(),
        wasm_cache_dir: g.wasm_cache_dir.clone(),
        ignore_paused: a.ignore_paused,
    };
    let orig_mask = SigSet::thread_get_mask().unwrap_or_else(|_| SigSet::empty());

    if a.detach {
        let pid = exec(&dir, &state, process, &opts, None, orig_mask)
            .map_err(|e| WithCode(START_FAILED, e))?;
        if let Some(p) = &a.pid_file {
            crate::container::create::write_pid_file(&absolute(p)?, pid)?;
        }
        if let Some(s) = &a.pidfd_socket {
            crate::container::create::send_pidfd(&absolute(s)?, pid)?;
        }
        return Ok(0);
    }

    let Supervisor { sfd, ours, theirs } = supervise(terminal && opts.console_socket.is_none())?;
    let pid = exec(&dir, &state, process, &opts, theirs, orig_mask)
        .map_err(|e| WithCode(START_FAILED, e))?;
    // Other commands must be able to lock the container while the process runs.
    drop(dir);
    if let Some(p) = &a.pid_file {
        crate::container::create::write_pid_file(&absolute(p)?, pid)?;
    }
    if let Some(s) = &a.pidfd_socket {
        crate::container::create::send_pidfd(&absolute(s)?, pid)?;
    }
    let master = match &ours {
        Some(sock) => Some(crate::tty::recv_fd(std::os::fd::AsFd::as_fd(sock))?),
        None => None,
    };
    Ok(wait_foreground(Pid::from_raw(pid), &sfd, master.as_ref()))
}
