//! Escape classes 1, 2, 6 and 7 of issue 6, tried from inside real containers.
//!
//! 1. amphi's image cannot be written through `/proc/<pid>/exe` (CVE-2019-5736): during create (init
//!    waits for `start`), during `exec`, and for the whole life of a Wasm container's pid 1.
//! 2. No host fd reaches the workload (native or Wasm), and a `cwd` of `/proc/self/fd/N` cannot leave
//!    the rootfs (CVE-2024-21626).
//! 6. A bind mount over part of `/proc/sys` cannot redirect a sysctl write to the host.
//! 7. Inheritable and ambient capabilities stay as configured (empty by default) for create, exec,
//!    `exec --cap`, a non-root user and a Wasm pid 1.
//!
//! The runtime under test is a *copy* of amphi's binary in the test's temporary directory, so a
//! failing defence could only damage that copy; each class-1 test checks the copy's digest is
//! unchanged. Canary files and directories live in temporary directories too.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{stderr, stdout, wait_for, Bundle};
use serde_json::json;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Every capability of Linux 6.x (capabilities(7)).
const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Capability numbers of the names `amphi spec` puts in the bounding, effective and permitted sets.
const SPEC_CAPS: u64 = (1 << 5) | (1 << 10) | (1 << 29); // KILL, NET_BIND_SERVICE, AUDIT_WRITE
const CAP_NET_RAW: u64 = 1 << 13;

/// A copy of amphi's binaries (`amphi` and `amphi-full`) in a temporary directory: the runtime under
/// test.
struct Runtime {
    _tmp: tempfile::TempDir,
    /// The front, which the tests run.
    bin: PathBuf,
    /// `amphi-full`: the image that container processes run.
    full: PathBuf,
    /// Of both files.
    digest: u64,
}

fn digest(p: &Path) -> u64 {
    let mut f = std::fs::File::open(p).unwrap();
    let mut h = DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
    }
    h.finish()
}

impl Runtime {
    fn new() -> Runtime {
        let tmp = tempfile::Builder::new()
            .prefix("amphi-escape-rt-")
            .tempdir()
            .unwrap();
        let bin = common::install_binaries(tmp.path());
        let full = tmp.path().join("amphi-full");
        let digest = digest(&bin) ^ digest(&full).rotate_left(1);
        Runtime {
            _tmp: tmp,
            bin,
            full,
            digest,
        }
    }

    /// Runs `<copy> --root <root> <args...>` with `extra` fds (target number, file) inherited
    /// without close-on-exec; output through files.
    fn amphi(&self, b: &Bundle, args: &[&str], extra: &[(RawFd, &std::fs::File)]) -> Output {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let out_path = b.dir.join(format!(".esc-out-{n}"));
        let err_path = b.dir.join(format!(".esc-err-{n}"));
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(&b.root);
        cmd.arg("--wasm-cache-dir")
            .arg(b.dir.parent().unwrap().join("wasm-cache"))
            .args(args);
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap());
        let pairs: Vec<(RawFd, RawFd)> = extra.iter().map(|(t, f)| (*t, f.as_raw_fd())).collect();
        // SAFETY: the closure only calls dup2(2), which is async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for (target, src) in &pairs {
                    if libc::dup2(*src, *target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let status = cmd.status().unwrap();
        let out = Output {
            status,
            stdout: std::fs::read(&out_path).unwrap_or_default(),
            stderr: std::fs::read(&err_path).unwrap_or_default(),
        };
        let _ = std::fs::remove_file(&out_path);
        let _ = std::fs::remove_file(&err_path);
        out
    }

    fn create(&self, b: &Bundle, extra: &[(RawFd, &std::fs::File)]) -> Output {
        b.write_config();
        let dir = b.dir.to_string_lossy().into_owned();
        self.amphi(b, &["create", "--bundle", &dir, &b.id], extra)
    }

    /// Asserts that the copies of amphi's binaries are byte for byte what they were.
    #[track_caller]
    fn assert_unchanged(&self) {
        assert_eq!(
            digest(&self.bin) ^ digest(&self.full).rotate_left(1),
            self.digest,
            "a runtime binary was modified from inside a container"
        );
    }

    /// Asserts that process `pid` runs amphi-full's image from a protected view: `/proc/<pid>/exe`
    /// is a different file (another device) than the copy on the host, on a read-only mount (or a
    /// sealed memfd).
    #[track_caller]
    fn assert_protected_exe(&self, pid: i32) {
        let exe = format!("/proc/{pid}/exe");
        let host = nix::sys::stat::stat(&self.full).unwrap();
        let seen = nix::sys::stat::stat(exe.as_str()).unwrap();
        assert_ne!(
            (seen.st_dev, seen.st_ino),
            (host.st_dev, host.st_ino),
            "{exe} is the host's binary itself"
        );
        assert_eq!(seen.st_size, host.st_size, "{exe} is not amphi's image");
        let ro = nix::sys::statvfs::statvfs(exe.as_str())
            .unwrap()
            .flags()
            .contains(nix::sys::statvfs::FsFlags::ST_RDONLY);
        let link = std::fs::read_link(&exe).unwrap();
        let memfd = link.to_string_lossy().starts_with("/memfd:");
        assert!(ro || memfd, "{exe} -> {link:?} is writable");
    }
}

fn init_pid(rt: &Runtime, b: &Bundle) -> i32 {
    let out = rt.amphi(b, &["state", &b.id], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

/// A script that tries every way busybox has to write amphi's image through pid 1's `exe` link, and
/// prints `WROTE` for each that succeeded.
const ATTACK: &str = "echo x >> /proc/1/exe && echo WROTE-append; \
    echo x > /proc/1/exe && echo WROTE-trunc; \
    ( exec 3</proc/1/exe && echo OPENED && echo x >> /proc/self/fd/3 && echo WROTE-reopen ); \
    dd if=/dev/zero of=/proc/1/exe bs=1 count=1 conv=notrunc 2>/dev/null && echo WROTE-dd; \
    echo done";

/// Every capability that this host's bounding set has (this VM lacks CAP_SYS_RESOURCE); `ALL_CAPS`
/// is in capability-number order.
fn host_caps() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = cap_field(&status, "CapBnd");
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| bnd & (1u64 << i) != 0)
        .map(|(_, c)| *c)
        .collect()
}

fn all_caps() -> serde_json::Value {
    let caps = host_caps();
    json!({ "bounding": caps, "effective": caps, "permitted": caps })
}

/// Class 1, during create: with the default capabilities, and with every capability (so that
/// CAP_SYS_PTRACE and CAP_DAC_OVERRIDE pass the kernel's own checks on `/proc/1/exe`, and only the
/// read-only image stands in the way), a process exec'd into a created container cannot write
/// amphi's image through init's `exe` link; init runs from the protected view.
#[test]
fn created_init_image_cannot_be_written() {
    let rt = Runtime::new();
    for privileged in [false, true] {
        let mut b = Bundle::new("esc-create", &["sleep", "60"]);
        if privileged {
            b.config["process"]["capabilities"] = all_caps();
        }
        let out = rt.create(&b, &[]);
        assert!(out.status.success(), "create: {}", stderr(&out));
        rt.assert_protected_exe(init_pid(&rt, &b));
        let mut args = vec!["exec"];
        if privileged {
            for c in host_caps() {
                args.extend(["--cap", c]);
            }
        }
        args.extend([b.id.as_str(), "sh", "-c", ATTACK]);
        let out = rt.amphi(&b, &args, &[]);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(text.contains("done"), "the attack did not run: {text}");
        assert!(
            !text.contains("WROTE"),
            "privileged={privileged}: wrote through /proc/1/exe: {text}"
        );
        if privileged {
            // Everything the kernel checks passed; the file system refused.
            assert!(text.contains("Read-only file system"), "{text}");
        }
        rt.assert_unchanged();
    }
}

/// Class 1, the CVE-2019-5736 sequence: a process exec'd into a created container (with
/// CAP_SYS_PTRACE and CAP_DAC_OVERRIDE) opens init's `/proc/1/exe` and keeps the fd; after `start`
/// init has exec'd the workload and no process runs amphi's image any more (no ETXTBSY), and the
/// process reopens `/proc/self/fd/3` for writing. (Against amphi before this defence, this rewrote
/// the runtime's binary.)
#[test]
fn exe_fd_held_across_start_cannot_write_runtime() {
    let rt = Runtime::new();
    let mut b = Bundle::new("esc-hold", &["sleep", "60"]);
    b.config["root"]["readonly"] = json!(false);
    b.config["process"]["capabilities"] = all_caps();
    assert!(rt.create(&b, &[]).status.success());
    let script = "( exec 3</proc/1/exe && echo opened > /tmp/opened; \
        while [ ! -e /tmp/go ]; do sleep 0.05; done; \
        if echo x >> /proc/self/fd/3; then echo WROTE; else echo refused; fi > /tmp/result 2>&1 )";
    let mut args = vec!["exec", "-d"];
    for c in host_caps() {
        args.extend(["--cap", c]);
    }
    args.extend([b.id.as_str(), "sh", "-c", script]);
    let out = rt.amphi(&b, &args, &[]);
    assert!(out.status.success(), "exec -d: {}", stderr(&out));
    let tmp = b.rootfs().join("tmp");
    assert!(
        wait_for(|| tmp.join("opened").exists()),
        "could not open /proc/1/exe"
    );
    let out = rt.amphi(&b, &["start", &b.id], &[]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    std::fs::write(tmp.join("go"), "").unwrap();
    assert!(wait_for(|| std::fs::read_to_string(tmp.join("result"))
        .map(|s| s.contains('\n'))
        .unwrap_or(false)));
    let result = std::fs::read_to_string(tmp.join("result")).unwrap();
    rt.assert_unchanged();
    assert!(result.contains("refused"), "{result}");
    assert!(result.contains("Read-only file system"), "{result}");
}

/// Class 1, during exec: the `amphi exec` process (whose fork becomes the exec'd process) runs from
/// the protected view while its command runs.
#[test]
fn exec_runs_from_protected_image() {
    let rt = Runtime::new();
    let b = Bundle::new("esc-exec", &["sleep", "60"]);
    assert!(rt.create(&b, &[]).status.success());
    let mut child = Command::new(&rt.bin)
        .arg("--root")
        .arg(&b.root)
        .args(["exec", &b.id, "sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // Once the exec'd command runs, the caller's process is the `exec` supervisor.
    let started = wait_for(|| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .map(|s| !s.trim().is_empty())
            .unwrap_or(false)
    });
    let check = std::panic::catch_unwind(|| rt.assert_protected_exe(pid));
    let _ = child.kill();
    let _ = child.wait();
    assert!(started, "the exec'd command did not start");
    check.unwrap();
    rt.assert_unchanged();
}

const SLEEP_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 1000000000))
    (loop (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))) (br 0))))"#;

/// Classes 1, 2 and 7 for a running Wasm container, whose pid 1 is amphi's own image for its whole
/// life: a native process exec'd into it with every capability cannot write that image; pid 1 holds
/// no fd of the host (the canary inherited by `create` at fd 7 is gone; only stdio, the runtime's own
/// anonymous inodes and the guest's preopened container directories remain); its inheritable and
/// ambient sets are empty.
#[test]
fn wasm_pid1_image_fds_and_caps() {
    let rt = Runtime::new();
    let b = Bundle::new("esc-wasm", &["/sleep.wat"]);
    std::fs::write(b.rootfs().join("sleep.wat"), SLEEP_WAT).unwrap();
    let canary_dir = tempfile::tempdir().unwrap();
    let canary = std::fs::File::create(canary_dir.path().join("canary-wasm")).unwrap();
    let out = rt.create(&b, &[(7, &canary)]);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = rt.amphi(&b, &["start", &b.id], &[]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let pid = init_pid(&rt, &b);
    rt.assert_protected_exe(pid);
    let mut args = vec!["exec"];
    for c in host_caps() {
        args.extend(["--cap", c]);
    }
    let script = format!(
        "{ATTACK}; grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/1/status; \
         for f in /proc/1/fd/*; do echo \"fd1 ${{f##*/}} $(readlink $f)\"; done"
    );
    args.extend([b.id.as_str(), "sh", "-c", &script]);
    let out = rt.amphi(&b, &args, &[]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("done"), "the attack did not run: {text}");
    assert!(!text.contains("WROTE"), "wrote through /proc/1/exe: {text}");
    assert!(text.contains("Read-only file system"), "{text}");
    rt.assert_unchanged();
    // Class 7: pid 1's sets.
    assert_eq!(cap_field(&text, "CapInh"), 0, "{text}");
    assert_eq!(cap_field(&text, "CapAmb"), 0, "{text}");
    assert_eq!(cap_field(&text, "CapBnd"), SPEC_CAPS, "{text}");
    assert_eq!(cap_field(&text, "CapPrm"), SPEC_CAPS, "{text}");
    // Class 2: pid 1's fds.
    let fds: Vec<&str> = text.lines().filter(|l| l.starts_with("fd1 ")).collect();
    assert!(fds.len() >= 3, "cannot list /proc/1/fd: {text}");
    for l in &fds {
        let mut it = l.split_whitespace().skip(1);
        let n: u32 = it.next().unwrap().parse().unwrap();
        let target = it.next().unwrap_or("");
        // Besides stdio: the runtime's anonymous inodes (epoll, eventfd) and the guest's WASI
        // preopens, the container's `/` and cwd (`/` here), as the exec'd process sees them.
        assert!(
            n <= 2 || target.starts_with("anon_inode:") || target == "/",
            "host fd in the Wasm pid 1: {l}\n{text}"
        );
    }
    assert!(!text.contains("canary-wasm"), "{text}");
    let _ = rt.amphi(&b, &["delete", "--force", &b.id], &[]);
}

fn cap_field(text: &str, key: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {text}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

/// Lists the shell's own fds (`ls` runs as a child, so its own fds are not in the list).
const LIST_FDS: &str = "ls -l /proc/$$/fd/; echo listed";

/// The fds (number, target) of a `LIST_FDS` output (`... N -> TARGET` lines).
fn listed_fds(text: &str) -> Vec<(u32, String)> {
    assert!(text.contains("listed"), "fd listing did not run: {text}");
    text.lines()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let n = left.split_whitespace().last()?.parse().ok()?;
            Some((n, target.trim().to_string()))
        })
        .collect()
}

/// Class 2, native workload: an fd that amphi's caller leaks (fd 7, no close-on-exec) does not
/// reach the workload; with `--preserve-fds 1`, fd 3 does, and nothing else.
#[test]
fn no_host_fd_reaches_the_workload() {
    let rt = Runtime::new();
    let canary_dir = tempfile::tempdir().unwrap();
    let leak = std::fs::File::create(canary_dir.path().join("canary-leak")).unwrap();
    let keep = std::fs::File::create(canary_dir.path().join("canary-keep")).unwrap();
    for preserve in [0u32, 1] {
        let b = Bundle::new("esc-fds", &["sh", "-c", LIST_FDS]);
        b.write_config();
        let dir = b.dir.to_string_lossy().into_owned();
        let n = preserve.to_string();
        let out = rt.amphi(
            &b,
            &["run", "--preserve-fds", &n, "--bundle", &dir, &b.id],
            &[(3, &keep), (7, &leak)],
        );
        let text = stdout(&out);
        assert!(out.status.success(), "run: {}{text}", stderr(&out));
        let fds = listed_fds(&text);
        let numbers: Vec<u32> = fds.iter().map(|(n, _)| *n).collect();
        let want: Vec<u32> = (0..3 + preserve).collect();
        assert_eq!(numbers, want, "{text}");
        assert!(!text.contains("canary-leak"), "{text}");
        assert_eq!(text.contains("canary-keep"), preserve == 1, "{text}");
    }
}

/// Class 2, exec: an fd leaked by `amphi exec`'s caller does not reach the exec'd process.
#[test]
fn no_host_fd_reaches_an_exec() {
    let rt = Runtime::new();
    let canary_dir = tempfile::tempdir().unwrap();
    let leak = std::fs::File::create(canary_dir.path().join("canary-leak")).unwrap();
    let b = Bundle::new("esc-execfds", &["sleep", "60"]);
    assert!(rt.create(&b, &[(7, &leak)]).status.success());
    assert!(rt.amphi(&b, &["start", &b.id], &[]).status.success());
    let out = rt.amphi(
        &b,
        &["exec", &b.id, "sh", "-c", LIST_FDS],
        &[(5, &leak), (9, &leak)],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "exec: {}{text}", stderr(&out));
    let numbers: Vec<u32> = listed_fds(&text).iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, vec![0, 1, 2], "{text}");
    // Nor does the one `create` inherited reach init's workload.
    let out = rt.amphi(&b, &["exec", &b.id, "ls", "-l", "/proc/1/fd/"], &[]);
    assert!(!stdout(&out).contains("canary"), "{}", stdout(&out));
}

/// Class 2, CVE-2024-21626: `process.cwd` (create) or `--cwd` (exec) given as `/proc/self/fd/N`,
/// where fd N is a host directory that amphi's caller leaked, is refused: the workload never gets a
/// working directory outside the rootfs, and cannot create a file in the host directory.
#[test]
fn cwd_through_a_leaked_fd_cannot_leave_the_rootfs() {
    let rt = Runtime::new();
    let host_dir = tempfile::tempdir().unwrap();
    let dir_fd = std::fs::File::open(host_dir.path()).unwrap();
    let escaped = host_dir.path().join("escaped");

    let mut b = Bundle::new("esc-cwd", &["sh", "-c", "touch escaped; pwd"]);
    b.config["process"]["cwd"] = json!("/proc/self/fd/7");
    b.write_config();
    let dir = b.dir.to_string_lossy().into_owned();
    let out = rt.amphi(&b, &["run", "--bundle", &dir, &b.id], &[(7, &dir_fd)]);
    assert!(!out.status.success(), "run succeeded: {}", stdout(&out));
    assert!(
        stderr(&out).contains("process.cwd"),
        "error does not name process.cwd: {}",
        stderr(&out)
    );
    assert!(
        !escaped.exists(),
        "the workload wrote into the host directory"
    );

    let b = Bundle::new("esc-cwd-exec", &["sleep", "60"]);
    assert!(rt.create(&b, &[]).status.success());
    assert!(rt.amphi(&b, &["start", &b.id], &[]).status.success());
    let out = rt.amphi(
        &b,
        &[
            "exec",
            "--cwd",
            "/proc/self/fd/7",
            &b.id,
            "sh",
            "-c",
            "touch escaped",
        ],
        &[(7, &dir_fd)],
    );
    assert!(!out.status.success(), "exec succeeded: {}", stdout(&out));
    assert!(stderr(&out).contains("outside"), "{}", stderr(&out));
    assert!(
        !escaped.exists(),
        "the exec'd process wrote into the host directory"
    );
    // A cwd inside the container still works.
    let out = rt.amphi(&b, &["exec", "--cwd", "/tmp", &b.id, "pwd"], &[]);
    assert_eq!(stdout(&out).trim(), "/tmp", "{}", stderr(&out));
}

/// Class 6: a config that bind-mounts a host directory over `/proc/sys/kernel` cannot make amphi's
/// sysctl write land in that directory: create fails naming the sysctl, and the directory stays
/// empty. Without the bind mount the same sysctl is applied (control).
#[test]
fn sysctl_write_is_not_redirected_by_a_mount_over_proc_sys() {
    let rt = Runtime::new();
    let canary = tempfile::tempdir().unwrap();
    let mut b = Bundle::new("esc-sysctl", &["cat", "/proc/sys/kernel/domainname"]);
    b.config["linux"]["sysctl"] = json!({"kernel.domainname": "amphi-sysctl"});
    // A destination inside /proc is refused by the config check; through a symlink of the rootfs
    // the mount still lands on /proc/sys/kernel.
    std::os::unix::fs::symlink("/proc/sys", b.rootfs().join("ps")).unwrap();
    let mut mounts = b.config["mounts"].as_array().unwrap().clone();
    mounts.push(json!({
        "destination": "/ps/kernel",
        "type": "bind",
        "source": canary.path(),
        "options": ["rbind", "rw"]
    }));
    b.config["mounts"] = json!(mounts);
    let out = rt.create(&b, &[]);
    let entries: Vec<_> = std::fs::read_dir(canary.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        entries.is_empty(),
        "sysctl written on the host: {entries:?}"
    );
    assert!(!out.status.success(), "create succeeded");
    assert!(
        stderr(&out).contains("linux.sysctl.kernel.domainname"),
        "{}",
        stderr(&out)
    );

    let mut b = Bundle::new("esc-sysctl-ok", &["cat", "/proc/sys/kernel/domainname"]);
    b.config["linux"]["sysctl"] = json!({"kernel.domainname": "amphi-sysctl"});
    b.write_config();
    let dir = b.dir.to_string_lossy().into_owned();
    let out = rt.amphi(&b, &["run", "--bundle", &dir, &b.id], &[]);
    assert_eq!(stdout(&out).trim(), "amphi-sysctl", "{}", stderr(&out));
}

/// Prints the shell's own capability sets with builtins only (an exec'd `grep` would show the sets
/// after its own execve).
const OWN_CAPS: &str =
    "while read k v; do case $k in Cap*) echo $k $v;; esac; done < /proc/$$/status";

/// Class 7: with `amphi spec`'s template, the workload's inheritable and ambient sets are empty for
/// create and for exec, with `exec --cap` (which adds only to bounding, effective and permitted), and
/// for a non-root user.
#[test]
fn inheritable_and_ambient_stay_empty_by_default() {
    let rt = Runtime::new();
    for uid in [0u32, 1000] {
        let mut b = Bundle::new("esc-caps", &["sh", "-c", OWN_CAPS]);
        b.config["process"]["user"] = json!({"uid": uid, "gid": uid});
        b.write_config();
        let dir = b.dir.to_string_lossy().into_owned();
        let out = rt.amphi(&b, &["run", "--bundle", &dir, &b.id], &[]);
        let text = stdout(&out);
        assert!(out.status.success(), "run: {}{text}", stderr(&out));
        assert_eq!(cap_field(&text, "CapInh"), 0, "uid {uid}: {text}");
        assert_eq!(cap_field(&text, "CapAmb"), 0, "uid {uid}: {text}");
        assert_eq!(cap_field(&text, "CapBnd"), SPEC_CAPS, "uid {uid}: {text}");
        let prm = if uid == 0 { SPEC_CAPS } else { 0 };
        assert_eq!(cap_field(&text, "CapPrm"), prm, "uid {uid}: {text}");
        assert_eq!(cap_field(&text, "CapEff"), prm, "uid {uid}: {text}");

        let b = Bundle::new("esc-caps-exec", &["sleep", "60"]);
        assert!(rt.create(&b, &[]).status.success());
        assert!(rt.amphi(&b, &["start", &b.id], &[]).status.success());
        let u = format!("{uid}:{uid}");
        for extra in [&[][..], &["--cap", "CAP_NET_RAW"][..]] {
            let mut args = vec!["exec", "--user", &u];
            args.extend_from_slice(extra);
            args.extend([b.id.as_str(), "sh", "-c", OWN_CAPS]);
            let out = rt.amphi(&b, &args, &[]);
            let text = stdout(&out);
            assert!(
                out.status.success(),
                "exec {extra:?}: {}{text}",
                stderr(&out)
            );
            let added = if extra.is_empty() { 0 } else { CAP_NET_RAW };
            assert_eq!(cap_field(&text, "CapInh"), 0, "{uid} {extra:?}: {text}");
            assert_eq!(cap_field(&text, "CapAmb"), 0, "{uid} {extra:?}: {text}");
            assert_eq!(cap_field(&text, "CapBnd"), SPEC_CAPS | added, "{text}");
            let prm = if uid == 0 { SPEC_CAPS | added } else { 0 };
            assert_eq!(cap_field(&text, "CapPrm"), prm, "{uid} {extra:?}: {text}");
        }
    }
}
