//! `SCMP_ACT_NOTIFY` with `linux.seccomp.listenerPath` (issue 6): a seccomp agent in this test
//! process receives the notify fd and the `ContainerProcessState` (runtime-spec state.md), answers
//! the container's `mkdir` calls through libseccomp's notify API, and the tests check what the
//! container's process sees. Covered: the filter loaded during `create` (no `noNewPrivileges`) and
//! after `start` (with it), a faked success, `exec`'d processes, an agent that hangs up, and bad
//! profiles refused at `create` with nothing left behind.

mod common;

use std::io::{IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{assert_no_leftovers, stderr, stdout, wait_for, Bundle};
use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
use serde_json::{json, Value};

/// How the agent answers every notification.
#[derive(Clone, Copy)]
enum Answer {
    /// The syscall fails with this errno.
    Errno(i32),
    /// The syscall "succeeds" with 0 without being run.
    Success,
}

/// What the agent received on one connection.
#[derive(Debug)]
struct Received {
    /// The `ContainerProcessState` JSON.
    msg: Value,
    /// How many fds came with it.
    fds: usize,
    /// Whether the runtime closed the connection after the message (end-of-file seen).
    closed: bool,
}

/// A seccomp agent listening on a unix socket in a temporary directory.
struct Agent {
    _dir: tempfile::TempDir,
    path: PathBuf,
    rx: mpsc::Receiver<Received>,
    stop: Arc<AtomicBool>,
    /// Names of the syscalls it was notified of.
    seen: Arc<Mutex<Vec<String>>>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Agent {
    fn start(answer: Answer) -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("amphi-agent-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let threads = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen2, threads2) = (stop.clone(), seen.clone(), threads.clone());
        let accept = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (msg, fd, n, closed) = receive(conn);
                        if let Some(fd) = fd {
                            let (stop3, seen3) = (stop2.clone(), seen2.clone());
                            let t = std::thread::spawn(move || serve(fd, answer, &stop3, &seen3));
                            threads2.lock().unwrap().push(t);
                        }
                        let _ = tx.send(Received {
                            msg,
                            fds: n,
                            closed,
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("agent: accept: {e}"),
                }
            }
        });
        threads.lock().unwrap().push(accept);
        Agent {
            _dir: dir,
            path,
            rx,
            stop,
            seen,
            threads,
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The next connection's message (waits up to 30 s).
    fn next(&self) -> Received {
        self.rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the seccomp agent received no connection")
    }

    /// No further connection arrived.
    fn nothing_more(&self) -> bool {
        self.rx.try_recv().is_err()
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.lock().unwrap().drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads the message and its fds from a new connection, then reads on until end-of-file (the
/// runtime must close the connection after one message).
fn receive(conn: UnixStream) -> (Value, Option<OwnedFd>, usize, bool) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .expect("agent: recvmsg");
    let n = msg.bytes;
    let mut fds = Vec::new();
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(list) = c {
            for f in list {
                // SAFETY: the kernel just installed this fd in our table; nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(f) });
            }
        }
    }
    let mut data = buf[..n].to_vec();
    let mut conn = conn;
    let closed = conn.read_to_end(&mut data).is_ok();
    let value: Value = if data.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&data).expect("agent: the message is not JSON")
    };
    let count = fds.len();
    (value, fds.into_iter().next(), count, closed)
}

/// Answers notifications on `fd` until the filter has no more users (POLLHUP) or `stop`.
fn serve(fd: OwnedFd, answer: Answer, stop: &AtomicBool, seen: &Mutex<Vec<String>>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    while !stop.load(Ordering::SeqCst) {
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut p, PollTimeout::from(50u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => panic!("agent: poll: {e}"),
        }
        let ev = p[0].revents().unwrap_or(PollFlags::empty());
        if !ev.contains(PollFlags::POLLIN) {
            if ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                return;
            }
            continue;
        }
        let Ok(req) = ScmpNotifReq::receive(fd.as_raw_fd()) else {
            // The process went away between poll and receive.
            continue;
        };
        let name = req
            .data
            .syscall
            .get_name()
            .unwrap_or_else(|_| "?".to_string());
        seen.lock().unwrap().push(name);
        let resp = match answer {
            Answer::Errno(e) => ScmpNotifResp::new_error(req.id, -e, ScmpNotifRespFlags::empty()),
            Answer::Success => ScmpNotifResp::new_val(req.id, 0, ScmpNotifRespFlags::empty()),
        };
        // The process may have been killed meanwhile (ENOENT): nothing to answer then.
        let _ = resp.respond(fd.as_raw_fd());
    }
}

/// A busybox bundle running `script` whose profile sends `mkdir` and `mkdirat` to `agent`.
fn bundle(name: &str, script: &str, agent: &Agent, nnp: bool) -> Bundle {
    let mut b = Bundle::new(name, &["sh", "-c", script]);
    b.config["root"]["readonly"] = json!(false);
    b.config["process"]["noNewPrivileges"] = json!(nnp);
    b.config["annotations"] = json!({"org.amphi.test": "notify"});
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": agent.path(),
        "listenerMetadata": "agent-meta",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    b
}

/// Checks one `ContainerProcessState`: one fd named `seccompFd`, the pid, metadata, versions, and
/// the container's state.
#[track_caller]
fn check_msg(r: &Received, b: &Bundle, pid: i64, container_pid: i64, status: &str) {
    let m = &r.msg;
    assert_eq!(r.fds, 1, "fds passed with {m}");
    assert!(
        r.closed,
        "the runtime did not close the connection after {m}"
    );
    assert_eq!(m["fds"], json!(["seccompFd"]), "{m}");
    assert_eq!(m["pid"].as_i64(), Some(pid), "{m}");
    assert_eq!(m["metadata"], json!("agent-meta"), "{m}");
    assert_eq!(m["ociVersion"], b.config["ociVersion"], "{m}");
    let s = &m["state"];
    assert_eq!(s["ociVersion"], b.config["ociVersion"], "{m}");
    assert_eq!(s["id"], json!(b.id), "{m}");
    assert_eq!(s["status"], json!(status), "{m}");
    assert_eq!(s["pid"].as_i64(), Some(container_pid), "{m}");
    assert_eq!(
        Path::new(s["bundle"].as_str().unwrap()),
        b.dir.as_path(),
        "{m}"
    );
    assert_eq!(s["annotations"]["org.amphi.test"], json!("notify"), "{m}");
}

fn wait_stopped(b: &Bundle) {
    assert!(
        wait_for(|| b.state().is_some_and(|s| s["status"] == "stopped")),
        "container did not stop: {:?}",
        b.state()
    );
}

/// The agent makes `mkdir` fail with EROFS; the filter is loaded during `create` (status
/// `creating`) without `noNewPrivileges`, after `start` (status `created`) with it. The process
/// sees EROFS, no directory appears, and neither the notify fd nor the agent's socket reaches it.
#[test]
fn agent_answers_mkdir_with_erofs() {
    for nnp in [false, true] {
        let agent = Agent::start(Answer::Errno(libc::EROFS));
        let b = bundle(
            "notify-erofs",
            "mkdir /tmp/x 2>/err; echo mkdir=$? > /out; ls -l /proc/self/fd/ > /fds",
            &agent,
            nnp,
        );
        let out = b.create();
        assert!(out.status.success(), "create: {}", stderr(&out));
        let pid = b.state().unwrap()["pid"].as_i64().unwrap();
        let early = if nnp { None } else { Some(agent.next()) };
        let out = b.amphi(&["start", &b.id]);
        assert!(out.status.success(), "start: {}", stderr(&out));
        let r = match early {
            Some(r) => {
                check_msg(&r, &b, pid, pid, "creating");
                r
            }
            None => {
                let r = agent.next();
                check_msg(&r, &b, pid, pid, "created");
                r
            }
        };
        drop(r);
        wait_stopped(&b);
        let rootfs = b.rootfs();
        assert_eq!(
            std::fs::read_to_string(rootfs.join("out")).unwrap().trim(),
            "mkdir=1",
            "nnp={nnp}"
        );
        let err = std::fs::read_to_string(rootfs.join("err")).unwrap();
        assert!(err.contains("Read-only file system"), "nnp={nnp}: {err}");
        assert!(!rootfs.join("tmp/x").exists(), "nnp={nnp}");
        let seen = agent.seen();
        assert!(
            seen.iter().any(|s| s == "mkdir" || s == "mkdirat"),
            "nnp={nnp}: agent saw {seen:?}"
        );
        let fds = std::fs::read_to_string(rootfs.join("fds")).unwrap();
        assert!(
            !fds.contains("seccomp") && !fds.contains("socket:"),
            "nnp={nnp}: the workload holds {fds}"
        );
        assert!(agent.nothing_more(), "nnp={nnp}: a second connection");
    }
}

/// The agent fakes success: `mkdir` returns 0 but nothing is created (only the agent could answer
/// so), through a foreground `run`.
#[test]
fn agent_fakes_success() {
    let agent = Agent::start(Answer::Success);
    let b = bundle(
        "notify-fake",
        "mkdir /tmp/y && echo made; if [ -d /tmp/y ]; then echo exists; else echo absent; fi",
        &agent,
        true,
    );
    let out = b.run();
    assert_eq!(out.status.code(), Some(0), "run: {}", stderr(&out));
    assert_eq!(stdout(&out), "made\nabsent\n");
    let r = agent.next();
    let pid = r.msg["pid"].as_i64().unwrap();
    check_msg(&r, &b, pid, pid, "created");
    assert!(pid > 1, "host pid expected, got {pid}");
    assert!(!b.rootfs().join("tmp/y").exists());
}

/// An `exec`'d process gets its own connection: status `running`, `pid` = the exec'd process
/// (its --pid-file), `state.pid` = the container's init; its `mkdir` is answered by the agent.
#[test]
fn exec_sends_its_own_notify_fd() {
    for nnp in [false, true] {
        let agent = Agent::start(Answer::Errno(libc::EROFS));
        let b = bundle("notify-exec", "sleep 60", &agent, nnp);
        let out = b.create();
        assert!(out.status.success(), "create: {}", stderr(&out));
        let out = b.amphi(&["start", &b.id]);
        assert!(out.status.success(), "start: {}", stderr(&out));
        let pid = b.state().unwrap()["pid"].as_i64().unwrap();
        let first = agent.next();
        check_msg(
            &first,
            &b,
            pid,
            pid,
            if nnp { "created" } else { "creating" },
        );
        let pid_file = b.dir.join("exec.pid");
        let out = b.amphi(&[
            "exec",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &b.id,
            "sh",
            "-c",
            "mkdir /tmp/z; echo mkdir=$?",
        ]);
        assert_eq!(out.status.code(), Some(0), "exec: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "mkdir=1", "nnp={nnp}");
        assert!(
            stderr(&out).contains("Read-only file system"),
            "{}",
            stderr(&out)
        );
        let exec_pid: i64 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let r = agent.next();
        check_msg(&r, &b, exec_pid, pid, "running");
        assert_ne!(exec_pid, pid);
        assert!(!b.rootfs().join("tmp/z").exists());
        let out = b.amphi(&["delete", "--force", &b.id]);
        assert!(out.status.success(), "delete: {}", stderr(&out));
    }
}

/// The agent accepts the connection and hangs up before the late filter is loaded: `start`
/// fails and says why (runtime-spec: a failed send is an error), and the workload never runs.
#[test]
fn agent_hanging_up_fails_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut b = Bundle::new("notify-hangup", &["sh", "-c", "echo ran > /out"]);
    b.config["root"]["readonly"] = json!(false);
    b.config["process"]["noNewPrivileges"] = json!(true);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": path,
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let (conn, _) = listener.accept().unwrap();
    drop(conn);
    let out = b.amphi(&["start", &b.id]);
    assert!(!out.status.success(), "start succeeded without an agent");
    let err = stderr(&out);
    assert!(
        err.contains("linux.seccomp.listenerPath") && err.contains("seccomp agent"),
        "{err}"
    );
    assert!(!b.rootfs().join("out").exists(), "the workload ran");
    let out = b.amphi(&["delete", "--force", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert_no_leftovers(&b);
}

/// Bad profiles and an unreachable agent fail `create` naming the field; nothing is left.
#[test]
fn bad_listener_configs_fail_create() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nobody-listens.sock");
    let notify = json!([{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]);
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": notify}),
            "linux.seccomp.listenerPath",
            "must be set",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "agent.sock",
                   "syscalls": notify}),
            "linux.seccomp.listenerPath",
            "absolute",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": missing,
                   "syscalls": notify}),
            "linux.seccomp.listenerPath",
            "connect",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": missing}),
            "linux.seccomp.defaultAction",
            "default action",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": missing,
                   "syscalls": [{"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"}]}),
            "linux.seccomp.syscalls[0].names[0]",
            "sendmsg",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m"}),
            "linux.seccomp.listenerMetadata",
            "listenerPath",
        ),
    ];
    for (seccomp, field, words) in cases {
        let mut b = Bundle::new("notify-bad", &["true"]);
        b.config["linux"]["seccomp"] = seccomp.clone();
        let out = b.create();
        let err = stderr(&out);
        assert!(!out.status.success(), "{seccomp}: create succeeded");
        assert!(
            err.contains(field) && err.contains(words),
            "{seccomp}: expected {field} / {words} in {err}"
        );
        assert_no_leftovers(&b);
    }
}

/// A Wasm guest runs inside amphi's own process, which loaded the filter: its file creation
/// (`openat` with O_CREAT from wasmtime's WASI) goes to the agent, which refuses it with EACCES;
/// the guest sees WASI errno 2 (`acces`) and nothing is created.
#[test]
fn wasm_guest_is_confined_by_the_agent() {
    let agent = Agent::start(Answer::Errno(libc::EACCES));
    let mut b = Bundle::new("notify-wasm", &["/tool.wasm", "write", "/tmp/w", "hello"]);
    let module = wat::parse_str(include_str!("wasm/tool.wat")).unwrap();
    std::fs::write(b.rootfs().join("tool.wasm"), module).unwrap();
    b.config["root"]["readonly"] = json!(false);
    b.config["process"]["noNewPrivileges"] = json!(true);
    b.config["annotations"] = json!({"org.amphi.test": "notify", "run.oci.handler": "wasm"});
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": agent.path(),
        "listenerMetadata": "agent-meta",
        "syscalls": [
            // Only opens that create (O_CREAT, 0o100): wasmtime's own preopen of / must pass.
            {"names": ["open"], "action": "SCMP_ACT_NOTIFY",
             "args": [{"index": 1, "value": 64, "valueTwo": 64, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["openat"], "action": "SCMP_ACT_NOTIFY",
             "args": [{"index": 2, "value": 64, "valueTwo": 64, "op": "SCMP_CMP_MASKED_EQ"}]},
            // openat2 passes its flags by pointer, which a filter cannot read: ENOSYS makes
            // wasmtime's cap-std fall back to openat.
            {"names": ["openat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
        ]
    });
    let out = b.run();
    assert_eq!(out.status.code(), Some(0), "run: {}", stderr(&out));
    assert_eq!(stdout(&out), "err:2\n", "stderr: {}", stderr(&out));
    let r = agent.next();
    let pid = r.msg["pid"].as_i64().unwrap();
    check_msg(&r, &b, pid, pid, "created");
    assert!(!b.rootfs().join("tmp/w").exists());
    let seen = agent.seen();
    assert!(
        seen.iter().any(|s| s.starts_with("open")),
        "agent saw {seen:?}"
    );
    assert!(agent.nothing_more(), "a second connection");
}

/// In a user namespace the container's root is an unprivileged host uid that could not connect to
/// the agent's socket (in a 0700 directory of host root); amphi connects on the host before the
/// fork, so the agent still gets the fd (pid as the host sees it) and answers the `mkdir`.
#[test]
fn user_namespace_container_reaches_a_private_agent() {
    let agent = Agent::start(Answer::Errno(libc::EROFS));
    let mut b = bundle(
        "notify-userns",
        "mkdir /tmp/u 2>/dev/null; echo mkdir=$? > /out",
        &agent,
        false,
    );
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let maps = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["uidMappings"] = maps.clone();
    b.config["linux"]["gidMappings"] = maps;
    let st = std::process::Command::new("chown")
        .args(["-R", "-h", "100000:100000"])
        .arg(b.rootfs())
        .status()
        .unwrap();
    assert!(st.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        b.dir.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let agent_dir = agent.path.parent().unwrap();
    std::fs::set_permissions(agent_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let pid = b.state().unwrap()["pid"].as_i64().unwrap();
    check_msg(&agent.next(), &b, pid, pid, "creating");
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    wait_stopped(&b);
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("out"))
            .unwrap()
            .trim(),
        "mkdir=1"
    );
    assert!(!b.rootfs().join("tmp/u").exists());
}
