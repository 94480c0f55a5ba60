//! Namespaces (config-linux.md "Namespaces", "User namespace mappings", "Offset for Time Namespace"):
//! new ones, joined ones, bad paths, id maps and time offsets, each checked in a real container.

mod common;

use std::path::Path;

use common::{stderr, stdout, wait_for, Bundle};
use serde_json::json;

/// Removes the namespace of type `typ` from `linux.namespaces`.
fn remove_ns(b: &mut Bundle, typ: &str) {
    let list = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    list.retain(|n| n["type"] != typ);
}

/// Adds (or replaces) a namespace of type `typ`, new or joined through `path`.
fn set_ns(b: &mut Bundle, typ: &str, path: Option<&str>) {
    remove_ns(b, typ);
    let mut ns = json!({ "type": typ });
    if let Some(p) = path {
        ns["path"] = json!(p);
    }
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(ns);
}

/// Index of namespace `typ` in `linux.namespaces`.
fn ns_index(b: &Bundle, typ: &str) -> usize {
    b.config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .position(|n| n["type"] == typ)
        .unwrap()
}

/// `readlink /proc/<who>/ns/<name>` on the host.
fn host_ns(who: &str, name: &str) -> String {
    std::fs::read_link(format!("/proc/{who}/ns/{name}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Asserts that a failed create left nothing: no state dir, no cgroup.
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
}

/// Creates the container, asserting success, and returns the init pid.
fn create_ok(b: &Bundle) -> i32 {
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    b.state().expect("state")["pid"].as_i64().unwrap() as i32
}

#[test]
fn uts_hostname_and_domainname() {
    let mut b = Bundle::new(
        "uts",
        &["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"],
    );
    b.config["hostname"] = json!("amphi-uts-test");
    b.config["domainname"] = json!("amphi.example");
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host_domain = std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap();
    let out = b.run();
    assert!(out.status.success(), "run: {}", stderr(&out));
    assert_eq!(stdout(&out), "amphi-uts-test\namphi.example\n");
    // The host's names are untouched.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_name
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap(),
        host_domain
    );
}

#[test]
fn hostname_without_uts_namespace_fails() {
    let mut b = Bundle::new("nouts-host", &["true"]);
    remove_ns(&mut b, "uts");
    b.config["hostname"] = json!("h");
    let out = b.create();
    assert!(!out.status.success(), "create must fail without a UTS ns");
    assert!(stderr(&out).contains("hostname"), "{}", stderr(&out));
    assert_nothing_left(&b);

    let mut b = Bundle::new("nouts-dom", &["true"]);
    remove_ns(&mut b, "uts");
    b.config["hostname"] = json!("");
    b.config["domainname"] = json!("example.org");
    let out = b.create();
    assert!(!out.status.success(), "create must fail without a UTS ns");
    assert!(stderr(&out).contains("domainname"), "{}", stderr(&out));
    assert_nothing_left(&b);

    // Without a hostname, no UTS namespace is fine: the host's name shows.
    let mut b = Bundle::new("nouts-ok", &["hostname"]);
    remove_ns(&mut b, "uts");
    b.config.as_object_mut().unwrap().remove("hostname");
    let out = b.run();
    assert!(out.status.success(), "run: {}", stderr(&out));
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(stdout(&out), host_name);
}

#[test]
fn workload_is_pid_1() {
    let b = Bundle::new(
        "pidns",
        &["sh", "-c", "echo $$; readlink /proc/self/ns/pid"],
    );
    let out = b.run();
    assert!(out.status.success(), "run: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], "1");
    assert_ne!(lines[1], host_ns("self", "pid"));
}

#[test]
fn new_namespaces_differ_from_host() {
    let names = ["ipc", "net", "uts", "pid", "mnt", "cgroup"];
    let script = names
        .iter()
        .map(|n| format!("readlink /proc/self/ns/{n}"))
        .collect::<Vec<_>>()
        .join("; ");
    let b = Bundle::new("newns", &["sh", "-c", &script]);
    let out = b.run();
    assert!(out.status.success(), "run: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), names.len(), "{text}");
    for (n, line) in names.iter().zip(&lines) {
        let host = host_ns("self", n);
        assert!(line.starts_with(&format!("{n}:[")), "{n}: {line}");
        assert_ne!(*line, host, "{n} namespace is the host's");
    }

    // Without an ipc entry the container shares the host's ipc namespace.
    let mut b = Bundle::new("hostipc", &["readlink", "/proc/self/ns/ipc"]);
    remove_ns(&mut b, "ipc");
    let out = b.run();
    assert!(out.status.success(), "run: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), host_ns("self", "ipc"));
}

#[test]
fn new_net_namespace_has_only_lo() {
    let b = Bundle::new("netns", &["cat", "/proc/net/dev"]);
    let out = b.run();
    assert!(out.status.success(), "run: {}", stderr(&out));
    let text = stdout(&out);
    // Two header lines, then one line per interface.
    let ifaces: Vec<&str> = text
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, vec!["lo"], "{text}");

    // Without a network namespace the host's interfaces show.
    let host_dev = std::fs::read_to_string("/proc/net/dev").unwrap();
    let host_count = host_dev.lines().skip(2).count();
    let mut b = Bundle::new("hostnet", &["cat", "/proc/net/dev"]);
    remove_ns(&mut b, "network");
    let out = b.run();
    assert!(out.status.success(), "run: {}", stderr(&out));
    assert_eq!(stdout(&out).lines().skip(2).count(), host_count);
}

#[test]
fn cgroup_namespace_shows_root_paths() {
    let b = Bundle::new("cgns", &["cat", "/proc/self/cgroup"]);
    let out = b.run();
    assert!(out.status.success(), "run: {}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.is_empty());
    for line in text.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("?");
        assert_eq!(path, "/", "{line}");
    }

    // Without a cgroup namespace the container's cgroup path shows.
    let mut b = Bundle::new("nocgns", &["cat", "/proc/self/cgroup"]);
    remove_ns(&mut b, "cgroup");
    let out = b.run();
    assert!(out.status.success(), "run: {}", stderr(&out));
    let text = stdout(&out);
    let memory = text
        .lines()
        .find(|l| l.split(':').nth(1) == Some("memory"))
        .unwrap_or_else(|| panic!("no memory line: {text}"));
    assert!(memory.ends_with(&b.cgroup), "{memory} vs {}", b.cgroup);
}

/// Uptime in seconds from `/proc/uptime` text.
fn uptime_of(text: &str) -> f64 {
    text.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn time_namespace_offsets() {
    if !Path::new("/proc/self/ns/time").exists() {
        eprintln!("skipped: the kernel has no time namespaces");
        return;
    }
    let mut b = Bundle::new(
        "timens",
        &[
            "sh",
            "-c",
            "cat /proc/uptime; cat /proc/self/timens_offsets",
        ],
    );
    set_ns(&mut b, "time", None);
    b.config["linux"]["timeOffsets"] = json!({
        "monotonic": {"secs": 1000000, "nanosecs": 0},
        "boottime": {"secs": 2000000, "nanosecs": 0},
    });
    let before = uptime_of(&std::fs::read_to_string("/proc/uptime").unwrap());
    let out = b.run();
    let after = uptime_of(&std::fs::read_to_string("/proc/uptime").unwrap());
    assert!(out.status.success(), "run: {}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let inside = uptime_of(lines.next().unwrap());
    // /proc/uptime follows CLOCK_BOOTTIME: shifted by the boottime offset.
    assert!(
        inside >= before + 2_000_000.0 && inside <= after + 2_000_000.0 + 1.0,
        "uptime inside {inside}, host {before}..{after}"
    );
    let offsets: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert!(
        offsets.contains(&vec!["monotonic", "1000000", "0"]),
        "{text}"
    );
    assert!(
        offsets.contains(&vec!["boottime", "2000000", "0"]),
        "{text}"
    );

    // A new time namespace without offsets sees the host's uptime.
    let mut b = Bundle::new("timens0", &["cat", "/proc/uptime"]);
    set_ns(&mut b, "time", None);
    let before = uptime_of(&std::fs::read_to_string("/proc/uptime").unwrap());
    let out = b.run();
    let after = uptime_of(&std::fs::read_to_string("/proc/uptime").unwrap());
    assert!(out.status.success(), "run: {}", stderr(&out));
    let inside = uptime_of(&stdout(&out));
    assert!(
        inside >= before && inside <= after + 1.0,
        "{inside} {before} {after}"
    );

    // Offsets without a time namespace are refused, naming the field.
    let mut b = Bundle::new("timens-bad", &["true"]);
    b.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 5}});
    let out = b.create();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("linux.timeOffsets"),
        "{}",
        stderr(&out)
    );
    assert_nothing_left(&b);
}

#[test]
fn join_namespaces_by_path() {
    let mut a = Bundle::new("join-a", &["sleep", "1000"]);
    a.config["hostname"] = json!("amphi-join-a");
    let a_pid = create_ok(&a);
    let out = a.amphi(&["start", &a.id]);
    assert!(out.status.success(), "start A: {}", stderr(&out));
    let a_net = host_ns(&a_pid.to_string(), "net");
    let a_uts = host_ns(&a_pid.to_string(), "uts");
    assert_ne!(a_net, host_ns("self", "net"));

    let mut b = Bundle::new(
        "join-b",
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/net; readlink /proc/self/ns/uts; hostname",
        ],
    );
    set_ns(&mut b, "network", Some(&format!("/proc/{a_pid}/ns/net")));
    set_ns(&mut b, "uts", Some(&format!("/proc/{a_pid}/ns/uts")));
    // Without a hostname, a joined UTS namespace keeps its name.
    b.config.as_object_mut().unwrap().remove("hostname");
    let out = b.run();
    assert!(out.status.success(), "run B: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{a_net}\n{a_uts}\namphi-join-a\n"),
        "B must be in A's net and uts namespaces"
    );
    // A still runs, undisturbed.
    assert_eq!(a.state().unwrap()["status"], "running");

    // As runc: a hostname may be set in a joined UTS namespace (it renames the shared namespace).
    let mut c = Bundle::new("join-c", &["hostname"]);
    set_ns(&mut c, "uts", Some(&format!("/proc/{a_pid}/ns/uts")));
    c.config["hostname"] = json!("amphi-join-c");
    let out = c.run();
    assert!(out.status.success(), "run C: {}", stderr(&out));
    assert_eq!(stdout(&out), "amphi-join-c\n");
    let out = a.amphi(&["state", &a.id]);
    assert!(out.status.success());
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(
        host_name.trim(),
        "amphi-join-c",
        "the host's name must not change"
    );
}

#[test]
fn bad_namespace_path_fails_create() {
    // A path that does not exist.
    let mut b = Bundle::new("badns", &["true"]);
    set_ns(&mut b, "network", Some("/nonexistent/amphi/ns/net"));
    let i = ns_index(&b, "network");
    let out = b.create();
    assert!(!out.status.success(), "create must fail");
    let field = format!("linux.namespaces[{i}].path");
    assert!(stderr(&out).contains(&field), "{}", stderr(&out));
    assert_nothing_left(&b);

    // A file that is not a namespace.
    let mut b = Bundle::new("badns-file", &["true"]);
    let not_ns = b.dir.join("not-a-namespace");
    std::fs::write(&not_ns, "x").unwrap();
    set_ns(&mut b, "network", Some(not_ns.to_str().unwrap()));
    let i = ns_index(&b, "network");
    let out = b.create();
    assert!(!out.status.success(), "create must fail");
    let field = format!("linux.namespaces[{i}].path");
    assert!(stderr(&out).contains(&field), "{}", stderr(&out));
    assert_nothing_left(&b);

    // A namespace of the wrong type.
    let mut b = Bundle::new("badns-type", &["true"]);
    set_ns(&mut b, "network", Some("/proc/self/ns/uts"));
    let i = ns_index(&b, "network");
    let out = b.create();
    assert!(!out.status.success(), "create must fail");
    let field = format!("linux.namespaces[{i}].path");
    assert!(stderr(&out).contains(&field), "{}", stderr(&out));
    assert_nothing_left(&b);

    // A relative path is refused by validation.
    let mut b = Bundle::new("badns-rel", &["true"]);
    set_ns(&mut b, "ipc", Some("proc/1/ns/ipc"));
    let i = ns_index(&b, "ipc");
    let out = b.create();
    assert!(!out.status.success(), "create must fail");
    let field = format!("linux.namespaces[{i}].path");
    assert!(stderr(&out).contains(&field), "{}", stderr(&out));
    assert_nothing_left(&b);
}

/// Parses a `uid_map`/`gid_map` text into (inside, outside, count) triples.
fn parse_map(text: &str) -> Vec<(u64, u64, u64)> {
    text.lines()
        .map(|l| {
            let f: Vec<u64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            assert_eq!(f.len(), 3, "{l}");
            (f[0], f[1], f[2])
        })
        .collect()
}

/// `Uid:`/`Gid:` fields of `/proc/<pid>/status` (real, effective, saved, fs).
fn status_ids(pid: i32, key: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find(|l| l.starts_with(key))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect()
}

#[test]
fn user_namespace_with_several_ranges() {
    let mut b = Bundle::new(
        "userns",
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map > /tmp/uid_map; cat /proc/self/gid_map > /tmp/gid_map; \
             id > /tmp/id.tmp; mv /tmp/id.tmp /tmp/id; exec sleep 1000",
        ],
    );
    set_ns(&mut b, "user", None);
    let maps = json!([
        {"containerID": 0, "hostID": 100000, "size": 1000},
        {"containerID": 1000, "hostID": 2000, "size": 10},
    ]);
    b.config["linux"]["uidMappings"] = maps.clone();
    b.config["linux"]["gidMappings"] = maps;
    b.config["root"]["readonly"] = json!(false);
    // The rootfs belongs to the container's root; the directories above it must be traversable
    // by it (the test's temporary directory is 0700).
    let st = std::process::Command::new("chown")
        .args(["-R", "-h", "100000:100000"])
        .arg(b.rootfs())
        .status()
        .unwrap();
    assert!(st.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        b.dir.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    let pid = create_ok(&b);
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let id_file = b.rootfs().join("tmp/id");
    assert!(
        wait_for(|| id_file.exists()),
        "the container did not write /tmp/id"
    );
    let expected = vec![(0, 100000, 1000), (1000, 2000, 10)];
    let uid_map = std::fs::read_to_string(b.rootfs().join("tmp/uid_map")).unwrap();
    let gid_map = std::fs::read_to_string(b.rootfs().join("tmp/gid_map")).unwrap();
    assert_eq!(parse_map(&uid_map), expected, "uid_map: {uid_map}");
    assert_eq!(parse_map(&gid_map), expected, "gid_map: {gid_map}");
    let id = std::fs::read_to_string(&id_file).unwrap();
    assert!(id.starts_with("uid=0(root) gid=0(root)"), "id: {id}");
    // On the host, the container's root is uid/gid 100000.
    assert_eq!(status_ids(pid, "Uid:"), vec![100000; 4]);
    assert_eq!(status_ids(pid, "Gid:"), vec![100000; 4]);
    assert_ne!(host_ns(&pid.to_string(), "user"), host_ns("self", "user"));
    // Files the container wrote belong to 100000 on the host.
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&id_file).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (100000, 100000));
}

#[test]
fn user_namespace_requires_mappings() {
    let mut b = Bundle::new("userns-nomap", &["true"]);
    set_ns(&mut b, "user", None);
    let out = b.create();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("linux.uidMappings"),
        "{}",
        stderr(&out)
    );
    assert_nothing_left(&b);

    // Overlapping ranges are refused by the kernel; the error names the field.
    let mut b = Bundle::new("userns-overlap", &["true"]);
    set_ns(&mut b, "user", None);
    b.config["linux"]["uidMappings"] = json!([
        {"containerID": 0, "hostID": 100000, "size": 1000},
        {"containerID": 500, "hostID": 200000, "size": 10},
    ]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 1000}]);
    let out = b.create();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("linux.uidMappings"),
        "{}",
        stderr(&out)
    );
    assert_nothing_left(&b);
}

/// Joining amphi's own mount namespace by path would put the container's rootfs (pivot_root) under
/// every process of that namespace: create refuses it, naming the field, before anything is made.
/// amphi runs in a private mount namespace (`unshare -m`) here, so that a regression could only
/// harm that namespace, never the host's.
#[test]
fn joining_the_runtimes_own_mount_namespace_is_refused() {
    let mut b = Bundle::new("ns-own-mnt", &["true"]);
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    let i = ns.iter().position(|n| n["type"] == "mount").unwrap();
    ns[i] = serde_json::json!({"type": "mount", "path": "/proc/self/ns/mnt"});
    b.write_config();
    let out = std::process::Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            common::amphi_bin(),
            "--root",
        ])
        .arg(&b.root)
        .args(["create", "--bundle"])
        .arg(&b.dir)
        .arg(&b.id)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "create succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("linux.namespaces[{i}].path"))
            && err.contains("host's mount namespace"),
        "{err}"
    );
    common::assert_no_leftovers(&b);
}
