//! `amphi run` (runc-run(8)): create and start a container; in the foreground, wait for it,
//! forward signals, proxy its terminal, and exit with its status.

use std::os::fd::AsFd;

use clap::Args;
use nix::sys::signal::SigSet;
use nix::unistd::Pid;

use super::create::CreateFlags;
use super::foreground::{supervise, wait_foreground, Supervisor};
use super::{ExitCode, Global};
use crate::container;
use crate::tty;

/// `amphi run [create flags] [-d] [--keep] ID`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    flags: CreateFlags,
    /// Detach from the container's process.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Do not delete the container after it exits.
    #[arg(long)]
    keep: bool,
    /// The container id.
    id: String,
}

/// Creates and starts; in the foreground waits and returns the container's exit status (128+N when
/// killed by signal N), then deletes the container unless `--keep`.
pub fn run(g: &Global, a: RunArgs) -> anyhow::Result<ExitCode> {
    let opts = a.flags.options(g, &a.id)?;
    let orig_mask = SigSet::thread_get_mask().unwrap_or_else(|_| SigSet::empty());
    if a.detach {
        let orig_mask = super::create::block_stop_signals();
        let mut created = container::create(&opts, None, orig_mask)?;
        if let Err(e) = container::start(&created.dir, &mut created.state) {
            let _ = container::destroy(&created.state);
            let _ = created.dir.remove();
            return Err(e);
        }
        return Ok(0);
    }

    let Supervisor { sfd, ours, theirs } = supervise(opts.console_socket.is_none())?;
    let mut created = container::create(&opts, theirs, orig_mask)?;
    let cleanup = |state: &container::State| {
        if !a.keep {
            let _ = container::destroy(state);
        }
    };
    let master = match (&ours, created.terminal) {
        (Some(sock), true) => match tty::recv_fd(sock.as_fd()) {
            Ok(m) => Some(m),
            Err(e) => {
                cleanup(&created.state);
                let _ = created.dir.remove();
                return Err(e);
            }
        },
        _ => None,
    };
    drop(ours);
    if let Err(e) = container::start(&created.dir, &mut created.state) {
        cleanup(&created.state);
        let _ = created.dir.remove();
        return Err(e);
    }
    let state = created.state.clone();
    // Other commands (kill, state) must be able to lock the container while it runs.
    drop(created);

    let code = wait_foreground(Pid::from_raw(state.pid), &sfd, master.as_ref());
    if !a.keep {
        container::delete(&g.root, &a.id, true)?;
    }
    Ok(code)
}
