//! Hostile and careless use of the newer features: malformed `linux.resources.devices` (the cgroup
//! v2 eBPF program and the v1 controller), `update --resources -` with garbage, `--systemd-cgroup`
//! with odd paths, a relative `XDG_RUNTIME_DIR`, the protected re-execution of create/run/exec
//! (a caller-set `_AMPHI_EXE_PROTECTED`, a symlinked and then replaced binary) and 20 parallel
//! creates. Every failure must exit non-zero with a message naming the field, and leave nothing:
//! no state directory, no cgroup in any hierarchy (including /sys/fs/cgroup/unified, whose removal
//! also frees the device programs attached to it), no process, no mount.
//!
//! Devices: char major 4095 has no driver on this host, so opening a node of it fails with ENXIO
//! once the device cgroup lets the open through, and with EPERM when the device cgroup refuses it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{
    amphi_bin, assert_no_leftovers, mknod_char, stderr, unified_dir, Bundle, DENIED, NO_DEVICE,
};
use serde_json::{json, Value};

/// `amphi --root R update --resources - ID` with `input` on stdin.
fn update(b: &Bundle, input: &str) -> std::process::Output {
    let mut c = b.cmd(&["update", "--resources", "-", &b.id]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut si = child.stdin.take().unwrap();
        let _ = si.write_all(input.as_bytes());
    }
    child.wait_with_output().unwrap()
}

fn create_start(b: &Bundle) {
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
}

#[track_caller]
fn assert_fails_naming(out: &std::process::Output, what: &[&str]) {
    assert!(!out.status.success(), "succeeded: {out:?}");
    let e = stderr(out);
    for w in what {
        assert!(e.contains(w), "error does not name {w:?}: {e}");
    }
}

#[test]
fn malformed_device_rules_fail_naming_the_field_and_leave_nothing() {
    let cases: &[(Value, &[&str])] = &[
        (
            json!({"allow": true, "type": "c", "major": 99_999_999_999_i64, "minor": 1, "access": "rwm"}),
            &["linux.resources.devices[1]", "major", "99999999999"],
        ),
        (
            json!({"allow": true, "type": "c", "major": 2_147_483_648_i64, "minor": 1, "access": "r"}),
            &["linux.resources.devices[1]", "major"],
        ),
        (
            json!({"allow": true, "type": "c", "major": 1, "minor": -5, "access": "rwm"}),
            &["linux.resources.devices[1].minor", "-5"],
        ),
        (
            json!({"allow": true, "type": "x", "major": 1, "minor": 3, "access": "rwm"}),
            &["linux.resources.devices[1].type", "is not"],
        ),
        (
            json!({"allow": true, "type": "c", "major": "1", "minor": 3}),
            &["linux.resources.devices[1].major", "not an integer"],
        ),
        (
            json!({"allow": "yes", "type": "c", "major": 1, "minor": 3}),
            &["linux.resources.devices[1].allow"],
        ),
        (
            json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwq"}),
            &["linux.resources.devices[1]", "access", "rwq"],
        ),
        (
            json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": ""}),
            &["linux.resources.devices[1].access", "empty"],
        ),
    ];
    for (rule, what) in cases {
        let mut b = Bundle::new("badrule", &["true"]);
        b.config["linux"]["resources"]["devices"] =
            json!([{"allow": false, "access": "rwm"}, rule]);
        let out = b.create();
        assert_fails_naming(&out, what);
        assert!(b.state().is_none(), "{rule}: a container is left");
        assert_no_leftovers(&b);
    }
}

#[test]
fn repeated_access_letters_are_one_access() {
    // "rwmrwm" is what the v1 controller takes as "rwm"; the v2 program must agree.
    let mut b = Bundle::new("rwmrwm", &["sh", "-c", "echo x > /dev/null && echo ok"]);
    b.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 4095, "minor": 1, "access": "rwmrwm"},
    ]);
    let out = b.run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_leftovers(&b);
}

/// 10,000 rules: the verifier refused a few hundred rules before (one pending branch per
/// condition, and facts about the fields carried from block to block). The program must load and
/// decide as the rules say, checked with a host process that joins only the container's cgroup2
/// directory (so that the v1 devices controller is not what decides).
#[test]
fn ten_thousand_device_rules_load_and_decide() {
    let mut b = Bundle::new("bpf10k", &["sleep", "1000"]);
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    for i in 0..10_000u32 {
        // Minors 10..: allow on even i, deny (of "w" only) on odd i.
        rules.push(json!({
            "allow": i % 2 == 0, "type": "c", "major": 4095, "minor": 10 + i,
            "access": if i % 2 == 0 { "rw" } else { "w" },
        }));
    }
    rules.push(json!({"allow": true, "type": "c", "major": 4095, "minor": 2, "access": "r"}));
    rules.push(json!({"allow": false, "type": "c", "major": 4095, "minor": 2, "access": "w"}));
    b.config["linux"]["resources"]["devices"] = json!(rules);
    create_start(&b);
    let nodes = b.dir.join("nodes");
    std::fs::create_dir(&nodes).unwrap();
    for (name, minor) in [("even", 10), ("odd", 11), ("last", 2), ("none", 3)] {
        mknod_char(&nodes.join(name), 4095, minor);
    }
    let procs = unified_dir(&b).join("cgroup.procs");
    let open = |cmd: &str| -> String {
        let script = format!("echo $$ > {} && exec {cmd}", procs.display());
        let out = Command::new("/bin/busybox")
            .args(["sh", "-c", &script])
            .current_dir(&nodes)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{cmd} succeeded");
        stderr(&out)
    };
    assert!(open("cat even").contains(NO_DEVICE), "allowed node refused");
    assert!(
        open("cat odd").contains(DENIED),
        "node without an allow rule was let through"
    );
    assert!(open("cat last").contains(NO_DEVICE), "last allow lost");
    assert!(
        open("sh -c 'echo x > last'").contains(DENIED),
        "the last deny of w does not refuse a write"
    );
    assert!(
        open("cat none").contains(DENIED),
        "unlisted node let through"
    );
    let out = b.amphi(&["delete", "--force", &b.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_leftovers(&b);
}

#[test]
fn device_rules_beyond_the_kernel_limit_are_refused_by_name() {
    let mut b = Bundle::new("bpfhuge", &["true"]);
    let rules: Vec<Value> = (0..80_000u32)
        .map(|i| json!({"allow": true, "type": "c", "major": 4095, "minor": i, "access": "r"}))
        .collect();
    b.config["linux"]["resources"]["devices"] = json!(rules);
    let out = b.create();
    assert_fails_naming(
        &out,
        &["linux.resources.devices", "more than the kernel loads"],
    );
    assert!(
        stderr(&out).len() < 1000,
        "error of {} bytes (a verifier dump?)",
        stderr(&out).len()
    );
    assert_no_leftovers(&b);
}

fn memory_limit(b: &Bundle) -> String {
    std::fs::read_to_string(
        Path::new("/sys/fs/cgroup/memory")
            .join(b.cgroup.trim_start_matches('/'))
            .join("memory.limit_in_bytes"),
    )
    .unwrap()
}

#[test]
fn update_with_garbage_changes_nothing() {
    let b = Bundle::new("updgarbage", &["sleep", "1000"]);
    create_start(&b);
    let before = memory_limit(&b);
    let programs = amphi::cgroups::devices_bpf::attached_to(&unified_dir(&b)).unwrap();
    let bad_rule = json!({"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rz"});
    let cases: Vec<(String, &[&str])> = vec![
        ("{{{{".into(), &["--resources", "JSON"]),
        (String::new(), &["--resources", "JSON"]),
        ("null".into(), &["--resources"]),
        ("[]".into(), &["--resources", "JSON object"]),
        ("42".into(), &["--resources"]),
        (
            json!({"memory": {"limit": 100_000_000}, "devices": [bad_rule]}).to_string(),
            &["linux.resources.devices[0]", "access"],
        ),
        (
            json!({"memory": {"limit": 100_000_000}, "devices": [{"allow": true, "type": "x"}]})
                .to_string(),
            &["linux.resources.devices[0].type"],
        ),
        (
            json!({"memory": {"limit": 100_000_000},
                   "devices": [{"allow": true, "type": "c", "major": 1, "minor": -9}]})
            .to_string(),
            &["linux.resources.devices[0].minor"],
        ),
        ("[".repeat(100_000), &["--resources"]),
    ];
    for (input, what) in &cases {
        let out = update(&b, input);
        assert_fails_naming(&out, what);
        assert_eq!(memory_limit(&b), before, "{input:.60}: memory changed");
        assert_eq!(
            amphi::cgroups::devices_bpf::attached_to(&unified_dir(&b)).unwrap(),
            programs,
            "{input:.60}: device program replaced"
        );
    }
    assert_eq!(b.state().unwrap()["status"], "running");
}

#[test]
fn update_devices_only_while_paused_and_refused_when_stopped() {
    let b = Bundle::new("updpaused", &["sleep", "1000"]);
    std::fs::create_dir_all(b.rootfs().join("tmp")).unwrap();
    mknod_char(&b.rootfs().join("tmp/xa"), 4095, 1);
    create_start(&b);
    let out = b.amphi(&["exec", &b.id, "cat", "/tmp/xa"]);
    assert!(stderr(&out).contains(DENIED), "{}", stderr(&out));
    assert!(b.amphi(&["pause", &b.id]).status.success());
    let rules = json!({"devices": [{"allow": true, "type": "c", "major": 4095, "minor": 1, "access": "r"}]});
    let out = update(&b, &rules.to_string());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(b.state().unwrap()["status"], "paused");
    assert!(b.amphi(&["resume", &b.id]).status.success());
    let out = b.amphi(&["exec", &b.id, "cat", "/tmp/xa"]);
    assert!(
        stderr(&out).contains(NO_DEVICE),
        "the update did not allow the node: {}",
        stderr(&out)
    );
    assert!(b.amphi(&["kill", &b.id, "9"]).status.success());
    assert!(common::wait_for(|| b
        .state()
        .is_some_and(|s| s["status"] == "stopped")));
    let out = update(&b, &rules.to_string());
    assert_fails_naming(&out, &["stopped"]);
    let out = b.amphi(&["delete", &b.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_leftovers(&b);
}

#[test]
fn systemd_cgroup_odd_paths_fail_clearly() {
    for (path, what) in [
        ("a:b", "slice:prefix:name"),
        ("::::", "slice:prefix:name"),
        ("::", "name"),
        ("x.slice:../../etc:c", ".."),
        ("/abs/path", "slice:prefix:name"),
        ("foo--bar.slice:p:n", "--"),
        ("user.slice:a:b\nc", "must not contain"),
        ("system.slice:amphi:c1", "systemd is not running"),
    ] {
        let mut b = Bundle::new("sdodd", &["true"]);
        b.config["linux"]["cgroupsPath"] = json!(path);
        b.write_config();
        let dir = b.dir.to_string_lossy().into_owned();
        let out = b.amphi(&["--systemd-cgroup", "create", "--bundle", &dir, &b.id]);
        assert_fails_naming(&out, &[what]);
        assert!(b.state().is_none(), "{path:?}: a container is left");
        assert_no_leftovers(&b);
        // Nothing was made for the odd path either.
        let made = common::cgroup_dirs_of("/abs/path");
        assert!(made.is_empty(), "{path:?}: cgroups created: {made:?}");
    }
}

/// A copy of the binary that another user can run, in its own 0755 temporary directory.
fn private_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("amphi-adv-bin-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = common::install_binaries(dir.path());
    (dir, bin)
}

#[test]
fn relative_xdg_runtime_dir_is_not_used_for_state() {
    let b = Bundle::new("xdgrel", &["true"]);
    let (_bin_dir, bin) = private_copy();
    let cwd = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(cwd.path(), Some(65534), Some(65534)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .args(["list"])
        .current_dir(cwd.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("XDG_RUNTIME_DIR", "rel")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_fails_naming(&out, &["XDG_RUNTIME_DIR", "absolute"]);
    let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "created in the cwd: {left:?}");
    drop(b);
}

/// Asserts that process `pid`'s image cannot be opened for writing through `/proc/<pid>/exe`
/// (a read-only file system).
#[track_caller]
fn assert_exe_read_only(pid: i64) {
    let exe = format!("/proc/{pid}/exe");
    let e = std::fs::OpenOptions::new()
        .append(true)
        .open(&exe)
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{exe}: {e}");
}

#[test]
fn exe_mark_from_the_caller_does_not_skip_the_protection() {
    for value in ["1", "7", ""] {
        // amphi-full run directly from its writable file refuses a mark it did not set.
        let b = Bundle::new("exemark", &["true"]);
        b.write_config();
        let dir = b.dir.to_string_lossy().into_owned();
        let out = Command::new(common::amphi_full_bin())
            .arg("--root")
            .arg(&b.root)
            .args(["create", "--bundle", &dir, &b.id])
            .env("_AMPHI_EXE_PROTECTED", value)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_fails_naming(&out, &["_AMPHI_EXE_PROTECTED", "CVE-2019-5736"]);
        assert_no_leftovers(&b);
        // The front drops the caller's mark and runs amphi-full from a read-only image anyway.
        let b = Bundle::new("exemark", &["sleep", "1000"]);
        b.write_config();
        let dir = b.dir.to_string_lossy().into_owned();
        // stderr through a file: the container's init inherits it and keeps it open.
        let err_path = b.dir.join(".exemark-err");
        let status = b
            .cmd(&["create", "--bundle", &dir, &b.id])
            .env("_AMPHI_EXE_PROTECTED", value)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .status()
            .unwrap();
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        assert!(status.success(), "{value:?}: {err}");
        let pid = b.state().unwrap()["pid"].as_i64().unwrap();
        assert_exe_read_only(pid);
        // The image's initial environment (/proc/<pid>/environ of the waiting init, which runs
        // amphi-full) holds the front's own mark only, not the caller's.
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let marks: Vec<String> = environ
            .split(|c| *c == 0)
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .filter(|e| e.starts_with("_AMPHI_EXE_PROTECTED="))
            .collect();
        assert_eq!(marks, ["_AMPHI_EXE_PROTECTED=1"], "{value:?}");
    }
}

/// Run through a symlink to a private copy; the copy is then replaced (a rebuild) while the
/// container waits for `start`: the container's pid 1 runs a read-only image, and the new binary
/// drives the container to its end.
#[test]
fn exe_through_a_symlink_then_replaced_binary() {
    let b = Bundle::new("exelink", &["sleep", "1000"]);
    b.write_config();
    let (bin_dir, bin) = private_copy();
    let link = bin_dir.path().join("link");
    std::os::unix::fs::symlink(&bin, &link).unwrap();
    let dir = b.dir.to_string_lossy().into_owned();
    let mut c = Command::new(&link);
    c.arg("--root").arg(&b.root);
    let out = c
        .args(["create", "--bundle", &dir, &b.id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(out.success());
    let pid = b.state().unwrap()["pid"].as_i64().unwrap();
    assert_exe_read_only(pid);
    // Replace both files as a rebuild does (new inodes, renamed over the old ones).
    for (src, name) in [
        (amphi_bin(), "amphi"),
        (common::amphi_full_bin(), "amphi-full"),
    ] {
        let tmp = bin_dir.path().join(format!("{name}.new"));
        std::fs::copy(src, &tmp).unwrap();
        std::fs::rename(&tmp, bin_dir.path().join(name)).unwrap();
    }
    let run = |args: &[&str]| {
        Command::new(&bin)
            .arg("--root")
            .arg(&b.root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let out = run(&["exec", &b.id, "echo", "hi"]);
    assert_eq!(common::stdout(&out).trim(), "hi", "{}", stderr(&out));
    let out = run(&["delete", "--force", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert_no_leftovers(&b);
}

#[test]
fn twenty_parallel_creates() {
    let bundles: Vec<Bundle> = (0..20)
        .map(|_| Bundle::new("par", &["sleep", "1000"]))
        .collect();
    for b in &bundles {
        b.write_config();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = bundles
            .iter()
            .map(|b| {
                s.spawn(move || {
                    let dir = b.dir.to_string_lossy().into_owned();
                    b.amphi(&["create", "--bundle", &dir, &b.id])
                })
            })
            .collect();
        for (h, b) in handles.into_iter().zip(&bundles) {
            let out = h.join().unwrap();
            assert!(out.status.success(), "{}: {}", b.id, stderr(&out));
        }
    });
    for b in &bundles {
        let st = b.state().unwrap();
        assert_eq!(st["status"], "created", "{}", b.id);
        let pid = st["pid"].as_i64().unwrap();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_ne!(
            exe,
            Path::new(amphi_bin()),
            "{}: init runs the host binary",
            b.id
        );
    }
    std::thread::scope(|s| {
        for b in &bundles {
            s.spawn(move || {
                let out = b.amphi(&["delete", "--force", &b.id]);
                assert!(out.status.success(), "{}: {}", b.id, stderr(&out));
            });
        }
    });
    for b in &bundles {
        assert_no_leftovers(b);
    }
}
