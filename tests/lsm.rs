//! AppArmor and SELinux labels on a host that has neither LSM (this one: no
//! /sys/kernel/security/apparmor, no selinuxfs): a profile or label is never dropped silently.
//! `create`, `run` and `exec` refuse it with an error naming the field and saying the LSM is not
//! enabled, and leave nothing behind; empty values mean "none"; `features` tells what amphi
//! implements and, in annotations, what this host has. The enabled path is unit-tested in
//! src/security/lsm.rs.

mod common;

use std::process::Output;

use common::{assert_no_leftovers, stderr, stdout, Bundle};
use serde_json::{json, Value};

const PROFILE: &str = "docker-default";
const PROCESS_LABEL: &str = "system_u:system_r:container_t:s0:c1,c2";
const MOUNT_LABEL: &str = "system_u:object_r:container_file_t:s0:c1,c2";

/// The host checks of runc (AppArmor) and go-selinux (SELinux), made here independently of amphi.
fn host_has_apparmor() -> bool {
    std::path::Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read("/sys/module/apparmor/parameters/enabled")
            .map(|b| b.first() == Some(&b'Y'))
            .unwrap_or(false)
}

fn host_has_selinux() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.contains(" - selinuxfs ")))
        .unwrap_or(false)
}

/// These tests are about the disabled path; on a host with the LSM they would test something else.
fn disabled_host() -> bool {
    if host_has_apparmor() || host_has_selinux() {
        eprintln!("this host has AppArmor or SELinux: the disabled-path tests do not apply");
        return false;
    }
    true
}

/// Asserts a refused `create`/`run`: exit 1, one line naming each of `needles`, no state, nothing
/// left behind.
#[track_caller]
fn assert_refused(b: &Bundle, out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "accepted or wrong status: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err:?}");
    for n in needles {
        assert!(err.contains(n), "error does not say {n:?}: {err}");
    }
    assert!(stdout(out).is_empty(), "the workload ran: {}", stdout(out));
    assert!(b.state().is_none(), "a container was recorded");
    assert_no_leftovers(b);
}

#[test]
fn create_refuses_an_apparmor_profile() {
    if !disabled_host() {
        return;
    }
    let mut b = Bundle::new("lsm-aa", &["echo", "workload-ran"]);
    b.config["process"]["apparmorProfile"] = json!(PROFILE);
    let out = b.create();
    assert_refused(
        &b,
        &out,
        &[
            "process.apparmorProfile",
            "apparmor failed to apply profile",
            PROFILE,
            "not enabled",
        ],
    );
    // `run` goes through the same check: the workload never runs.
    let out = b.run();
    assert_refused(&b, &out, &["process.apparmorProfile", "not enabled"]);
}

#[test]
fn create_refuses_a_selinux_process_label() {
    if !disabled_host() {
        return;
    }
    let mut b = Bundle::new("lsm-se", &["echo", "workload-ran"]);
    b.config["process"]["selinuxLabel"] = json!(PROCESS_LABEL);
    let out = b.create();
    assert_refused(
        &b,
        &out,
        &[
            "process.selinuxLabel",
            "selinux is disabled or not supported",
        ],
    );
    let out = b.run();
    assert_refused(&b, &out, &["process.selinuxLabel"]);
}

#[test]
fn create_refuses_a_mount_label() {
    if !disabled_host() {
        return;
    }
    let mut b = Bundle::new("lsm-ml", &["echo", "workload-ran"]);
    b.config["linux"]["mountLabel"] = json!(MOUNT_LABEL);
    let out = b.create();
    assert_refused(
        &b,
        &out,
        &["linux.mountLabel", "selinux is disabled or not supported"],
    );
}

/// A Wasm container (its guest would run in amphi's own process) is refused the same way.
#[test]
fn create_refuses_labels_for_a_wasm_container() {
    if !disabled_host() {
        return;
    }
    let mut b = Bundle::new("lsm-wasm", &["/tool.wat"]);
    std::fs::write(b.rootfs().join("tool.wat"), include_str!("wasm/tool.wat")).unwrap();
    b.config["annotations"] = json!({"run.oci.handler": "wasm"});
    b.config["process"]["apparmorProfile"] = json!(PROFILE);
    let out = b.create();
    assert_refused(&b, &out, &["process.apparmorProfile", "not enabled"]);
    b.config["process"]["apparmorProfile"] = json!("");
    b.config["process"]["selinuxLabel"] = json!(PROCESS_LABEL);
    let out = b.create();
    assert_refused(&b, &out, &["process.selinuxLabel"]);
}

/// Empty strings mean "no label" (engines send them): the container runs.
#[test]
fn empty_labels_are_no_labels() {
    let mut b = Bundle::new("lsm-empty", &["echo", "workload-ran"]);
    b.config["process"]["apparmorProfile"] = json!("");
    b.config["process"]["selinuxLabel"] = json!("");
    b.config["linux"]["mountLabel"] = json!("");
    let out = b.run();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "workload-ran\n");
    // `run` deletes the container once its process exits.
    assert!(b.state().is_none());
    assert_no_leftovers(&b);
}

/// The host pids of the container's processes (`ps --format json`).
fn pids(b: &Bundle) -> Vec<i64> {
    let out = b.amphi(&["ps", "--format", "json", &b.id]);
    assert!(out.status.success(), "ps: {}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect()
}

/// Asserts a refused `exec`: exit 255 (runc's "could not start"), naming each of `needles`, and
/// the command never ran.
#[track_caller]
fn assert_exec_refused(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(255), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "error does not say {n:?}: {err}");
    }
    assert!(!stdout(out).contains("exec-ran"), "{}", stdout(out));
}

#[test]
fn exec_refuses_profiles_and_labels() {
    if !disabled_host() {
        return;
    }
    let b = Bundle::new("lsm-exec", &["sleep", "1000"]);
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let before = pids(&b);
    assert_eq!(before.len(), 1, "{before:?}");

    let out = b.amphi(&["exec", "--apparmor", PROFILE, &b.id, "echo", "exec-ran"]);
    assert_exec_refused(
        &out,
        &[
            "--apparmor",
            "apparmor failed to apply profile",
            "not enabled",
        ],
    );
    let out = b.amphi(&[
        "exec",
        "--process-label",
        PROCESS_LABEL,
        &b.id,
        "echo",
        "exec-ran",
    ]);
    assert_exec_refused(
        &out,
        &["--process-label", "selinux is disabled or not supported"],
    );

    // A process.json (what containerd sends) with the container's profile or label.
    let base = json!({"cwd": "/", "args": ["echo", "exec-ran"], "user": {"uid": 0, "gid": 0},
                      "env": ["PATH=/bin:/sbin:/usr/bin"]});
    for (key, value, field) in [
        ("apparmorProfile", PROFILE, "process.apparmorProfile"),
        ("selinuxLabel", PROCESS_LABEL, "process.selinuxLabel"),
    ] {
        let mut p = base.clone();
        p[key] = json!(value);
        let path = b.dir.join(format!("process-{key}.json"));
        std::fs::write(&path, p.to_string()).unwrap();
        let out = b.amphi(&["exec", "--process", path.to_str().unwrap(), &b.id]);
        assert_exec_refused(&out, &[field, "not"]);
        // Detached, the same.
        let out = b.amphi(&["exec", "-d", "--process", path.to_str().unwrap(), &b.id]);
        assert_exec_refused(&out, &[field]);
    }

    // Nothing was started in the container, which is unaffected; empty values are no labels.
    assert_eq!(pids(&b), before);
    assert_eq!(b.state().unwrap()["status"], "running");
    let out = b.amphi(&[
        "exec",
        "--apparmor",
        "",
        "--process-label",
        "",
        &b.id,
        "echo",
        "exec-ran",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "exec-ran\n");

    let out = b.amphi(&["delete", "--force", &b.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_leftovers(&b);
}

#[test]
fn features_reports_support_and_the_host() {
    let b = Bundle::new("lsm-features", &["true"]);
    let out = b.amphi(&["features"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let f: Value = serde_json::from_slice(&out.stdout).expect("features is JSON");
    // features-linux.md: the runtime's implementation status, irrelevant to the host (as runc).
    assert_eq!(f["linux"]["apparmor"], json!({"enabled": true}), "{f}");
    assert_eq!(f["linux"]["selinux"], json!({"enabled": true}), "{f}");
    let state = |on: bool| if on { "enabled" } else { "disabled" };
    let a = &f["annotations"];
    assert_eq!(
        a["org.opencontainers.runtime-spec.features.amphi.host.apparmor"],
        state(host_has_apparmor()),
        "{a}"
    );
    assert_eq!(
        a["org.opencontainers.runtime-spec.features.amphi.host.selinux"],
        state(host_has_selinux()),
        "{a}"
    );
}
