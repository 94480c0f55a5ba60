//! `process.terminal`: the pty master handed over `--console-socket` (SCM_RIGHTS), the errors when
//! terminal and socket do not go together, and the pty proxy of a foreground `run`.

mod common;

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, wait_for, Bundle};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::json;

/// How long a test waits for output or an exit before failing instead of hanging.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// Receives one fd (and the message payload) over the connected unix socket `sock`.
fn recv_fd(sock: BorrowedFd<'_>) -> (OwnedFd, String) {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .expect("recvmsg on the console socket");
    let mut fd = None;
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for f in fds {
                // SAFETY: the kernel just installed this fd in our table; nothing else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(f) };
                if fd.is_none() {
                    fd = Some(owned);
                }
            }
        }
    }
    let n = msg.bytes;
    let payload = String::from_utf8_lossy(&buf[..n]).into_owned();
    (fd.expect("no fd in the console socket message"), payload)
}

/// Reads from `fd` (a pty master) into `acc` until `acc` contains `needle`; fails the test if it does
/// not arrive within [`HANG_GUARD`] or the pty closes first.
fn read_until(fd: BorrowedFd<'_>, acc: &mut String, needle: &str) {
    let deadline = Instant::now() + HANG_GUARD;
    let mut buf = [0u8; 4096];
    while !acc.contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{needle:?} not seen on the pty; got {acc:?}"
        );
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => panic!("poll: {e}"),
        }
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => panic!("pty closed before {needle:?}; got {acc:?}"),
            Ok(n) => acc.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
            // EIO: every slave fd is closed.
            Err(e) => panic!("pty read ({e}) before {needle:?}; got {acc:?}"),
        }
    }
}

/// Writes all of `data` to `fd`.
fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => panic!("write to pty: {e}"),
        }
    }
}

/// A spawned process that is killed (by its pid) and reaped if the test ends before it.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn try_wait(&mut self) -> Option<ExitStatus> {
        let st = self.0.as_mut()?.try_wait().unwrap();
        if st.is_some() {
            self.0 = None;
        }
        st
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Asserts that a failed `create` of `b` left nothing behind.
fn assert_nothing_left(b: &Bundle) {
    assert!(!b.root.join(&b.id).exists(), "state dir left");
    assert!(b.state().is_none(), "`state` still answers");
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup dirs left: {:?}",
        b.cgroup_dirs()
    );
}

#[test]
fn console_socket_receives_the_pty_master() {
    let mut b = Bundle::new(
        "console",
        &[
            "sh",
            "-c",
            "tty; test -t 0 && echo STDIN_IS_TTY; test -t 1 && echo STDOUT_IS_TTY; \
             read line; echo \"got:$line\"; exit 5",
        ],
    );
    b.config["process"]["terminal"] = json!(true);
    let sock_path = b.dir.join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    b.write_config();
    let out = b.amphi(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--console-socket",
        sock_path.to_str().unwrap(),
        &b.id,
    ]);
    assert!(out.status.success(), "create: {}", stderr(&out));
    // `create` has connected and sent the master before returning: accept does not block.
    listener.set_nonblocking(true).unwrap();
    let (conn, _) = listener
        .accept()
        .expect("create returned without connecting to the console socket");
    conn.set_nonblocking(false).unwrap();
    let (master, _payload) = recv_fd(conn.as_fd());
    drop(conn);
    drop(listener);
    let _ = std::fs::remove_file(&sock_path);
    // It is the master side of a pty.
    assert!(
        nix::unistd::isatty(&master).unwrap_or(false),
        "received fd is not a terminal"
    );
    let mut ptn: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int into `ptn`, which outlives the call.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut ptn) };
    assert_eq!(rc, 0, "received fd is not a pty master");

    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let mut acc = String::new();
    read_until(master.as_fd(), &mut acc, "STDOUT_IS_TTY");
    let first = acc.lines().next().unwrap_or_default().trim_end();
    assert!(
        first.starts_with("/dev/pts/") || first == "/dev/console",
        "tty printed {first:?}; all: {acc:?}"
    );
    assert!(acc.contains("STDIN_IS_TTY"), "{acc:?}");
    write_all(master.as_fd(), b"hello through the pty\n");
    read_until(master.as_fd(), &mut acc, "got:hello through the pty");
    assert!(
        wait_for(|| b.state().is_some_and(|s| s["status"] == "stopped")),
        "container did not stop after its input"
    );
}

/// `process.consoleSize` sets the window size of the container's terminal.
#[test]
fn console_size_is_applied() {
    let mut b = Bundle::new("consolesize", &["stty", "size"]);
    b.config["process"]["terminal"] = json!(true);
    b.config["process"]["consoleSize"] = json!({"height": 37, "width": 113});
    let sock_path = b.dir.join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    b.write_config();
    let out = b.amphi(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--console-socket",
        sock_path.to_str().unwrap(),
        &b.id,
    ]);
    assert!(out.status.success(), "create: {}", stderr(&out));
    listener.set_nonblocking(true).unwrap();
    let (conn, _) = listener
        .accept()
        .expect("no connection on the console socket");
    conn.set_nonblocking(false).unwrap();
    let (master, _) = recv_fd(conn.as_fd());
    drop(conn);
    drop(listener);
    let _ = std::fs::remove_file(&sock_path);
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let mut acc = String::new();
    read_until(master.as_fd(), &mut acc, "\n");
    assert_eq!(acc.trim_end(), "37 113");
}

#[test]
fn terminal_without_console_socket_fails_create() {
    let mut b = Bundle::new("noconsole", &["true"]);
    b.config["process"]["terminal"] = json!(true);
    let out = b.create();
    assert!(!out.status.success(), "create must fail: {out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("console-socket") && err.contains("terminal"),
        "error must name process.terminal and --console-socket: {err}"
    );
    assert_nothing_left(&b);
}

#[test]
fn console_socket_without_terminal_fails_create() {
    let b = Bundle::new("noterminal", &["true"]);
    assert_eq!(b.config["process"]["terminal"], json!(false));
    let sock_path = b.dir.join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    b.write_config();
    let out = b.amphi(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--console-socket",
        sock_path.to_str().unwrap(),
        &b.id,
    ]);
    drop(listener);
    let _ = std::fs::remove_file(&sock_path);
    assert!(!out.status.success(), "create must fail: {out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("console-socket") && err.contains("terminal"),
        "error must name --console-socket and process.terminal: {err}"
    );
    assert_nothing_left(&b);
}

#[test]
fn console_socket_that_does_not_exist_fails_create() {
    let mut b = Bundle::new("badsocket", &["true"]);
    b.config["process"]["terminal"] = json!(true);
    b.write_config();
    let sock_path = b.dir.join("no-such.sock");
    let out = b.amphi(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--console-socket",
        sock_path.to_str().unwrap(),
        &b.id,
    ]);
    assert!(!out.status.success(), "create must fail: {out:?}");
    let err = stderr(&out);
    assert!(err.contains("console-socket"), "{err}");
    assert_nothing_left(&b);
}

/// A foreground `run` with a terminal and no console socket proxies the container's pty to its own
/// stdio: here the slave of a pty that the test opened, read and written through the master.
#[test]
fn run_with_terminal_proxies_a_pty() {
    let mut b = Bundle::new(
        "runtty",
        &[
            "sh",
            "-c",
            "test -t 1 && echo IS_A_TTY; test -t 0 && echo STDIN_TTY; \
             read line; echo \"got:$line\"; exit 4",
        ],
    );
    b.config["process"]["terminal"] = json!(true);
    b.write_config();
    let pty = nix::pty::openpty(None, None).unwrap();
    let master = pty.master;
    let slave = pty.slave;
    let child = b
        .cmd(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()))
        .spawn()
        .unwrap();
    drop(slave);
    let mut child = ChildGuard(Some(child));
    let mut acc = String::new();
    read_until(master.as_fd(), &mut acc, "STDIN_TTY");
    assert!(acc.contains("IS_A_TTY"), "{acc:?}");
    write_all(master.as_fd(), b"typed line\n");
    read_until(master.as_fd(), &mut acc, "got:typed line");

    // Drain until amphi exits (the master is read so that amphi never blocks writing).
    let deadline = Instant::now() + HANG_GUARD;
    let status = loop {
        if let Some(st) = child.try_wait() {
            break st;
        }
        assert!(Instant::now() < deadline, "amphi run did not exit");
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if let Ok(n) = poll(&mut fds, PollTimeout::from(50u16)) {
            if n > 0 {
                let mut buf = [0u8; 4096];
                if let Ok(n) = nix::unistd::read(master.as_fd(), &mut buf) {
                    acc.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        }
    };
    assert_eq!(status.code(), Some(4), "output: {acc:?}");
    assert!(!b.root.join(&b.id).exists(), "state dir left");
    assert!(b.cgroup_dirs().is_empty(), "cgroup left");
}

/// Without a terminal on the caller's side (stdio not a tty), `run` with process.terminal still gives
/// the container a pty and still propagates the exit status.
#[test]
fn run_with_terminal_and_non_tty_stdio() {
    let mut b = Bundle::new(
        "runttyfile",
        &["sh", "-c", "test -t 1 && echo IS_A_TTY; exit 6"],
    );
    b.config["process"]["terminal"] = json!(true);
    let out = b.run();
    assert_eq!(out.status.code(), Some(6), "stderr: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("IS_A_TTY"), "stdout: {text:?}");
}

/// `/dev/console` that is a symlink in an image whose `/dev` is not a tmpfs (no `/dev` mount in the
/// config) must not receive the pty's bind mount (runc CVE-2025-52565): create fails naming it, and
/// the symlink's target is untouched.
#[test]
fn dev_console_symlink_is_refused() {
    let mut b = Bundle::new("consolelink", &["true"]);
    b.config["process"]["terminal"] = json!(true);
    let mounts: Vec<serde_json::Value> = b.config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["destination"] != "/dev")
        .cloned()
        .collect();
    b.config["mounts"] = json!(mounts);
    let rootfs = b.rootfs();
    std::fs::write(rootfs.join("tmp/console-target"), "canary\n").unwrap();
    std::os::unix::fs::symlink("/tmp/console-target", rootfs.join("dev/console")).unwrap();
    let sock_path = b.dir.join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    listener.set_nonblocking(true).unwrap();
    b.write_config();
    let out = b.amphi(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--console-socket",
        sock_path.to_str().unwrap(),
        &b.id,
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "create must fail: {err}");
    assert!(
        err.contains("/dev/console") && err.contains("symlink"),
        "error must name /dev/console and the symlink: {err}"
    );
    assert_nothing_left(&b);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("tmp/console-target")).unwrap(),
        "canary\n"
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains("console-target"),
        "a mount landed on the symlink's target"
    );
}
