//! `amphi exec` (issue 5): a new process in a created or running container — its exit status, the
//! namespaces and cgroup it joins, each flag (`-u`, `-g`, `-e`, `--cwd`, `-c`, `--no-new-privs`,
//! `--process`, `-d --pid-file`, `--preserve-fds`, `-t` with and without `--console-socket`), exec
//! into stopped, created and wasm containers, and `LISTEN_FDS` socket activation for `run`.

mod common;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{amphi_bin, read_until, recv_fd, stderr, stdout, wait_for, write_all, Bundle};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::json;

/// The wasm test guest of tests/wasm.rs, in WebAssembly text (`echo`, `cat`, `spin` ...).
const TOOL_WAT: &str = include_str!("wasm/tool.wat");

/// How long a test waits for output or an exit before failing instead of hanging.
const HANG_GUARD: Duration = Duration::from_secs(60);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A busybox container running `sleep 1000`, created and started; returns it and its init's host
/// pid.
fn sleeper(name: &str) -> (Bundle, i32) {
    let b = Bundle::new(name, &["sleep", "1000"]);
    let pid = create_start(&b);
    (b, pid)
}

/// Creates and starts `b` (config written first), asserting success; returns the init's host pid.
fn create_start(b: &Bundle) -> i32 {
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let st = b.state().expect("state after start");
    assert_eq!(st["status"], "running", "{st}");
    st["pid"].as_i64().unwrap() as i32
}

/// `amphi exec <flags...> ID sh -c <script>` in the foreground.
fn exec_sh(b: &Bundle, flags: &[&str], script: &str) -> Output {
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.extend([b.id.as_str(), "sh", "-c", script]);
    b.amphi(&args)
}

/// Asserts a successful exec and returns its stdout.
#[track_caller]
fn ok_stdout(out: &Output, what: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: stdout {:?} stderr {}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// `readlink /proc/<pid>/ns/<name>` on the host.
fn host_ns(pid: i32, name: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The hex capability mask on line `key` (e.g. `CapBnd:`) of a `/proc/<pid>/status` text.
fn cap_mask(status: &str, key: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {status}"));
    u64::from_str_radix(line[key.len()..].trim(), 16).unwrap()
}

/// The value of line `key` (e.g. `NoNewPrivs:`) of a `/proc/<pid>/status` text.
fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {status}"))[key.len()..]
        .trim()
}

/// Bit of CAP_SYS_ADMIN in the capability masks.
const SYS_ADMIN: u64 = 1 << 21;

/// Bit of CAP_KILL.
const KILL: u64 = 1 << 5;

/// Spawns `amphi --root <root> <args...>` with stdout/stderr in files of the bundle dir, stdin
/// null (unless `stdio` gives all three), `fds` installed at the given fd numbers, and `env` added.
fn spawn_amphi(
    b: &Bundle,
    program_prefix: &[&str],
    args: &[&str],
    fds: &[(RawFd, BorrowedFd<'_>)],
    env: &[(&str, &str)],
    stdio: Option<&OwnedFd>,
) -> (ChildGuard, PathBuf, PathBuf) {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let out_path = b.dir.join(format!(".exec-out-{n}"));
    let err_path = b.dir.join(format!(".exec-err-{n}"));
    let mut cmd = if program_prefix.is_empty() {
        Command::new(amphi_bin())
    } else {
        let mut c = Command::new(program_prefix[0]);
        c.args(&program_prefix[1..]).arg(amphi_bin());
        c
    };
    cmd.arg("--root").arg(&b.root).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    match stdio {
        Some(fd) => {
            cmd.stdin(Stdio::from(fd.try_clone().unwrap()))
                .stdout(Stdio::from(fd.try_clone().unwrap()))
                .stderr(Stdio::from(fd.try_clone().unwrap()));
        }
        None => {
            cmd.stdin(Stdio::null())
                .stdout(std::fs::File::create(&out_path).unwrap())
                .stderr(std::fs::File::create(&err_path).unwrap());
        }
    }
    let plan: Vec<(RawFd, RawFd)> = fds.iter().map(|(t, f)| (*t, f.as_raw_fd())).collect();
    if !plan.is_empty() {
        // SAFETY: the closure only calls fcntl and dup2, which are async-signal-safe, on fds that
        // this (forked) child owns copies of.
        unsafe {
            cmd.pre_exec(move || {
                // First move every source out of the way (a source may sit on another's target).
                let mut high = Vec::with_capacity(plan.len());
                for (_, src) in &plan {
                    let h = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 200);
                    if h < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    high.push(h);
                }
                for ((target, _), h) in plan.iter().zip(&high) {
                    // dup2 leaves the new fd without FD_CLOEXEC.
                    if libc::dup2(*h, *target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    let child = cmd.spawn().unwrap();
    (ChildGuard(Some(child)), out_path, err_path)
}

/// Runs [`spawn_amphi`] to completion and returns its output.
fn amphi_fds(
    b: &Bundle,
    program_prefix: &[&str],
    args: &[&str],
    fds: &[(RawFd, BorrowedFd<'_>)],
    env: &[(&str, &str)],
) -> Output {
    let (mut child, out_path, err_path) = spawn_amphi(b, program_prefix, args, fds, env, None);
    let status = child.wait("amphi");
    let out = Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    };
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    out
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

    /// Waits for the exit, failing the test after [`HANG_GUARD`].
    fn wait(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Some(st) = self.try_wait() {
                return st;
            }
            assert!(Instant::now() < deadline, "{what} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// A process started by `exec -d` (not our child): SIGKILLed on drop if it still runs `cmdline`.
struct PidGuard {
    pid: i32,
    cmdline: String,
}

impl Drop for PidGuard {
    fn drop(&mut self) {
        if proc_cmdline(self.pid).as_deref() == Some(self.cmdline.as_str()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// `/proc/<pid>/cmdline` with NULs as spaces (trimmed), or `None` if the process is gone.
fn proc_cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&raw)
            .replace('\0', " ")
            .trim()
            .to_string(),
    )
}

/// Waits for `child` to exit while draining the pty master (so that nothing blocks writing).
fn wait_draining(child: &mut ChildGuard, master: BorrowedFd<'_>, acc: &mut String) -> ExitStatus {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(st) = child.try_wait() {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "amphi exec did not exit: {acc:?}"
        );
        let mut fds = [PollFd::new(master, PollFlags::POLLIN)];
        if let Ok(n) = poll(&mut fds, PollTimeout::from(50u16)) {
            if n > 0 {
                let mut buf = [0u8; 4096];
                if let Ok(n) = nix::unistd::read(master, &mut buf) {
                    acc.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        }
    }
}

/// A file in `dir` holding `content`, opened read-only.
fn content_file(dir: &Path, name: &str, content: &str) -> std::fs::File {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    std::fs::File::open(&p).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Exit status and failures to start.

/// exec prints through the caller's stdout and its exit status passes through.
#[test]
fn exec_output_and_exit_status() {
    let (b, _) = sleeper("status");
    let out = exec_sh(&b, &[], "echo hello-from-exec; echo to-stderr >&2");
    assert_eq!(ok_stdout(&out, "echo"), "hello-from-exec\n");
    assert!(stderr(&out).contains("to-stderr"), "{}", stderr(&out));
    for code in [9, 1, 42] {
        let out = exec_sh(&b, &[], &format!("exit {code}"));
        assert_eq!(out.status.code(), Some(code), "stderr: {}", stderr(&out));
    }
    // A process killed by a signal: 128+N, as runc.
    let out = exec_sh(&b, &[], "kill -9 $$");
    assert_eq!(out.status.code(), Some(137), "stderr: {}", stderr(&out));
    // The container is still running afterwards.
    assert_eq!(b.state().unwrap()["status"], "running");
}

/// A command that cannot start exits 255 with an error naming it; the container is unaffected.
#[test]
fn exec_missing_binary_exits_255() {
    let (b, _) = sleeper("missing");
    let out = b.amphi(&["exec", &b.id, "/no/such-binary", "arg"]);
    assert_eq!(out.status.code(), Some(255), "stdout: {}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("/no/such-binary"), "error must name it: {err}");
    // A bad --cwd also fails to start.
    let out = b.amphi(&["exec", "--cwd", "/no/such-dir", &b.id, "true"]);
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    assert!(stderr(&out).contains("/no/such-dir"), "{}", stderr(&out));
    // Neither a COMMAND nor --process.
    let out = b.amphi(&["exec", &b.id]);
    assert!(!out.status.success(), "exec without a command must fail");
    assert_eq!(b.state().unwrap()["status"], "running");
    let out = exec_sh(&b, &[], "echo still-fine");
    assert_eq!(ok_stdout(&out, "after failures"), "still-fine\n");
}

/// exec into an unknown container fails clearly.
#[test]
fn exec_unknown_container_fails() {
    let b = Bundle::new("unknown", &["true"]);
    let out = b.amphi(&["exec", &b.id, "echo", "x"]);
    assert!(!out.status.success());
    assert!(!stdout(&out).contains('x'), "{}", stdout(&out));
    assert!(stderr(&out).contains(&b.id), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// Namespaces and cgroup.

const NS_NAMES: [&str; 6] = ["mnt", "uts", "ipc", "net", "pid", "cgroup"];

fn ns_script(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("readlink /proc/self/ns/{n}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The exec'd process is in every namespace of the container (not the host's) and in its cgroup.
#[test]
fn exec_joins_namespaces_and_cgroup() {
    let mut b = Bundle::new("joinns", &["sleep", "1000"]);
    b.config["hostname"] = json!("exec-ns-host");
    let pid = create_start(&b);
    let out = exec_sh(&b, &[], &ns_script(&NS_NAMES));
    let text = ok_stdout(&out, "readlink");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), NS_NAMES.len(), "{text}");
    for (name, line) in NS_NAMES.iter().zip(&lines) {
        assert_eq!(*line, host_ns(pid, name), "{name} namespace");
        assert_ne!(*line, host_ns(std::process::id() as i32, name), "{name}");
    }
    let out = exec_sh(&b, &[], "hostname; echo $$");
    let text = ok_stdout(&out, "hostname");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "exec-ns-host");
    // Pid 1 is the container's init: the exec'd shell has another pid in the container's pid ns.
    assert_ne!(lines[1], "1");

    // Same cgroup as the container's init, as the container sees it.
    let out = exec_sh(
        &b,
        &[],
        "cat /proc/self/cgroup; echo ---; cat /proc/1/cgroup",
    );
    let text = ok_stdout(&out, "cgroup");
    let (mine, init) = text.split_once("---\n").unwrap();
    assert!(!mine.trim().is_empty(), "{text}");
    assert_eq!(mine, init, "exec'd process is not in the init's cgroups");

    // From the host: a detached exec's pid is in cgroup.procs of every cgroup dir of the container.
    let pid_file = b.dir.join("exec.pid");
    let out = b.amphi(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
        "sleep",
        "997",
    ]);
    assert!(out.status.success(), "exec -d: {}", stderr(&out));
    let epid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _guard = PidGuard {
        pid: epid,
        cmdline: "sleep 997".into(),
    };
    let dirs = b.cgroup_dirs();
    assert!(!dirs.is_empty(), "the container has no cgroup dirs");
    for d in dirs {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
        let pids: Vec<&str> = procs.lines().collect();
        assert!(
            pids.contains(&epid.to_string().as_str()),
            "{epid} not in {}: {procs}",
            d.display()
        );
        assert!(
            pids.contains(&pid.to_string().as_str()),
            "init not in {d:?}"
        );
    }
    // And in the namespaces, seen from the host.
    for name in NS_NAMES {
        assert_eq!(host_ns(epid, name), host_ns(pid, name), "{name}");
    }
}

/// With a user namespace (mapped ids), exec joins it too: same user ns, same maps, root inside and
/// the mapped host uid outside.
#[test]
fn exec_joins_user_namespace() {
    let mut b = Bundle::new("userns", &["sleep", "1000"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let maps = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    b.config["linux"]["uidMappings"] = maps.clone();
    b.config["linux"]["gidMappings"] = maps;
    b.config["root"]["readonly"] = json!(false);
    // The rootfs belongs to the container's root; the directories above it must be traversable
    // by it (the test's temporary directory is 0700).
    let st = Command::new("chown")
        .args(["-R", "-h", "200000:200000"])
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
    let pid = create_start(&b);
    let me = std::process::id() as i32;
    assert_ne!(host_ns(pid, "user"), host_ns(me, "user"));

    let mut names = vec!["user"];
    names.extend(NS_NAMES);
    let out = exec_sh(
        &b,
        &[],
        &format!("{}; id -u; cat /proc/self/uid_map", ns_script(&names)),
    );
    let text = ok_stdout(&out, "exec in userns");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), names.len() + 2, "{text}");
    for (name, line) in names.iter().zip(&lines) {
        assert_eq!(*line, host_ns(pid, name), "{name} namespace");
    }
    assert_eq!(lines[names.len()], "0", "uid inside: {text}");
    let map: Vec<&str> = lines[names.len() + 1].split_whitespace().collect();
    assert_eq!(map, ["0", "200000", "65536"], "{text}");

    // From the host, the exec'd process runs as the mapped uid.
    let pid_file = b.dir.join("exec.pid");
    let out = b.amphi(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
        "sleep",
        "996",
    ]);
    assert!(out.status.success(), "exec -d: {}", stderr(&out));
    let epid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _guard = PidGuard {
        pid: epid,
        cmdline: "sleep 996".into(),
    };
    let status = std::fs::read_to_string(format!("/proc/{epid}/status")).unwrap();
    let uids: Vec<&str> = status_field(&status, "Uid:").split_whitespace().collect();
    assert_eq!(uids, ["200000"; 4], "{status}");
    assert_eq!(host_ns(epid, "user"), host_ns(pid, "user"));
}

// ---------------------------------------------------------------------------------------------
// -u / -g.

/// `-u UID:GID`, `-u UID`, `-u NAME`, `-u NAME:GROUP` and `-u UID:GROUP`, resolved in the
/// container's /etc/passwd and /etc/group.
#[test]
fn exec_user_forms() {
    let (b, _) = sleeper("user");
    let cases: [(&str, &str); 7] = [
        ("1000:1000", "1000 1000"),
        ("1000", "1000 0"),
        ("nobody", "65534 65534"),
        ("nobody:root", "65534 0"),
        ("root:nogroup", "0 65534"),
        ("65534:nogroup", "65534 65534"),
        ("0:0", "0 0"),
    ];
    for (spec, want) in cases {
        let out = exec_sh(&b, &["-u", spec], "echo $(id -u) $(id -g)");
        assert_eq!(ok_stdout(&out, spec).trim(), want, "-u {spec}");
        let flag = format!("--user={spec}");
        let out = exec_sh(&b, &[&flag], "echo $(id -u) $(id -g)");
        assert_eq!(ok_stdout(&out, &flag).trim(), want, "{flag}");
    }
    // Real, effective, saved and filesystem ids all change.
    let out = exec_sh(
        &b,
        &["-u", "1000:1000"],
        "grep -E '^(Uid|Gid):' /proc/self/status",
    );
    let text = ok_stdout(&out, "status ids");
    for line in text.lines() {
        let ids: Vec<&str> = line.split_whitespace().skip(1).collect();
        assert_eq!(ids, ["1000"; 4], "{text}");
    }
}

/// Malformed `-u` values and unknown names are rejected: non-zero exit, the command never runs.
#[test]
fn exec_user_strict_parser() {
    let (b, _) = sleeper("userbad");
    let marker = "RAN-AS-";
    let script = format!("echo {marker}$(id -u)");
    for bad in [
        "1:2:3",
        ":1",
        "1:",
        " 1",
        "1 ",
        "-1",
        "abc def",
        "",
        ":",
        "1::2",
        "root:",
        "nosuchuser",
        "root:nosuchgroup",
        "4294967296",
        // (uid_t)-1 means "unchanged" to setresuid(2): the command would run as root.
        "4294967295",
        "4294967295:4294967295",
        "0:4294967295",
        "0x10",
        "+1",
    ] {
        let flag = format!("--user={bad}");
        let out = exec_sh(&b, &[&flag], &script);
        assert!(
            !out.status.success(),
            "{flag:?} was accepted: stdout {:?}",
            stdout(&out)
        );
        assert!(
            !stdout(&out).contains(marker),
            "{flag:?}: the command ran: {}",
            stdout(&out)
        );
        assert!(!stderr(&out).is_empty(), "{flag:?}: no error message");
    }
    // The short form with a separate value too.
    for bad in ["1:2:3", ":1", "1:", " 1", "abc def"] {
        let out = exec_sh(&b, &["-u", bad], &script);
        assert!(!out.status.success(), "-u {bad:?} was accepted");
        assert!(
            !stdout(&out).contains(marker),
            "-u {bad:?}: the command ran"
        );
    }
    let out = exec_sh(&b, &["-u", "-1"], &script);
    assert!(!out.status.success(), "-u -1 was accepted");
    assert!(!stdout(&out).contains(marker), "-u -1: the command ran");
}

/// `-g` adds supplementary groups (repeatable and comma separated).
#[test]
fn exec_additional_gids() {
    let (b, _) = sleeper("gids");
    let out = exec_sh(
        &b,
        &["-u", "1000:1000", "-g", "10,20", "-g", "30"],
        "grep ^Groups: /proc/self/status",
    );
    let text = ok_stdout(&out, "-g");
    let mut groups: Vec<u32> = text
        .trim()
        .trim_start_matches("Groups:")
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    groups.sort();
    assert!(
        [10, 20, 30].iter().all(|g| groups.contains(g)),
        "groups: {text}"
    );
    // Without -g, none of them.
    let out = exec_sh(&b, &["-u", "1000:1000"], "grep ^Groups: /proc/self/status");
    let text = ok_stdout(&out, "no -g");
    let groups: Vec<&str> = text
        .trim()
        .trim_start_matches("Groups:")
        .split_whitespace()
        .collect();
    assert!(
        !groups.iter().any(|g| ["10", "20", "30"].contains(g)),
        "groups without -g: {text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Environment and cwd.

/// The container's `process.env` is the base; `-e` adds and replaces keys.
#[test]
fn exec_env_overlays_container_env() {
    let mut b = Bundle::new("env", &["sleep", "1000"]);
    b.config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!("FROM_CONFIG=config-value"));
    create_start(&b);
    let out = exec_sh(&b, &[], "env");
    let text = ok_stdout(&out, "env");
    assert!(
        text.lines().any(|l| l == "FROM_CONFIG=config-value"),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "TERM=xterm"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("PATH=")), "{text}");

    let out = exec_sh(
        &b,
        &[
            "-e",
            "NEW_KEY=new value",
            "--env",
            "TERM=dumb",
            "-e",
            "FROM_CONFIG=x=y",
        ],
        "env",
    );
    let text = ok_stdout(&out, "env -e");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"NEW_KEY=new value"), "{text}");
    assert!(lines.contains(&"FROM_CONFIG=x=y"), "{text}");
    let terms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("TERM=")).collect();
    assert_eq!(terms, [&"TERM=dumb"], "TERM replaced once: {text}");
    let cfg: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("FROM_CONFIG="))
        .collect();
    assert_eq!(cfg.len(), 1, "{text}");
    assert!(lines.iter().any(|l| l.starts_with("PATH=")), "{text}");

    // A malformed -e is an error, not ignored.
    let out = exec_sh(&b, &["-e", "NOEQUALS"], "echo RAN");
    assert!(!out.status.success(), "-e NOEQUALS accepted");
    assert!(!stdout(&out).contains("RAN"));
}

/// `HOME` comes from the container's /etc/passwd when the environment has none.
#[test]
fn exec_home_from_passwd() {
    let (b, _) = sleeper("home");
    let cases: [(&[&str], &str); 5] = [
        (&[], "/root"),
        (&["-u", "nobody"], "/nonexistent"),
        (&["-u", "65534:65534"], "/nonexistent"),
        (&["-u", "1234"], "/"),
        (&["-u", "nobody", "-e", "HOME=/custom"], "/custom"),
    ];
    for (flags, want) in cases {
        let out = exec_sh(&b, flags, "echo \"$HOME\"; env | grep -c ^HOME=");
        let text = ok_stdout(&out, &format!("{flags:?}"));
        assert_eq!(text, format!("{want}\n1\n"), "{flags:?}");
    }
}

/// `--cwd` sets the working directory; without it, `process.cwd` of the container.
#[test]
fn exec_cwd() {
    let mut b = Bundle::new("cwd", &["sleep", "1000"]);
    b.config["process"]["cwd"] = json!("/etc");
    create_start(&b);
    let out = exec_sh(&b, &[], "pwd");
    assert_eq!(ok_stdout(&out, "pwd"), "/etc\n");
    let out = exec_sh(&b, &["--cwd", "/tmp"], "pwd");
    assert_eq!(ok_stdout(&out, "--cwd"), "/tmp\n");
    let out = exec_sh(&b, &["--cwd", "tmp"], "echo RAN");
    assert!(!out.status.success(), "relative --cwd accepted");
    assert!(!stdout(&out).contains("RAN"));
}

// ---------------------------------------------------------------------------------------------
// Capabilities and no_new_privs.

/// `-c CAP_SYS_ADMIN` adds it to the bounding, effective and permitted sets.
#[test]
fn exec_cap_adds_capability() {
    let (b, _) = sleeper("cap");
    let out = exec_sh(&b, &[], "cat /proc/self/status");
    let plain = ok_stdout(&out, "status");
    for key in ["CapBnd:", "CapEff:", "CapPrm:"] {
        assert_eq!(cap_mask(&plain, key) & SYS_ADMIN, 0, "{key} without -c");
        assert_ne!(
            cap_mask(&plain, key) & KILL,
            0,
            "{key}: CAP_KILL of the config"
        );
    }
    let out = exec_sh(&b, &["-c", "CAP_SYS_ADMIN"], "cat /proc/self/status");
    let with = ok_stdout(&out, "status -c");
    for key in ["CapBnd:", "CapEff:", "CapPrm:"] {
        assert_ne!(cap_mask(&with, key) & SYS_ADMIN, 0, "{key} with -c: {with}");
        assert_ne!(cap_mask(&with, key) & KILL, 0, "{key}: config caps kept");
    }
    // Unknown capability, or a name not spelt CAP_...: error, nothing runs.
    for bad in ["CAP_NO_SUCH", "sys_admin", "SYS_ADMIN", "cap_sys_admin"] {
        let out = exec_sh(&b, &["-c", bad], "echo RAN");
        assert!(!out.status.success(), "{bad} accepted");
        assert!(!stdout(&out).contains("RAN"), "{bad}");
        assert!(stderr(&out).contains(bad), "{bad}: {}", stderr(&out));
    }
}

/// Without `--process`, exec starts from the container's process even when its config names a
/// capability this build does not know (skipped, as `create` does).
#[test]
fn exec_base_process_with_unknown_capability() {
    let mut b = Bundle::new("capbase", &["sleep", "1000"]);
    b.config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!("FROM_CONFIG=yes"));
    b.config["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .unwrap()
        .push(json!("CAP_AMPHI_FUTURE"));
    b.write_config();
    create_start(&b);
    let out = exec_sh(&b, &[], "echo \"from=$FROM_CONFIG\"");
    assert_eq!(ok_stdout(&out, "exec").trim(), "from=yes");
}

/// `--no-new-privs` sets no_new_privs even when the container's process does not.
#[test]
fn exec_no_new_privs() {
    let mut b = Bundle::new("nnp", &["sleep", "1000"]);
    b.config["process"]["noNewPrivileges"] = json!(false);
    create_start(&b);
    let out = exec_sh(&b, &[], "grep ^NoNewPrivs: /proc/self/status");
    assert_eq!(status_field(&ok_stdout(&out, "plain"), "NoNewPrivs:"), "0");
    let out = exec_sh(
        &b,
        &["--no-new-privs"],
        "grep ^NoNewPrivs: /proc/self/status",
    );
    assert_eq!(status_field(&ok_stdout(&out, "nnp"), "NoNewPrivs:"), "1");
}

// ---------------------------------------------------------------------------------------------
// --process.

/// `--process FILE` (a runtime-spec process.json, as podman and containerd send it) runs with its
/// args, env, cwd, user, groups and capabilities.
#[test]
fn exec_process_file() {
    let (b, _) = sleeper("procfile");
    let process = json!({
        "terminal": false,
        "user": {"uid": 1000, "gid": 1001, "additionalGids": [1001, 44]},
        "args": [
            "sh", "-c",
            "echo uid=$(id -u) gid=$(id -g); grep ^Groups: /proc/self/status; pwd; \
             echo \"p=$FROM_PROCESS\"; echo \"home=$HOME\"; echo \"term=$TERM\"; \
             grep ^CapBnd: /proc/self/status; grep ^NoNewPrivs: /proc/self/status; exit 3"
        ],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FROM_PROCESS=yes it is", "HOSTNAME=x"],
        "cwd": "/tmp",
        "capabilities": {
            // A name not spelt CAP_... is skipped, as runc does, not read as CAP_SYS_ADMIN.
            "bounding": ["CAP_KILL", "sys_admin"],
            "effective": ["CAP_KILL", "SYS_ADMIN"],
            "permitted": ["CAP_KILL", "cap_sys_admin"]
        },
        "noNewPrivileges": true,
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}]
    });
    let path = b.dir.join("process.json");
    std::fs::write(&path, serde_json::to_string(&process).unwrap()).unwrap();
    let out = b.amphi(&["exec", "--process", path.to_str().unwrap(), &b.id]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    assert_eq!(lines[0], "uid=1000 gid=1001");
    let mut groups: Vec<&str> = lines[1]
        .trim_start_matches("Groups:")
        .split_whitespace()
        .collect();
    groups.sort();
    assert_eq!(groups, ["1001", "44"], "{text}");
    assert_eq!(lines[2], "/tmp");
    assert_eq!(lines[3], "p=yes it is");
    assert_eq!(
        lines[4], "home=/",
        "HOME of uid 1000 without a passwd entry"
    );
    // The container's TERM is not merged into a --process environment (runc uses it as given).
    assert_eq!(lines[5], "term=", "{text}");
    assert_eq!(cap_mask(lines[6], "CapBnd:"), KILL, "{text}");
    assert_eq!(status_field(lines[7], "NoNewPrivs:"), "1");

    // A process.json that does not parse: error, nothing runs.
    std::fs::write(&path, "{\"args\": [\"sh\", ").unwrap();
    let out = b.amphi(&["exec", "--process", path.to_str().unwrap(), &b.id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("process"), "{}", stderr(&out));

    // A process.json is checked as create checks config.json's process: each bad field fails exec
    // naming the field, with exit status 255, and the command never runs.
    let marker = "EXEC-RAN";
    for (field, value, named) in [
        (
            "user",
            json!({"uid": 4294967295u32, "gid": 0}),
            "process.user.uid",
        ),
        (
            "user",
            json!({"uid": 0, "gid": 4294967295u32}),
            "process.user.gid",
        ),
        ("env", json!(["PATH=/bin", "NOEQ"]), "process.env[1]"),
        ("cwd", json!("rel"), "process.cwd"),
    ] {
        let mut p = json!({
            "args": ["sh", "-c", format!("echo {marker}")],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0}
        });
        p[field] = value;
        std::fs::write(&path, serde_json::to_string(&p).unwrap()).unwrap();
        let out = b.amphi(&["exec", "--process", path.to_str().unwrap(), &b.id]);
        assert_eq!(out.status.code(), Some(255), "{named}: {}", stderr(&out));
        assert!(!stdout(&out).contains(marker), "{named}: the command ran");
        assert!(stderr(&out).contains(named), "{named}: {}", stderr(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// -d and --pid-file.

/// `-d --pid-file` returns while the process runs; the pid file holds its host pid, which is in the
/// container's pid namespace.
#[test]
fn exec_detach_pid_file() {
    let (b, pid) = sleeper("detach");
    let pid_file = b.dir.join("exec.pid");
    let out = b.amphi(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
        "sleep",
        "995",
    ]);
    assert!(out.status.success(), "exec -d: {}", stderr(&out));
    let text = std::fs::read_to_string(&pid_file).unwrap();
    let epid: i32 = text.trim().parse().unwrap_or_else(|_| panic!("{text:?}"));
    let guard = PidGuard {
        pid: epid,
        cmdline: "sleep 995".into(),
    };
    // It still runs after exec returned, and it is the command.
    assert_eq!(proc_cmdline(epid).as_deref(), Some("sleep 995"));
    assert_eq!(host_ns(epid, "pid"), host_ns(pid, "pid"));
    assert_ne!(epid, pid);
    // The container sees it.
    let out = exec_sh(&b, &[], "ps -o pid,args | grep -v grep | grep 'sleep 995'");
    assert!(ok_stdout(&out, "ps").contains("sleep 995"));
    // A foreground exec writes the pid file too.
    let pid_file2 = b.dir.join("exec2.pid");
    let out = b.amphi(&[
        "exec",
        "--pid-file",
        pid_file2.to_str().unwrap(),
        &b.id,
        "true",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&pid_file2).unwrap();
    assert!(text.trim().parse::<i32>().is_ok(), "{text:?}");
    drop(guard);
}

// ---------------------------------------------------------------------------------------------
// Preserved fds and LISTEN_FDS.

/// `--preserve-fds 1` passes fd 3 (and not fd 4).
#[test]
fn exec_preserve_fds() {
    let (b, _) = sleeper("preserve");
    let f3 = content_file(&b.dir, "fd3", "content-of-fd-three");
    let f4 = content_file(&b.dir, "fd4", "content-of-fd-four");
    let script = "cat <&3; echo; if cat <&4 2>/dev/null; then echo LEAKED-4; else echo no-fd4; fi";
    let args = ["exec", "--preserve-fds", "1", &b.id, "sh", "-c", script];
    let out = amphi_fds(&b, &[], &args, &[(3, f3.as_fd()), (4, f4.as_fd())], &[]);
    assert_eq!(
        ok_stdout(&out, "--preserve-fds 1"),
        "content-of-fd-three\nno-fd4\n"
    );
    // Without --preserve-fds, fd 3 is not passed.
    let script = "if cat <&3 2>/dev/null; then echo LEAKED-3; else echo no-fd3; fi";
    let args = ["exec", &b.id, "sh", "-c", script];
    let out = amphi_fds(&b, &[], &args, &[(3, f3.as_fd())], &[]);
    assert_eq!(ok_stdout(&out, "no --preserve-fds"), "no-fd3\n");
}

/// Socket activation: with `LISTEN_FDS=1` (and `LISTEN_PID` of amphi) in amphi's environment and
/// fd 3 open, `run` passes fd 3 and the workload sees `LISTEN_FDS=1` and `LISTEN_PID=1`.
#[test]
fn run_passes_listen_fds() {
    let b = Bundle::new(
        "listenfds",
        &[
            "sh",
            "-c",
            "echo \"fds=$LISTEN_FDS pid=$LISTEN_PID\"; cat <&3; echo; \
             if cat <&4 2>/dev/null; then echo LEAKED-4; else echo no-fd4; fi",
        ],
    );
    b.write_config();
    let f3 = content_file(&b.dir, "fd3", "socket-activation-fd");
    let f4 = content_file(&b.dir, "fd4", "not-passed");
    // `LISTEN_PID=$$ exec amphi ...`: LISTEN_PID is amphi's own pid, as systemd sets it.
    let prefix = ["/bin/sh", "-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""];
    let args = ["run", "--bundle", b.dir.to_str().unwrap(), &b.id];
    let out = amphi_fds(
        &b,
        &prefix,
        &args,
        &[(3, f3.as_fd()), (4, f4.as_fd())],
        &[("LISTEN_FDS", "1")],
    );
    assert_eq!(
        ok_stdout(&out, "run with LISTEN_FDS"),
        "fds=1 pid=1\nsocket-activation-fd\nno-fd4\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Terminals.

/// `exec -t --console-socket`: the pty master arrives over the socket; the process has the pty as
/// its stdio; the foreground exec exits with its status.
#[test]
fn exec_tty_console_socket() {
    let (b, _) = sleeper("ttysock");
    let sock_path = b.dir.join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let args = [
        "exec",
        "-t",
        "--console-socket",
        sock_path.to_str().unwrap(),
        &b.id,
        "sh",
        "-c",
        "tty; test -t 0 && echo STDIN_IS_TTY; test -t 1 && echo STDOUT_IS_TTY; \
         read line; echo \"got:$line\"; exit 3",
    ];
    let (mut child, out_path, err_path) = spawn_amphi(&b, &[], &args, &[], &[], None);
    // Accept without blocking forever: poll the listener while watching the child.
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + HANG_GUARD;
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        if let Some(st) = child.try_wait() {
            panic!(
                "exec exited ({st}) without connecting: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "exec never connected");
        std::thread::sleep(Duration::from_millis(10));
    };
    conn.set_nonblocking(false).unwrap();
    let master = recv_fd(conn.as_fd());
    drop(conn);
    drop(listener);
    let _ = std::fs::remove_file(&sock_path);
    let mut ptn: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int into `ptn`, which outlives the call.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut ptn) };
    assert_eq!(rc, 0, "received fd is not a pty master");

    let mut acc = String::new();
    read_until(master.as_fd(), &mut acc, "STDOUT_IS_TTY");
    let first = acc.lines().next().unwrap_or_default().trim_end();
    assert!(
        first.starts_with("/dev/pts/"),
        "tty printed {first:?}: {acc:?}"
    );
    assert!(acc.contains("STDIN_IS_TTY"), "{acc:?}");
    write_all(master.as_fd(), b"over the socket\n");
    read_until(master.as_fd(), &mut acc, "got:over the socket");
    let status = wait_draining(&mut child, master.as_fd(), &mut acc);
    assert_eq!(
        status.code(),
        Some(3),
        "stderr: {}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    let _ = std::fs::remove_file(out_path);
    let _ = std::fs::remove_file(err_path);
    assert_eq!(b.state().unwrap()["status"], "running");
}

/// `exec -t` without a console socket, on a pty the caller opened: amphi proxies a new pty to its
/// own stdio; the process sees a terminal, gets the typed input, and its status passes through.
#[test]
fn exec_tty_proxied() {
    let (b, _) = sleeper("ttyproxy");
    let pty = nix::pty::openpty(None, None).unwrap();
    let master = pty.master;
    let slave = pty.slave;
    let args = [
        "exec",
        "-t",
        &b.id,
        "sh",
        "-c",
        "test -t 0 && echo STDIN_TTY; test -t 1 && echo STDOUT_TTY; \
         read line; echo \"got:$line\"; exit 7",
    ];
    let (mut child, _, _) = spawn_amphi(&b, &[], &args, &[], &[], Some(&slave));
    drop(slave);
    let mut acc = String::new();
    read_until(master.as_fd(), &mut acc, "STDOUT_TTY");
    assert!(acc.contains("STDIN_TTY"), "{acc:?}");
    write_all(master.as_fd(), b"typed line\n");
    read_until(master.as_fd(), &mut acc, "got:typed line");
    let status = wait_draining(&mut child, master.as_fd(), &mut acc);
    assert_eq!(status.code(), Some(7), "output: {acc:?}");
    assert_eq!(b.state().unwrap()["status"], "running");

    // Without -t, the same stdio is a terminal only because the caller's is: no new pty.
    let out = exec_sh(&b, &[], "test -t 0 && echo TTY || echo NO_TTY");
    assert_eq!(ok_stdout(&out, "no -t"), "NO_TTY\n");
}

/// `--console-socket` without `-t`, and `-t` with a console socket that does not exist: errors.
#[test]
fn exec_terminal_flag_errors() {
    let (b, _) = sleeper("ttyerr");
    let sock_path = b.dir.join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let out = b.amphi(&[
        "exec",
        "--console-socket",
        sock_path.to_str().unwrap(),
        &b.id,
        "echo",
        "RAN",
    ]);
    drop(listener);
    assert!(
        !out.status.success(),
        "--console-socket without -t accepted"
    );
    assert!(!stdout(&out).contains("RAN"));
    assert!(stderr(&out).contains("console-socket"), "{}", stderr(&out));
    let missing = b.dir.join("missing.sock");
    let out = b.amphi(&[
        "exec",
        "-t",
        "--console-socket",
        missing.to_str().unwrap(),
        &b.id,
        "echo",
        "RAN",
    ]);
    assert!(!out.status.success(), "missing console socket accepted");
    assert!(stderr(&out).contains("console-socket"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// Container status.

/// exec into a stopped container fails clearly.
#[test]
fn exec_into_stopped_container_fails() {
    let b = Bundle::new("stopped", &["true"]);
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    assert!(
        wait_for(|| b.state().is_some_and(|s| s["status"] == "stopped")),
        "container did not stop"
    );
    let out = b.amphi(&["exec", &b.id, "echo", "RAN"]);
    assert!(!out.status.success(), "exec into a stopped container");
    assert!(!stdout(&out).contains("RAN"));
    assert!(stderr(&out).contains("stopped"), "{}", stderr(&out));
    let out = b.amphi(&["exec", "-d", &b.id, "echo", "RAN"]);
    assert!(!out.status.success(), "exec -d into a stopped container");
}

/// exec into a created (not yet started) container works, and leaves it created.
#[test]
fn exec_into_created_container() {
    let b = Bundle::new("created", &["sleep", "1000"]);
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let pid = b.state().unwrap()["pid"].as_i64().unwrap() as i32;
    let out = exec_sh(
        &b,
        &[],
        &format!("echo in-created; {}", ns_script(&["pid", "mnt"])),
    );
    let text = ok_stdout(&out, "exec in created");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        ["in-created", &host_ns(pid, "pid"), &host_ns(pid, "mnt")]
    );
    assert_eq!(b.state().unwrap()["status"], "created");
    // And start still works afterwards.
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    assert_eq!(b.state().unwrap()["status"], "running");
}

// ---------------------------------------------------------------------------------------------
// Wasm.

/// The wasm AOT cache directory of `b`'s test (inside its temporary directory).
fn cache_dir(b: &Bundle) -> String {
    b.dir
        .parent()
        .unwrap()
        .join("wasm-cache")
        .to_string_lossy()
        .into_owned()
}

/// `amphi --root R --wasm-cache-dir C <args...>`.
fn amphi_wasm(b: &Bundle, args: &[&str]) -> Output {
    let cache = cache_dir(b);
    let mut all = vec!["--wasm-cache-dir", cache.as_str()];
    all.extend_from_slice(args);
    b.amphi(&all)
}

/// A started wasm container (run.oci.handler=wasm) whose guest spins, with busybox, /tool.wat and
/// /data.txt in its rootfs; returns it and its init's host pid.
fn spinning_wasm_container(name: &str) -> (Bundle, i32) {
    let mut b = Bundle::new(name, &["/tool.wat", "spin"]);
    std::fs::write(b.rootfs().join("tool.wat"), TOOL_WAT).unwrap();
    std::fs::write(b.rootfs().join("data.txt"), "wasm-data").unwrap();
    b.config["annotations"] = json!({"run.oci.handler": "wasm"});
    b.write_config();
    let dir = b.dir.to_str().unwrap().to_string();
    let out = amphi_wasm(&b, &["create", "--bundle", &dir, &b.id]);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = amphi_wasm(&b, &["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let pid = b.state().unwrap()["pid"].as_i64().unwrap() as i32;
    (b, pid)
}

/// In a wasm container whose guest spins: exec of a `.wat` file runs as a wasm guest (its output and
/// exit status pass through), exec of /bin/sh runs busybox natively, in the container's namespaces
/// and cgroup.
#[test]
fn exec_into_wasm_container() {
    let (b, pid) = spinning_wasm_container("wasmctr");
    let out = amphi_wasm(
        &b,
        &[
            "exec",
            &b.id,
            "/tool.wat",
            "echo",
            "wasm-guest-says-hi",
            "cat",
            "/data.txt",
        ],
    );
    assert_eq!(
        ok_stdout(&out, "wasm exec"),
        "wasm-guest-says-hi\nok:wasm-data\n"
    );
    let out = amphi_wasm(&b, &["exec", &b.id, "/tool.wat", "exit", "6"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));

    let out = amphi_wasm(
        &b,
        &[
            "exec",
            &b.id,
            "/bin/sh",
            "-c",
            "echo busybox-native; exit 4",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(stdout(&out), "busybox-native\n");

    // A native process, seen from the host: the container's namespaces and cgroup.
    let pid_file = b.dir.join("exec.pid");
    let out = amphi_wasm(
        &b,
        &[
            "exec",
            "-d",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &b.id,
            "sleep",
            "994",
        ],
    );
    assert!(out.status.success(), "exec -d: {}", stderr(&out));
    let epid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _guard = PidGuard {
        pid: epid,
        cmdline: "sleep 994".into(),
    };
    assert_eq!(proc_cmdline(epid).as_deref(), Some("sleep 994"));
    for name in NS_NAMES {
        if name == "mnt" {
            // A native command in a Wasm container gets a private copy of the container's mount
            // namespace, in which the procfs that the guest's executor hid is uncovered.
            assert_ne!(host_ns(epid, name), host_ns(pid, name), "{name}");
            continue;
        }
        assert_eq!(host_ns(epid, name), host_ns(pid, name), "{name}");
    }
    for d in b.cgroup_dirs() {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l == epid.to_string()),
            "{epid} not in {}: {procs}",
            d.display()
        );
    }
    assert_eq!(b.state().unwrap()["status"], "running");
}

/// A native process exec'd into a wasm container sees the container's /proc (the config mounts
/// procfs there); hiding /proc is for wasm guests only.
#[test]
fn native_exec_in_wasm_container_sees_proc() {
    let (b, _) = spinning_wasm_container("wasmproc");
    let out = amphi_wasm(
        &b,
        &[
            "exec",
            &b.id,
            "/bin/sh",
            "-c",
            "head -1 /proc/self/status; readlink /proc/self/ns/pid",
        ],
    );
    let text = ok_stdout(&out, "busybox exec reading /proc");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text:?}");
    assert_eq!(lines[0], "Name:\thead");
    assert!(lines[1].starts_with("pid:["), "{text:?}");
}

/// A wasm guest exec'd in a Linux container runs, cannot read /proc/self/status (hidden from
/// guests), and the hiding does not leak into the container: busybox execs still read /proc.
#[test]
fn exec_wasm_guest_in_linux_container() {
    let b = Bundle::new("wasminlinux", &["sleep", "1000"]);
    std::fs::write(b.rootfs().join("tool.wat"), TOOL_WAT).unwrap();
    let dir = b.dir.to_str().unwrap().to_string();
    b.write_config();
    let out = amphi_wasm(&b, &["create", "--bundle", &dir, &b.id]);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = amphi_wasm(&b, &["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));

    let out = amphi_wasm(
        &b,
        &[
            "exec",
            &b.id,
            "/tool.wat",
            "echo",
            "guest-in-linux",
            "cat",
            "/proc/self/status",
            "cat",
            "/proc/1/status",
            "cat",
            "/etc/group",
        ],
    );
    let text = ok_stdout(&out, "wasm exec in linux container");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 4, "{text:?}");
    assert_eq!(lines[0], "guest-in-linux");
    assert!(lines[1].starts_with("err:"), "/proc/self/status: {text:?}");
    assert!(lines[2].starts_with("err:"), "/proc/1/status: {text:?}");
    assert!(lines[3].starts_with("ok:root:x:0:"), "/etc/group: {text:?}");

    let out = exec_sh(&b, &[], "head -1 /proc/1/status; head -1 /proc/self/status");
    assert_eq!(
        ok_stdout(&out, "busybox after the guest"),
        "Name:\tsleep\nName:\thead\n"
    );
}
