//! The command line as engines use it: version, features, spec, list, state, global log flags,
//! signal names, the engines' tolerated no-ops (`kill --all` on a stopped container, `delete --force`
//! of a missing id), option order, relative paths, and concurrent commands on one container.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{amphi_bin, stderr, stdout, wait_for, Bundle};
use serde_json::{json, Value};

/// `amphi <args>` without `--root` (for commands that need no state).
fn amphi_plain(args: &[&str]) -> Output {
    Command::new(amphi_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `amphi --root <root> <args>` with `cwd` as the working directory; stdout and stderr go
/// through files (a container created by the command inherits them).
fn amphi_in(b: &Bundle, cwd: &Path, args: &[&str]) -> Output {
    output_through_files(b.cmd(args).current_dir(cwd))
}

/// Runs `cmd` with stdout and stderr through files (a container created by the command inherits
/// them and may keep them open) and returns what it wrote.
fn output_through_files(cmd: &mut Command) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("out");
    let err_path = tmp.path().join("err");
    let status = cmd
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .unwrap();
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    }
}

/// Whether `pid` exists (and is not a zombie).
fn alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Deletes (with `--force`) container `id` under `b`'s root when dropped: for containers a test
/// creates in a root other than their own bundle's.
struct ForceDelete<'a>(&'a Bundle, String);

impl Drop for ForceDelete<'_> {
    fn drop(&mut self) {
        let out = self.0.amphi(&["state", &self.1]);
        let pid = serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|s| s["pid"].as_i64())
            .unwrap_or(0);
        let _ = self.0.amphi(&["delete", "--force", &self.1]);
        if pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Creates `b` and asserts success.
fn create_ok(b: &Bundle) {
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
}

/// Creates and starts `b` and asserts it runs.
fn start_ok(b: &Bundle) -> i64 {
    create_ok(b);
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let st = b.state().expect("state after start");
    assert_eq!(st["status"], "running", "{st}");
    st["pid"].as_i64().unwrap()
}

/// The keys runc's `state` and `list --format json` print (annotations only when non-empty).
fn runc_state_keys(with_annotations: bool) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = [
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
        "owner",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if with_annotations {
        keys.insert("annotations".into());
    }
    keys
}

fn keys_of(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

#[test]
fn version_long_and_short() {
    for flag in ["--version", "-v"] {
        let out = amphi_plain(&[flag]);
        assert!(out.status.success(), "{flag}: {}", stderr(&out));
        let text = stdout(&out);
        let first = text.lines().next().unwrap_or_default();
        assert!(first.starts_with("amphi version "), "{flag}: {text}");
        assert!(
            first.len() > "amphi version ".len(),
            "{flag}: no version number: {text}"
        );
        let spec = text
            .lines()
            .find_map(|l| l.strip_prefix("spec: "))
            .unwrap_or_else(|| panic!("{flag}: no `spec:` line: {text}"));
        assert!(spec.starts_with("1."), "{flag}: spec version {spec:?}");
    }
}

#[test]
fn features_is_valid_json_with_versions_and_namespaces() {
    let out = amphi_plain(&["features"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let f: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("features is not JSON ({e}): {}", stdout(&out)));
    let min = f["ociVersionMin"].as_str().expect("ociVersionMin");
    let max = f["ociVersionMax"].as_str().expect("ociVersionMax");
    assert!(min.starts_with("1."), "{min}");
    assert!(max.starts_with("1."), "{max}");
    // The maximum is the spec version the binary reports.
    let version = stdout(&amphi_plain(&["--version"]));
    assert!(
        version.lines().any(|l| l == format!("spec: {max}")),
        "ociVersionMax {max} vs --version: {version}"
    );
    let ns: BTreeSet<&str> = f["linux"]["namespaces"]
        .as_array()
        .expect("linux.namespaces")
        .iter()
        .map(|v| v.as_str().expect("namespace name"))
        .collect();
    for want in ["mount", "pid", "uts", "ipc", "network", "user", "cgroup"] {
        assert!(ns.contains(want), "{want} missing from {ns:?}");
    }
    assert_eq!(f["linux"]["seccomp"]["enabled"], true, "{f}");
}

#[test]
fn spec_is_runnable_and_not_overwritten() {
    let b = Bundle::new("spec", &["true"]);
    let cfg = b.dir.join("config.json");
    std::fs::remove_file(&cfg).unwrap();
    let dir = b.dir.to_str().unwrap();
    let out = b.amphi(&["spec", "--bundle", dir]);
    assert!(out.status.success(), "spec: {}", stderr(&out));
    let text = std::fs::read_to_string(&cfg).unwrap();
    let mut config: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["root"]["path"], "rootfs");
    assert_eq!(config["process"]["terminal"], true, "runc's default");
    assert!(config["linux"]["namespaces"].is_array());
    assert_eq!(
        config["linux"]["resources"]["devices"],
        json!([{"allow": false, "access": "rwm"}]),
        "runc's template denies all devices"
    );

    // Refuses to overwrite, and leaves the file alone.
    let out = b.amphi(&["spec", "--bundle", dir]);
    assert!(!out.status.success(), "spec overwrote config.json");
    assert!(
        stderr(&out).contains("exists"),
        "unclear error: {}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text);

    // Usable as is but for the terminal (and this test's cgroup, for cleanup).
    config["process"]["terminal"] = json!(false);
    config["linux"]["cgroupsPath"] = json!(b.cgroup);
    std::fs::write(&cfg, serde_json::to_string(&config).unwrap()).unwrap();
    // spec's default command is `sh`; with stdin at /dev/null it reads EOF and exits 0.
    let out = b.amphi(&["run", "--bundle", dir, &b.id]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "run of spec's config: {}",
        stderr(&out)
    );
    assert!(b.state().is_none(), "run left the container behind");
    assert!(b.cgroup_dirs().is_empty());
}

#[test]
fn spec_rootless_maps_the_caller() {
    let tmp = tempfile::tempdir().unwrap();
    let out = amphi_plain(&[
        "spec",
        "--rootless",
        "--bundle",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "spec --rootless: {}", stderr(&out));
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("config.json")).unwrap())
            .unwrap();
    let ns: Vec<&str> = config["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(ns.contains(&"user"), "no user namespace: {ns:?}");
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    for (key, host) in [("uidMappings", uid), ("gidMappings", gid)] {
        let maps = config["linux"][key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} missing: {}", config["linux"]));
        assert!(
            maps.iter().any(|m| m["hostID"] == host
                && m["containerID"] == 0
                && m["size"].as_u64() >= Some(1)),
            "{key} does not map the caller ({host}) to 0: {maps:?}"
        );
    }
    // Without --rootless: no user namespace.
    let tmp2 = tempfile::tempdir().unwrap();
    let out = amphi_plain(&["spec", "--bundle", tmp2.path().to_str().unwrap()]);
    assert!(out.status.success());
    let plain: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp2.path().join("config.json")).unwrap())
            .unwrap();
    assert!(
        !plain["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "user"),
        "plain spec has a user namespace"
    );
}

#[test]
fn list_table_json_and_quiet() {
    let b = Bundle::new("list-a", &["sleep", "1000"]);
    let b2 = Bundle::new("list-b", &["sleep", "1000"]);
    // Empty root: header only (or nothing), no error.
    let out = b.amphi(&["list"]);
    assert!(out.status.success(), "list on empty root: {}", stderr(&out));
    assert!(
        stdout(&out).lines().count() <= 1,
        "rows on an empty root: {}",
        stdout(&out)
    );

    create_ok(&b);
    // b2's container lives in b's root (its own bundle and cgroup).
    b2.write_config();
    let out = b.amphi(&["create", "--bundle", b2.dir.to_str().unwrap(), &b2.id]);
    let _guard = ForceDelete(&b, b2.id.clone());
    assert!(out.status.success(), "create 2: {}", stderr(&out));
    let out = b.amphi(&["start", &b2.id]);
    assert!(out.status.success(), "start 2: {}", stderr(&out));

    let out = b.amphi(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "{text}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    for (bb, status) in [(&b, "created"), (&b2, "running")] {
        let row = rows
            .iter()
            .find(|r| r[0] == bb.id)
            .unwrap_or_else(|| panic!("{} not listed: {text}", bb.id));
        assert_eq!(row.len(), 6, "{row:?}");
        assert!(row[1].parse::<i64>().unwrap() > 0, "{row:?}");
        assert_eq!(row[2], status, "{row:?}");
        assert_eq!(row[3], bb.dir.to_str().unwrap(), "{row:?}");
        assert!(humantime::parse_rfc3339(row[4]).is_ok(), "{row:?}");
        assert_eq!(row[5], "root", "{row:?}");
    }

    let out = b.amphi(&["list", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let arr: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("list json ({e}): {}", stdout(&out)));
    let arr = arr.as_array().expect("a JSON array");
    assert_eq!(arr.len(), 2, "{arr:?}");
    for s in arr {
        assert_eq!(keys_of(s), runc_state_keys(false), "{s}");
        let st = if s["id"] == b.id.as_str() {
            "created"
        } else {
            assert_eq!(s["id"], b2.id.as_str());
            "running"
        };
        assert_eq!(s["status"], st, "{s}");
        assert!(s["pid"].as_i64().unwrap() > 0, "{s}");
    }

    let out = b.amphi(&["list", "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut ids: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    ids.sort();
    let mut want = vec![b.id.clone(), b2.id.clone()];
    want.sort();
    assert_eq!(ids, want);
}

#[test]
fn state_has_exactly_runcs_keys_and_types() {
    let b = Bundle::new("statekeys", &["sleep", "1000"]);
    create_ok(&b);
    let out = b.amphi(&["state", &b.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys_of(&st), runc_state_keys(false), "{st}");
    assert_eq!(st["ociVersion"], b.config["ociVersion"]);
    assert_eq!(st["id"], b.id.as_str());
    let pid = st["pid"].as_i64().expect("pid is a number");
    assert!(pid > 0 && alive(pid), "{st}");
    assert_eq!(st["status"], "created");
    assert_eq!(st["bundle"], b.dir.to_str().unwrap());
    assert_eq!(st["rootfs"], b.rootfs().to_str().unwrap());
    let created = st["created"].as_str().expect("created is a string");
    humantime::parse_rfc3339(created)
        .unwrap_or_else(|e| panic!("created {created:?} is not RFC 3339: {e}"));
    assert!(st["owner"].is_string(), "{st}");

    // With annotations in the config, they appear as an object of strings.
    let mut b2 = Bundle::new("stateann", &["sleep", "1000"]);
    b2.config["annotations"] = json!({"org.example.key": "value", "other": "x"});
    create_ok(&b2);
    let st = b2.state().unwrap();
    assert_eq!(keys_of(&st), runc_state_keys(true), "{st}");
    assert_eq!(
        st["annotations"],
        json!({"org.example.key": "value", "other": "x"})
    );

    // Stopped: pid 0, status stopped, same keys.
    let out = b2.amphi(&["kill", &b2.id, "KILL"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_for(|| b2.state().unwrap()["status"] == "stopped"));
    let st = b2.state().unwrap();
    assert_eq!(st["pid"], 0);
    assert_eq!(keys_of(&st), runc_state_keys(true), "{st}");
}

#[test]
fn options_after_the_id() {
    let b = Bundle::new("optorder", &["sleep", "1000"]);
    b.write_config();
    let pid_file = b.dir.join("after.pid");
    let out = b.amphi(&[
        "create",
        &b.id,
        "--bundle",
        b.dir.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "create ID --bundle: {}", stderr(&out));
    let st = b.state().unwrap();
    assert_eq!(st["status"], "created");
    assert_eq!(st["bundle"], b.dir.to_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        st["pid"].to_string()
    );
    let out = b.amphi(&["delete", &b.id, "--force"]);
    assert!(out.status.success(), "delete ID --force: {}", stderr(&out));
    assert!(b.state().is_none());
    assert!(b.cgroup_dirs().is_empty());
}

/// Every line of a `--log-format json` file: objects with string level, msg and time.
fn json_log_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l:?}"))
        })
        .collect();
    for v in &lines {
        assert!(v["level"].is_string(), "{v}");
        assert!(v["msg"].is_string(), "{v}");
        let time = v["time"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert!(humantime::parse_rfc3339(time).is_ok(), "{v}");
    }
    lines
}

#[test]
fn json_log_names_the_problem() {
    let mut b = Bundle::new("jsonlog", &["sleep", "1000"]);
    let log = b.dir.join("log.json");
    let log_s = log.to_str().unwrap();
    // A failing state of a missing id.
    let out = b.amphi(&[
        "--log",
        log_s,
        "--log-format",
        "json",
        "state",
        "no-such-container",
    ]);
    assert!(!out.status.success());
    let lines = json_log_lines(&log);
    let last = lines.last().expect("no log line written");
    assert_eq!(last["level"], "error", "{last}");
    let msg = last["msg"].as_str().unwrap();
    assert!(
        msg.contains("no-such-container") && msg.contains("does not exist"),
        "{msg}"
    );

    // podman's exact form, failing: the executable does not exist in the rootfs.
    b.config["process"]["args"] = json!(["no-such-binary-xyz"]);
    b.write_config();
    let pid_file = b.dir.join("pidfile");
    let podman_log = b.dir.join("oci-log");
    let out = b.amphi(&[
        "--log-format=json",
        "--log",
        podman_log.to_str().unwrap(),
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
    ]);
    assert!(
        !out.status.success(),
        "create of a missing binary succeeded"
    );
    let lines = json_log_lines(&podman_log);
    let last = lines.last().expect("no log line written");
    assert_eq!(last["level"], "error", "{last}");
    assert!(
        last["msg"].as_str().unwrap().contains("no-such-binary-xyz"),
        "msg does not name the executable: {last}"
    );
    assert!(!pid_file.exists());
    assert!(b.state().is_none());

    // podman's exact form, succeeding.
    b.config["process"]["args"] = json!(["sleep", "1000"]);
    b.write_config();
    let out = b.amphi(&[
        "--log-format=json",
        "--log",
        podman_log.to_str().unwrap(),
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
    ]);
    assert!(out.status.success(), "podman's create: {}", stderr(&out));
    let st = b.state().unwrap();
    assert_eq!(st["status"], "created");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        st["pid"].to_string()
    );
    // Whatever was logged is still JSON lines.
    json_log_lines(&podman_log);
}

#[test]
fn kill_signal_forms() {
    // A shell that records the catchable signals it gets in its rootfs.
    let mut b = Bundle::new(
        "sigforms",
        &[
            "sh",
            "-c",
            "trap 'echo TERM >> /tmp/sigs' TERM; trap 'echo USR1 >> /tmp/sigs' USR1; \
             touch /tmp/ready; while true; do sleep 0.05; done",
        ],
    );
    b.config["root"]["readonly"] = json!(false);
    start_ok(&b);
    let sigs = b.rootfs().join("tmp/sigs");
    assert!(wait_for(|| b.rootfs().join("tmp/ready").exists()));
    let mut want = String::new();
    for (form, name) in [
        ("sigterm", "TERM"),
        ("15", "TERM"),
        ("TERM", "TERM"),
        ("SIGUSR1", "USR1"),
        ("usr1", "USR1"),
    ] {
        let out = b.amphi(&["kill", &b.id, form]);
        assert!(out.status.success(), "kill {form}: {}", stderr(&out));
        want.push_str(name);
        want.push('\n');
        assert!(
            wait_for(|| std::fs::read_to_string(&sigs).unwrap_or_default() == want),
            "after kill {form}: {:?}",
            std::fs::read_to_string(&sigs)
        );
    }
    // No signal: SIGTERM, as runc.
    let out = b.amphi(&["kill", &b.id]);
    assert!(
        out.status.success(),
        "kill without signal: {}",
        stderr(&out)
    );
    want.push_str("TERM\n");
    assert!(
        wait_for(|| std::fs::read_to_string(&sigs).unwrap_or_default() == want),
        "after kill without a signal: {:?}",
        std::fs::read_to_string(&sigs)
    );
    // Unknown signals: an error naming it; the container keeps running.
    for bad in ["SIGNOPE", "nope", "999", ""] {
        let out = b.amphi(&["kill", &b.id, bad]);
        assert!(!out.status.success(), "kill {bad:?} succeeded");
        assert!(
            stderr(&out).contains("signal"),
            "kill {bad:?}: unclear error: {}",
            stderr(&out)
        );
    }
    assert_eq!(b.state().unwrap()["status"], "running");
    assert_eq!(std::fs::read_to_string(&sigs).unwrap(), want);

    // The KILL forms each stop a container.
    let k = Bundle::new("sigkill", &["sleep", "1000"]);
    for form in ["9", "KILL", "SIGKILL", "sigkill"] {
        let pid = start_ok(&k);
        let out = k.amphi(&["kill", &k.id, form]);
        assert!(out.status.success(), "kill {form}: {}", stderr(&out));
        assert!(
            wait_for(|| k.state().unwrap()["status"] == "stopped"),
            "kill {form} did not stop the container"
        );
        assert!(!alive(pid));
        let out = k.amphi(&["delete", &k.id]);
        assert!(out.status.success(), "delete: {}", stderr(&out));
    }
}

#[test]
fn engine_noops_on_gone_containers() {
    let b = Bundle::new("noops", &["true"]);
    let log = b.dir.join("log.json");
    let log_s = log.to_str().unwrap();
    start_ok_or_stopped(&b);
    assert!(wait_for(|| b.state().unwrap()["status"] == "stopped"));
    // containerd's shim form after the container exited.
    let out = b.amphi(&[
        "--log",
        log_s,
        "--log-format",
        "json",
        "kill",
        "--all",
        &b.id,
        "9",
    ]);
    assert!(
        out.status.success(),
        "kill --all of a stopped container: {}",
        stderr(&out)
    );
    assert_eq!(b.state().unwrap()["status"], "stopped");
    let out = b.amphi(&["--log", log_s, "--log-format", "json", "delete", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert!(b.cgroup_dirs().is_empty());
    // delete --force of ids that are gone or never existed.
    for id in [b.id.as_str(), "never-existed"] {
        let out = b.amphi(&[
            "--log",
            log_s,
            "--log-format",
            "json",
            "delete",
            "--force",
            id,
        ]);
        assert!(
            out.status.success(),
            "delete --force {id}: {}",
            stderr(&out)
        );
    }
    // Also under a root that does not exist at all.
    let out = amphi_plain(&[
        "--root",
        b.dir.join("no-such-root").to_str().unwrap(),
        "delete",
        "--force",
        "x",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Without --force, a missing id is an error.
    let out = b.amphi(&["delete", "never-existed"]);
    assert!(!out.status.success());
}

/// Creates and starts `b`, whose workload may exit at once.
fn start_ok_or_stopped(b: &Bundle) {
    create_ok(b);
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
}

#[test]
fn delete_running_without_force_fails_and_keeps_it() {
    let b = Bundle::new("delrun", &["sleep", "1000"]);
    let pid = start_ok(&b);
    let out = b.amphi(&["delete", &b.id]);
    assert!(!out.status.success(), "deleted a running container");
    let err = stderr(&out);
    assert!(
        err.contains(&b.id) && err.contains("running"),
        "unclear error: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let st = b.state().unwrap();
    assert_eq!(st["status"], "running");
    assert_eq!(st["pid"], pid);
    assert!(alive(pid));
    assert!(!b.cgroup_dirs().is_empty());
    let out = b.amphi(&["delete", "--force", &b.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_for(|| !alive(pid)));
    assert!(b.state().is_none());
    assert!(b.cgroup_dirs().is_empty());
}

#[test]
fn run_detached_with_relative_pid_file() {
    let b = Bundle::new("rund", &["sleep", "1000"]);
    b.write_config();
    let cwd = b.dir.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(cwd.join("pids")).unwrap();
    let bundle_rel = b.dir.file_name().unwrap().to_str().unwrap();
    let out = amphi_in(
        &b,
        &cwd,
        &[
            "run",
            "-d",
            "--bundle",
            bundle_rel,
            "--pid-file",
            "pids/init.pid",
            &b.id,
        ],
    );
    assert!(out.status.success(), "run -d: {}", stderr(&out));
    let st = b.state().expect("state after run -d");
    assert_eq!(st["status"], "running");
    assert_eq!(st["bundle"], b.dir.to_str().unwrap());
    let pid = st["pid"].as_i64().unwrap();
    assert!(alive(pid));
    let written = std::fs::read_to_string(cwd.join("pids/init.pid"))
        .expect("pid file not at <cwd>/pids/init.pid");
    assert_eq!(written, pid.to_string());

    // start of a running container fails and changes nothing.
    let out = b.amphi(&["start", &b.id]);
    assert!(!out.status.success(), "start of a running container");
    assert!(
        stderr(&out).contains("running"),
        "unclear error: {}",
        stderr(&out)
    );
    let st = b.state().unwrap();
    assert_eq!(st["status"], "running");
    assert_eq!(st["pid"], pid);
    assert!(alive(pid));
}

#[test]
fn concurrent_state_while_deleting() {
    let b = Bundle::new("concur", &["sleep", "1000"]);
    let pid = start_ok(&b);
    let deleted = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let mut readers = Vec::new();
        for _ in 0..8 {
            readers.push(s.spawn(|| {
                let mut ok = 0;
                let mut gone = 0;
                // Keep going until the container has been gone for a few rounds (bounded, in
                // case the delete never happens).
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while std::time::Instant::now() < deadline {
                    let out = b.amphi(&["state", &b.id]);
                    let err = stderr(&out);
                    assert!(!err.contains("panicked"), "state panicked: {err}");
                    if out.status.success() {
                        let st: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                            panic!("corrupt state JSON ({e}): {:?}", stdout(&out))
                        });
                        assert_eq!(keys_of(&st), runc_state_keys(false), "{st}");
                        assert_eq!(st["id"], b.id.as_str());
                        let status = st["status"].as_str().unwrap();
                        assert!(
                            status == "running" || status == "stopped",
                            "unexpected status {status}"
                        );
                        ok += 1;
                    } else {
                        assert!(err.contains("does not exist"), "state failed: {err}");
                        assert!(out.stdout.is_empty(), "{}", stdout(&out));
                        gone += 1;
                    }
                    if deleted.load(std::sync::atomic::Ordering::SeqCst) && gone >= 3 {
                        break;
                    }
                }
                (ok, gone)
            }));
        }
        // Let the readers get going, then delete.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let out = b.amphi(&["delete", "--force", &b.id]);
        deleted.store(true, std::sync::atomic::Ordering::SeqCst);
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.status.success(), "delete --force: {err}");
        let mut total_ok = 0;
        for r in readers {
            let (ok, gone) = r.join().expect("a reader failed");
            assert!(gone >= 1, "a reader never saw the container gone");
            total_ok += ok;
        }
        assert!(total_ok > 0, "no state succeeded before the delete");
    });
    assert!(!alive(pid), "init survived delete --force");
    assert!(b.state().is_none());
    assert!(!b.root.join(&b.id).exists(), "state dir left");
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
}

#[test]
fn delete_created_without_force() {
    // runc deletes a created (never started) container without --force, killing its init.
    let b = Bundle::new("delcreated", &["sleep", "1000"]);
    create_ok(&b);
    let pid = b.state().unwrap()["pid"].as_i64().unwrap();
    assert!(alive(pid));
    let out = b.amphi(&["delete", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert!(
        wait_for(|| !alive(pid)),
        "init of a deleted container lives"
    );
    assert!(b.state().is_none());
    assert!(!b.root.join(&b.id).exists());
    assert!(b.cgroup_dirs().is_empty(), "{:?}", b.cgroup_dirs());
}

#[test]
fn docker_zero_resources_mean_unset() {
    // dockerd 20.10 puts these "defaults" into every config.json: runc treats a zero blockIO weight
    // or cpu shares as unset. Writing blkio.weight 0 fails (out of range 10..1000, and the file is
    // absent without BFQ/CFQ), which made every `docker run --runtime amphi` fail.
    let mut b = Bundle::new("dockerzero", &["echo", "zero-resources-ok"]);
    b.config["linux"]["resources"]["blockIO"] = json!({"weight": 0, "leafWeight": 0});
    b.config["linux"]["resources"]["cpu"] = json!({"shares": 0});
    b.config["linux"]["resources"]["memory"] = json!({"disableOOMKiller": false});
    let out = b.run();
    assert!(out.status.success(), "run: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "zero-resources-ok");
    assert!(b.cgroup_dirs().is_empty(), "{:?}", b.cgroup_dirs());
}

#[test]
fn docker_update_zero_resources_mean_unset() {
    // `docker update --memory 96m --memory-swap 96m` (dockerd 20.10) sends exactly this to
    // `update --resources -`: the zeros are "not set" for runc; cpu.cfs_quota_us refuses 0.
    let b = Bundle::new("dockerupd", &["sleep", "1000"]);
    create_ok(&b);
    let mut child = b
        .cmd(&["update", "--resources", "-", &b.id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let docker = r#"{"memory":{"limit":100663296,"reservation":0,"swap":100663296,"kernel":0},"cpu":{"shares":0,"quota":0,"period":0},"blockIO":{"weight":0}}"#;
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), docker.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "update: {}", stderr(&out));
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(b.cgroup.trim_start_matches('/'))
        .join("memory.limit_in_bytes");
    let v2 = Path::new("/sys/fs/cgroup")
        .join(b.cgroup.trim_start_matches('/'))
        .join("memory.max");
    let limit = std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .expect("the container's memory cgroup file");
    assert_eq!(limit.trim(), "100663296");
    let out = b.amphi(&["delete", "--force", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert!(b.cgroup_dirs().is_empty(), "{:?}", b.cgroup_dirs());
}

/// Runs `bin --root <root> <args>`, stdin from /dev/null, output through files.
fn run_binary(bin: &Path, b: &Bundle, args: &[&str]) -> Output {
    output_through_files(
        Command::new(bin)
            .arg("--root")
            .arg(&b.root)
            .args(args)
            .stdin(Stdio::null()),
    )
}

/// `amphi` without `amphi-full` next to it still serves the subcommands that enter no container,
/// and refuses `create`, `run` and `exec` with exit status 1 and an error that names the missing
/// file; nothing of the container is left.
#[test]
fn front_without_amphi_full_names_it_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let front = dir.path().join("amphi");
    std::fs::copy(amphi_bin(), &front).unwrap();
    let missing = dir.path().join("amphi-full").display().to_string();
    let b = Bundle::new("nofull", &["true"]);
    b.write_config();
    let bundle = b.dir.to_string_lossy().into_owned();
    let id = b.id.as_str();
    for args in [
        &["create", "--bundle", &bundle, id][..],
        &["run", "--bundle", &bundle, id][..],
        &["exec", id, "true"][..],
    ] {
        let out = run_binary(&front, &b, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&missing) && err.contains("installed next to it"),
            "{args:?}: {err}"
        );
        common::assert_no_leftovers(&b);
    }
    // A file that cannot be executed is named too.
    for (content, mode) in [(&b"not a program"[..], 0o755), (&b"\x7fELF"[..], 0o644)] {
        std::fs::write(dir.path().join("amphi-full"), content).unwrap();
        std::fs::set_permissions(
            dir.path().join("amphi-full"),
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .unwrap();
        let out = run_binary(&front, &b, &["create", "--bundle", &bundle, id]);
        assert_eq!(out.status.code(), Some(1), "{mode:o}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&missing),
            "{mode:o}: {}",
            stderr(&out)
        );
        common::assert_no_leftovers(&b);
    }
    std::fs::remove_file(dir.path().join("amphi-full")).unwrap();
    let out = run_binary(&front, &b, &["list", "--quiet"]);
    assert!(out.status.success(), "list: {}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let out = run_binary(&front, &b, &["delete", "--force", id]);
    assert!(out.status.success(), "delete --force: {}", stderr(&out));
}

/// `amphi-full` next to `amphi` may be a symlink (a package that keeps the file elsewhere): the
/// container's pid 1 then runs a protected view of the file it points to.
#[test]
fn amphi_full_through_a_symlink() {
    let store = tempfile::tempdir().unwrap();
    let full = store.path().join("amphi-full-1.0");
    std::fs::copy(common::amphi_full_bin(), &full).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let front = dir.path().join("amphi");
    std::fs::copy(amphi_bin(), &front).unwrap();
    std::os::unix::fs::symlink(&full, dir.path().join("amphi-full")).unwrap();
    let b = Bundle::new("fulllink", &["sleep", "1000"]);
    b.write_config();
    let bundle = b.dir.to_string_lossy().into_owned();
    let out = run_binary(&front, &b, &["create", "--bundle", &bundle, &b.id]);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let pid = b.state().unwrap()["pid"].as_i64().unwrap();
    let exe = format!("/proc/{pid}/exe");
    let seen = nix::sys::stat::stat(exe.as_str()).unwrap();
    assert_eq!(seen.st_size as u64, std::fs::metadata(&full).unwrap().len());
    assert!(
        nix::sys::statvfs::statvfs(exe.as_str())
            .unwrap()
            .flags()
            .contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        "{exe} is writable"
    );
    let out = run_binary(&front, &b, &["delete", "--force", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    common::assert_no_leftovers(&b);
}

/// `amphi-full` installed alone (here under the name `amphi`) serves the whole lifecycle itself.
#[test]
fn amphi_full_alone_serves_the_whole_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("amphi");
    std::fs::copy(common::amphi_full_bin(), &full).unwrap();
    let b = Bundle::new("fullonly", &["sleep", "1000"]);
    b.write_config();
    let bundle = b.dir.to_string_lossy().into_owned();
    let out = run_binary(&full, &b, &["create", "--bundle", &bundle, &b.id]);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = run_binary(&full, &b, &["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let out = run_binary(&full, &b, &["exec", &b.id, "echo", "from-exec"]);
    assert_eq!(stdout(&out).trim(), "from-exec", "{}", stderr(&out));
    let out = run_binary(&full, &b, &["state", &b.id]);
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["status"], "running", "{state}");
    let out = run_binary(&full, &b, &["delete", "--force", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    common::assert_no_leftovers(&b);
}

/// With both binaries on a read-only mount, `amphi` executes `amphi-full` as it is (no overlay, no
/// copy): the container's pid 1 runs that very file.
#[test]
fn amphi_full_on_a_read_only_mount_runs_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let front = common::install_binaries(dir.path());
    let full = dir.path().join("amphi-full");
    let b = Bundle::new("rofull", &["sleep", "1000"]);
    b.write_config();
    // The read-only bind mount lives in a private mount namespace that ends with the shell.
    let script = format!(
        "mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec {front} --root {root} \
         create --bundle {bundle} {id}",
        d = dir.path().display(),
        front = front.display(),
        root = b.root.display(),
        bundle = b.dir.display(),
        id = b.id
    );
    let out = output_through_files(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null()),
    );
    assert!(out.status.success(), "create: {}", stderr(&out));
    let pid = b.state().unwrap()["pid"].as_i64().unwrap();
    let seen = nix::sys::stat::stat(format!("/proc/{pid}/exe").as_str()).unwrap();
    let host = nix::sys::stat::stat(&full).unwrap();
    assert_eq!(
        (seen.st_dev, seen.st_ino),
        (host.st_dev, host.st_ino),
        "pid 1 does not run amphi-full itself"
    );
    let out = b.amphi(&["delete", "--force", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    common::assert_no_leftovers(&b);
}
