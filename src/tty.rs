//! Terminals: the console-socket protocol (runc's `--console-socket`: the pty master sent with
//! SCM_RIGHTS), the pty created inside the container, and the pty proxy of a foreground `run -t`.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::stat::Mode;

/// Sends `fd` over the unix socket `sock` with SCM_RIGHTS; `name` is the payload (runc sends the
/// pty master's path, e.g. `/dev/ptmx`).
///
/// Errors: sendmsg(2) fails.
pub fn send_fd(sock: BorrowedFd<'_>, name: &str, fd: BorrowedFd<'_>) -> anyhow::Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| anyhow::anyhow!("console socket: send pty master: {e}"))?;
    Ok(())
}

/// Receives one fd sent by [`send_fd`].
///
/// Errors: recvmsg(2) fails or the message carries no fd.
pub fn recv_fd(sock: BorrowedFd<'_>) -> anyhow::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| anyhow::anyhow!("console socket: receive: {e}"))?;
    for c in msg
        .cmsgs()
        .map_err(|e| anyhow::anyhow!("console socket: {e}"))?
    {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this fd in our table for us; nothing else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    anyhow::bail!("console socket: message without a file descriptor")
}

/// Connects to the console socket at `path` (runc: `--console-socket`).
///
/// Errors: the socket cannot be reached.
pub fn connect_console_socket(path: &Path) -> anyhow::Result<OwnedFd> {
    let s = UnixStream::connect(path)
        .map_err(|e| anyhow::anyhow!("--console-socket {}: {e}", path.display()))?;
    Ok(OwnedFd::from(s))
}

/// Inside the container (after `pivot_root`): opens a new pty from `/dev/ptmx`, sends its master over
/// `socket`, and makes the slave the controlling terminal and stdio of the calling process, which must
/// be a session leader. The slave is owned by `uid`; `size` is (rows, cols).
///
/// Errors: no devpts in the container, or a step of the terminal setup.
pub fn setup_console(
    socket: BorrowedFd<'_>,
    uid: u32,
    size: Option<(u16, u16)>,
) -> anyhow::Result<()> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| {
            anyhow::anyhow!(
                "process.terminal: open /dev/ptmx (is devpts mounted at /dev/pts?): {e}"
            )
        })?;
    nix::pty::grantpt(&master).map_err(|e| anyhow::anyhow!("process.terminal: grantpt: {e}"))?;
    nix::pty::unlockpt(&master).map_err(|e| anyhow::anyhow!("process.terminal: unlockpt: {e}"))?;
    let name = nix::pty::ptsname_r(&master)
        .map_err(|e| anyhow::anyhow!("process.terminal: ptsname: {e}"))?;
    let slave = open(
        Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| anyhow::anyhow!("process.terminal: open {name}: {e}"))?;
    let _ = nix::unistd::fchown(&slave, Some(nix::unistd::Uid::from_raw(uid)), None);
    if let Some((rows, cols)) = size {
        set_winsize(slave.as_fd(), rows, cols);
    }
    bind_console(Path::new(&name))?;
    send_fd(socket, "/dev/ptmx", master.as_fd())?;
    drop(master);
    // SAFETY: TIOCSCTTY takes an integer argument; `slave` is an open terminal fd.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        anyhow::bail!(
            "process.terminal: make {name} the controlling terminal: {}",
            std::io::Error::last_os_error()
        );
    }
    for target in 0..=2 {
        // SAFETY: dup2 onto stdio of this process; `slave` is open and valid.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            anyhow::bail!(
                "process.terminal: dup2: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// Sets the window size of terminal `fd` (TIOCSWINSZ); errors are ignored (not a terminal).
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `ws` is a valid winsize that outlives the call; the kernel only reads it.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// The window size of terminal `fd` as (rows, cols), if it is a terminal.
pub fn get_winsize(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `ws` is a valid, writable winsize for the duration of the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some((ws.ws_row, ws.ws_col))
}

/// Puts terminal `fd` in raw mode and returns the previous settings to restore, or `None` when `fd`
/// is not a terminal.
pub fn make_raw(fd: BorrowedFd<'_>) -> Option<nix::sys::termios::Termios> {
    let orig = nix::sys::termios::tcgetattr(fd).ok()?;
    let mut raw = orig.clone();
    nix::sys::termios::cfmakeraw(&mut raw);
    nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, &raw).ok()?;
    Some(orig)
}

/// Restores terminal settings saved by [`make_raw`].
pub fn restore(fd: BorrowedFd<'_>, saved: &nix::sys::termios::Termios) {
    let _ = nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, saved);
}

/// Binds the pty slave `slave` (a `/dev/pts/N` path) at `/dev/console` of the container, as runc does,
/// after `pivot_root`. `/dev/console` is created as an empty file when missing, resolved inside the
/// container's root with no symlink allowed in any component, and the bind mount is attached through
/// descriptors (open_tree + move_mount): a `/dev/console` symlink to, say, a procfs file must not
/// receive the mount (runc CVE-2025-52565).
///
/// Errors: `/dev/console` (or `/dev`) is a symlink, or is not a regular file or character device.
/// A failing bind itself is only logged, as before (a read-only `/dev` in the image).
fn bind_console(slave: &Path) -> anyhow::Result<()> {
    use crate::rootfs::mountfd;
    use crate::rootfs::resolve::{fstat, Kind, Root};
    let refuse = |why: String| anyhow::anyhow!("process.terminal: /dev/console: {why}");
    let root = Root::open(Path::new("/")).map_err(|e| refuse(format!("open /: {e}")))?;
    let target = match root.ensure(Path::new("/dev/console"), Kind::File, true) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refuse("is a symlink (refused)".into()))
        }
        Err(e) => {
            log::debug!("/dev/console: {e}; no console bind");
            return Ok(());
        }
    };
    let st = fstat(target.as_fd()).map_err(|e| refuse(format!("fstat: {e}")))?;
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFREG && kind != libc::S_IFCHR {
        return Err(refuse(format!(
            "is neither a regular file nor a character device (mode {:o})",
            st.st_mode
        )));
    }
    match mountfd::clone_tree(None, slave, false)
        .and_then(|mnt| mountfd::attach(mnt.as_fd(), target.as_fd()))
    {
        Ok(()) => {}
        Err(e) => log::debug!("bind {} at /dev/console: {e}", slave.display()),
    }
    Ok(())
}
