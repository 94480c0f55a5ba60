//! `linux.seccomp` (issue 6): small profiles that block one syscall (ERRNO with and without
//! `errnoRet`, KILL_PROCESS), argument filters, an allow-list profile, podman's default profile
//! (Debian's containers-common) for busybox and Wasm containers, `exec`'d processes, unknown syscall
//! names, and bad profiles refused at `create` with nothing left behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{stderr, stdout, wait_for, Bundle};
use serde_json::{json, Value};

/// Where Debian's containers-common (golang-github-containers-common) installs podman's profile.
const PODMAN_PROFILE: &str = "/usr/share/containers/seccomp.json";

/// A busybox bundle running `args` with a writable rootfs (so that only the filter refuses a write).
fn bundle(name: &str, args: &[&str]) -> Bundle {
    let mut b = Bundle::new(name, args);
    b.config["root"]["readonly"] = json!(false);
    b
}

/// A static C program, `/probe` in the rootfs, that calls `add_key(2)` with null arguments and
/// prints `add_key=<errno>`: podman's profile lists no key syscalls, so its default action answers
/// ENOSYS (38), where the kernel alone says EFAULT or EINVAL.
fn install_probe(b: &Bundle) {
    let src = b.dir.parent().unwrap().join("probe.c");
    std::fs::write(
        &src,
        r#"#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    errno = 0;
    syscall(SYS_add_key, 0, 0, 0, 0, 0);
    printf("add_key=%d\n", errno);
    return 0;
}
"#,
    )
    .unwrap();
    let out = std::process::Command::new("gcc")
        .args(["-static", "-O0", "-o"])
        .arg(b.rootfs().join("probe"))
        .arg(&src)
        .output()
        .expect("gcc (apt-get install gcc libc6-dev)");
    assert!(out.status.success(), "gcc: {}", stderr(&out));
}

/// Runs `b` and asserts exit 0; returns stdout.
#[track_caller]
fn run_ok(b: &Bundle) -> String {
    let out = b.run();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout {:?} stderr {}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// The `Seccomp:` values (2 = filter mode) of every thread of `pid`.
fn seccomp_modes(pid: i32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("Seccomp:").map(|v| v.trim().to_string()))
        })
        .collect()
}

/// Asserts that a `create` failed with a one-line error naming `names`, and left no state, cgroup,
/// process or mount.
#[track_caller]
fn assert_refused(b: &Bundle, out: &Output, names: &[&str]) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "create accepted or crashed: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err:?}");
    for n in names {
        assert!(err.contains(n), "error does not name {n:?}: {err}");
    }
    assert!(b.state().is_none(), "a state remains");
    if b.root.exists() {
        let left: Vec<_> = std::fs::read_dir(&b.root).unwrap().flatten().collect();
        assert!(left.is_empty(), "left under --root: {left:?}");
    }
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let bundle = b.dir.to_str().unwrap();
    assert!(
        !mounts.lines().any(|l| l.contains(bundle)),
        "a mount of the bundle is left"
    );
    let tmp = b.root.parent().unwrap().to_str().unwrap().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) == Some(std::process::id()) {
            continue;
        }
        if let Ok(raw) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            assert!(!cmd.contains(&tmp), "process left: {cmd}");
        }
    }
}

/// Podman's default profile converted to an OCI `linux.seccomp` for x86_64 and the bounding set
/// `caps`, as containers/common does: arch-specific and capability-gated entries are kept or dropped.
fn podman_profile(caps: &[&str]) -> Value {
    let text = std::fs::read_to_string(PODMAN_PROFILE).unwrap_or_else(|e| {
        panic!("{PODMAN_PROFILE}: {e} (apt-get install golang-github-containers-common)")
    });
    let p: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "conversion written for x86_64"
    );
    let mut archs = vec![json!("SCMP_ARCH_X86_64")];
    for m in p["archMap"].as_array().into_iter().flatten() {
        if m["architecture"] == "SCMP_ARCH_X86_64" {
            archs.extend(
                m["subArchitectures"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
    }
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    let mut syscalls = Vec::new();
    for s in p["syscalls"].as_array().unwrap() {
        let inc_arches = list(&s["includes"]["arches"]);
        if !inc_arches.is_empty() && !inc_arches.iter().any(|a| a == "amd64") {
            continue;
        }
        if list(&s["excludes"]["arches"]).iter().any(|a| a == "amd64") {
            continue;
        }
        if !list(&s["includes"]["caps"])
            .iter()
            .all(|c| caps.contains(&c.as_str()))
        {
            continue;
        }
        if list(&s["excludes"]["caps"])
            .iter()
            .any(|c| caps.contains(&c.as_str()))
        {
            continue;
        }
        let mut rule = json!({"names": s["names"], "action": s["action"]});
        if let Some(e) = s.get("errnoRet").filter(|e| !e.is_null()) {
            rule["errnoRet"] = e.clone();
        }
        if let Some(a) = s.get("args").filter(|a| !a.is_null()) {
            rule["args"] = a.clone();
        }
        syscalls.push(rule);
    }
    let mut out = json!({
        "defaultAction": p["defaultAction"],
        "architectures": archs,
        "syscalls": syscalls,
    });
    if let Some(e) = p.get("defaultErrnoRet").filter(|e| !e.is_null()) {
        out["defaultErrnoRet"] = e.clone();
    }
    out
}

/// The bounding set of `b`'s config, as strings.
fn bounding(b: &Bundle) -> Vec<String> {
    b.config["process"]["capabilities"]["bounding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(String::from))
        .collect()
}

fn with_podman_profile(b: &mut Bundle) {
    let caps = bounding(b);
    let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
    b.config["linux"]["seccomp"] = podman_profile(&caps);
}

#[test]
fn errno_blocks_one_syscall_with_default_and_given_errno() {
    let mut b = bundle(
        "sc-errno",
        &[
            "sh",
            "-c",
            "grep Seccomp: /proc/self/status; mkdir /tmp/new 2>&1; rmdir /d 2>&1; \
             test -d /d && echo d-kept; ls / >/dev/null && echo ls-ok",
        ],
    );
    std::fs::create_dir_all(b.rootfs().join("d")).unwrap();
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["rmdir", "unlinkat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
        ]
    });
    let out = run_ok(&b);
    assert!(
        out.contains("Seccomp:\t2") || out.contains("Seccomp: 2"),
        "{out}"
    );
    assert!(
        out.contains("Operation not permitted"),
        "mkdir not EPERM: {out}"
    );
    assert!(
        out.contains("Function not implemented"),
        "rmdir not ENOSYS (38): {out}"
    );
    assert!(out.contains("d-kept"), "{out}");
    assert!(out.contains("ls-ok"), "{out}");
    assert!(!b.rootfs().join("tmp/new").exists());

    // Without a profile the same commands work (the profile, not the rootfs, refused them).
    let mut b = bundle(
        "sc-errno-none",
        &["sh", "-c", "mkdir /tmp/new && rmdir /d && echo both-ok"],
    );
    std::fs::create_dir_all(b.rootfs().join("d")).unwrap();
    b.config["linux"].as_object_mut().unwrap().remove("seccomp");
    assert!(run_ok(&b).contains("both-ok"));
}

#[test]
fn args_filter_allows_personality_with_one_value() {
    // personality(2) is refused unless its argument 0 is PER_LINUX32 (8): `linux32` works,
    // `linux64` (PER_LINUX, 0) is refused. A MASKED_EQ rule refuses clone(2) with CLONE_NEWUTS only
    // when that bit is set in argument 0 (busybox `unshare -u`), while plain forks go on.
    let mut b = bundle(
        "sc-args",
        &[
            "sh",
            "-c",
            "linux32 uname -m; linux64 true 2>&1 || echo linux64-refused; \
             unshare -u true 2>&1 || echo unshare-refused; (true) && echo fork-ok",
        ],
    );
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_NE"}]},
            {"names": ["unshare"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 0x0400_0000u64, "valueTwo": 0x0400_0000u64,
                       "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    });
    // unshare(CLONE_NEWUTS) needs CAP_SYS_ADMIN: grant it so only the filter can refuse it.
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_ADMIN"));
    }
    let out = run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        matches!(lines.first(), Some(&"i686") | Some(&"i386")),
        "linux32 did not run: {out}"
    );
    assert!(out.contains("linux64-refused"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("unshare-refused"), "{out}");
    assert!(out.contains("fork-ok"), "{out}");
}

/// Syscalls enough for busybox `sh -c 'echo ...; cat FILE'` after execve (static binary).
const BUSYBOX_SH: &[&str] = &[
    "execve",
    "arch_prctl",
    "set_tid_address",
    "set_robust_list",
    "rseq",
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "getpid",
    "getppid",
    "gettid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    "read",
    "write",
    "writev",
    "open",
    "openat",
    "close",
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "ioctl",
    "fcntl",
    "sendfile",
    "uname",
    "readlink",
    "getcwd",
    "lseek",
    "exit",
    "exit_group",
    "prlimit64",
    "getrandom",
    "dup2",
    "dup3",
    "wait4",
    "fork",
    "vfork",
    "clone",
    "clone3",
    "access",
    "faccessat",
    "faccessat2",
    "poll",
    "ppoll",
    "sysinfo",
    "time",
    "clock_gettime",
];

#[test]
fn default_errno_with_an_allow_list_runs_busybox_sh() {
    let mut b = bundle(
        "sc-allowlist",
        &[
            "sh",
            "-c",
            "echo hello; cat /etc/hostname-x; mkdir /tmp/x 2>&1; echo end",
        ],
    );
    std::fs::write(b.rootfs().join("etc/hostname-x"), "from-file\n").unwrap();
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": BUSYBOX_SH, "action": "SCMP_ACT_ALLOW"}]
    });
    // noNewPrivileges (the harness's default): the filter is loaded right before the workload, so
    // the list need not allow the runtime's own last steps.
    assert_eq!(b.config["process"]["noNewPrivileges"], true);
    let out = run_ok(&b);
    assert!(out.contains("hello"), "{out}");
    assert!(out.contains("from-file"), "{out}");
    assert!(
        out.contains("Operation not permitted"),
        "mkdir not refused by default: {out}"
    );
    assert!(!b.rootfs().join("tmp/x").exists());
}

#[test]
fn kill_process_ends_the_container_with_sigsys() {
    // The shell itself (the container's pid 1) makes the syscall: its builtin `read`.
    let mut b = bundle(
        "sc-kill-sh",
        &["sh", "-c", "read x < /dev/null; echo survived"],
    );
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_KILL_PROCESS"}]
    });
    let out = b.run();
    assert_eq!(out.status.code(), Some(159), "{}", stderr(&out));
    assert!(!stdout(&out).contains("survived"));
}

#[test]
fn podman_default_profile_runs_busybox_and_blocks() {
    // Podman runs without noNewPrivileges (the filter is then loaded before the user switch and
    // capability drop) and engines that set it load it last: both orders work.
    for nnp in [false, true] {
        let mut b = bundle(
            "sc-podman",
            &[
                "sh",
                "-c",
                "grep Seccomp: /proc/self/status; ls / >/dev/null && echo ls-ok; \
                 rmdir /tmp/m 2>/dev/null; mkdir /tmp/m && echo mkdir-ok; hostname other 2>&1; /probe; \
                 (sleep 0; echo fork-ok) | cat",
            ],
        );
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        install_probe(&b);
        if !nnp {
            // Control: without the profile the kernel itself answers add_key differently.
            let out = run_ok(&b);
            assert!(
                out.contains("add_key=") && !out.contains("add_key=38"),
                "{out}"
            );
        }
        with_podman_profile(&mut b);
        let out = run_ok(&b);
        assert!(out.contains("Seccomp:\t2"), "nnp={nnp}: {out}");
        assert!(out.contains("ls-ok"), "nnp={nnp}: {out}");
        assert!(out.contains("mkdir-ok"), "nnp={nnp}: {out}");
        assert!(out.contains("fork-ok"), "nnp={nnp}: {out}");
        // add_key is not in the profile: the default action (ERRNO, defaultErrnoRet 38) answers.
        assert!(out.contains("add_key=38"), "nnp={nnp}: {out}");
        // sethostname is allowed only with CAP_SYS_ADMIN: an ERRNO rule answers EPERM.
        assert!(
            out.contains("sethostname: Operation not permitted"),
            "nnp={nnp}: {out}"
        );
    }
}

/// A minimal WASI guest: prints its first argument after argv[0] and a newline, or spins forever
/// when that argument is `spin`.
const GUEST_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $strlen (param $p i32) (result i32) (local $n i32)
    (block $done (loop $l
      (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $n))
  (func (export "_start") (local $a i32) (local $len i32)
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (drop (call $args (i32.const 1024) (i32.const 2048)))
    (local.set $a (i32.load (i32.const 1028)))
    ;; "spin": loop forever
    (if (i32.eq (i32.load (local.get $a)) (i32.const 0x6e697073))
      (then (loop $forever (br $forever))))
    (local.set $len (call $strlen (local.get $a)))
    (i32.store8 (i32.add (local.get $a) (local.get $len)) (i32.const 10))
    (i32.store (i32.const 16) (local.get $a))
    (i32.store (i32.const 20) (i32.add (local.get $len) (i32.const 1)))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)))))
"#;

/// A bundle whose args run the guest at `/guest.wasm` with `arg`.
fn wasm_bundle(name: &str, arg: &str) -> (Bundle, PathBuf) {
    let b = Bundle::new(name, &["/guest.wasm", arg]);
    let bin = wat::parse_str(GUEST_WAT).expect("guest assembles");
    std::fs::write(b.rootfs().join("guest.wasm"), bin).unwrap();
    let cache = b.dir.parent().unwrap().join("wasm-cache");
    (b, cache)
}

fn amphi_cached(b: &Bundle, cache: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--wasm-cache-dir", cache.to_str().unwrap()];
    all.extend_from_slice(args);
    b.amphi(&all)
}

#[test]
fn podman_default_profile_runs_a_wasm_guest_and_confines_its_runtime() {
    for nnp in [false, true] {
        let (mut b, cache) = wasm_bundle("sc-wasm", "printed-by-the-guest");
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        with_podman_profile(&mut b);
        b.write_config();
        let dir = b.dir.to_str().unwrap().to_string();
        let out = amphi_cached(&b, &cache, &["run", "--bundle", &dir, &b.id]);
        assert_eq!(
            (out.status.code(), stdout(&out)),
            (Some(0), "printed-by-the-guest\n".to_string()),
            "nnp={nnp}: {}",
            stderr(&out)
        );
    }
    let (mut b, cache) = wasm_bundle("sc-wasm-spin", "spin");
    with_podman_profile(&mut b);
    b.write_config();
    let dir = b.dir.to_str().unwrap().to_string();
    let out = amphi_cached(&b, &cache, &["create", "--bundle", &dir, &b.id]);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let pid = b.state().unwrap()["pid"].as_i64().unwrap() as i32;
    let out = amphi_cached(&b, &cache, &["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    // Every thread of the runtime process running the guest (the container's pid 1) is under the
    // filter, once the guest runs.
    let all_filtered = || {
        let m = seccomp_modes(pid);
        !m.is_empty() && m.iter().all(|v| v == "2")
    };
    assert!(
        all_filtered() || wait_for(all_filtered),
        "threads' seccomp modes: {:?}",
        seccomp_modes(pid)
    );
    // Drop deletes it (delete --force).
}

#[test]
fn exec_process_is_confined_by_the_same_filter() {
    let mut b = bundle("sc-exec", &["sleep", "1000"]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    });
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let script = "grep Seccomp: /proc/self/status; mkdir /tmp/e 2>&1; echo done";
    // Without --no-new-privs (filter loaded before the capability drop) and with it (loaded last).
    for flags in [&[][..], &["--no-new-privs"][..]] {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.extend([b.id.as_str(), "sh", "-c", script]);
        let out = b.amphi(&args);
        assert_eq!(out.status.code(), Some(0), "{flags:?}: {}", stderr(&out));
        let s = stdout(&out);
        assert!(s.contains("Seccomp:\t2"), "{flags:?}: {s}");
        assert!(
            s.contains("Function not implemented"),
            "{flags:?}: mkdir not refused: {s}"
        );
        assert!(s.contains("done"), "{flags:?}: {s}");
    }
    assert!(!b.rootfs().join("tmp/e").exists());
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let mut b = bundle("sc-unknown", &["sh", "-c", "mkdir /tmp/u 2>&1; echo ran"]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["no_such_syscall_amphi", "mkdir", "mkdirat", "future_syscall_2099"],
                      "action": "SCMP_ACT_ERRNO"}]
    });
    b.write_config();
    let log = b.dir.parent().unwrap().join("amphi.log");
    let dir = b.dir.to_str().unwrap().to_string();
    let out = b.amphi(&[
        "--debug",
        "--log",
        log.to_str().unwrap(),
        "run",
        "--bundle",
        &dir,
        &b.id,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(
        s.contains("Operation not permitted"),
        "the known names were not applied: {s}"
    );
    assert!(s.contains("ran"), "{s}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("no_such_syscall_amphi") && text.contains("linux.seccomp.syscalls[0]"),
        "no debug line for the skipped name: {text}"
    );
}

#[test]
fn bad_profiles_are_refused_at_create() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"},
                                {"names": ["read"], "action": "SCMP_ACT_BOGUS"}]}),
            vec!["linux.seccomp.syscalls[1].action", "SCMP_ACT_BOGUS"],
        ),
        (
            json!({"defaultAction": "SCMP_ACT_NOPE"}),
            vec!["linux.seccomp.defaultAction", "SCMP_ACT_NOPE"],
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}]}),
            vec!["linux.seccomp.syscalls[0].args[0].op", "SCMP_CMP_XX"],
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                 "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            vec!["linux.seccomp.syscalls[0].args[0].index"],
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}),
            vec!["linux.seccomp.flags[0]"],
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            vec!["linux.seccomp.syscalls[0].action", "SCMP_ACT_NOTIFY"],
        ),
    ];
    for (i, (profile, names)) in cases.into_iter().enumerate() {
        let mut b = bundle(&format!("sc-bad{i}"), &["true"]);
        b.config["linux"]["seccomp"] = profile;
        let out = b.create();
        assert_refused(&b, &out, &names);
    }
}

/// A profile that refuses `close_range` (older profiles, such as runtime-tools', do not list it),
/// loaded early because `noNewPrivileges` is false: the runtime's own last steps must not need it.
#[test]
fn profile_without_close_range_still_starts_the_container() {
    for nnp in [false, true] {
        let mut b = bundle("sc-closerange", &["sh", "-c", "echo started"]);
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        b.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["close_range"], "action": "SCMP_ACT_ERRNO"}]
        });
        let out = run_ok(&b);
        assert_eq!(out.trim(), "started", "noNewPrivileges {nnp}");
    }
}
