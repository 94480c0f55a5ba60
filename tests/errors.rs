//! Bad input: each is refused with a non-zero exit and a one-line error naming the field, and
//! leaves nothing behind (state dir, cgroup, process, mount).

mod common;

use std::process::Output;

use common::{assert_no_leftovers, cgroup_dirs_of, stderr, Bundle};
use serde_json::{json, Value};

/// Asserts a failure with a one-line error that contains each of `names`, and no leftovers.
fn assert_rejected(b: &Bundle, id: &str, out: &Output, names: &[&str]) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "{id:?} accepted; expected an error naming {names:?}"
    );
    assert_eq!(out.status.code(), Some(1), "exit status: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err:?}");
    for n in names {
        assert!(err.contains(n), "error does not name {n:?}: {err}");
    }
    assert_no_leftovers(b);
}

/// `create` of `b` with its config as is (written first), expected to fail naming `names`.
fn create_rejected(b: &Bundle, names: &[&str]) {
    let out = b.create();
    assert_rejected(b, &b.id, &out, names);
    assert!(b.state().is_none());
}

/// `create` without rewriting config.json.
fn create_raw(b: &Bundle, id: &str) -> Output {
    b.amphi(&["create", "--bundle", b.dir.to_str().unwrap(), id])
}

fn push(v: &mut Value, item: Value) -> usize {
    let a = v.as_array_mut().expect("an array");
    a.push(item);
    a.len() - 1
}

#[test]
fn missing_config_json() {
    let b = Bundle::new("e-noconfig", &["true"]);
    std::fs::remove_file(b.dir.join("config.json")).unwrap();
    let out = create_raw(&b, &b.id);
    assert_rejected(&b, &b.id, &out, &["config.json"]);
}

#[test]
fn malformed_config_json() {
    let b = Bundle::new("e-badjson", &["true"]);
    std::fs::write(
        b.dir.join("config.json"),
        "{\"ociVersion\": \"1.0.2\",\n  oops",
    )
    .unwrap();
    let out = create_raw(&b, &b.id);
    assert_rejected(&b, &b.id, &out, &["config.json"]);
    // A field of the wrong type is malformed too.
    let mut v = b.config.clone();
    v["process"]["args"] = json!("sh");
    std::fs::write(b.dir.join("config.json"), v.to_string()).unwrap();
    let out = create_raw(&b, &b.id);
    assert_rejected(&b, &b.id, &out, &["config.json", "process.args"]);
}

#[test]
fn missing_rootfs() {
    let mut b = Bundle::new("e-norootfs", &["true"]);
    b.config["root"]["path"] = json!("no-such-rootfs");
    create_rejected(&b, &["root.path", "no-such-rootfs"]);
    // A rootfs that is a file, not a directory.
    std::fs::write(b.dir.join("afile"), "x").unwrap();
    b.config["root"]["path"] = json!("afile");
    create_rejected(&b, &["root.path"]);
}

#[test]
fn oci_version_major_2_rejected_1_3_accepted() {
    let mut b = Bundle::new("e-version", &["sh", "-c", "echo ok"]);
    b.config["ociVersion"] = json!("2.0.0");
    create_rejected(&b, &["ociVersion", "2.0.0"]);
    for v in ["1.3.0", "1.0.0"] {
        b.config["ociVersion"] = json!(v);
        let out = b.run();
        assert_eq!(
            out.status.code(),
            Some(0),
            "ociVersion {v}: {}",
            stderr(&out)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    }
}

#[test]
fn empty_args() {
    let mut b = Bundle::new("e-noargs", &[]);
    b.config["process"]["args"] = json!([]);
    create_rejected(&b, &["process.args"]);
}

#[test]
fn relative_cwd() {
    let mut b = Bundle::new("e-cwd", &["true"]);
    b.config["process"]["cwd"] = json!("tmp");
    create_rejected(&b, &["process.cwd"]);
}

#[test]
fn env_entry_without_equals() {
    let mut b = Bundle::new("e-env", &["true"]);
    b.config["process"]["env"] = json!(["PATH=/bin", "TERM=xterm", "NOEQUALS"]);
    create_rejected(&b, &["process.env[2]", "NOEQUALS"]);
}

#[test]
fn mount_without_type() {
    let mut b = Bundle::new("e-mounttype", &["true"]);
    let i = push(
        &mut b.config["mounts"],
        json!({"destination": "/mnt", "source": "tmpfs"}),
    );
    create_rejected(&b, &[&format!("mounts[{i}].type")]);
}

#[test]
fn bind_mount_source_missing_is_cleaned_up() {
    let mut b = Bundle::new("e-bindsrc", &["true"]);
    let missing = b.dir.join("no-such-source");
    let i = push(
        &mut b.config["mounts"],
        json!({"destination": "/mnt", "type": "bind", "source": missing, "options": ["rbind"]}),
    );
    // Fails during create, after the cgroup was made and the container's processes forked.
    create_rejected(&b, &[&format!("mounts[{i}]"), "no-such-source"]);
    // And the same bundle is fine once fixed.
    std::fs::create_dir(&missing).unwrap();
    let out = b.run();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn pid_file_in_missing_directory_is_cleaned_up() {
    let b = Bundle::new("e-pidfile", &["sleep", "1000"]);
    b.write_config();
    let pid_file = b.dir.join("no-such-dir/init.pid");
    let out = b.amphi(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
    ]);
    // Fails after the init process exists: it must be gone too.
    assert_rejected(&b, &b.id, &out, &["pid-file"]);
}

#[test]
fn executable_not_in_rootfs() {
    let b = Bundle::new("e-noexe", &["no-such-exe-xyz"]);
    create_rejected(&b, &["no-such-exe-xyz"]);
}

#[test]
fn duplicate_namespace_types() {
    let mut b = Bundle::new("e-dupns", &["true"]);
    push(&mut b.config["linux"]["namespaces"], json!({"type": "pid"}));
    create_rejected(&b, &["linux.namespaces", "pid"]);
}

#[test]
fn hostname_without_uts_namespace() {
    let mut b = Bundle::new("e-hostname", &["true"]);
    b.config["hostname"] = json!("box");
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "uts");
    create_rejected(&b, &["hostname", "UTS"]);
}

#[test]
fn seccomp_present() {
    // A valid profile is applied: mkdir fails with EPERM inside, the rest works.
    let mut b = Bundle::new("e-seccomp", &["sh", "-c", "mkdir /tmp/d || echo refused"]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    });
    let out = b.run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("refused"),
        "mkdir was not refused: {out:?}"
    );
    // An unknown action is refused at create, naming the field.
    let mut b = Bundle::new("e-seccomp-bad", &["true"]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOPE"}]
    });
    create_rejected(&b, &["linux.seccomp.syscalls[0].action", "SCMP_ACT_NOPE"]);
}

#[test]
fn apparmor_profile_present() {
    let mut b = Bundle::new("e-apparmor", &["true"]);
    b.config["process"]["apparmorProfile"] = json!("docker-default");
    create_rejected(&b, &["process.apparmorProfile"]);
}

#[test]
fn cgroups_path_with_dotdot() {
    let mut b = Bundle::new("e-cgdotdot", &["true"]);
    let escape = format!("{}-escape", b.id);
    b.config["linux"]["cgroupsPath"] = json!(format!("/amphi-test/../{escape}"));
    create_rejected(&b, &["linux.cgroupsPath", ".."]);
    assert!(
        cgroup_dirs_of(&escape).is_empty(),
        "escaped cgroup made: {:?}",
        cgroup_dirs_of(&escape)
    );
}

#[test]
fn bad_ids() {
    let b = Bundle::new("e-ids", &["sleep", "1000"]);
    b.write_config();
    let outside = b.root.parent().unwrap().join("x");
    for id in ["../x", "a/b", "", "a b", "a\u{1}b", "a\nb", "..", "."] {
        let out = create_raw(&b, id);
        assert_rejected(&b, id, &out, &["id"]);
        assert!(!outside.exists(), "create {id:?} wrote outside --root");
        // The other commands refuse them too, and never touch the path.
        for cmd in [
            vec!["state", id],
            vec!["start", id],
            vec!["kill", id, "9"],
            vec!["delete", id],
        ] {
            let out = b.amphi(&cmd);
            assert!(!out.status.success(), "{cmd:?} succeeded");
        }
        assert_no_leftovers(&b);
    }
}

#[test]
fn second_create_with_same_id_leaves_first_alone() {
    let mut b = Bundle::new("e-dupid", &["sleep", "1000"]);
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let before = b.state().unwrap();
    let pid = before["pid"].as_i64().unwrap();
    let cgroups = b.cgroup_dirs();
    assert!(!cgroups.is_empty());

    let out = create_raw(&b, &b.id);
    let err = stderr(&out);
    assert!(!out.status.success(), "second create succeeded");
    assert_eq!(err.trim().lines().count(), 1, "{err:?}");
    assert!(
        err.contains(&b.id) && err.contains("exists"),
        "unclear error: {err}"
    );
    // Even with a broken config the id check comes first and changes nothing.
    b.config["process"]["args"] = json!([]);
    let out = b.create();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));
    let run = b.amphi(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id]);
    assert!(!run.status.success(), "run with a taken id succeeded");

    assert_eq!(b.state().unwrap(), before, "first container disturbed");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(b.cgroup_dirs(), cgroups);
    for d in &cgroups {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "{d:?}: {procs}"
        );
    }
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let st = b.state().unwrap();
    assert_eq!(st["status"], "running");
    assert_eq!(st["pid"], pid);
}

/// Engines classify a runtime's error by runc's wording: podman 4.3 reports "executable file not found
/// in" as "command not found" (exit status 127) and "permission denied" as exit status 126 (libpod
/// oci_util.go). Found by tests/e2e/podman.sh (issue 7).
#[test]
fn missing_or_non_executable_command_uses_runc_wording() {
    let b = Bundle::new("e-runcword", &["no-such-cmd-abc"]);
    create_rejected(
        &b,
        &["no-such-cmd-abc", "executable file not found in $PATH"],
    );
    let b = Bundle::new("e-noexecbit", &["/etc/passwd"]);
    create_rejected(&b, &["/etc/passwd", "permission denied"]);
}
