//! OCI hooks with real containers: where each kind runs (namespaces, filesystem), when (order,
//! status), with what (state JSON on stdin, args, env), and what a failure or timeout does.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{amphi_bin, stderr, stdout, wait_for, Bundle};
use serde_json::{json, Value};

/// Writes an executable `/bin/sh` script `body` at `path` (creating its directory).
fn write_script(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A test bundle whose rootfs is writable (`amphi spec` makes it read-only), so that hooks and the
/// workload inside the container can leave marks in it.
fn bundle(name: &str, args: &[&str]) -> Bundle {
    let mut b = Bundle::new(name, args);
    b.config["root"]["readonly"] = json!(false);
    b
}

/// A hook entry of config.json.
fn hook(path: &str, args: &[&str], env: &[&str], timeout: Option<i64>) -> Value {
    let mut h = json!({ "path": path });
    if !args.is_empty() {
        h["args"] = json!(args);
    }
    if !env.is_empty() {
        h["env"] = json!(env);
    }
    if let Some(t) = timeout {
        h["timeout"] = json!(t);
    }
    h
}

/// A script that records one run of a hook: `rec.sh KIND DIR` appends KIND to `DIR/hooks.log`,
/// saves its stdin to `DIR/hooks/KIND.json`, its namespaces to `DIR/hooks/KIND.ns` and its hostname
/// to `DIR/hooks/KIND.host`. Installed inside the rootfs, so the same file serves host-side hooks
/// (DIR = the rootfs on the host) and `startContainer` (DIR = `/`, after pivot_root).
const REC: &str = r#"k=$1; d=$2
echo "$k" >> "$d/hooks.log"
cat > "$d/hooks/$k.json"
for n in mnt net pid uts; do readlink /proc/self/ns/$n; done > "$d/hooks/$k.ns"
cat /proc/sys/kernel/hostname > "$d/hooks/$k.host""#;

const PATH_ENV: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

/// Installs `rootfs/hooks/rec.sh` and returns its host path.
fn install_rec(b: &Bundle) -> PathBuf {
    let p = b.rootfs().join("hooks/rec.sh");
    write_script(&p, REC);
    p
}

/// A hook that runs `rec.sh` for `kind` on the host side (`dir` = the rootfs seen from the host).
fn rec_hook(b: &Bundle, kind: &str) -> Value {
    let script = b.rootfs().join("hooks/rec.sh");
    let rootfs = b.rootfs();
    hook(
        script.to_str().unwrap(),
        &["rec.sh", kind, rootfs.to_str().unwrap()],
        &[PATH_ENV],
        None,
    )
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&read(p)).unwrap_or_else(|e| panic!("{}: {e}: {}", p.display(), read(p)))
}

/// The namespaces (mnt, net, pid, uts) of process `pid` as `readlink /proc/<pid>/ns/*` prints them.
fn ns_of(pid: &str) -> String {
    ["mnt", "net", "pid", "uts"]
        .iter()
        .map(|n| {
            let l = std::fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
            format!("{}\n", l.display())
        })
        .collect()
}

/// True once process `pid` is gone (or a zombie nobody has reaped yet: it runs no code).
fn process_gone(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Nothing of the container is left: no state dir, no cgroup, no mount mentioning the bundle,
/// `amphi state` fails.
fn assert_nothing_left(b: &Bundle) {
    assert!(
        !b.root.join(&b.id).exists(),
        "state dir left: {:?}",
        b.root.join(&b.id)
    );
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let bundle = b.dir.to_str().unwrap();
    assert!(
        !mountinfo.lines().any(|l| l.contains(bundle)),
        "mount left: {mountinfo}"
    );
    assert!(b.state().is_none(), "amphi state still answers");
}

#[test]
fn every_hook_kind_runs_once_in_order_with_state_on_stdin() {
    let mut b = bundle(
        "hooks-all",
        &["sh", "-c", "echo workload >> /hooks.log; exec sleep 1000"],
    );
    install_rec(&b);
    b.config["hostname"] = json!("hooks-ctr");
    b.config["annotations"] = json!({"org.amphi.test.hooks": "yes", "second": "2"});
    b.config["hooks"] = json!({
        "prestart": [rec_hook(&b, "prestart")],
        "createRuntime": [rec_hook(&b, "createRuntime")],
        "createContainer": [rec_hook(&b, "createContainer")],
        "startContainer": [hook("/hooks/rec.sh", &["rec.sh", "startContainer", "/"], &[PATH_ENV], None)],
        "poststart": [rec_hook(&b, "poststart")],
        "poststop": [rec_hook(&b, "poststop")],
    });
    let log = b.rootfs().join("hooks.log");
    let hooks = b.rootfs().join("hooks");

    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    assert_eq!(
        read(&log),
        "prestart\ncreateRuntime\ncreateContainer\n",
        "after create"
    );
    let pid = b.state().unwrap()["pid"].as_i64().unwrap();
    let init_ns = ns_of(&pid.to_string());
    let host_ns = ns_of("self");
    assert_ne!(init_ns, host_ns);

    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    // The workload's line may come before or after poststart's, but after startContainer's.
    assert!(
        wait_for(|| read(&log).contains("workload")),
        "workload never ran: {}",
        read(&log)
    );
    let out = b.amphi(&["delete", "--force", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));

    let lines: Vec<String> = read(&log).lines().map(String::from).collect();
    let hook_lines: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| *l != "workload")
        .collect();
    assert_eq!(
        hook_lines,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ],
        "hook order (each exactly once): {lines:?}"
    );
    let pos = |s: &str| lines.iter().position(|l| l == s).unwrap();
    assert!(pos("startContainer") < pos("workload"), "{lines:?}");
    assert_eq!(lines.iter().filter(|l| *l == "workload").count(), 1);

    let host_name = read(Path::new("/proc/sys/kernel/hostname"));
    for (kind, status) in [
        ("prestart", "creating"),
        ("createRuntime", "creating"),
        ("createContainer", "creating"),
        ("startContainer", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let st = read_json(&hooks.join(format!("{kind}.json")));
        assert_eq!(st["status"], status, "{kind}: {st}");
        assert_eq!(st["id"], b.id.as_str(), "{kind}: {st}");
        assert_eq!(st["bundle"], b.dir.to_str().unwrap(), "{kind}: {st}");
        assert_eq!(
            st["annotations"],
            json!({"org.amphi.test.hooks": "yes", "second": "2"}),
            "{kind}: {st}"
        );
        assert!(st["ociVersion"].is_string(), "{kind}: {st}");
        if kind != "poststop" {
            // pid is required for created and running, and is the host's view of init.
            assert_eq!(st["pid"].as_i64(), Some(pid), "{kind}: {st}");
        }
        let ns = read(&hooks.join(format!("{kind}.ns")));
        let host = read(&hooks.join(format!("{kind}.host")));
        match kind {
            // In the container's namespaces: createContainer (path on the host, before
            // pivot_root) and startContainer (path inside the container).
            "createContainer" | "startContainer" => {
                assert_eq!(ns, init_ns, "{kind} namespaces");
                assert_eq!(host, "hooks-ctr\n", "{kind} hostname");
            }
            // In the runtime's namespaces.
            _ => {
                assert_eq!(ns, host_ns, "{kind} namespaces");
                assert_eq!(host, host_name, "{kind} hostname");
            }
        }
    }
}

/// A busybox `sh -c` hook that saves its own argv and environment, one entry a line, to
/// `$1/$2.args` and `$1/$2.env`. The shell itself opens `/proc/self/...` (`exec 3<`): `$$` is its pid
/// in the container's pid namespace while createContainer still sees the host's /proc, and a file
/// opened by a forked command would describe that command once it execs. The trailing `exit 0` keeps
/// the shell from exec'ing its last command (it must stay alive while its files are read).
const ARGS_ENV: &str = r#"exec 3< /proc/self/cmdline 4< /proc/self/environ; tr '\0' '\n' <&3 > "$1/$2.args"; tr '\0' '\n' <&4 > "$1/$2.env"; exit 0"#;

#[test]
fn hooks_get_args_and_env_exactly_as_given() {
    let mut b = bundle("hooks-args", &["sleep", "1000"]);
    let rootfs = b.rootfs();
    let host_dir = rootfs.to_str().unwrap().to_string();
    let env = [
        "HOOK_A=1",
        "HOOK_EMPTY=",
        "HOOK_SPACES=a b  c",
        "PATH=/usr/bin:/bin",
    ];
    // busybox picks its applet from argv[0]: `sh` only if args[0] is passed as argv[0].
    let h = |dir: &str, kind: &str, path: &str| {
        hook(
            path,
            &["sh", "-c", ARGS_ENV, "script-zero", dir, kind],
            &env,
            None,
        )
    };
    b.config["hooks"] = json!({
        "prestart": [h(&host_dir, "prestart", "/bin/busybox")],
        "createRuntime": [h(&host_dir, "createRuntime", "/bin/busybox")],
        "createContainer": [h(&host_dir, "createContainer", "/bin/busybox")],
        "startContainer": [h("/", "startContainer", "/bin/busybox")],
        "poststart": [h(&host_dir, "poststart", "/bin/busybox")],
        "poststop": [h(&host_dir, "poststop", "/bin/busybox")],
    });
    b.write_config();
    // amphi's own environment must not reach the hooks.
    let dir = b.dir.to_str().unwrap().to_string();
    // Output through a file: the container inherits it and would hold a pipe open.
    let err_file = b.dir.join("amphi.err");
    let run = |args: &[&str]| {
        let status = b
            .cmd(args)
            .env("AMPHI_HOOK_LEAK", "leaked")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&err_file).unwrap())
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}: {}", read(&err_file));
    };
    run(&["create", "--bundle", &dir, &b.id]);
    run(&["start", &b.id]);
    run(&["delete", "--force", &b.id]);

    for kind in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        let dir = if kind == "startContainer" {
            "/"
        } else {
            host_dir.as_str()
        };
        let args = read(&rootfs.join(format!("{kind}.args")));
        let want: Vec<&str> = vec!["sh", "-c", ARGS_ENV, "script-zero", dir, kind];
        assert_eq!(args.lines().collect::<Vec<_>>(), want, "{kind} argv");
        let got = read(&rootfs.join(format!("{kind}.env")));
        assert_eq!(got.lines().collect::<Vec<_>>(), env, "{kind} environment");
    }
}

#[test]
fn hook_without_args_gets_its_path_as_argv0() {
    let mut b = bundle("hooks-noargs", &["true"]);
    let out_file = b.dir.join("argv0");
    let script = b.dir.join("argv0.sh");
    write_script(&script, &format!("echo \"$0 $#\" > {}", out_file.display()));
    b.config["hooks"] = json!({"createRuntime": [hook(script.to_str().unwrap(), &[], &[], None)]});
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    assert_eq!(read(&out_file), format!("{} 0\n", script.display()));
}

/// Runs `create` with `hooks.<kind>` = [a hook that records its state, `bad`] and checks it fails
/// naming `hooks.<kind>[1]` and `expect_in_error`, and that nothing is left.
fn create_fails_cleanly(name: &str, kind: &str, bad: Value, expect_in_error: &str) {
    let mut b = bundle(name, &["sh", "-c", "touch /workload-ran; sleep 1000"]);
    let state_file = b.dir.join("first.json");
    let first = b.dir.join("first.sh");
    write_script(&first, &format!("cat > {}", state_file.display()));
    b.config["hooks"] = json!({ kind: [hook(first.to_str().unwrap(), &[], &[], None), bad] });
    let out = b.create();
    assert!(!out.status.success(), "create succeeded: {}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("hooks.{kind}[1]")), "stderr: {err}");
    assert!(err.contains(expect_in_error), "stderr: {err}");
    // The first hook ran and saw the init process; it is gone now.
    let st = read_json(&state_file);
    assert_eq!(st["status"], "creating");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0, "{st}");
    assert!(wait_for(|| process_gone(pid)), "init process {pid} left");
    assert_nothing_left(&b);
    assert!(!b.rootfs().join("workload-ran").exists());
}

fn failing_hook(b_dir: &Path, kind: &str) -> Value {
    let p = b_dir.join(format!("fail-{kind}.sh"));
    write_script(&p, &format!("echo boom-{kind} >&2; exit 3"));
    hook(p.to_str().unwrap(), &[], &[], None)
}

/// A bundle-independent temp dir for scripts, removed on drop.
fn script_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("amphi-test-hooks-")
        .tempdir()
        .unwrap()
}

#[test]
fn failing_prestart_hook_fails_create_and_leaves_nothing() {
    let d = script_dir();
    let bad = failing_hook(d.path(), "prestart");
    create_fails_cleanly("hooks-fail-pre", "prestart", bad, "boom-prestart");
}

#[test]
fn failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    let d = script_dir();
    let bad = failing_hook(d.path(), "createRuntime");
    create_fails_cleanly("hooks-fail-cr", "createRuntime", bad, "boom-createRuntime");
}

#[test]
fn failing_create_container_hook_fails_create_and_leaves_nothing() {
    let d = script_dir();
    let bad = failing_hook(d.path(), "createContainer");
    create_fails_cleanly(
        "hooks-fail-cc",
        "createContainer",
        bad,
        "boom-createContainer",
    );
}

#[test]
fn missing_hook_binary_fails_create() {
    let d = script_dir();
    let missing = d.path().join("no-such-hook");
    let bad = hook(missing.to_str().unwrap(), &[], &[], None);
    create_fails_cleanly(
        "hooks-missing",
        "createRuntime",
        bad,
        missing.to_str().unwrap(),
    );
}

/// A hook that records its pid, then becomes `sleep 30` (same pid), with `timeout: 1`.
fn sleeping_hook(dir: &Path, kind: &str) -> (Value, PathBuf) {
    let pid_file = dir.join(format!("{kind}.pid"));
    let p = dir.join(format!("sleep-{kind}.sh"));
    write_script(
        &p,
        &format!("echo $$ > {}; exec /bin/sleep 30", pid_file.display()),
    );
    (hook(p.to_str().unwrap(), &[], &[], Some(1)), pid_file)
}

#[test]
fn create_runtime_hook_timeout_kills_it_and_fails_create() {
    let d = script_dir();
    let (bad, pid_file) = sleeping_hook(d.path(), "createRuntime");
    create_fails_cleanly("hooks-timeout-cr", "createRuntime", bad, "timed out");
    let hook_pid: i64 = read(&pid_file).trim().parse().unwrap();
    assert!(
        wait_for(|| process_gone(hook_pid)),
        "hook {hook_pid} still runs"
    );
}

/// A timed-out hook is killed with what it started: its whole process group.
#[test]
fn hook_timeout_kills_the_hooks_children_too() {
    let d = script_dir();
    let child_file = d.path().join("child.pid");
    let p = d.path().join("spawner.sh");
    write_script(
        &p,
        &format!("/bin/sleep 1000 & echo $! > {}; wait", child_file.display()),
    );
    let bad = hook(p.to_str().unwrap(), &[], &[], Some(1));
    create_fails_cleanly("hooks-timeout-kids", "createRuntime", bad, "timed out");
    let child: i64 = read(&child_file).trim().parse().unwrap();
    assert!(
        wait_for(|| process_gone(child)),
        "the hook's child {child} still runs"
    );
}

/// runtime-spec config.md: a hook's timeout, when present, must be greater than zero.
#[test]
fn hook_timeout_of_zero_or_less_is_refused() {
    for t in [0, -1] {
        let mut b = bundle("hooks-timeout-zero", &["true"]);
        b.config["hooks"] = json!({"poststop": [hook("/bin/true", &[], &[], Some(t))]});
        let out = b.create();
        assert!(!out.status.success(), "timeout {t} accepted");
        assert!(
            stderr(&out).contains("hooks.poststop[0].timeout"),
            "{}",
            stderr(&out)
        );
        assert_nothing_left(&b);
    }
}

#[test]
fn create_container_hook_timeout_kills_it_and_fails_create() {
    let d = script_dir();
    let (bad, pid_file) = sleeping_hook(d.path(), "createContainer");
    create_fails_cleanly("hooks-timeout-cc", "createContainer", bad, "timed out");
    // The pid is the hook's in the container's pid namespace: it is gone with the namespace; the
    // file proves the hook started.
    assert!(pid_file.exists());
}

#[test]
fn failing_start_container_hook_fails_start_and_workload_never_runs() {
    let mut b = bundle(
        "hooks-fail-sc",
        &["sh", "-c", "touch /workload-ran; sleep 1000"],
    );
    write_script(
        &b.rootfs().join("hooks/fail.sh"),
        "echo boom-startContainer >&2; exit 4",
    );
    write_script(&b.rootfs().join("hooks/ok.sh"), "touch /ok-ran");
    b.config["hooks"] = json!({"startContainer": [
        hook("/hooks/ok.sh", &[], &[], None),
        hook("/hooks/fail.sh", &[], &[], None),
    ]});
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let pid = b.state().unwrap()["pid"].as_i64().unwrap();
    let out = b.amphi(&["start", &b.id]);
    assert!(!out.status.success(), "start succeeded");
    let err = stderr(&out);
    assert!(err.contains("hooks.startContainer[1]"), "stderr: {err}");
    assert!(err.contains("boom-startContainer"), "stderr: {err}");
    assert!(b.rootfs().join("ok-ran").exists(), "first hook did not run");
    assert!(wait_for(|| process_gone(pid)), "init {pid} still runs");
    assert!(
        !b.rootfs().join("workload-ran").exists(),
        "the workload ran"
    );
    assert_eq!(b.state().unwrap()["status"], "stopped");
    let out = b.amphi(&["delete", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert_nothing_left(&b);
}

#[test]
fn start_container_hook_timeout_fails_start() {
    let mut b = bundle(
        "hooks-timeout-sc",
        &["sh", "-c", "touch /workload-ran; sleep 1000"],
    );
    write_script(&b.rootfs().join("hooks/slow.sh"), "exec sleep 30");
    b.config["hooks"] = json!({"startContainer": [hook("/hooks/slow.sh", &[], &[], Some(1))]});
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = b.amphi(&["start", &b.id]);
    assert!(!out.status.success(), "start succeeded");
    let err = stderr(&out);
    assert!(err.contains("hooks.startContainer[0]"), "stderr: {err}");
    assert!(err.contains("timed out"), "stderr: {err}");
    assert!(
        !b.rootfs().join("workload-ran").exists(),
        "the workload ran"
    );
}

#[test]
fn failing_poststart_and_poststop_hooks_only_warn() {
    let mut b = bundle("hooks-warn", &["sleep", "1000"]);
    let d = script_dir();
    let bad_start = failing_hook(d.path(), "poststart");
    let bad_stop = failing_hook(d.path(), "poststop");
    let after = |kind: &str| {
        let marker = d.path().join(format!("{kind}-second-ran"));
        let p = d.path().join(format!("second-{kind}.sh"));
        write_script(&p, &format!("touch {}", marker.display()));
        (hook(p.to_str().unwrap(), &[], &[], None), marker)
    };
    let (ok_start, start_marker) = after("poststart");
    let (ok_stop, stop_marker) = after("poststop");
    b.config["hooks"] = json!({
        "poststart": [bad_start, ok_start],
        "poststop": [bad_stop, ok_stop],
    });
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));

    let log = d.path().join("amphi.log");
    let log_s = log.to_str().unwrap();
    let out = b.amphi(&["--log", log_s, "start", &b.id]);
    assert_eq!(out.status.code(), Some(0), "start: {}", stderr(&out));
    assert_eq!(b.state().unwrap()["status"], "running");
    let text = read(&log);
    assert!(text.contains("hooks.poststart[0]"), "log: {text}");
    assert!(text.contains("boom-poststart"), "log: {text}");
    assert!(
        start_marker.exists(),
        "the poststart hook after the failing one did not run"
    );

    let out = b.amphi(&["--log", log_s, "delete", "--force", &b.id]);
    assert_eq!(out.status.code(), Some(0), "delete: {}", stderr(&out));
    let text = read(&log);
    assert!(text.contains("hooks.poststop[0]"), "log: {text}");
    assert!(text.contains("boom-poststop"), "log: {text}");
    assert!(
        stop_marker.exists(),
        "the poststop hook after the failing one did not run"
    );
    assert_nothing_left(&b);
}

#[test]
fn poststart_timeout_only_warns() {
    let mut b = bundle("hooks-timeout-ps", &["sleep", "1000"]);
    let d = script_dir();
    let (slow, pid_file) = sleeping_hook(d.path(), "poststart");
    b.config["hooks"] = json!({ "poststart": [slow] });
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let log = d.path().join("amphi.log");
    let out = b.amphi(&["--log", log.to_str().unwrap(), "start", &b.id]);
    assert_eq!(out.status.code(), Some(0), "start: {}", stderr(&out));
    assert_eq!(b.state().unwrap()["status"], "running");
    let text = read(&log);
    assert!(text.contains("hooks.poststart[0]"), "log: {text}");
    assert!(text.contains("timed out"), "log: {text}");
    let hook_pid: i64 = read(&pid_file).trim().parse().unwrap();
    assert!(
        wait_for(|| process_gone(hook_pid)),
        "hook {hook_pid} still runs"
    );
}

/// An annotation larger than a pipe's buffer, so that the state JSON cannot be written to a hook's
/// stdin before the hook reads it (or exits).
fn big_annotations(b: &mut Bundle) {
    b.config["annotations"] = json!({ "org.amphi.test.big": "x".repeat(300_000) });
}

#[test]
fn hooks_that_do_not_read_a_large_state_do_not_break_the_lifecycle() {
    let mut b = bundle("hooks-noread", &["sleep", "1000"]);
    big_annotations(&mut b);
    let d = script_dir();
    let p = d.path().join("noread.sh");
    write_script(&p, "exit 0");
    let h = hook(p.to_str().unwrap(), &[], &[], None);
    b.config["hooks"] = json!({
        "prestart": [h.clone()],
        "createRuntime": [h.clone()],
        "createContainer": [h.clone()],
        "poststart": [h.clone()],
        "poststop": [h],
    });
    let out = b.create();
    assert_eq!(out.status.code(), Some(0), "create: {}", stderr(&out));
    let out = b.amphi(&["start", &b.id]);
    assert_eq!(out.status.code(), Some(0), "start: {}", stderr(&out));
    assert_eq!(b.state().unwrap()["status"], "running");
    let out = b.amphi(&["delete", "--force", &b.id]);
    assert_eq!(out.status.code(), Some(0), "delete: {}", stderr(&out));
    assert_nothing_left(&b);
}

#[test]
fn timeout_covers_a_hook_that_never_reads_its_stdin() {
    let d = script_dir();
    let p = d.path().join("stuck.sh");
    write_script(&p, "exec /bin/sleep 10");
    let bad = hook(p.to_str().unwrap(), &[], &[], Some(1));
    let mut b = bundle("hooks-stuck", &["sleep", "1000"]);
    big_annotations(&mut b);
    b.config["hooks"] = json!({ "createRuntime": [bad] });
    let out = b.create();
    assert!(!out.status.success(), "create succeeded");
    let err = stderr(&out);
    assert!(err.contains("hooks.createRuntime[0]"), "stderr: {err}");
    assert!(err.contains("timed out"), "stderr: {err}");
    assert_nothing_left(&b);
}

#[test]
fn hook_writing_much_to_stderr_does_not_stall() {
    let d = script_dir();
    let p = d.path().join("chatty.sh");
    // 256 KiB on stderr, more than a pipe holds, then success. The timeout only bounds the test if
    // amphi stops draining the pipe.
    write_script(
        &p,
        "i=0; while [ $i -lt 256 ]; do /usr/bin/head -c 1024 /dev/zero | /usr/bin/tr '\\0' e >&2; i=$((i+1)); done; exit 0",
    );
    let mut b = bundle("hooks-chatty", &["sleep", "1000"]);
    b.config["hooks"] = json!({ "createRuntime": [hook(p.to_str().unwrap(), &[], &[], Some(10))] });
    let out = b.create();
    assert_eq!(out.status.code(), Some(0), "create: {}", stderr(&out));
}

#[test]
fn features_lists_the_six_hooks() {
    let out = std::process::Command::new(amphi_bin())
        .arg("features")
        .output()
        .unwrap();
    assert!(out.status.success(), "features: {}", stderr(&out));
    let f: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut hooks: Vec<&str> = f["hooks"]
        .as_array()
        .expect("hooks array")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    hooks.sort();
    assert_eq!(
        hooks,
        [
            "createContainer",
            "createRuntime",
            "poststart",
            "poststop",
            "prestart",
            "startContainer"
        ]
    );
}

/// SIGTERM, SIGINT or SIGHUP sent to `amphi create` while it runs (here: while a createRuntime hook
/// sleeps) does not cut it short half-way, which used to leave the state directory and the cgroup
/// behind: create completes, as runc's does, and `delete` then removes everything.
#[test]
fn a_stop_signal_does_not_interrupt_create() {
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        let d = script_dir();
        let slow = d.path().join("slow.sh");
        write_script(&slow, "sleep 1");
        let mut b = bundle("hooks-sigterm", &["sleep", "1000"]);
        b.config["hooks"] =
            json!({"createRuntime": [hook(slow.to_str().unwrap(), &[], &[], None)]});
        b.write_config();
        let mut child = b
            .cmd(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{sig}: create ended with {status}");
        assert_eq!(b.state().unwrap()["status"], "created", "{sig}");
        let out = b.amphi(&["delete", &b.id]);
        assert!(out.status.success(), "{sig}: delete: {}", stderr(&out));
        assert_nothing_left(&b);
    }
}

/// A hook's stdout does not reach amphi's stdout (engines may read it); with its stderr it is kept
/// for the error message of a failing hook, as runc does.
#[test]
fn hook_output_is_captured_not_printed() {
    let d = script_dir();
    let chatty = d.path().join("chatty.sh");
    write_script(&chatty, "echo HOOK-SAYS-HI");
    let failing = d.path().join("failing.sh");
    write_script(
        &failing,
        "echo HOOK-OUT-LINE; echo HOOK-ERR-LINE >&2; exit 4",
    );

    let mut b = bundle("hooks-out", &["true"]);
    b.config["hooks"] = json!({"createRuntime": [hook(chatty.to_str().unwrap(), &[], &[], None)]});
    b.write_config();
    let out = b.create();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("HOOK-SAYS-HI"), "{}", stdout(&out));
    assert!(b.amphi(&["delete", "-f", &b.id]).status.success());

    let mut b = bundle("hooks-out-fail", &["true"]);
    b.config["hooks"] = json!({"createRuntime": [hook(failing.to_str().unwrap(), &[], &[], None)]});
    b.write_config();
    let out = b.create();
    assert!(!out.status.success());
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("HOOK-OUT-LINE") && err.contains("HOOK-ERR-LINE"),
        "{err}"
    );
    assert_nothing_left(&b);
}
