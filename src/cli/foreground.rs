//! Supervising a container process in the foreground (`run`, `exec`): signal forwarding, reaping,
//! and the pty proxy of a terminal without a console socket.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::tty;

/// The signals a foreground `run` takes over: forwarded to the container, except SIGCHLD (reaping)
/// and SIGWINCH (terminal size).
fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in Signal::iterator() {
        if !matches!(
            s,
            Signal::SIGKILL
                | Signal::SIGSTOP
                | Signal::SIGSEGV
                | Signal::SIGBUS
                | Signal::SIGILL
                | Signal::SIGFPE
                | Signal::SIGTRAP
                | Signal::SIGABRT
                | Signal::SIGSYS
        ) {
            set.add(s);
        }
    }
    set
}

fn status_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Waits for `init` to exit, forwarding signals to it and proxying the pty `master` (if any)
/// to stdin/stdout. Returns the exit code.
pub(super) fn wait_foreground(init: Pid, sfd: &SignalFd, master: Option<&OwnedFd>) -> i32 {
    let stdin = std::io::stdin();
    let saved = master.and_then(|_| tty::make_raw(stdin.as_fd()));
    if let Some(m) = master {
        if let Some((rows, cols)) = tty::get_winsize(stdin.as_fd()) {
            tty::set_winsize(m.as_fd(), rows, cols);
        }
    }
    let mut code: Option<i32> = None;
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    let mut buf = vec![0u8; 16 * 1024];
    while code.is_none() || master_open {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let stdin_idx = if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            Some(fds.len() - 1)
        } else {
            None
        };
        let master_idx = match (master, master_open) {
            (Some(m), true) => {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        // Once init has exited, only drain what the pty still holds.
        let timeout = if code.is_some() {
            PollTimeout::from(100u16)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(0) if code.is_some() => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let ready = |i: usize| {
            fds[i].revents().is_some_and(|r| {
                r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            })
        };
        let sig_ready = ready(0);
        let stdin_ready = stdin_idx.is_some_and(ready);
        let master_ready = master_idx.is_some_and(ready);
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                match sig {
                    Signal::SIGCHLD => loop {
                        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                            Ok(WaitStatus::StillAlive) | Err(_) => break,
                            Ok(ws) => {
                                if ws.pid() == Some(init) {
                                    code = status_code(ws).or(code);
                                }
                            }
                        }
                    },
                    Signal::SIGWINCH => {
                        if let (Some(m), Some((rows, cols))) =
                            (master, tty::get_winsize(stdin.as_fd()))
                        {
                            tty::set_winsize(m.as_fd(), rows, cols);
                        }
                    }
                    other => {
                        let _ = nix::sys::signal::kill(init, other);
                    }
                }
            }
        }
        if let (true, Some(m)) = (stdin_ready, master) {
            match stdin.lock().read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => write_all_fd(m, &buf[..n]),
            }
        }
        if let (true, Some(m)) = (master_ready, master) {
            match nix::unistd::read(m.as_fd(), &mut buf) {
                Ok(0) | Err(_) => master_open = false,
                Ok(n) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
            }
        }
    }
    if let Some(t) = saved {
        tty::restore(stdin.as_fd(), &t);
    }
    code.unwrap_or(255)
}

/// Writes all of `data` to `fd`, giving up on the first error (the pty is gone).
fn write_all_fd(fd: &OwnedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd.as_fd(), data) {
            Ok(0) => return,
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

/// What a foreground `run` or `exec` sets up before it starts the process.
pub(super) struct Supervisor {
    /// Delivers the signals to forward (blocked for normal delivery).
    pub sfd: SignalFd,
    /// Our end of the internal console socket, when a terminal is proxied.
    pub ours: Option<OwnedFd>,
    /// The end to hand to the pipeline as the console socket.
    pub theirs: Option<OwnedFd>,
}

/// Becomes the child subreaper (so the container process is reparented to us), blocks the forwarded
/// signals into a signalfd, and, with `proxy_tty`, makes the socketpair whose far end receives the
/// pty master.
///
/// Errors: a system call fails.
pub(super) fn supervise(proxy_tty: bool) -> anyhow::Result<Supervisor> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let signals = forwarded_signals();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None)
        .map_err(|e| anyhow::anyhow!("block signals: {e}"))?;
    let sfd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| anyhow::anyhow!("signalfd: {e}"))?;
    let (ours, theirs) = if proxy_tty {
        let (x, y) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| anyhow::anyhow!("socketpair: {e}"))?;
        (Some(x), Some(y))
    } else {
        (None, None)
    };
    Ok(Supervisor { sfd, ours, theirs })
}
