//! The root file system (config.md "Root", "Mounts"; config-linux.md "Devices", "Default Devices",
//! "Masked Paths", "Readonly Paths", "Sysctl"; runtime-linux.md "Dev symbolic links"), each checked
//! from inside a real container.

mod common;

use std::path::Path;

use common::{stderr, stdout, Bundle};
use serde_json::{json, Value};

/// Appends an entry to `mounts`.
fn add_mount(b: &mut Bundle, m: Value) {
    b.config["mounts"].as_array_mut().unwrap().push(m);
}

/// Runs the container, asserting success, and returns its stdout.
fn run_ok(b: &Bundle) -> String {
    let out = b.run();
    assert!(
        out.status.success(),
        "run failed ({:?}): stdout: {} stderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Asserts that a failed create left nothing: no state dir, no cgroup (so no process in it), no
/// mount visible on the host.
fn assert_nothing_left(b: &Bundle) {
    assert!(
        !b.root.join(&b.id).exists(),
        "state dir left after failed create"
    );
    assert!(b.state().is_none(), "state still answers");
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
    assert_no_host_mounts(b);
}

/// No mount of the host mentions this bundle.
fn assert_no_host_mounts(b: &Bundle) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = b.dir.to_str().unwrap();
    let leaked: Vec<&str> = info.lines().filter(|l| l.contains(dir)).collect();
    assert!(leaked.is_empty(), "mounts leaked to the host: {leaked:?}");
}

/// The mountinfo line (inside the container's output) whose mount point is `point`.
fn mountinfo_line<'a>(info: &'a str, point: &str) -> &'a str {
    info.lines()
        .find(|l| l.split_whitespace().nth(4) == Some(point))
        .unwrap_or_else(|| panic!("no mount at {point} in:\n{info}"))
}

/// Per-mount options (field 6) of a mountinfo line.
fn mount_opts(line: &str) -> Vec<&str> {
    line.split_whitespace().nth(5).unwrap().split(',').collect()
}

/// Checks that the host's bundle is out of reach and the rootfs is `/`, for `extra` create flags.
fn check_host_hidden(name: &str, no_pivot: bool) {
    let marker = format!("amphi-outside-{name}-{}", std::process::id());
    let b = Bundle::new(
        name,
        &[
            "sh",
            "-c",
            &format!(
                "find / -xdev -name '{marker}*' 2>/dev/null; echo find-done; \
                 cat /proc/self/mountinfo"
            ),
        ],
    );
    // A file in the bundle directory, next to (not inside) the rootfs.
    std::fs::write(b.dir.join(&marker), "host secret").unwrap();
    // Also a marker inside the rootfs: find must see that one, so the search itself works.
    let inside = format!("{marker}-inside");
    std::fs::write(b.rootfs().join("tmp").join(&inside), "").unwrap();
    b.write_config();
    let dir = b.dir.to_string_lossy().into_owned();
    let mut args = vec!["run", "--bundle", &dir];
    if no_pivot {
        args.push("--no-pivot");
    }
    args.push(&b.id);
    let out = b.amphi(&args);
    assert!(out.status.success(), "run: {}", stderr(&out));
    let text = stdout(&out);
    let (found, info) = text.split_once("find-done\n").unwrap();
    assert_eq!(
        found,
        format!("/tmp/{inside}\n"),
        "find inside the container"
    );
    // Every mount point is inside the container: none names the host's bundle.
    let bundle = b.dir.to_str().unwrap();
    for line in info.lines() {
        let point = line.split_whitespace().nth(4).unwrap();
        assert!(!point.contains(bundle), "host path as mount point: {line}");
    }
    // The rootfs (a bind of <bundle>/rootfs) is mounted at "/".
    let root = mountinfo_line(info, "/");
    assert!(
        root.split_whitespace()
            .nth(3)
            .unwrap()
            .ends_with("/bundle/rootfs"),
        "root mount is not the rootfs: {root}"
    );
    assert_no_host_mounts(&b);
}

#[test]
fn pivot_root_hides_the_host() {
    check_host_hidden("pivot", false);
}

#[test]
fn no_pivot_runs_and_hides_the_host() {
    check_host_hidden("nopivot", true);
}

#[test]
fn readonly_root() {
    let b = Bundle::new("rootro", &["sh", "-c", "touch /x 2>&1; echo rc=$?"]);
    assert_eq!(b.config["root"]["readonly"], true);
    let text = run_ok(&b);
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(text.contains("rc=1"), "{text}");
    assert!(!b.rootfs().join("x").exists());

    let mut b = Bundle::new("rootrw", &["sh", "-c", "touch /x 2>&1; echo rc=$?"]);
    b.config["root"]["readonly"] = json!(false);
    let text = run_ok(&b);
    assert_eq!(text, "rc=0\n");
    assert!(b.rootfs().join("x").exists());
}

#[test]
fn bind_mounts_ro_rw_relative_and_file() {
    let mut b = Bundle::new(
        "binds",
        &[
            "sh",
            "-c",
            "cat /mnt/ro/hello; touch /mnt/ro/new 2>&1; echo ro-rc=$?; \
             echo written-inside > /mnt/rw/out; echo rw-rc=$?; \
             cat /mnt/rel/data; cat /etc/single; echo single-rc=$?",
        ],
    );
    let host = b.dir.parent().unwrap();
    let ro = host.join("host-ro");
    let rw = host.join("host-rw");
    std::fs::create_dir(&ro).unwrap();
    std::fs::create_dir(&rw).unwrap();
    std::fs::write(ro.join("hello"), "hello from host\n").unwrap();
    std::fs::create_dir(b.dir.join("reldata")).unwrap();
    std::fs::write(b.dir.join("reldata/data"), "relative source\n").unwrap();
    let single = host.join("single-file");
    std::fs::write(&single, "one file\n").unwrap();
    add_mount(
        &mut b,
        json!({"destination": "/mnt/ro", "type": "bind", "source": ro, "options": ["rbind", "ro"]}),
    );
    add_mount(
        &mut b,
        json!({"destination": "/mnt/rw", "type": "bind", "source": rw, "options": ["rbind", "rw"]}),
    );
    add_mount(
        &mut b,
        json!({"destination": "/mnt/rel", "source": "reldata", "options": ["bind"]}),
    );
    add_mount(
        &mut b,
        json!({"destination": "/etc/single", "type": "bind", "source": single, "options": ["bind", "ro"]}),
    );
    let text = run_ok(&b);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "hello from host", "{text}");
    assert!(lines[1].contains("Read-only file system"), "{text}");
    assert_eq!(lines[2], "ro-rc=1", "{text}");
    assert_eq!(lines[3], "rw-rc=0", "{text}");
    assert_eq!(lines[4], "relative source", "{text}");
    assert_eq!(lines[5], "one file", "{text}");
    assert_eq!(lines[6], "single-rc=0", "{text}");
    assert!(!ro.join("new").exists());
    assert_eq!(
        std::fs::read_to_string(rw.join("out")).unwrap(),
        "written-inside\n"
    );
    // The file mount point was created in the rootfs as a file, not a directory.
    assert!(b.rootfs().join("etc/single").is_file());
    assert_no_host_mounts(&b);
}

#[test]
fn bind_mount_missing_source_fails() {
    let mut b = Bundle::new("bindbad", &["true"]);
    add_mount(
        &mut b,
        json!({"destination": "/mnt/x", "type": "bind", "source": "/nonexistent/amphi-src", "options": ["bind"]}),
    );
    let i = b.config["mounts"].as_array().unwrap().len() - 1;
    let out = b.create();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("mounts[{i}]")),
        "{}",
        stderr(&out)
    );
    assert_nothing_left(&b);
}

#[test]
fn tmpfs_mode_and_size() {
    let mut b = Bundle::new(
        "tmpfs",
        &[
            "sh",
            "-c",
            "stat -c %a /mnt/t; df -k /mnt/t | tail -n 1; grep ' /mnt/t ' /proc/self/mountinfo",
        ],
    );
    add_mount(
        &mut b,
        json!({"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777", "size=2m"]}),
    );
    let text = run_ok(&b);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "1777", "{text}");
    let df: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(df[0], "tmpfs", "{text}");
    assert_eq!(df[1], "2048", "size in KiB: {text}");
    let opts = mount_opts(lines[2]);
    assert!(
        opts.contains(&"nosuid") && opts.contains(&"nodev"),
        "{text}"
    );
}

#[test]
fn mount_propagation_options() {
    let mut b = Bundle::new("propagation", &["cat", "/proc/self/mountinfo"]);
    let src = b.dir.parent().unwrap().join("prop-src");
    std::fs::create_dir(&src).unwrap();
    add_mount(
        &mut b,
        json!({"destination": "/mnt/private", "type": "bind", "source": src,
               "options": ["rbind", "rprivate"]}),
    );
    add_mount(
        &mut b,
        json!({"destination": "/mnt/shared", "type": "bind", "source": src,
               "options": ["rbind", "rshared"]}),
    );
    add_mount(
        &mut b,
        json!({"destination": "/mnt/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["rslave", "size=1m"]}),
    );
    let info = run_ok(&b);
    // Optional fields sit between the mount options (field 6) and the "-" separator.
    let optional = |point: &str| -> Vec<String> {
        let line = mountinfo_line(&info, point);
        line.split_whitespace()
            .skip(6)
            .take_while(|f| *f != "-")
            .map(str::to_string)
            .collect()
    };
    assert!(
        optional("/mnt/private").is_empty(),
        "{}",
        mountinfo_line(&info, "/mnt/private")
    );
    assert!(
        optional("/mnt/shared")
            .iter()
            .any(|f| f.starts_with("shared:")),
        "{}",
        mountinfo_line(&info, "/mnt/shared")
    );
    assert!(
        !optional("/mnt/tmp")
            .iter()
            .any(|f| f.starts_with("shared:")),
        "{}",
        mountinfo_line(&info, "/mnt/tmp")
    );
    assert_no_host_mounts(&b);
}

#[test]
fn default_devices_and_symlinks() {
    let b = Bundle::new(
        "devices",
        &[
            "sh",
            "-c",
            "for d in null zero full random urandom tty; do \
               stat -c '%n %F %t %T %a %u %g' /dev/$d; done; \
             for l in fd stdin stdout stderr ptmx; do echo /dev/$l=$(readlink /dev/$l); done; \
             head -c 5 /dev/zero | wc -c",
        ],
    );
    let text = run_ok(&b);
    let lines: Vec<&str> = text.lines().collect();
    // %t/%T are hex.
    let expected = [
        ("null", "1", "3"),
        ("zero", "1", "5"),
        ("full", "1", "7"),
        ("random", "1", "8"),
        ("urandom", "1", "9"),
        ("tty", "5", "0"),
    ];
    for (i, (name, major, minor)) in expected.iter().enumerate() {
        assert_eq!(
            lines[i],
            format!("/dev/{name} character special file {major} {minor} 666 0 0"),
            "{text}"
        );
    }
    assert_eq!(
        &lines[6..11],
        &[
            "/dev/fd=/proc/self/fd",
            "/dev/stdin=/proc/self/fd/0",
            "/dev/stdout=/proc/self/fd/1",
            "/dev/stderr=/proc/self/fd/2",
            "/dev/ptmx=pts/ptmx",
        ],
        "{text}"
    );
    assert_eq!(lines[11].trim(), "5", "{text}");
}

#[test]
fn custom_devices() {
    let mut b = Bundle::new(
        "customdev",
        &[
            "sh",
            "-c",
            "stat -c '%n %F %t %T %a %u %g' /dev/mydev /dev/sub/myzero; \
             head -c 3 /dev/sub/myzero | wc -c",
        ],
    );
    b.config["linux"]["devices"] = json!([
        {"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3,
         "fileMode": 0o600, "uid": 0, "gid": 0},
        {"path": "/dev/sub/myzero", "type": "c", "major": 1, "minor": 5,
         "fileMode": 0o640, "uid": 0, "gid": 5},
    ]);
    // The device cgroup allows them (the harness config denies nothing, but be explicit).
    b.config["linux"]["resources"]["devices"] = json!([
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    ]);
    let text = run_ok(&b);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "/dev/mydev character special file 1 3 600 0 0",
        "{text}"
    );
    assert_eq!(
        lines[1], "/dev/sub/myzero character special file 1 5 640 0 5",
        "{text}"
    );
    assert_eq!(lines[2].trim(), "3", "{text}");
}

#[test]
fn masked_and_readonly_paths() {
    let mut b = Bundle::new(
        "masked",
        &[
            "sh",
            "-c",
            "echo kcore=$(cat /proc/kcore | wc -c); \
             echo dir=$(ls -A /masked-dir | wc -l); \
             echo file=$(cat /masked-file); \
             echo open=$(ls /open-dir); \
             touch /ro-dir/new 2>&1; echo ro-rc=$?; \
             touch /open-dir/new; echo rw-rc=$?; \
             grep ' /proc/sys ' /proc/self/mountinfo",
        ],
    );
    b.config["root"]["readonly"] = json!(false);
    let r = b.rootfs();
    for d in ["masked-dir", "open-dir", "ro-dir"] {
        std::fs::create_dir(r.join(d)).unwrap();
        std::fs::write(r.join(d).join("content"), "secret\n").unwrap();
    }
    std::fs::write(r.join("masked-file"), "secret\n").unwrap();
    b.config["linux"]["maskedPaths"] = json!([
        "/proc/kcore",
        "/masked-dir",
        "/masked-file",
        "/does-not-exist"
    ]);
    b.config["linux"]["readonlyPaths"] = json!(["/proc/sys", "/ro-dir", "/also-missing"]);
    let text = run_ok(&b);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "kcore=0", "{text}");
    assert_eq!(lines[1], "dir=0", "{text}");
    assert_eq!(lines[2], "file=", "{text}");
    assert_eq!(lines[3], "open=content", "{text}");
    assert!(lines[4].contains("Read-only file system"), "{text}");
    assert_eq!(lines[5], "ro-rc=1", "{text}");
    assert_eq!(lines[6], "rw-rc=0", "{text}");
    assert!(mount_opts(lines[7]).contains(&"ro"), "{text}");
    // The host's files are untouched; the writable one took the write.
    assert_eq!(
        std::fs::read_to_string(r.join("masked-dir/content")).unwrap(),
        "secret\n"
    );
    assert!(!r.join("ro-dir/new").exists());
    assert!(r.join("open-dir/new").exists());
}

#[test]
fn sysctl_in_new_namespaces() {
    let mut b = Bundle::new(
        "sysctl",
        &[
            "sh",
            "-c",
            "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni",
        ],
    );
    let host_fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_shmmni = std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap();
    let want_shmmni = if host_shmmni.trim() == "1000" {
        "1001"
    } else {
        "1000"
    };
    let want_fwd = if host_fwd.trim() == "1" { "0" } else { "1" };
    b.config["linux"]["sysctl"] = json!({
        "net.ipv4.ip_forward": want_fwd,
        "kernel.shmmni": want_shmmni,
    });
    let text = run_ok(&b);
    assert_eq!(text, format!("{want_fwd}\n{want_shmmni}\n"));
    // The host's values are untouched: the container has its own net and ipc namespaces.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap(),
        host_shmmni
    );

    // An unknown sysctl fails create, naming it.
    let mut b = Bundle::new("sysctl-bad", &["true"]);
    b.config["linux"]["sysctl"] = json!({"net.ipv4.amphi_no_such_key": "1"});
    let out = b.create();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("linux.sysctl.net.ipv4.amphi_no_such_key"),
        "{}",
        stderr(&out)
    );
    assert_nothing_left(&b);
}

#[test]
fn cgroup_mount_shows_the_container_cgroup() {
    let b = Bundle::new(
        "cgmount",
        &[
            "sh",
            "-c",
            "ls /sys/fs/cgroup/memory; echo procs=$(cat /sys/fs/cgroup/memory/cgroup.procs); \
             echo 1 > /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null; echo write-rc=$?; \
             grep ' /sys/fs/cgroup/memory ' /proc/self/mountinfo",
        ],
    );
    if !Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        eprintln!("skipped: no cgroup v1 memory hierarchy on this host");
        return;
    }
    let text = run_ok(&b);
    let (ls, rest) = text.split_once("procs=").unwrap();
    assert!(
        ls.lines().any(|l| l == "memory.limit_in_bytes"),
        "no memory.* files: {text}"
    );
    assert!(ls.lines().any(|l| l == "cgroup.procs"), "{text}");
    let lines: Vec<&str> = rest.lines().collect();
    // Only the container's processes, and its init is pid 1 there.
    assert!(
        lines[0].split_whitespace().any(|p| p == "1"),
        "cgroup.procs: {text}"
    );
    // The config mounts it read-only.
    assert_eq!(lines[1], "write-rc=1", "{text}");
    assert!(mount_opts(lines[2]).contains(&"ro"), "{text}");
}

#[test]
fn cwd_is_created() {
    let mut b = Bundle::new("cwd", &["pwd"]);
    b.config["process"]["cwd"] = json!("/work/deep/dir");
    let text = run_ok(&b);
    assert_eq!(text, "/work/deep/dir\n");
    assert!(b.rootfs().join("work/deep/dir").is_dir());
}

#[test]
fn cwd_that_is_a_file_fails_create() {
    let mut b = Bundle::new("cwdfile", &["pwd"]);
    std::fs::write(b.rootfs().join("afile"), "x").unwrap();
    b.config["process"]["cwd"] = json!("/afile");
    let out = b.create();
    assert!(!out.status.success(), "create must fail");
    assert!(stderr(&out).contains("process.cwd"), "{}", stderr(&out));
    assert_nothing_left(&b);
}

/// A mount of the config at a default device's path wins over the device, as with runc: the
/// `-v /dev/urandom:/dev/random` idiom gives /dev/random the host's urandom node (1:9).
#[test]
fn a_mount_over_a_default_device_replaces_it() {
    let mut b = Bundle::new(
        "dev-over",
        &["stat", "-c", "%t:%T", "/dev/random", "/dev/null"],
    );
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/dev/random", "type": "bind",
        "source": "/dev/urandom", "options": ["bind"]
    }));
    b.write_config();
    let out = b.run();
    assert!(out.status.success(), "run: {}", stderr(&out));
    // stat prints major:minor in hex: urandom is 1:9, null 1:3 (made as usual).
    assert_eq!(stdout(&out), "1:9\n1:3\n");
}
