//! `process` of config.json, seen from inside the container (and from the host): user and groups,
//! umask, env, args and their resolution through PATH, capabilities, rlimits, noNewPrivileges,
//! oomScoreAdj, file descriptors, and the exit status and signals of a foreground `run`.

mod common;

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, ExitStatus, Output};
use std::time::{Duration, Instant};

use common::{stderr, stdout, wait_for, Bundle};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Helpers of this file.

/// Pids of processes (other than this test process) whose command line contains `needle` or whose
/// root or working directory lies under `dir`: what a failed `create` might have left behind.
fn procs_of(needle: &str, dir: &std::path::Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let p = e.path();
        let cmdline = std::fs::read(p.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        let under = |link: &str| {
            std::fs::read_link(p.join(link))
                .map(|t| t.starts_with(dir))
                .unwrap_or(false)
        };
        if cmdline.contains(needle) || under("root") || under("cwd") {
            out.push(pid);
        }
    }
    out
}

/// Asserts that nothing of `b`'s container exists any more: no state dir, no cgroup directory, no
/// process, no mount.
fn assert_nothing_left(b: &Bundle) {
    assert!(
        !b.root.join(&b.id).exists(),
        "state dir {:?} left",
        b.root.join(&b.id)
    );
    assert!(b.state().is_none(), "`state` still answers");
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup dirs left: {:?}",
        b.cgroup_dirs()
    );
    let procs = procs_of(&b.id, &b.dir);
    assert!(procs.is_empty(), "processes left: {procs:?}");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = b.dir.to_string_lossy();
    assert!(
        !mountinfo.lines().any(|l| l.contains(dir.as_ref())),
        "mounts left under {dir}"
    );
}

/// Runs the container and returns its stdout, asserting exit status 0.
fn run_ok(b: &Bundle) -> String {
    let out = b.run();
    assert_eq!(
        out.status.code(),
        Some(0),
        "run failed: stdout {:?} stderr {:?}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// The value of `field` (e.g. `CapEff`) in a /proc/<pid>/status text.
fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} missing in status: {status}"))
        .trim()
}

/// A bit mask of capability numbers, as /proc/<pid>/status prints it.
fn cap_mask(caps: &[u32]) -> String {
    format!("{:016x}", caps.iter().fold(0u64, |m, c| m | (1u64 << c)))
}

/// Adds a tmpfs at /tmp (the rootfs is read-only in the default config).
fn add_tmp_mount(b: &mut Bundle) {
    b.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                      "options": ["nosuid", "nodev", "mode=1777"]}),
    );
}

/// A spawned `amphi` process that is killed (by its pid) and reaped if the test ends before it.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn pid(&self) -> i32 {
        self.0.as_ref().unwrap().id() as i32
    }

    /// Waits for the child; fails the test if it has not exited within `limit` (a hang guard).
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        let child = self.0.as_mut().unwrap();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.0 = None;
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "amphi did not exit within {limit:?}"
            );
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

/// Spawns `amphi run` of `b` in the background with stdout/stderr in files of the bundle.
fn spawn_run(b: &Bundle, out: &std::path::Path, err: &std::path::Path) -> ChildGuard {
    b.write_config();
    let child = b
        .cmd(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id])
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(err).unwrap())
        .spawn()
        .unwrap();
    ChildGuard(Some(child))
}

// ---------------------------------------------------------------------------------------------
// User, umask, env, args.

#[test]
fn user_uid_gid_and_additional_gids() {
    let mut b = Bundle::new(
        "user",
        &[
            "sh",
            "-c",
            "id -u; id -g; grep '^Groups:' /proc/self/status",
        ],
    );
    b.config["process"]["user"] = json!({"uid": 1234, "gid": 2345, "additionalGids": [10, 3456]});
    let out = run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "1234");
    assert_eq!(lines[1], "2345");
    let mut groups: Vec<u32> = lines[2]
        .trim_start_matches("Groups:")
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    groups.sort();
    assert_eq!(groups, vec![10, 3456], "{out}");
}

#[test]
fn user_without_additional_gids_has_no_groups() {
    let mut b = Bundle::new(
        "nogroups",
        &["sh", "-c", "id -u; grep '^Groups:' /proc/self/status"],
    );
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let out = run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000", "{out}");
    assert_eq!(
        lines[1].trim_start_matches("Groups:").trim(),
        "",
        "host groups leaked into the container: {out}"
    );
}

#[test]
fn umask_applies_to_new_files() {
    let mut b = Bundle::new(
        "umask",
        &[
            "sh",
            "-c",
            "umask; touch /tmp/f; mkdir /tmp/d; stat -c %a /tmp/f; stat -c %a /tmp/d",
        ],
    );
    add_tmp_mount(&mut b);
    b.config["process"]["user"]["umask"] = json!(0o077);
    let out = run_ok(&b);
    assert_eq!(out, "0077\n600\n700\n");
}

#[test]
fn umask_defaults_to_022() {
    let mut b = Bundle::new(
        "umaskdef",
        &["sh", "-c", "umask; touch /tmp/f; stat -c %a /tmp/f"],
    );
    add_tmp_mount(&mut b);
    let out = run_ok(&b);
    assert_eq!(out, "0022\n644\n");
}

#[test]
fn env_is_exactly_as_configured() {
    let env = [
        "PATH=/bin",
        "HOME=/root",
        "WITH_SPACES=a b  c ",
        "EQUALS=x=y==z",
        "EMPTY=",
    ];
    let mut b = Bundle::new("env", &["env"]);
    b.config["process"]["env"] = json!(env);
    let out = run_ok(&b);
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    let mut want = env.to_vec();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn args_with_spaces_are_passed_unchanged() {
    let args = [
        "sh",
        "-c",
        r#"echo "0=[$0]"; for a in "$@"; do echo "[$a]"; done"#,
        "zero arg",
        "a b",
        "",
        "  leading and trailing  ",
        "x=y",
        "*",
        "$HOME",
    ];
    let b = Bundle::new("args", &args);
    let out = run_ok(&b);
    assert_eq!(
        out,
        "0=[zero arg]\n[a b]\n[]\n[  leading and trailing  ]\n[x=y]\n[*]\n[$HOME]\n"
    );
}

#[test]
fn args0_is_resolved_through_the_containers_path() {
    let b0 = Bundle::new("pathres", &["mytool", "one arg", "two"]);
    let mut b = b0;
    let dir = b.rootfs().join("opt/custom/bin");
    std::fs::create_dir_all(&dir).unwrap();
    // A non-executable file of the same name earlier in PATH must be skipped, as execvp does.
    let early = b.rootfs().join("opt/early");
    std::fs::create_dir_all(&early).unwrap();
    std::fs::write(early.join("mytool"), "#!/bin/sh\necho WRONG\n").unwrap();
    let tool = dir.join("mytool");
    std::fs::write(
        &tool,
        "#!/bin/sh\necho \"ran $0\"\nfor a in \"$@\"; do echo \"[$a]\"; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    b.config["process"]["env"] = json!(["PATH=/opt/early:/opt/custom/bin:/bin"]);
    let out = run_ok(&b);
    assert_eq!(out, "ran /opt/custom/bin/mytool\n[one arg]\n[two]\n");
}

#[test]
fn missing_executable_fails_create_and_leaks_nothing() {
    let mut b = Bundle::new("noexe", &["no-such-binary-xyz", "arg"]);
    // The host has no such binary either; the container's PATH is what counts.
    b.config["process"]["env"] = json!(["PATH=/bin:/usr/bin"]);
    let out = b.create();
    assert!(!out.status.success(), "create must fail: {out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("process.args"),
        "error must name process.args: {err}"
    );
    assert!(
        err.contains("no-such-binary-xyz"),
        "error must name the binary: {err}"
    );
    assert_nothing_left(&b);
}

#[test]
fn executable_found_on_host_path_only_fails_create() {
    // /bin/true exists on the host but the container's PATH only has /nowhere.
    let mut b = Bundle::new("hostpath", &["true"]);
    b.config["process"]["env"] = json!(["PATH=/nowhere"]);
    let out = b.create();
    assert!(!out.status.success(), "create must fail: {out:?}");
    let err = stderr(&out);
    assert!(err.contains("process.args"), "{err}");
    assert_nothing_left(&b);
}

// ---------------------------------------------------------------------------------------------
// Capabilities.

const CAP_CHOWN: u32 = 0;
const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_KILL: u32 = 5;
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_AUDIT_WRITE: u32 = 29;

fn set_caps(b: &mut Bundle) {
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_BIND_SERVICE",
                     "CAP_AUDIT_WRITE"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"],
        "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_AUDIT_WRITE"],
        "ambient": ["CAP_KILL", "CAP_AUDIT_WRITE"],
    });
}

const CAP_SCRIPT: &str = "grep '^Cap' /proc/self/status";

/// The five sets as configured, read from the init process on the host after `create` (before the
/// exec of the workload changes them), then as the root workload sees them after exec.
#[test]
fn capabilities_all_five_sets() {
    let mut b = Bundle::new("caps", &["sh", "-c", CAP_SCRIPT]);
    set_caps(&mut b);
    b.config["process"]["noNewPrivileges"] = json!(false);
    // `create` with the container's stdout in a file this test keeps.
    b.write_config();
    let out_path = b.dir.join(".caps-out");
    let st = b
        .cmd(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(b.dir.join(".caps-err")).unwrap())
        .status()
        .unwrap();
    assert!(
        st.success(),
        "create: {}",
        std::fs::read_to_string(b.dir.join(".caps-err")).unwrap_or_default()
    );
    let pid = b.state().unwrap()["pid"].as_i64().unwrap();
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let bnd = [
        CAP_CHOWN,
        CAP_DAC_OVERRIDE,
        CAP_KILL,
        CAP_NET_BIND_SERVICE,
        CAP_AUDIT_WRITE,
    ];
    let inh = [CAP_DAC_OVERRIDE, CAP_KILL, CAP_AUDIT_WRITE];
    let amb = [CAP_KILL, CAP_AUDIT_WRITE];
    assert_eq!(status_field(&st, "CapBnd"), cap_mask(&bnd), "{st}");
    assert_eq!(
        status_field(&st, "CapPrm"),
        cap_mask(&[CAP_CHOWN, CAP_KILL, CAP_NET_BIND_SERVICE, CAP_AUDIT_WRITE]),
        "{st}"
    );
    assert_eq!(
        status_field(&st, "CapEff"),
        cap_mask(&[CAP_CHOWN, CAP_KILL, CAP_NET_BIND_SERVICE]),
        "{st}"
    );
    assert_eq!(status_field(&st, "CapInh"), cap_mask(&inh), "{st}");
    assert_eq!(status_field(&st, "CapAmb"), cap_mask(&amb), "{st}");

    // After exec as root (without no_new_privs), the kernel gives permitted = effective =
    // bounding | inheritable; the inheritable, bounding and ambient sets stay exactly as configured.
    let start = b.amphi(&["start", &b.id]);
    assert!(start.status.success(), "start: {}", stderr(&start));
    assert!(wait_for(|| b.state().unwrap()["status"] == "stopped"));
    let out = std::fs::read_to_string(&out_path).unwrap();
    assert_eq!(status_field(&out, "CapBnd"), cap_mask(&bnd), "{out}");
    assert_eq!(status_field(&out, "CapInh"), cap_mask(&inh), "{out}");
    assert_eq!(status_field(&out, "CapAmb"), cap_mask(&amb), "{out}");
    let root_prm = cap_mask(&[
        CAP_CHOWN,
        CAP_DAC_OVERRIDE,
        CAP_KILL,
        CAP_NET_BIND_SERVICE,
        CAP_AUDIT_WRITE,
    ]);
    assert_eq!(status_field(&out, "CapPrm"), root_prm, "{out}");
    assert_eq!(status_field(&out, "CapEff"), root_prm, "{out}");
}

/// With noNewPrivileges, the exec as root cannot gain capabilities beyond the configured permitted
/// set: permitted = effective = (bounding | inheritable) & permitted.
#[test]
fn capabilities_root_with_no_new_privileges_keeps_permitted() {
    let mut b = Bundle::new("capsnnp", &["sh", "-c", CAP_SCRIPT]);
    set_caps(&mut b);
    b.config["process"]["noNewPrivileges"] = json!(true);
    let out = run_ok(&b);
    let prm = cap_mask(&[CAP_CHOWN, CAP_KILL, CAP_NET_BIND_SERVICE, CAP_AUDIT_WRITE]);
    assert_eq!(status_field(&out, "CapPrm"), prm, "{out}");
    assert_eq!(status_field(&out, "CapEff"), prm, "{out}");
    assert_eq!(
        status_field(&out, "CapInh"),
        cap_mask(&[CAP_DAC_OVERRIDE, CAP_KILL, CAP_AUDIT_WRITE]),
        "{out}"
    );
    assert_eq!(
        status_field(&out, "CapAmb"),
        cap_mask(&[CAP_KILL, CAP_AUDIT_WRITE]),
        "{out}"
    );
}

/// A non-root user keeps exactly its ambient capabilities across exec (permitted = effective =
/// ambient), and its inheritable set as configured.
#[test]
fn capabilities_non_root_user_keeps_ambient() {
    let mut b = Bundle::new("capsuser", &["sh", "-c", CAP_SCRIPT]);
    set_caps(&mut b);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let out = run_ok(&b);
    let amb = cap_mask(&[CAP_KILL, CAP_AUDIT_WRITE]);
    assert_eq!(status_field(&out, "CapAmb"), amb, "{out}");
    assert_eq!(status_field(&out, "CapPrm"), amb, "{out}");
    assert_eq!(status_field(&out, "CapEff"), amb, "{out}");
    assert_eq!(
        status_field(&out, "CapInh"),
        cap_mask(&[CAP_DAC_OVERRIDE, CAP_KILL, CAP_AUDIT_WRITE]),
        "{out}"
    );
    assert_eq!(
        status_field(&out, "CapBnd"),
        cap_mask(&[
            CAP_CHOWN,
            CAP_DAC_OVERRIDE,
            CAP_KILL,
            CAP_NET_BIND_SERVICE,
            CAP_AUDIT_WRITE
        ]),
        "{out}"
    );
}

/// A non-root user without ambient capabilities has none left after exec.
#[test]
fn capabilities_non_root_user_without_ambient_has_none() {
    let mut b = Bundle::new("capsnoamb", &["sh", "-c", CAP_SCRIPT]);
    set_caps(&mut b);
    b.config["process"]["capabilities"]["ambient"] = json!([]);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let out = run_ok(&b);
    let none = cap_mask(&[]);
    assert_eq!(status_field(&out, "CapAmb"), none, "{out}");
    assert_eq!(status_field(&out, "CapPrm"), none, "{out}");
    assert_eq!(status_field(&out, "CapEff"), none, "{out}");
}

// ---------------------------------------------------------------------------------------------
// rlimits, noNewPrivileges, oomScoreAdj.

fn nofile_limits() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    (lim.rlim_cur, lim.rlim_max)
}

#[test]
fn rlimit_nofile_lowered() {
    let (_, hard) = nofile_limits();
    assert!(
        hard > 300,
        "host hard limit of RLIMIT_NOFILE too low: {hard}"
    );
    let mut b = Bundle::new("rlimit", &["sh", "-c", "ulimit -n; ulimit -Hn"]);
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 234}]);
    let out = run_ok(&b);
    assert_eq!(out, "123\n234\n");
}

#[test]
fn rlimit_above_host_hard_limit_fails_and_leaks_nothing() {
    let (_, hard) = nofile_limits();
    assert!(
        hard != libc::RLIM_INFINITY,
        "the host's RLIMIT_NOFILE hard limit is unlimited: cannot exceed it"
    );
    let mut b = Bundle::new("rlimitbad", &["true"]);
    b.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_NOFILE", "soft": hard + 1000, "hard": hard + 1000}
    ]);
    let out = b.create();
    assert!(!out.status.success(), "create must fail: {out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("process.rlimits[1]"),
        "error must name the field: {err}"
    );
    assert!(
        err.contains("Operation not permitted") || err.contains("EPERM"),
        "error must give the reason: {err}"
    );
    assert_nothing_left(&b);
}

#[test]
fn rlimit_soft_above_hard_fails_and_leaks_nothing() {
    let mut b = Bundle::new("rlimitinv", &["true"]);
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 200, "hard": 100}]);
    let out = b.create();
    assert!(!out.status.success(), "create must fail: {out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("process.rlimits[0]"),
        "error must name the field: {err}"
    );
    assert_nothing_left(&b);
}

#[test]
fn no_new_privileges_true_and_false() {
    for (value, want) in [(true, "1"), (false, "0")] {
        let mut b = Bundle::new("nnp", &["grep", "^NoNewPrivs:", "/proc/self/status"]);
        b.config["process"]["noNewPrivileges"] = json!(value);
        let out = run_ok(&b);
        assert_eq!(
            out.trim_start_matches("NoNewPrivs:").trim(),
            want,
            "noNewPrivileges {value}: {out}"
        );
    }
}

#[test]
fn oom_score_adj_positive() {
    let mut b = Bundle::new("oom", &["cat", "/proc/self/oom_score_adj"]);
    b.config["process"]["oomScoreAdj"] = json!(567);
    assert_eq!(run_ok(&b), "567\n");
}

#[test]
fn oom_score_adj_negative_fails_without_cap_sys_resource() {
    let mut b = Bundle::new("oomneg", &["true"]);
    b.config["process"]["oomScoreAdj"] = json!(-500);
    let out = b.create();
    assert!(!out.status.success(), "create must fail here: {out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("process.oomScoreAdj"),
        "error must name the field: {err}"
    );
    assert_nothing_left(&b);
}

// ---------------------------------------------------------------------------------------------
// File descriptors.

/// The fd numbers and targets (when the link could be read) listed by `ls -l /proc/<pid>/fd`.
fn fds_of(ls: &str) -> Vec<(u32, Option<String>)> {
    ls.lines()
        .filter(|l| l.starts_with('l'))
        .filter_map(|l| {
            let (left, target) = match l.split_once(" -> ") {
                Some((left, t)) => (left, Some(t.to_string())),
                None => (l, None),
            };
            let n = left.split_whitespace().last()?.parse().ok()?;
            Some((n, target))
        })
        .collect()
}

#[test]
fn no_runtime_fd_reaches_the_container() {
    let b = Bundle::new("fds", &["sh", "-c", "ls -l /proc/$$/fd"]);
    let out = run_ok(&b);
    let fds = fds_of(&out);
    let nums: Vec<u32> = fds.iter().map(|(n, _)| *n).collect();
    assert!(nums.starts_with(&[0, 1, 2]), "stdio missing: {out}");
    for (n, target) in &fds {
        // Beyond stdio only the listing's own directory fd may appear (busybox runs `ls` inside
        // the shell's process; its link is gone or points into /proc by the time it is read).
        if *n > 2 {
            assert!(
                target.as_deref().is_none_or(|t| t.starts_with("/proc/")),
                "fd {n} -> {target:?} leaked into the container:\n{out}"
            );
        }
    }
    assert!(
        fds.iter().filter(|(n, _)| *n > 2).count() <= 1,
        "more than the listing's own fd beyond stdio:\n{out}"
    );
}

/// Spawns `amphi <args>` with the given files installed as fds 3, 4, ... (without close-on-exec),
/// waits, and returns its output.
fn amphi_with_fds(b: &Bundle, args: &[&str], files: &[&std::fs::File]) -> Output {
    let out_path = b.dir.join(".fds-out");
    let err_path = b.dir.join(".fds-err");
    let raw: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = b.cmd(args);
    cmd.stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    // SAFETY: the closure only calls fcntl and dup2, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // First move every source above the targets so that no dup2 clobbers a later source.
            let mut high = Vec::with_capacity(raw.len());
            for fd in &raw {
                let h = libc::fcntl(*fd, libc::F_DUPFD, 100);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(h);
            }
            for (i, h) in high.iter().enumerate() {
                if libc::dup2(*h, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = ChildGuard(Some(cmd.spawn().unwrap()));
    let status = child.wait(Duration::from_secs(60));
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    }
}

#[test]
fn preserve_fds_passes_exactly_the_given_fds() {
    let b = Bundle::new(
        "preserve",
        &[
            "sh",
            "-c",
            "cat /proc/self/fd/3; cat /proc/self/fd/4; \
             if [ -e /proc/self/fd/5 ]; then echo FD5_PRESENT; else echo FD5_ABSENT; fi",
        ],
    );
    b.write_config();
    let mk = |name: &str, content: &str| {
        let p = b.dir.join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::File::open(&p).unwrap()
    };
    let f3 = mk("fd3.txt", "content of fd three\n");
    let f4 = mk("fd4.txt", "content of fd four\n");
    let f5 = mk("fd5.txt", "content of fd five\n");
    let dir = b.dir.to_str().unwrap().to_string();
    let out = amphi_with_fds(
        &b,
        &["run", "--preserve-fds", "2", "--bundle", &dir, &b.id],
        &[&f3, &f4, &f5],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "content of fd three\ncontent of fd four\nFD5_ABSENT\n"
    );
}

#[test]
fn preserve_fds_targets_seen_from_inside() {
    let b = Bundle::new("preserve2", &["sh", "-c", "ls -l /proc/$$/fd"]);
    b.write_config();
    let p3 = b.dir.join("marker-three");
    let p4 = b.dir.join("marker-four");
    std::fs::write(&p3, "3").unwrap();
    std::fs::write(&p4, "4").unwrap();
    let f3 = std::fs::File::open(&p3).unwrap();
    let f4 = std::fs::File::open(&p4).unwrap();
    let dir = b.dir.to_str().unwrap().to_string();
    let out = amphi_with_fds(
        &b,
        &["run", "--preserve-fds", "2", "--bundle", &dir, &b.id],
        &[&f3, &f4],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let ls = stdout(&out);
    let fds = fds_of(&ls);
    let target = |n: u32| {
        fds.iter()
            .find(|(m, _)| *m == n)
            .and_then(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("fd {n} missing:\n{ls}"))
    };
    assert!(target(3).ends_with("marker-three"), "{ls}");
    assert!(target(4).ends_with("marker-four"), "{ls}");
}

/// Without --preserve-fds, fds the caller left open are not passed on.
#[test]
fn inherited_fds_are_closed_without_preserve_fds() {
    let b = Bundle::new(
        "nopreserve",
        &[
            "sh",
            "-c",
            "if [ -e /proc/self/fd/3 ] || [ -e /proc/self/fd/4 ]; then echo LEAK; else echo CLOSED; fi",
        ],
    );
    b.write_config();
    let p = b.dir.join("some-file");
    std::fs::write(&p, "x").unwrap();
    let f = std::fs::File::open(&p).unwrap();
    let dir = b.dir.to_str().unwrap().to_string();
    let out = amphi_with_fds(&b, &["run", "--bundle", &dir, &b.id], &[&f, &f]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "CLOSED\n");
}

// ---------------------------------------------------------------------------------------------
// Foreground `run`: exit status and signals.

#[test]
fn run_exit_status_propagates() {
    let b = Bundle::new("exit7", &["sh", "-c", "exit 7"]);
    let out = b.run();
    assert_eq!(out.status.code(), Some(7), "stderr: {}", stderr(&out));
    assert_nothing_left(&b);
}

#[test]
fn run_killed_by_sigkill_exits_137() {
    let b = Bundle::new("killed", &["sleep", "1000"]);
    let mut child = spawn_run(&b, &b.dir.join(".run-out"), &b.dir.join(".run-err"));
    assert!(
        wait_for(|| b.state().is_some_and(|s| s["status"] == "running")),
        "container never ran: {}",
        std::fs::read_to_string(b.dir.join(".run-err")).unwrap_or_default()
    );
    let out = b.amphi(&["kill", &b.id, "KILL"]);
    assert!(out.status.success(), "kill: {}", stderr(&out));
    let st = child.wait(Duration::from_secs(30));
    assert_eq!(st.code(), Some(137), "{st:?}");
    assert_nothing_left(&b);
}

#[test]
fn run_forwards_sigterm_to_the_container() {
    let b = Bundle::new(
        "sigterm",
        &[
            "sh",
            "-c",
            r#"trap "exit 3" TERM; echo trap-ready; while true; do sleep 0.1; done"#,
        ],
    );
    let out_path = b.dir.join(".run-out");
    let mut child = spawn_run(&b, &out_path, &b.dir.join(".run-err"));
    // Signal only once the trap is installed: before that, pid 1 of the container ignores SIGTERM.
    assert!(
        wait_for(|| std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .contains("trap-ready")),
        "container never got ready: {}",
        std::fs::read_to_string(b.dir.join(".run-err")).unwrap_or_default()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = child.wait(Duration::from_secs(30));
    assert_eq!(
        st.code(),
        Some(3),
        "{st:?}, stderr: {}",
        std::fs::read_to_string(b.dir.join(".run-err")).unwrap_or_default()
    );
    assert_nothing_left(&b);
}
