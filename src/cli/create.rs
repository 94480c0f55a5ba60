//! `amphi create` (runc-create(8)).

use std::path::PathBuf;

use clap::Args;
use nix::sys::signal::SigSet;

use super::{ExitCode, Global};
use crate::container::{self, CreateOptions};
use crate::utils::absolute;

/// Flags shared by `create` and `run`.
#[derive(Debug, Args, Clone)]
pub struct CreateFlags {
    /// Path to the root of the bundle directory, defaults to the current directory.
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Path to a unix socket which will receive the pty master when process.terminal is true.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Path to a unix socket which will receive a pidfd of the init process.
    #[arg(long = "pidfd-socket")]
    pub pidfd_socket: Option<PathBuf>,
    /// Specify the file to write the process id to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot root to jail process inside rootfs.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N additional file descriptors to the container (stdio + $LISTEN_FDS + N in total).
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
}

impl CreateFlags {
    /// Turns the flags into [`CreateOptions`] for container `id`; relative paths are taken from the
    /// current directory.
    ///
    /// Errors: the current directory cannot be read.
    pub fn options(&self, g: &Global, id: &str) -> anyhow::Result<CreateOptions> {
        Ok(CreateOptions {
            root: absolute(&g.root)?,
            id: id.to_string(),
            bundle: absolute(&self.bundle)?,
            pid_file: self.pid_file.as_deref().map(absolute).transpose()?,
            console_socket: self.console_socket.as_deref().map(absolute).transpose()?,
            pidfd_socket: self.pidfd_socket.as_deref().map(absolute).transpose()?,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
            listen_fds: listen_fds(),
            no_pivot: self.no_pivot,
            systemd_cgroup: g.systemd_cgroup,
            invoked_as: g.invoked_as.clone(),
            wasm_cache_dir: g.wasm_cache_dir.clone(),
            rootless: g.rootless_mode,
        })
    }
}

/// `LISTEN_FDS` from amphi's environment (systemd socket activation, sd_listen_fds(3)); 0 when unset
/// or malformed.
fn listen_fds() -> u32 {
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `amphi create [flags] ID`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    flags: CreateFlags,
    /// The container id.
    id: String,
}

/// Creates the container and returns once its init process waits for `start`.
pub fn run(g: &Global, a: CreateArgs) -> anyhow::Result<ExitCode> {
    let opts = a.flags.options(g, &a.id)?;
    let mask = block_stop_signals();
    container::create(&opts, None, mask)?;
    Ok(0)
}

/// Blocks SIGTERM, SIGINT, SIGHUP and SIGQUIT in this process and returns the signal mask it had
/// (the one the workload starts with). A `create` (or `run -d`) that such a signal ended half-way
/// would leave its state directory and cgroup behind, with no failure path run; blocked, the signal
/// stays pending until amphi exits, and `create` completes, as runc's does. Hooks and the container
/// do not inherit the block: std's `Command` and init reset the mask.
pub fn block_stop_signals() -> SigSet {
    let orig = SigSet::thread_get_mask().unwrap_or_else(|_| SigSet::empty());
    let mut stop = SigSet::empty();
    for s in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGHUP,
        nix::sys::signal::Signal::SIGQUIT,
    ] {
        stop.add(s);
    }
    if let Err(e) = stop.thread_block() {
        log::warn!("cannot block stop signals during create: {e}");
    }
    orig
}
