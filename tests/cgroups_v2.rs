//! Cgroup v2 parts on this hybrid host (v1 controllers plus a cgroup2 mount at
//! /sys/fs/cgroup/unified): the eBPF device program on the container's cgroup2 directory (alone and
//! together with the v1 devices controller, at create and on `update`), hugepageLimits on the
//! cgroup2 hugetlb controller, `--systemd-cgroup` without systemd, and bad device rules. Pure-v2
//! and systemd path logic that this host cannot run is unit-tested in src/cgroups/{v2,systemd}.rs.
//!
//! Devices: char major 4095 has no driver on this host (see /proc/devices), so opening a node of
//! it fails with ENXIO ("No such device or address") once the device cgroup lets the open through,
//! and with EPERM ("Operation not permitted") when the device cgroup refuses it: the two errors tell
//! the filter's decision apart without touching a real device.

mod common;

use std::path::Path;
use std::process::Command;

use common::{
    assert_no_leftovers, mknod_char, stderr, stdout, unified_dir, Bundle, DENIED, NO_DEVICE,
};
use serde_json::json;

/// Device programs attached to the container's cgroup2 directory.
fn programs(b: &Bundle) -> Vec<u32> {
    amphi::cgroups::devices_bpf::attached_to(&unified_dir(b)).expect("BPF_PROG_QUERY")
}

/// A bundle whose rootfs holds /tmp/xa (c 4095:1) and /tmp/xb (c 4095:2).
fn bundle_with_nodes(name: &str, args: &[&str]) -> Bundle {
    let b = Bundle::new(name, args);
    mknod_char(&b.rootfs().join("tmp/xa"), 4095, 1);
    mknod_char(&b.rootfs().join("tmp/xb"), 4095, 2);
    b
}

/// Runs `cat node` inside the running container and returns its stderr.
fn exec_open(b: &Bundle, node: &str) -> String {
    let out = b.amphi(&["exec", &b.id, "cat", node]);
    assert!(!out.status.success(), "cat {node} succeeded");
    stderr(&out)
}

fn create_start(b: &Bundle) {
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
}

#[test]
fn device_program_rules_decide_inside_the_container() {
    // Engines' shape: deny all, then allow one node read-only.
    let mut b = bundle_with_nodes(
        "bpfrun",
        &[
            "sh",
            "-c",
            "cat /tmp/xa; cat /tmp/xb; echo x > /tmp/xa; echo x > /dev/null && echo null=ok",
        ],
    );
    b.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 4095, "minor": 1, "access": "r"},
    ]);
    let out = b.run();
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert!(stdout(&out).contains("null=ok"), "{} {err}", stdout(&out));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/tmp/xa") && l.contains(NO_DEVICE)),
        "reading the allowed node was refused: {err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/tmp/xb") && l.contains(DENIED)),
        "reading the unlisted node was not refused: {err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/tmp/xa") && l.contains(DENIED)),
        "writing the read-only node was not refused: {err}"
    );
}

#[test]
fn device_program_alone_on_the_cgroup2_directory_enforces_the_rules() {
    // A host process that joins only the container's cgroup2 directory (its v1 devices cgroup stays
    // the test's own, which allows everything) is bound by the eBPF program alone.
    let mut b = Bundle::new("bpfalone", &["sleep", "1000"]);
    b.config["linux"]["resources"]["devices"] = json!([
        {"allow": true, "type": "c", "major": 4095, "minor": 1, "access": "rw"},
    ]);
    create_start(&b);
    assert_eq!(programs(&b).len(), 1, "one device program attached");
    let nodes = b.dir.join("nodes");
    std::fs::create_dir(&nodes).unwrap();
    mknod_char(&nodes.join("xa"), 4095, 1);
    mknod_char(&nodes.join("xb"), 4095, 2);
    let procs = unified_dir(&b).join("cgroup.procs");
    let open = |node: &str| -> String {
        let script = format!(
            "echo $$ > {} && exec cat {}",
            procs.display(),
            nodes.join(node).display()
        );
        let out = Command::new("/bin/busybox")
            .args(["sh", "-c", &script])
            .output()
            .unwrap();
        assert!(!out.status.success(), "cat {node} succeeded");
        stderr(&out)
    };
    let e = open("xa");
    assert!(e.contains(NO_DEVICE), "allowed node: {e}");
    let e = open("xb");
    assert!(e.contains(DENIED), "unlisted node: {e}");
    // Outside the container's cgroup the same node opens as far as the driver (control).
    let out = Command::new("/bin/busybox")
        .args(["cat", nodes.join("xb").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(stderr(&out).contains(NO_DEVICE), "{}", stderr(&out));
}

#[test]
fn update_with_device_rules_replaces_the_program() {
    let mut b = bundle_with_nodes("bpfupd", &["sleep", "1000"]);
    b.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 4095, "minor": 1, "access": "rwm"},
    ]);
    create_start(&b);
    assert!(exec_open(&b, "/tmp/xa").contains(NO_DEVICE));
    assert!(exec_open(&b, "/tmp/xb").contains(DENIED));
    let before = programs(&b);
    assert_eq!(before.len(), 1);

    let res = b.dir.join("res.json");
    std::fs::write(
        &res,
        json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 4095, "minor": 2, "access": "rwm"},
        ]})
        .to_string(),
    )
    .unwrap();
    let out = b.amphi(&["update", "--resources", res.to_str().unwrap(), &b.id]);
    assert!(out.status.success(), "update: {}", stderr(&out));
    let e = exec_open(&b, "/tmp/xa");
    assert!(e.contains(DENIED), "xa after update: {e}");
    let e = exec_open(&b, "/tmp/xb");
    assert!(e.contains(NO_DEVICE), "xb after update: {e}");
    // Replaced, not stacked; the default nodes stay usable.
    let after = programs(&b);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before);
    let out = b.amphi(&["exec", &b.id, "sh", "-c", "echo x > /dev/null"]);
    assert!(
        out.status.success(),
        "/dev/null after update: {}",
        stderr(&out)
    );
    // v1 has the same rules.
    let list = std::fs::read_to_string(
        Path::new("/sys/fs/cgroup/devices")
            .join(b.cgroup.trim_start_matches('/'))
            .join("devices.list"),
    )
    .unwrap();
    assert!(list.lines().any(|l| l == "c 4095:2 rwm"), "{list}");
    assert!(!list.lines().any(|l| l == "c 4095:1 rwm"), "{list}");
}

#[test]
fn invalid_device_rule_fails_create_and_leaves_nothing() {
    for (rule, field) in [
        (
            json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rx"}),
            "access",
        ),
        (
            json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": ""}),
            "access: empty",
        ),
        (
            json!({"allow": false, "type": "b", "major": -5, "access": "r"}),
            "major: -5 is negative",
        ),
    ] {
        let mut b = Bundle::new("bpfbad", &["sleep", "1000"]);
        b.config["linux"]["resources"]["devices"] = json!([rule]);
        let out = b.create();
        assert!(!out.status.success(), "{rule}: create succeeded");
        let e = stderr(&out);
        assert!(
            e.contains("linux.resources.devices[0]") && e.contains(field),
            "{rule}: {e}"
        );
        assert_no_leftovers(&b);
    }
}

/// The default huge page size of this host in the kernel's spelling (`2MB`), from /proc/meminfo.
fn huge_page_size() -> String {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("Hugepagesize in /proc/meminfo");
    if kb >= 1 << 20 {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

#[test]
fn hugepage_limits_go_to_the_cgroup2_hugetlb_controller() {
    let size = huge_page_size();
    let root_ctl =
        std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.subtree_control").unwrap();
    let mut b = Bundle::new("huge", &["sleep", "1000"]);
    b.config["linux"]["resources"]["hugepageLimits"] =
        json!([{"pageSize": size, "limit": 8 * 1024 * 1024}]);
    let out = b.create();
    if root_ctl.split_whitespace().any(|c| c == "hugetlb") {
        // The host delegates hugetlb below the root: amphi enables it in the parents it creates and
        // writes the limit.
        assert!(out.status.success(), "create: {}", stderr(&out));
        let v =
            std::fs::read_to_string(unified_dir(&b).join(format!("hugetlb.{size}.max"))).unwrap();
        assert_eq!(v.trim(), "8388608");
    } else {
        // This host's root cgroup2 does not pass hugetlb down, and amphi never writes to a cgroup it
        // did not create: a clear error, nothing left.
        assert!(!out.status.success(), "create succeeded without hugetlb");
        let e = stderr(&out);
        assert!(
            e.contains("hugepageLimits")
                && e.contains("hugetlb controller is not available")
                && e.contains("cgroup.subtree_control"),
            "{e}"
        );
        assert_no_leftovers(&b);
    }

    // A page size not in the kernel's spelling.
    let mut b = Bundle::new("hugebad", &["sleep", "1000"]);
    b.config["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "2M", "limit": 1}]);
    let out = b.create();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("hugepageLimits[0].pageSize"),
        "{}",
        stderr(&out)
    );
    assert_no_leftovers(&b);
}

#[test]
fn systemd_cgroup_without_systemd_is_refused_clearly() {
    let mut b = Bundle::new("sd", &["true"]);
    let unit = format!("amphi-test-{}.scope", b.id);
    b.config["linux"]["cgroupsPath"] = json!(format!("system.slice:amphi-test:{}", b.id));
    b.write_config();
    let dir = b.dir.to_string_lossy().into_owned();
    let out = b.amphi(&["--systemd-cgroup", "create", "--bundle", &dir, &b.id]);
    assert!(!out.status.success(), "create succeeded");
    let e = stderr(&out);
    assert!(e.contains("--systemd-cgroup"), "{e}");
    if !Path::new("/run/systemd/system").exists() {
        assert!(e.contains("systemd is not running"), "{e}");
    }
    assert_no_leftovers(&b);
    assert!(
        common::cgroup_dirs_of(&format!("/system.slice/{unit}")).is_empty(),
        "a systemd-style cgroup was made"
    );

    // Malformed systemd paths.
    for bad in [
        "/amphi-test/x",
        "system.slice:amphi-test:../x",
        "bad--x.slice:p:n",
    ] {
        b.config["linux"]["cgroupsPath"] = json!(bad);
        b.write_config();
        let out = b.amphi(&["--systemd-cgroup", "create", "--bundle", &dir, &b.id]);
        assert!(!out.status.success(), "{bad}: create succeeded");
        let e = stderr(&out);
        assert!(
            e.contains("linux.cgroupsPath") || e.contains("slice"),
            "{bad}: {e}"
        );
        assert_no_leftovers(&b);
    }
}
