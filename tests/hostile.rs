//! Hostile and malformed input: config.json, the command line, state on disk and Wasm modules built
//! to break the runtime. Whatever the input, amphi never panics, never hangs, exits non-zero with an
//! error naming the field, never lets a config reach outside the rootfs, and leaves nothing behind.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{amphi_bin, assert_no_leftovers, stderr, stdout, wait_for, Bundle};
use serde_json::{json, Value};

/// No panic, and a non-zero exit status 1.
fn assert_failed_cleanly(out: &Output, what: &str) {
    let err = stderr(out);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{what}: panic: {err}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: exit status {:?}, stderr {err}",
        out.status
    );
}

/// `create` of `b` fails with one line naming each of `names`, and leaves nothing behind.
fn create_rejected(b: &Bundle, names: &[&str]) {
    let out = b.create();
    assert_failed_cleanly(&out, &format!("{names:?}"));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err:?}");
    for n in names {
        assert!(err.contains(n), "error does not name {n:?}: {err}");
    }
    assert!(b.state().is_none(), "{names:?}: a state exists");
    assert_no_leftovers(b);
}

/// `create` with `config.json` exactly `bytes` (not the harness's config).
fn create_with_raw_config(b: &Bundle, bytes: &[u8]) -> Output {
    std::fs::write(b.dir.join("config.json"), bytes).unwrap();
    b.amphi(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id])
}

/// Runs `b` and returns its stdout, asserting success.
fn run_ok(b: &Bundle) -> String {
    let out = b.run();
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    stdout(&out)
}

/// A directory next to the bundle, outside the rootfs, that a hostile config aims at.
fn outside_dir(b: &Bundle) -> PathBuf {
    let d = b.dir.parent().unwrap().join("outside");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("host-file"), "host").unwrap();
    d
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// config.json
// ---------------------------------------------------------------------------------------------

#[test]
fn malformed_json_never_panics_and_leaves_nothing() {
    let b = Bundle::new("h-json", &["true"]);
    let good = serde_json::to_string(&b.config).unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("deeply nested", {
            let mut s = "{\"a\":".repeat(100_000);
            s.push('1');
            s.push_str(&"}".repeat(100_000));
            s.into_bytes()
        }),
        (
            "deeply nested arrays",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        ),
        (
            "duplicate key",
            good.replacen(
                "\"ociVersion\"",
                "\"ociVersion\":\"1.0.0\",\"ociVersion\"",
                1,
            )
            .into_bytes(),
        ),
        ("non-UTF-8 bytes", {
            let mut v = good.clone().into_bytes();
            let at = good.find("\"true\"").unwrap() + 1;
            v.splice(at..at, [0xff, 0xfe]);
            v
        }),
        ("empty", Vec::new()),
        ("null", b"null".to_vec()),
        ("truncated", good.as_bytes()[..good.len() / 2].to_vec()),
    ];
    let mut typed = |what: &'static str, edit: &dyn Fn(&mut Value)| {
        let mut v = b.config.clone();
        edit(&mut v);
        cases.push((what, serde_json::to_vec(&v).unwrap()));
    };
    typed("process null", &|v| v["process"] = Value::Null);
    typed("linux null", &|v| v["linux"] = Value::Null);
    typed("root null", &|v| v["root"] = Value::Null);
    typed("mounts an object", &|v| v["mounts"] = json!({"a": 1}));
    typed("args a string", &|v| v["process"]["args"] = json!("true"));
    typed("uid -1", &|v| v["process"]["user"]["uid"] = json!(-1));
    typed("uid 2^32", &|v| {
        v["process"]["user"]["uid"] = json!(1u64 << 32)
    });
    typed("uid huge float", &|v| {
        v["process"]["user"]["uid"] = json!(1e300)
    });
    typed("rlimit -1", &|v| {
        v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": -1, "soft": -1}])
    });
    typed(
        "major -1",
        &|v| {
            v["linux"]["devices"] =
                json!([{"path": "/dev/x", "type": "c", "major": -1, "minor": 1}])
        },
    );
    typed("namespaces of numbers", &|v| {
        v["linux"]["namespaces"] = json!([1, 2])
    });
    typed("unknown namespace", &|v| {
        v["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "bogus"}])
    });
    for (what, bytes) in cases {
        let out = create_with_raw_config(&b, &bytes);
        assert_failed_cleanly(&out, what);
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{what}: not one line: {err}");
        assert!(b.state().is_none(), "{what}: a state exists");
        assert_no_leftovers(&b);
    }
}

/// (uid_t)-1 means "unchanged" to setresuid(2): a config asking for uid 4294967295 must not run
/// the workload as root.
#[test]
fn uid_and_gid_4294967295_are_refused_not_run_as_root() {
    for (field, edit) in [
        ("process.user.uid", json!({"uid": 4294967295u32, "gid": 0})),
        ("process.user.gid", json!({"uid": 0, "gid": 4294967295u32})),
        (
            "process.user.additionalGids[1]",
            json!({"uid": 0, "gid": 0, "additionalGids": [1, 4294967295u32]}),
        ),
    ] {
        let mut b = Bundle::new("h-uidmax", &["id"]);
        b.config["process"]["user"] = edit;
        create_rejected(&b, &[field]);
    }
}

/// An edit of a config.
type ConfigEdit = dyn Fn(&mut Value);

#[test]
fn nul_bytes_are_refused_naming_the_field() {
    let cases: Vec<(&str, &ConfigEdit)> = vec![
        ("process.args[2]", &|v| {
            v["process"]["args"] = json!(["sh", "-c", "echo a\u{0}b"])
        }),
        ("process.env[0]", &|v| {
            v["process"]["env"] = json!(["A=b\u{0}c"])
        }),
        ("process.cwd", &|v| v["process"]["cwd"] = json!("/tm\u{0}p")),
        ("hostname", &|v| v["hostname"] = json!("a\u{0}b")),
        ("domainname", &|v| v["domainname"] = json!("a\u{0}b")),
    ];
    for (field, edit) in cases {
        let mut b = Bundle::new("h-nul", &["true"]);
        let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
        if !ns.iter().any(|n| n["type"] == "uts") {
            ns.push(json!({"type": "uts"}));
        }
        edit(&mut b.config);
        create_rejected(&b, &[field]);
    }
}

#[test]
fn huge_strings_fail_cleanly() {
    let mut b = Bundle::new("h-huge", &["true"]);
    b.config["hostname"] = json!("h".repeat(1000));
    create_rejected(&b, &["hostname"]);

    // An argument list of 10 MB: E2BIG from execve(2), reported, and nothing left behind by `run`.
    let mut b = Bundle::new("h-e2big", &["true"]);
    let big = "x".repeat(1000);
    let mut args = vec!["echo".to_string()];
    args.extend(vec![big; 10_000]);
    b.config["process"]["args"] = json!(args);
    let out = b.run();
    assert_failed_cleanly(&out, "10 MB args");
    assert!(stderr(&out).contains("E2BIG"), "{}", stderr(&out));
    assert_no_leftovers(&b);
}

#[test]
fn relative_masked_and_readonly_paths_are_refused() {
    let mut b = Bundle::new("h-masked", &["true"]);
    b.config["linux"]["maskedPaths"] = json!(["/proc/kcore", "bin"]);
    create_rejected(&b, &["linux.maskedPaths[1]"]);
    let mut b = Bundle::new("h-ropaths", &["true"]);
    b.config["linux"]["readonlyPaths"] = json!([""]);
    create_rejected(&b, &["linux.readonlyPaths[0]"]);
}

#[test]
fn device_numbers_and_modes_out_of_range_are_refused() {
    let dev = |extra: Value| {
        let mut d = json!({"path": "/dev/hx", "type": "c", "major": 1, "minor": 3});
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        json!([d])
    };
    for (field, d) in [
        ("linux.devices[0].major", dev(json!({"major": 1u64 << 40}))),
        ("linux.devices[0].minor", dev(json!({"minor": 1u64 << 33}))),
        (
            "linux.devices[0].fileMode",
            dev(json!({"fileMode": 0o177777})),
        ),
        ("linux.devices[0].type", dev(json!({"type": "a"}))),
        ("linux.devices[0]", dev(json!({"minor": -1}))),
        (
            "linux.devices[0].path",
            dev(json!({"path": "/dev/../../x"})),
        ),
    ] {
        let mut b = Bundle::new("h-dev", &["true"]);
        b.config["linux"]["devices"] = d;
        create_rejected(&b, &[field]);
    }
    // In range: the node is made as asked.
    let mut b = Bundle::new("h-devok", &["sh", "-c", "stat -c '%a %t %T' /dev/hx"]);
    b.config["linux"]["devices"] = dev(json!({"fileMode": 0o640}));
    assert_eq!(run_ok(&b).trim(), "640 1 3");
}

#[test]
fn id_maps_the_kernel_would_refuse_are_refused_naming_the_field() {
    let maps = |uid: Value| {
        move |v: &mut Value| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            v["linux"]["uidMappings"] = uid.clone();
            v["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        }
    };
    let many: Vec<Value> = (0..341)
        .map(|i| json!({"containerID": i, "hostID": 100000 + i, "size": 1}))
        .collect();
    let long: Vec<Value> = (0..300)
        .map(|i| json!({"containerID": 1_000_000 + i, "hostID": 1_000_000 + i, "size": 1}))
        .collect();
    for (field, uid) in [
        (
            "linux.uidMappings[1]",
            json!([
                {"containerID": 0, "hostID": 100000, "size": 1000},
                {"containerID": 500, "hostID": 200000, "size": 1000}
            ]),
        ),
        (
            "linux.uidMappings[1]",
            json!([
                {"containerID": 0, "hostID": 100000, "size": 1000},
                {"containerID": 5000, "hostID": 100999, "size": 10}
            ]),
        ),
        (
            "linux.uidMappings[0]",
            json!([{"containerID": 4294967295u32, "hostID": 100000, "size": 10}]),
        ),
        ("linux.uidMappings", json!(many)),
        ("linux.uidMappings", json!(long)),
    ] {
        let mut b = Bundle::new("h-idmap", &["true"]);
        maps(uid)(&mut b.config);
        create_rejected(&b, &[field]);
    }
}

#[test]
fn cgroups_path_dot_components_are_normalised() {
    // "/." is the root cgroup spelled differently.
    for p in ["/.", "/./.", "//./"] {
        let mut b = Bundle::new("h-cgroot", &["true"]);
        b.config["linux"]["cgroupsPath"] = json!(p);
        create_rejected(&b, &["linux.cgroupsPath"]);
    }
    // "<cg>/./." is <cg>: the container runs in it, and run deletes it completely.
    let mut b = Bundle::new("h-cgdot", &["sh", "-c", "cat /proc/self/cgroup"]);
    b.config["linux"]["cgroupsPath"] = json!(format!("{}/./.", b.cgroup));
    let out = b.run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(b.state().is_none(), "state left after run");
    assert_no_leftovers(&b);
}

#[test]
fn sysctl_names_with_slashes_or_dots_are_refused() {
    for key in [
        "kernel/hostname",
        "..kernel",
        "kernel..x",
        "",
        "net.ipv4/../../x",
    ] {
        let mut b = Bundle::new("h-sysctl", &["true"]);
        let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
        if !ns.iter().any(|n| n["type"] == "uts") {
            ns.push(json!({"type": "uts"}));
        }
        b.config["linux"]["sysctl"] = json!({ key: "x" });
        create_rejected(&b, &["linux.sysctl"]);
    }
}

/// A sysctl outside the container's namespaces would be written on the host (runc refuses it):
/// a host-wide one (`vm.*`), and a `net.*` one without a network namespace. Both are refused naming
/// the sysctl, and the host's values stay as they were.
#[test]
fn sysctls_that_would_change_the_host_are_refused() {
    let swappiness = std::fs::read_to_string("/proc/sys/vm/swappiness").unwrap();
    let ttl = std::fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl").unwrap();
    let other = |v: &str| if v.trim() == "33" { "34" } else { "33" }.to_string();

    let mut b = Bundle::new("h-sysctl-host", &["true"]);
    b.config["linux"]["sysctl"] = json!({"vm.swappiness": other(&swappiness)});
    create_rejected(&b, &["linux.sysctl.vm.swappiness", "host"]);

    let mut b = Bundle::new("h-sysctl-net", &["true"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_default_ttl": other(&ttl)});
    create_rejected(&b, &["linux.sysctl.net.ipv4.ip_default_ttl", "network"]);

    assert_eq!(
        std::fs::read_to_string("/proc/sys/vm/swappiness").unwrap(),
        swappiness
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl").unwrap(),
        ttl
    );
}

/// A config.json that never ends (a symlink to /dev/zero) is read only up to the size limit: create
/// fails naming config.json instead of filling the host's memory. `update --resources` and
/// `exec --process` read with the same limit.
#[test]
fn endless_json_inputs_are_cut_off() {
    let b = Bundle::new("h-zero", &["sleep", "1000"]);
    let config = std::fs::read(b.dir.join("config.json")).unwrap();
    std::fs::remove_file(b.dir.join("config.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", b.dir.join("config.json")).unwrap();
    let out = b.create();
    assert_failed_cleanly(&out, "config.json -> /dev/zero");
    assert!(stderr(&out).contains("config.json"), "{}", stderr(&out));
    assert!(stderr(&out).contains("larger than"), "{}", stderr(&out));
    assert!(b.state().is_none());
    assert_no_leftovers(&b);

    std::fs::remove_file(b.dir.join("config.json")).unwrap();
    std::fs::write(b.dir.join("config.json"), config).unwrap();
    assert!(b.create().status.success());
    for args in [
        vec!["update", "--resources", "/dev/zero", b.id.as_str()],
        vec!["exec", "--process", "/dev/zero", b.id.as_str()],
    ] {
        let out = b.amphi(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&out).contains("larger than"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

/// A mount inside /proc is refused (runc's rule), except over the files lxcfs emulates; a path
/// that only reaches /proc through `..` is caught too.
#[test]
fn mounts_inside_proc_are_refused() {
    let src = tempfile::tempdir().unwrap();
    for dest in [
        "/proc/sys",
        "/proc/self",
        "/tmp/../proc/sysrq-trigger",
        "/proc/1/root",
    ] {
        let mut b = Bundle::new("h-procmnt", &["true"]);
        let mounts = b.config["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": dest, "type": "bind",
                           "source": src.path(), "options": ["rbind", "rw"]}));
        let n = mounts.len() - 1;
        create_rejected(&b, &[&format!("mounts[{n}].destination"), "inside /proc"]);
    }
    // lxcfs's files are allowed: a file bound over /proc/uptime is what the container reads.
    let file = src.path().join("uptime");
    std::fs::write(&file, "12345.00 1.00\n").unwrap();
    let mut b = Bundle::new("h-procmnt-ok", &["cat", "/proc/uptime"]);
    b.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/proc/uptime", "type": "bind", "source": file, "options": ["bind", "ro"]}),
    );
    assert_eq!(run_ok(&b), "12345.00 1.00\n");
}

#[test]
fn bad_mounts_fail_naming_the_mount() {
    let cases = [
        json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
               "options": ["size=banana", "mode=999999"]}),
        json!({"destination": "/t", "type": "no-such-fs", "source": "x"}),
        json!({"destination": "/t\u{0}x", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/t", "type": "bind", "source": "/no/such/source",
               "options": ["rbind"]}),
    ];
    for m in cases {
        let mut b = Bundle::new("h-mount", &["true"]);
        let n = b.config["mounts"].as_array().unwrap().len();
        b.config["mounts"].as_array_mut().unwrap().push(m.clone());
        create_rejected(&b, &[&format!("mounts[{n}]")]);
    }
}

// ---------------------------------------------------------------------------------------------
// Escapes through symlinks and `..`
// ---------------------------------------------------------------------------------------------

/// A mount destination that is a symlink (absolute or relative) pointing out of the rootfs is
/// resolved inside the rootfs: the host directory it names gets nothing mounted or created.
#[test]
fn mount_destination_symlinks_cannot_leave_the_rootfs() {
    let mut b = Bundle::new(
        "h-symdest",
        &[
            "sh",
            "-c",
            "grep -c tmpfs-escape /proc/self/mountinfo; ls /abs",
        ],
    );
    let outside = outside_dir(&b);
    let depth = b.rootfs().components().count();
    let rel_target = format!("{}{}", "../".repeat(depth + 2), outside.display());
    std::os::unix::fs::symlink(&outside, b.rootfs().join("abs")).unwrap();
    std::os::unix::fs::symlink(&rel_target, b.rootfs().join("rel")).unwrap();
    for dest in ["/abs", "/rel/sub", "/../../../../abs-dotdot"] {
        b.config["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs-escape"}));
    }
    b.config["linux"]["devices"] = json!([
        {"path": "/abs/evil-dev", "type": "c", "major": 1, "minor": 3}
    ]);
    let out = b.run();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // Three tmpfs mounts inside; the node and the nested mount point went into the first of them.
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["3", "evil-dev", "sub"],
        "{text}"
    );
    assert_eq!(
        entries(&outside),
        vec!["host-file"],
        "the host dir was touched"
    );
    assert!(!Path::new("/abs-dotdot").exists());
    assert!(b.rootfs().join("abs-dotdot").is_dir());
    assert_no_leftovers(&b);
}

/// Directories amphi creates in the rootfs (mount points, cwd, device parents) are 0755 as with
/// runc, not world-writable.
#[test]
fn directories_created_in_the_rootfs_are_not_world_writable() {
    let mut b = Bundle::new(
        "h-modes",
        &[
            "sh",
            "-c",
            "stat -c '%a %n' /cw /cw/d /mnt1 /mnt1/a /mnt2 /dev/sub",
        ],
    );
    b.config["process"]["cwd"] = json!("/cw/d");
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/mnt1/a/b", "type": "tmpfs", "source": "tmpfs"}));
    mounts.push(
        json!({"destination": "/mnt2/f", "type": "bind", "source": "/etc/hostname", "options": ["bind"]}),
    );
    b.config["linux"]["devices"] = json!([
        {"path": "/dev/sub/null2", "type": "c", "major": 1, "minor": 3}
    ]);
    let out = run_ok(&b);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "755 /cw",
            "755 /cw/d",
            "755 /mnt1",
            "755 /mnt1/a",
            "755 /mnt2",
            "755 /dev/sub"
        ],
        "{out}"
    );
    let host_mode = std::fs::metadata(b.rootfs().join("mnt1"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(host_mode & 0o777, 0o755);
}

// ---------------------------------------------------------------------------------------------
// The command line and state on disk
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_global_flags_fail_cleanly() {
    let b = Bundle::new("h-flags", &["true"]);
    let tmp = b.dir.parent().unwrap();
    let file = tmp.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let dir = b.dir.to_str().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--bogus".into(), "list".into()], "--bogus"),
        (vec!["create".into()], "<ID>"),
        (
            vec![
                "--root".into(),
                file.to_str().unwrap().into(),
                "create".into(),
                "-b".into(),
                dir.into(),
                b.id.clone(),
            ],
            "--root",
        ),
        (
            vec!["--log".into(), tmp.to_str().unwrap().into(), "list".into()],
            "--log",
        ),
        (
            vec!["--log-format".into(), "xml".into(), "list".into()],
            "xml",
        ),
        (
            vec![
                "create".into(),
                "--preserve-fds".into(),
                "-1".into(),
                b.id.clone(),
            ],
            "-1",
        ),
    ];
    for (args, name) in cases {
        let out = Command::new(amphi_bin())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_failed_cleanly(&out, &format!("{args:?}"));
        assert!(stderr(&out).contains(name), "{args:?}: {}", stderr(&out));
    }
    assert_no_leftovers(&b);
}

#[test]
fn console_socket_that_is_not_a_socket_fails_cleanly() {
    let mut b = Bundle::new("h-console", &["true"]);
    b.config["process"]["terminal"] = json!(true);
    b.write_config();
    let file = b.dir.parent().unwrap().join("not-a-socket");
    std::fs::write(&file, "x").unwrap();
    let out = b.amphi(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--console-socket",
        file.to_str().unwrap(),
        &b.id,
    ]);
    assert_failed_cleanly(&out, "console socket");
    assert!(
        stderr(&out).contains("console-socket") || stderr(&out).contains("console socket"),
        "{}",
        stderr(&out)
    );
    assert_no_leftovers(&b);
}

/// `--preserve-fds` near u32::MAX: no overflow panic, no endless loop; the container works.
#[test]
fn huge_preserve_fds_does_not_panic() {
    for n in ["4294967295", "100000"] {
        let b = Bundle::new("h-fds", &["echo", "started"]);
        b.write_config();
        let out = b.amphi(&[
            "run",
            "--bundle",
            b.dir.to_str().unwrap(),
            "--preserve-fds",
            n,
            &b.id,
        ]);
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        assert!(out.status.success(), "--preserve-fds {n}: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "started", "--preserve-fds {n}");
        assert_no_leftovers(&b);
    }
}

#[test]
fn bad_signals_are_refused_naming_the_signal() {
    let b = Bundle::new("h-signal", &["sleep", "100"]);
    assert!(b.create().status.success());
    for sig in ["70", "65", "4294967297", "SIGFOO", "sig9x", "", "SIG"] {
        let out = b.amphi(&["kill", &b.id, sig]);
        assert_failed_cleanly(&out, sig);
        let err = stderr(&out);
        assert!(
            err.contains("unknown signal") && err.contains(sig),
            "{sig}: {err}"
        );
    }
    assert_eq!(b.state().unwrap()["status"], "created");
}

/// podman stops systemd containers with SIGRTMIN+3 (37), and runc accepts any signal number. The
/// workload is pid 1 of its pid namespace, so it must handle the signal: a shell traps 37 and 64.
#[test]
fn real_time_signals_are_accepted() {
    for sig in ["37", "64", "RTMIN+3", "SIGRTMIN+3", "SIGRTMAX"] {
        let b = Bundle::new(
            "h-rtsig",
            &[
                "sh",
                "-c",
                "trap 'exit 3' 37 64; while true; do sleep 0.05; done",
            ],
        );
        assert!(b.create().status.success());
        assert!(b.amphi(&["start", &b.id]).status.success());
        // Give the shell time to install its trap.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let out = b.amphi(&["kill", &b.id, sig]);
        assert!(out.status.success(), "kill {sig}: {}", stderr(&out));
        assert!(
            wait_for(|| b.state().is_some_and(|s| s["status"] == "stopped")),
            "{sig} did not stop the shell"
        );
    }
    let b = Bundle::new("h-rtsig-bad", &["sleep", "100"]);
    for bad in ["RTMIN+99", "RTMAX-99", "65", "RTMIN+x"] {
        let out = b.amphi(&["kill", &b.id, bad]);
        assert!(!out.status.success(), "{bad} must be refused");
    }
}

/// A file (not a directory) under `--root` with a container's name is no container.
#[test]
fn a_file_under_root_is_not_a_container() {
    let b = Bundle::new("h-fileid", &["true"]);
    std::fs::create_dir_all(&b.root).unwrap();
    let f = b.root.join(&b.id);
    std::fs::write(&f, "not a container").unwrap();
    for cmd in ["state", "kill", "start"] {
        let out = b.amphi(&[cmd, &b.id]);
        assert_failed_cleanly(&out, cmd);
        assert!(
            stderr(&out).contains("does not exist"),
            "{cmd}: {}",
            stderr(&out)
        );
    }
    let out = b.amphi(&["delete", "--force", &b.id]);
    assert!(out.status.success(), "delete --force: {}", stderr(&out));
    assert!(f.exists(), "delete removed a file that is no container");
    let out = b.amphi(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_file(&f).unwrap();
}

/// A state directory without state.json (a create that died early): not a container for state and
/// kill; delete removes it.
#[test]
fn a_state_dir_without_state_json() {
    let b = Bundle::new("h-nostate", &["true"]);
    std::fs::create_dir_all(b.root.join(&b.id)).unwrap();
    for cmd in [vec!["state"], vec!["kill"], vec!["start"]] {
        let mut args = cmd.clone();
        args.push(&b.id);
        let out = b.amphi(&args);
        assert_failed_cleanly(&out, cmd[0]);
        assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    }
    let out = b.amphi(&["list", "-q"]);
    assert!(out.status.success());
    assert!(!stdout(&out).contains(&b.id));
    let out = b.amphi(&["delete", &b.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!b.root.join(&b.id).exists());
}

/// Puts the original state.json back on drop, so that the harness can delete the container.
struct RestoreState {
    path: PathBuf,
    original: Vec<u8>,
}

impl Drop for RestoreState {
    fn drop(&mut self) {
        if self.path.parent().is_some_and(|p| p.is_dir()) {
            let _ = std::fs::write(&self.path, &self.original);
        }
    }
}

/// A corruption of state.json's bytes.
type Corruption = dyn Fn(&[u8]) -> Vec<u8>;

/// A state.json corrupted by hand: every command fails naming the file, none panics, and
/// `delete --force` never reports success while the container's init process lives on unmanaged.
#[test]
fn corrupt_state_json_is_reported_and_never_orphans_the_container() {
    let corruptions: [(&str, &Corruption); 5] = [
        ("truncated", &|s| s[..s.len() / 2].to_vec()),
        ("empty", &|_| Vec::new()),
        ("garbage", &|_| vec![0xff, 0x00, 0x13, 0x37, b'{']),
        ("wrong types", &|_| {
            br#"{"oci_version":null,"pid":-5}"#.to_vec()
        }),
        ("deep", &|_| "[".repeat(100_000).into_bytes()),
    ];
    for (what, corrupt) in corruptions {
        let b = Bundle::new("h-corrupt", &["sleep", "100"]);
        assert!(b.create().status.success());
        let pid = b.state().unwrap()["pid"].as_i64().unwrap() as i32;
        let path = b.root.join(&b.id).join("state.json");
        let original = std::fs::read(&path).unwrap();
        let _restore = RestoreState {
            path: path.clone(),
            original: original.clone(),
        };
        std::fs::write(&path, corrupt(&original)).unwrap();
        for cmd in [
            vec!["state"],
            vec!["kill"],
            vec!["kill", "--all"],
            vec!["start"],
            vec!["delete"],
        ] {
            let mut args = cmd.clone();
            args.push(&b.id);
            let out = b.amphi(&args);
            assert_failed_cleanly(&out, &format!("{what}: {cmd:?}"));
            assert!(
                stderr(&out).contains("state.json"),
                "{what}: {cmd:?}: {}",
                stderr(&out)
            );
        }
        let out = b.amphi(&["list"]);
        assert!(out.status.success(), "{what}: list: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"));
        // As runc: reported on stderr, not silently hidden.
        assert!(
            stderr(&out).contains(&b.id),
            "{what}: list: {}",
            stderr(&out)
        );
        let out = b.amphi(&["delete", "--force", &b.id]);
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        let alive = Path::new(&format!("/proc/{pid}")).exists();
        assert!(
            !(out.status.success() && alive),
            "{what}: delete --force succeeded but init {pid} lives on without its state"
        );
    }
}

/// A state.json cut short by a crash, in a container created in an earlier boot (its directory
/// records another boot id, and nothing of it is left): `delete` removes it, where a corrupt
/// state.json of this boot is refused (above).
#[test]
fn state_json_corrupted_in_an_earlier_boot_is_deleted() {
    let b = Bundle::new("h-preboot", &["true"]);
    let dir = b.root.join(&b.id);
    let now = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let now = now.trim();
    let other = format!(
        "{}{}",
        if now.starts_with('0') { "1" } else { "0" },
        &now[1..]
    );
    for (what, boot_id, bytes, removed) in [
        ("empty, this boot", now, &b""[..], false),
        ("empty, no boot id", "", &b""[..], false),
        ("empty, earlier boot", other.as_str(), &b""[..], true),
        (
            "cut, earlier boot",
            other.as_str(),
            &br#"{"ociVersion":"1.2.0","id":"#[..],
            true,
        ),
    ] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("state.json"), bytes).unwrap();
        let _ = std::fs::remove_file(dir.join("boot_id"));
        if !boot_id.is_empty() {
            std::fs::write(dir.join("boot_id"), boot_id).unwrap();
        }
        let out = b.amphi(&["delete", &b.id]);
        if removed {
            assert!(out.status.success(), "{what}: {}", stderr(&out));
        } else {
            assert_failed_cleanly(&out, what);
            assert!(
                stderr(&out).contains("state.json"),
                "{what}: {}",
                stderr(&out)
            );
        }
        assert_eq!(!dir.exists(), removed, "{what}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Wasm
// ---------------------------------------------------------------------------------------------

/// A bundle whose workload is the Wasm file `/w/<name>` with `bytes`, run by the wasm executor.
fn wasm_bundle(tag: &str, name: &str, bytes: &[u8]) -> Bundle {
    let mut b = Bundle::new(tag, &[]);
    let w = b.rootfs().join("w");
    std::fs::create_dir_all(&w).unwrap();
    std::fs::write(w.join(name), bytes).unwrap();
    b.config["process"]["args"] = json!([format!("/w/{name}")]);
    b.config["annotations"] = json!({"run.oci.handler": "wasm"});
    b
}

/// `amphi --wasm-cache-dir <tmp>/wasm-cache <args>` with stdout and stderr through files.
fn amphi_w(b: &Bundle, args: &[&str]) -> Output {
    let cache = b.dir.parent().unwrap().join("wasm-cache");
    let mut all = vec!["--wasm-cache-dir", cache.to_str().unwrap()];
    all.extend_from_slice(args);
    b.amphi(&all)
}

fn wasm_create(b: &Bundle) -> Output {
    b.write_config();
    amphi_w(b, &["create", "--bundle", b.dir.to_str().unwrap(), &b.id])
}

fn wasm_run(b: &Bundle) -> Output {
    b.write_config();
    amphi_w(b, &["run", "--bundle", b.dir.to_str().unwrap(), &b.id])
}

fn leb(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, body: &[u8]) -> Vec<u8> {
    let mut s = vec![id];
    s.extend(leb(body.len() as u64));
    s.extend_from_slice(body);
    s
}

/// A module with an empty `_start` and a memory whose data section holds `size` bytes.
fn module_with_data(size: usize) -> Vec<u8> {
    let pages = size.div_ceil(65536) as u64;
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.extend(section(1, b"\x01\x60\x00\x00"));
    m.extend(section(3, b"\x01\x00"));
    let mut mem = vec![1, 0];
    mem.extend(leb(pages));
    m.extend(section(5, &mem));
    m.extend(section(7, b"\x01\x06_start\x00\x00"));
    m.extend(section(10, b"\x01\x02\x00\x0b"));
    let mut data = b"\x01\x00\x41\x00\x0b".to_vec();
    data.extend(leb(size as u64));
    data.resize(data.len() + size, b'A');
    m.extend(section(11, &data));
    m
}

/// Modules that cannot run are refused at `create`, naming the file, leaving nothing behind.
#[test]
fn bad_wasm_modules_are_refused_at_create() {
    let unknown_import = r#"(module
  (import "env" "no_such_function" (func $f))
  (func (export "_start") call $f))"#;
    let start_with_params = r#"(module
  (func (export "_start") (param i32) (result i32) local.get 0))"#;
    let start_not_func = r#"(module (global (export "_start") i32 (i32.const 0)))"#;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.wasm", Vec::new(), "not a WebAssembly"),
        ("magic.wasm", b"\0asm".to_vec(), "invalid WebAssembly"),
        (
            "badversion.wasm",
            b"\0asm\xff\xff\xff\xff".to_vec(),
            "invalid",
        ),
        ("nostart.wasm", b"\0asm\x01\0\0\0".to_vec(), "_start"),
        (
            "emptycomponent.wasm",
            b"\0asm\x0d\0\x01\0".to_vec(),
            "wasi:cli/run",
        ),
        (
            "unknown.wat",
            unknown_import.as_bytes().to_vec(),
            "no_such_function",
        ),
        (
            "params.wat",
            start_with_params.as_bytes().to_vec(),
            "_start",
        ),
        ("global.wat", start_not_func.as_bytes().to_vec(), "_start"),
        (
            "badutf8.wat",
            b"(module (func (export \"_start\xff\xfe\")))".to_vec(),
            "utf-8",
        ),
    ];
    for (name, bytes, needle) in cases {
        let b = wasm_bundle("h-badwasm", name, &bytes);
        let out = wasm_create(&b);
        assert_failed_cleanly(&out, name);
        let err = stderr(&out);
        assert!(err.contains(&format!("/w/{name}")), "{name}: {err}");
        assert!(err.contains(needle), "{name}: no {needle:?} in {err}");
        assert!(b.state().is_none());
        assert_no_leftovers(&b);
    }
}

/// A WAT syntax error names the file and points at the line and column of the problem.
#[test]
fn wat_syntax_error_names_the_file_and_the_line() {
    let wat = "(module\n  (func (export \"_start\")\n    i32.const 1\n    i32.bogus_instruction\n    drop))\n";
    let b = wasm_bundle("h-wat", "syntax.wat", wat.as_bytes());
    let out = wasm_create(&b);
    assert_failed_cleanly(&out, "syntax.wat");
    let err = stderr(&out);
    assert!(err.contains("/w/syntax.wat:4:5"), "{err}");
    assert!(!err.contains("<anon>"), "{err}");
    assert!(err.contains("bogus_instruction"), "{err}");
    assert_no_leftovers(&b);
}

/// proc_exit with a status no process can have (-1, 256) is never reported as success.
#[test]
fn proc_exit_out_of_range_is_not_success() {
    for (n, name) in [
        ("-1", "exitm1.wat"),
        ("256", "exit256.wat"),
        ("7", "exit7.wat"),
        ("200", "exit200.wat"),
    ] {
        let wat = format!(
            r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") i32.const {n} call $exit))"#
        );
        let b = wasm_bundle("h-exit", name, wat.as_bytes());
        let out = wasm_run(&b);
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{err}");
        let code = out.status.code().unwrap_or(-1);
        if n == "7" || n == "200" {
            // Every status a process can have passes through, 126..=255 included.
            assert_eq!(code.to_string(), n, "{err}");
        } else {
            assert_ne!(code, 0, "proc_exit({n}) reported success");
            assert_ne!(
                code, 255,
                "proc_exit({n}) looked like a runtime failure: {err}"
            );
            assert!(err.contains("exit status"), "proc_exit({n}): {err}");
        }
        assert!(b.state().is_none());
        assert_no_leftovers(&b);
    }
}

/// A guest writing 10 MB to stdout loses nothing.
#[test]
fn ten_megabytes_of_guest_stdout_arrive_whole() {
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start") (local $i i32)
    (memory.fill (i32.const 1024) (i32.const 120) (i32.const 65536))
    (i32.store8 (i32.const 66559) (i32.const 10))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 65536))
    (local.set $i (i32.const 160))
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $i)))
      (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br $l)))))"#;
    let b = wasm_bundle("h-bigout", "big.wat", wat.as_bytes());
    b.write_config();
    let cache = b.dir.parent().unwrap().join("wasm-cache");
    // Through a pipe this time, read to the end.
    let out = b
        .cmd(&[
            "--wasm-cache-dir",
            cache.to_str().unwrap(),
            "run",
            "--bundle",
            b.dir.to_str().unwrap(),
            &b.id,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout.len(), 160 * 65536);
    assert_eq!(out.stdout.iter().filter(|&&c| c == b'\n').count(), 160);
    assert!(out.stdout.iter().all(|&c| c == b'x' || c == b'\n'));
}

/// A module with a 50 MB data section compiles and runs.
#[test]
fn fifty_megabyte_data_section_runs() {
    let b = wasm_bundle("h-bigdata", "huge.wasm", &module_with_data(50 << 20));
    let out = wasm_run(&b);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_leftovers(&b);
}

/// A config that does not parse names the field serde stopped at; an unknown capability name (one
/// of a newer kernel) is skipped with a warning naming it, as runc does, and the container runs
/// without it.
#[test]
fn parse_errors_name_the_field_and_unknown_capabilities_are_skipped() {
    let mut b = Bundle::new("h-parse", &["true"]);
    b.config["linux"]["namespaces"][0]["type"] = json!("bogus");
    create_rejected(&b, &["linux.namespaces[0].type", "bogus"]);

    let mut b = Bundle::new("h-parse", &["true"]);
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}]);
    create_rejected(&b, &["process.rlimits[0].type", "RLIMIT_BOGUS"]);

    let mut b = Bundle::new("h-caps", &["sh", "-c", "grep ^CapBnd: /proc/self/status"]);
    let bounding = b.config["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .unwrap();
    let n = bounding.len();
    bounding.push(json!("CAP_AMPHI_FUTURE"));
    b.write_config();
    let out = b.run();
    assert!(out.status.success(), "run: {}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("process.capabilities.bounding[{n}]"))
            && stderr(&out).contains("CAP_AMPHI_FUTURE"),
        "no warning naming the capability: {}",
        stderr(&out)
    );
    let mask =
        u64::from_str_radix(stdout(&out).trim().trim_start_matches("CapBnd:").trim(), 16).unwrap();
    assert_eq!(mask.count_ones() as usize, n, "{}", stdout(&out));

    // Names not spelt as capabilities(7) and runc spell them are skipped too (runc does not know
    // them), rather than read as the capability they resemble.
    let mut b = Bundle::new("h-caps", &["sh", "-c", "grep ^CapBnd: /proc/self/status"]);
    b.config["process"]["capabilities"]["bounding"] = json!([
        "CAP_CHOWN",
        "sys_admin",
        "cap_kill",
        "SYS_PTRACE",
        "CAP_AMPHI_FUTURE"
    ]);
    b.write_config();
    let out = b.run();
    assert!(out.status.success(), "run: {}", stderr(&out));
    // Each warning gives the entry's index as written, the unknown name's too.
    for (i, name) in [
        (1, "sys_admin"),
        (2, "cap_kill"),
        (3, "SYS_PTRACE"),
        (4, "CAP_AMPHI_FUTURE"),
    ] {
        assert!(
            stderr(&out).lines().any(|l| l
                .contains(&format!("process.capabilities.bounding[{i}]"))
                && l.contains(name)),
            "no warning naming {name}: {}",
            stderr(&out)
        );
    }
    let mask =
        u64::from_str_radix(stdout(&out).trim().trim_start_matches("CapBnd:").trim(), 16).unwrap();
    // CAP_CHOWN is capability 0.
    assert_eq!(mask, 1, "{}", stdout(&out));
}
