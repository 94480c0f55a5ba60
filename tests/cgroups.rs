//! Cgroups on this hybrid host (v1 controllers plus a cgroup2 mount at /sys/fs/cgroup/unified):
//! limits enforced and written, update, pause/resume, ps, events, kill --all, device rules,
//! `linux.resources.unified`, bad input, leftovers. Every container uses the harness's own cgroup
//! path under `/amphi-test/`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, stdout, wait_for, Bundle};
use serde_json::{json, Value};

const MIB: i64 = 1024 * 1024;

/// The container's directory in the v1 hierarchy of `ctrl` (or `unified` for the cgroup2 mount).
fn cg_dir(b: &Bundle, ctrl: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(ctrl)
        .join(b.cgroup.trim_start_matches('/'))
}

/// The trimmed content of `file` in the container's `ctrl` cgroup.
fn cg_read(b: &Bundle, ctrl: &str, file: &str) -> String {
    let p = cg_dir(b, ctrl).join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Sorted pids in the container's cgroup (the pids hierarchy).
fn cg_procs(b: &Bundle) -> Vec<i64> {
    let mut v: Vec<i64> = cg_read(b, "pids", "cgroup.procs")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// `create` then `start`; returns the init pid.
fn create_start(b: &Bundle) -> i64 {
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    b.state().expect("state")["pid"].as_i64().unwrap()
}

/// `ps --format json` parsed.
fn ps_json(b: &Bundle) -> Vec<i64> {
    let out = b.amphi(&["ps", "--format", "json", &b.id]);
    assert!(out.status.success(), "ps: {}", stderr(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ps json {:?}: {e}", stdout(&out)))
}

/// True when `pid` has exited (gone, or a zombie).
fn dead(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
    }
}

/// A long-running amphi child (e.g. streaming `events`), killed by its own pid on drop.
struct AmphiChild {
    child: Child,
    out: PathBuf,
}

impl AmphiChild {
    fn spawn(b: &Bundle, args: &[&str], name: &str) -> AmphiChild {
        let out = b.dir.join(name);
        let child = b
            .cmd(args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(out.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        AmphiChild { child, out }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(self.out.with_extension("err")).unwrap_or_default()
    }
}

impl Drop for AmphiChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `secs` for `cond`.
fn wait_secs(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// Asserts that a failed create left nothing: no state dir, no cgroup dir in any hierarchy.
fn assert_nothing_left(b: &Bundle) {
    assert!(!b.root.join(&b.id).exists(), "state dir left");
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
    assert!(b.state().is_none(), "state still answers");
}

/// The allocation that busts a 32 MiB limit: the shell keeps 200 MB of output in memory.
const HOG: &str = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived";

fn memory_32m(b: &mut Bundle) {
    b.config["linux"]["resources"]["memory"] = json!({"limit": 32 * MIB, "swap": 32 * MIB});
}

#[test]
fn memory_limit_kills_foreground_run_with_137() {
    let mut b = Bundle::new("oomrun", &["sh", "-c", HOG]);
    memory_32m(&mut b);
    let out = b.run();
    assert!(
        !stdout(&out).contains("survived"),
        "the allocation was not stopped: {}",
        stdout(&out)
    );
    assert_eq!(out.status.code(), Some(137), "stderr: {}", stderr(&out));
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
}

#[test]
fn memory_limit_too_low_for_create_is_named_and_nothing_is_left() {
    // The runtime's own processes join the cgroup before the workload starts: with a 1-byte limit
    // (one page) the OOM killer ends the intermediate process during create.
    let mut b = Bundle::new("oomcreate", &["true"]);
    b.config["linux"]["resources"]["memory"] = json!({"limit": 1});
    let out = b.create();
    assert!(
        !out.status.success(),
        "create succeeded with a 1-byte limit"
    );
    let err = stderr(&out);
    assert!(
        err.contains("linux.resources.memory.limit: 1 is too low")
            && err.contains("the OOM killer ended"),
        "the error does not name the limit: {err}"
    );
    assert_nothing_left(&b);
}

#[test]
fn memory_limit_oom_kill_is_reported_by_events() {
    let mut b = Bundle::new("oomev", &["sleep", "1000"]);
    memory_32m(&mut b);
    create_start(&b);
    assert_eq!(
        cg_read(&b, "memory", "memory.limit_in_bytes"),
        (32 * MIB).to_string()
    );
    assert_eq!(
        cg_read(&b, "memory", "memory.memsw.limit_in_bytes"),
        (32 * MIB).to_string()
    );
    let events = AmphiChild::spawn(&b, &["events", "--interval", "1s", &b.id], "events.out");
    // The stream has started once the first stats event is out.
    assert!(
        wait_secs(10, || events.output().contains("\"stats\"")),
        "no stats event: {} {}",
        events.output(),
        events.errors()
    );
    let out = b.amphi(&["exec", &b.id, "sh", "-c", HOG]);
    assert!(!stdout(&out).contains("survived"), "{}", stdout(&out));
    assert_eq!(out.status.code(), Some(137), "exec: {}", stderr(&out));
    assert!(
        wait_secs(10, || events.output().contains("\"type\":\"oom\"")),
        "no oom event: {}",
        events.output()
    );
    let oom: Value = events
        .output()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "oom")
        .expect("oom line is JSON");
    assert_eq!(oom["id"], b.id.as_str());
    // The container itself survived the OOM kill of the exec'd process.
    assert_eq!(b.state().unwrap()["status"], "running");
}

#[test]
fn pids_limit_stops_fork_loop() {
    let mut b = Bundle::new(
        "pids",
        &[
            "sh",
            "-c",
            // ash gives up on the first refused fork: the loop runs in a child shell whose
            // sleeps stay behind (adopted by the init) when it exits.
            "sh -c 'for i in $(seq 50); do sleep 100 & done' 2>/dev/null; exec sleep 1000",
        ],
    );
    b.config["linux"]["resources"]["pids"] = json!({"limit": 10});
    create_start(&b);
    assert_eq!(cg_read(&b, "pids", "pids.max"), "10");
    // The loop forks until the limit refuses more processes.
    assert!(
        wait_secs(10, || {
            cg_read(&b, "pids", "pids.events")
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        }),
        "no fork was refused: {}",
        cg_read(&b, "pids", "pids.events")
    );
    // The init survived and keeps the loop's sleeps.
    assert!(wait_for(|| ps_json(&b).len() >= 2), "{:?}", ps_json(&b));
    let pids = ps_json(&b);
    assert!(pids.len() <= 10, "{} processes: {pids:?}", pids.len());
    let current: usize = cg_read(&b, "pids", "pids.current").parse().unwrap();
    assert!(current <= 10, "pids.current {current}");
}

#[test]
fn cpu_cpuset_memory_blkio_values_land_in_cgroup_files() {
    let mut b = Bundle::new("cpu", &["sleep", "1000"]);
    b.config["linux"]["resources"]["cpu"] = json!({
        "shares": 512, "quota": 50000, "period": 200000, "cpus": "0", "mems": "0"
    });
    b.config["linux"]["resources"]["memory"] =
        json!({"limit": 64 * MIB, "reservation": 16 * MIB, "swappiness": 10});
    let blkio_weight = Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists();
    if blkio_weight {
        b.config["linux"]["resources"]["blockIO"] = json!({"weight": 300});
    } else {
        eprintln!("skip blkio.weight: this host's blkio hierarchy has no blkio.weight file");
    }
    create_start(&b);
    assert_eq!(cg_read(&b, "cpu", "cpu.shares"), "512");
    assert_eq!(cg_read(&b, "cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(cg_read(&b, "cpu", "cpu.cfs_period_us"), "200000");
    assert_eq!(cg_read(&b, "cpuset", "cpuset.cpus"), "0");
    assert_eq!(cg_read(&b, "cpuset", "cpuset.mems"), "0");
    assert_eq!(
        cg_read(&b, "memory", "memory.limit_in_bytes"),
        (64 * MIB).to_string()
    );
    assert_eq!(
        cg_read(&b, "memory", "memory.soft_limit_in_bytes"),
        (16 * MIB).to_string()
    );
    assert_eq!(cg_read(&b, "memory", "memory.swappiness"), "10");
    if blkio_weight {
        assert_eq!(cg_read(&b, "blkio", "blkio.weight"), "300");
    }
    // The workload really runs under these limits: its cpuset is CPU 0.
    let out = b.amphi(&[
        "exec",
        &b.id,
        "grep",
        "Cpus_allowed_list",
        "/proc/self/status",
    ]);
    assert!(out.status.success(), "exec: {}", stderr(&out));
    assert_eq!(
        stdout(&out).split_whitespace().nth(1),
        Some("0"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn update_with_resources_json_on_stdin_as_containerd_calls_it() {
    let b = Bundle::new("updjson", &["sleep", "1000"]);
    create_start(&b);
    let log = b.dir.join("amphi.log");
    let mut child = b
        .cmd(&[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "update",
            "--resources",
            "-",
            &b.id,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"memory":{"limit":134217728,"swap":134217728},"cpu":{}}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "update: {} log: {}",
        stderr(&out),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(cg_read(&b, "memory", "memory.limit_in_bytes"), "134217728");
    assert_eq!(
        cg_read(&b, "memory", "memory.memsw.limit_in_bytes"),
        "134217728"
    );
    assert_eq!(b.state().unwrap()["status"], "running");
}

#[test]
fn update_with_flags() {
    let mut b = Bundle::new("updflags", &["sleep", "1000"]);
    b.config["linux"]["resources"]["memory"] = json!({"limit": 64 * MIB, "swap": 64 * MIB});
    b.config["linux"]["resources"]["pids"] = json!({"limit": 50});
    create_start(&b);
    let mem = (256 * MIB).to_string();
    let out = b.amphi(&[
        "update",
        "--memory",
        &mem,
        "--memory-swap",
        &mem,
        "--pids-limit",
        "20",
        "--cpu-quota",
        "30000",
        "--cpu-period",
        "100000",
        "--cpu-share",
        "256",
        &b.id,
    ]);
    assert!(out.status.success(), "update: {}", stderr(&out));
    assert_eq!(cg_read(&b, "memory", "memory.limit_in_bytes"), mem);
    assert_eq!(cg_read(&b, "memory", "memory.memsw.limit_in_bytes"), mem);
    assert_eq!(cg_read(&b, "pids", "pids.max"), "20");
    assert_eq!(cg_read(&b, "cpu", "cpu.cfs_quota_us"), "30000");
    assert_eq!(cg_read(&b, "cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(cg_read(&b, "cpu", "cpu.shares"), "256");
    // Lowering again, and -1 lifts the quota.
    let out = b.amphi(&["update", "--cpu-quota", "-1", "--pids-limit", "5", &b.id]);
    assert!(out.status.success(), "update: {}", stderr(&out));
    assert_eq!(cg_read(&b, "cpu", "cpu.cfs_quota_us"), "-1");
    assert_eq!(cg_read(&b, "pids", "pids.max"), "5");
    // Untouched values stay.
    assert_eq!(cg_read(&b, "cpu", "cpu.shares"), "256");
    assert_eq!(cg_read(&b, "memory", "memory.limit_in_bytes"), mem);
}

#[test]
fn update_fails_for_stopped_container_and_malformed_json() {
    let b = Bundle::new("updbad", &["sleep", "1000"]);
    create_start(&b);
    let mut child = b
        .cmd(&["update", "--resources", "-", &b.id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"memory":{"limit":"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "malformed JSON was accepted");
    assert!(stderr(&out).contains("--resources"), "{}", stderr(&out));
    let file = b.dir.join("res.json");
    std::fs::write(&file, "{not json").unwrap();
    let out = b.amphi(&["update", "--resources", file.to_str().unwrap(), &b.id]);
    assert!(!out.status.success(), "malformed JSON file was accepted");
    assert!(stderr(&out).contains("--resources"), "{}", stderr(&out));
    assert_eq!(b.state().unwrap()["status"], "running");

    let out = b.amphi(&["kill", &b.id, "KILL"]);
    assert!(out.status.success(), "kill: {}", stderr(&out));
    assert!(wait_for(|| b.state().unwrap()["status"] == "stopped"));
    let out = b.amphi(&["update", "--memory", "134217728", &b.id]);
    assert!(!out.status.success(), "update of a stopped container");
    assert!(stderr(&out).contains("stopped"), "{}", stderr(&out));
}

/// The counter the container writes, read from the host (`None` while it is being rewritten).
fn counter(b: &Bundle) -> Option<u64> {
    std::fs::read_to_string(b.rootfs().join("tmp/counter"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// A stable counter reading (two equal reads 200 ms apart), or the last one seen.
fn settled_counter(b: &Bundle) -> Option<u64> {
    let mut last = None;
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(200));
        let now = counter(b);
        if now.is_some() && now == last {
            return now;
        }
        last = now;
    }
    last
}

#[test]
fn pause_stops_progress_and_resume_restores_it() {
    let mut b = Bundle::new(
        "pause",
        &[
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; \
             mv /tmp/counter.new /tmp/counter; usleep 20000; done",
        ],
    );
    b.config["root"]["readonly"] = json!(false);
    create_start(&b);
    assert!(
        wait_secs(10, || counter(&b).is_some_and(|n| n > 3)),
        "the counter does not run"
    );
    let out = b.amphi(&["pause", &b.id]);
    assert!(out.status.success(), "pause: {}", stderr(&out));
    assert_eq!(b.state().unwrap()["status"], "paused");
    assert_eq!(cg_read(&b, "freezer", "freezer.state"), "FROZEN");
    let frozen = counter(&b).expect("counter while paused");
    assert_eq!(
        settled_counter(&b),
        Some(frozen),
        "the counter moved while paused"
    );
    let out = b.amphi(&["pause", &b.id]);
    assert!(!out.status.success(), "pausing a paused container");

    let out = b.amphi(&["resume", &b.id]);
    assert!(out.status.success(), "resume: {}", stderr(&out));
    assert_eq!(b.state().unwrap()["status"], "running");
    assert_eq!(cg_read(&b, "freezer", "freezer.state"), "THAWED");
    assert!(
        wait_secs(10, || counter(&b).is_some_and(|n| n > frozen)),
        "the counter did not move after resume"
    );
    let out = b.amphi(&["resume", &b.id]);
    assert!(!out.status.success(), "resuming a running container");
    assert!(stderr(&out).contains("not paused"), "{}", stderr(&out));
}

#[test]
fn kill_all_signals_every_process_in_the_cgroup() {
    // The init (pid 1 of its namespace, no TERM handler) ignores SIGTERM; its children do not.
    let b = Bundle::new(
        "killall",
        &[
            "sh",
            "-c",
            "sleep 1000 & sleep 1000 & while :; do sleep 1000; done",
        ],
    );
    let init = create_start(&b);
    assert!(wait_for(|| ps_json(&b).len() == 4), "{:?}", ps_json(&b));
    let children: Vec<i64> = ps_json(&b).into_iter().filter(|p| *p != init).collect();
    assert_eq!(children.len(), 3, "{children:?}");

    // A plain kill reaches the init only, which ignores it.
    let out = b.amphi(&["kill", &b.id, "TERM"]);
    assert!(out.status.success(), "kill: {}", stderr(&out));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        children.iter().all(|p| !dead(*p)),
        "kill without --all reached the children"
    );

    let out = b.amphi(&["kill", "--all", &b.id, "TERM"]);
    assert!(out.status.success(), "kill --all: {}", stderr(&out));
    assert!(
        wait_for(|| children.iter().all(|p| dead(*p))),
        "kill --all missed a child: {:?}",
        children.iter().filter(|p| !dead(**p)).collect::<Vec<_>>()
    );
    assert!(!dead(init), "the init should ignore SIGTERM");
    assert_eq!(b.state().unwrap()["status"], "running");

    let out = b.amphi(&["kill", "--all", &b.id, "KILL"]);
    assert!(out.status.success(), "kill --all: {}", stderr(&out));
    assert!(wait_for(|| b.state().unwrap()["status"] == "stopped"));
    assert!(wait_for(|| cg_procs(&b).is_empty()), "{:?}", cg_procs(&b));
}

#[test]
fn ps_lists_only_the_containers_processes() {
    let b = Bundle::new("ps", &["sh", "-c", "sleep 1000 & sleep 1001 & wait"]);
    let init = create_start(&b);
    assert!(wait_for(|| cg_procs(&b).len() == 3), "{:?}", cg_procs(&b));
    let procs = cg_procs(&b);
    let json = ps_json(&b);
    assert_eq!(json, procs);
    assert!(json.contains(&init));

    let out = b.amphi(&["ps", &b.id]);
    assert!(out.status.success(), "ps: {}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .unwrap_or_else(|| panic!("no PID column: {header}"));
    let mut listed: Vec<i64> = lines
        .map(|l| l.split_whitespace().nth(col).unwrap().parse().unwrap())
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, procs, "{text}");
    assert!(text.contains("sleep 1001"), "{text}");

    // Extra ps(1) options.
    let out = b.amphi(&["ps", &b.id, "-o", "pid,comm"]);
    assert!(out.status.success(), "ps -o: {}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1 + procs.len(), "{text}");
    assert!(
        text.lines()
            .skip(1)
            .all(|l| l.contains("sleep") || l.contains("sh")),
        "{text}"
    );
}

#[test]
fn events_stats_reports_usage_with_runc_keys() {
    let mut b = Bundle::new("stats", &["sh", "-c", "sleep 1000 & sleep 1001 & wait"]);
    b.config["linux"]["resources"]["pids"] = json!({"limit": 30});
    create_start(&b);
    assert!(wait_for(|| cg_procs(&b).len() == 3), "{:?}", cg_procs(&b));
    let out = b.amphi(&["events", "--stats", &b.id]);
    assert!(out.status.success(), "events --stats: {}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    let ev: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ev["type"], "stats", "{ev}");
    assert_eq!(ev["id"], b.id.as_str(), "{ev}");
    let d = &ev["data"];
    assert!(
        d["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "memory usage: {ev}"
    );
    assert!(d["cpu"]["usage"]["total"].is_u64(), "cpu usage: {ev}");
    assert_eq!(d["pids"]["current"].as_u64(), Some(3), "{ev}");
    assert_eq!(d["pids"]["limit"].as_u64(), Some(30), "{ev}");
}

#[test]
fn events_of_a_stopped_container_fails() {
    let b = Bundle::new("evstop", &["true"]);
    create_start(&b);
    assert!(wait_for(|| b.state().unwrap()["status"] == "stopped"));
    let out = b.amphi(&["events", "--stats", &b.id]);
    assert!(!out.status.success(), "{}", stdout(&out));
}

/// `--interval` of 0 (runc refuses it) or below 1 ms would print stats in a busy loop: refused at
/// once, naming the flag, and nothing is printed.
#[test]
fn events_interval_must_be_positive() {
    let b = Bundle::new("evint", &["sleep", "1000"]);
    create_start(&b);
    for bad in ["0s", "0", "1ns", "abc"] {
        let out = b.amphi(&["events", "--interval", bad, &b.id]);
        assert!(!out.status.success(), "--interval {bad} was accepted");
        assert!(
            stdout(&out).is_empty(),
            "--interval {bad}: {}",
            stdout(&out)
        );
        assert!(
            stderr(&out).contains("--interval"),
            "{bad}: {}",
            stderr(&out)
        );
    }
}

/// Makes block device node 7:7 (a loop device, opening it is harmless) at /tmp/blk in the rootfs.
fn make_loop_node(b: &Bundle) {
    let p = b.rootfs().join("tmp/blk");
    nix::sys::stat::mknod(
        &p,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(7, 7),
    )
    .unwrap();
}

const DEV_SCRIPT: &str = "echo x > /dev/null && echo null=ok; \
    head -c 4 /dev/zero | wc -c; \
    : < /tmp/blk && echo blk=ok";

#[test]
fn device_rules_deny_what_is_not_allowed() {
    let b = Bundle::new("devdeny", &["sh", "-c", DEV_SCRIPT]);
    make_loop_node(&b);
    // `amphi spec`'s rules, as written by the harness.
    let out = b.run();
    let text = stdout(&out);
    assert!(text.contains("null=ok"), "{text} {}", stderr(&out));
    assert!(text.lines().any(|l| l.trim() == "4"), "{text}");
    assert!(
        !text.contains("blk=ok"),
        "a device no rule allows was opened: {text}"
    );
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn device_rules_explicit_deny_all_then_allow() {
    let mut b = Bundle::new("devallow", &["sh", "-c", DEV_SCRIPT]);
    make_loop_node(&b);
    b.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "b", "major": 7, "minor": 7, "access": "r"},
    ]);
    let out = b.run();
    let text = stdout(&out);
    assert!(text.contains("null=ok"), "{text} {}", stderr(&out));
    assert!(text.contains("blk=ok"), "{text} {}", stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The same with deny-all only: denied.
    let mut b = Bundle::new("devdenyall", &["sh", "-c", DEV_SCRIPT]);
    make_loop_node(&b);
    b.config["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}]);
    let out = b.run();
    let text = stdout(&out);
    assert!(text.contains("null=ok"), "{text} {}", stderr(&out));
    assert!(!text.contains("blk=ok"), "{text}");
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn device_rules_allow_linux_devices_nodes() {
    // A node in linux.devices is usable without a rule of its own (as with runc), while the same
    // device through another node outside the list stays allowed too (rules go by number), and an
    // unlisted device stays denied.
    let mut b = Bundle::new(
        "devlisted",
        &[
            "sh",
            "-c",
            ": < /dev/myblk && echo listed=ok; : < /tmp/other && echo other=ok",
        ],
    );
    b.config["linux"]["devices"] = json!([
        {"path": "/dev/myblk", "type": "b", "major": 7, "minor": 7, "fileMode": 0o600, "uid": 0, "gid": 0},
    ]);
    let p = b.rootfs().join("tmp/other");
    nix::sys::stat::mknod(
        &p,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(7, 6),
    )
    .unwrap();
    let out = b.run();
    let text = stdout(&out);
    assert!(text.contains("listed=ok"), "{text} {}", stderr(&out));
    assert!(!text.contains("other=ok"), "{text}");
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unified_valid_key_lands_in_cgroup2_file() {
    let mut b = Bundle::new("unified", &["sleep", "1000"]);
    b.config["linux"]["resources"]["unified"] = json!({"cgroup.max.descendants": "7"});
    create_start(&b);
    assert_eq!(cg_read(&b, "unified", "cgroup.max.descendants"), "7");
}

#[test]
fn unified_unknown_or_malformed_key_fails_and_leaves_nothing() {
    for key in ["foo.bar", "../x", "memory.max"] {
        let mut b = Bundle::new("unibad", &["sleep", "1000"]);
        let mut map = serde_json::Map::new();
        map.insert(key.to_string(), json!("1"));
        b.config["linux"]["resources"]["unified"] = Value::Object(map);
        let out = b.create();
        assert!(!out.status.success(), "{key}: create succeeded");
        assert!(
            stderr(&out).contains(&format!("linux.resources.unified.{key}")),
            "{key}: {}",
            stderr(&out)
        );
        assert_nothing_left(&b);
    }
}

#[test]
fn bad_input_fails_create_and_leaves_nothing() {
    // A negative blkio weight.
    let mut b = Bundle::new("badweight", &["sleep", "1000"]);
    b.config["linux"]["resources"]["blockIO"] = json!({"weight": -1});
    let out = b.create();
    assert!(!out.status.success(), "negative weight accepted");
    assert!(stderr(&out).contains("weight"), "{}", stderr(&out));
    assert_nothing_left(&b);

    // A cgroupsPath escaping its root.
    let mut b = Bundle::new("badpath", &["sleep", "1000"]);
    b.config["linux"]["cgroupsPath"] = json!(format!("/amphi-test/../{}", b.id));
    let out = b.create();
    assert!(!out.status.success(), "escaping cgroupsPath accepted");
    assert!(
        stderr(&out).contains("linux.cgroupsPath"),
        "{}",
        stderr(&out)
    );
    assert_nothing_left(&b);
    assert!(
        common::cgroup_dirs_of(&format!("/{}", b.id)).is_empty(),
        "a cgroup was made outside /amphi-test"
    );

    // A value the kernel refuses (a cpuset CPU this host does not have).
    let mut b = Bundle::new("badcpus", &["sleep", "1000"]);
    b.config["linux"]["resources"]["cpu"] = json!({"cpus": "4095"});
    let out = b.create();
    assert!(!out.status.success(), "impossible cpuset accepted");
    assert_nothing_left(&b);
}

#[test]
fn delete_leaves_no_cgroup_in_any_hierarchy() {
    let b = Bundle::new("del", &["sh", "-c", "sleep 1000 & sleep 1001 & wait"]);
    create_start(&b);
    let dirs = b.cgroup_dirs();
    // Every v1 controller plus the cgroup2 mount.
    for ctrl in [
        "memory", "cpu", "pids", "cpuset", "freezer", "devices", "unified",
    ] {
        assert!(dirs.contains(&cg_dir(&b, ctrl)), "{ctrl} missing: {dirs:?}");
    }
    let out = b.amphi(&["exec", "-d", &b.id, "sleep", "1002"]);
    assert!(out.status.success(), "exec: {}", stderr(&out));
    assert!(wait_for(|| cg_procs(&b).len() == 4), "{:?}", cg_procs(&b));
    let procs = cg_procs(&b);
    let out = b.amphi(&["delete", "--force", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
    assert!(procs.iter().all(|p| dead(*p)), "process left: {procs:?}");
    assert!(!b.root.join(&b.id).exists());
}

#[test]
fn delete_after_exit_leaves_no_cgroup() {
    let b = Bundle::new("delexit", &["true"]);
    create_start(&b);
    assert!(wait_for(|| b.state().unwrap()["status"] == "stopped"));
    assert!(!b.cgroup_dirs().is_empty(), "cgroup gone before delete");
    let out = b.amphi(&["delete", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
}

/// create records the cgroup's directories in state.json, and delete removes the cgroup through
/// them. A state without them (written before they were recorded), or with directories that are not
/// this cgroup's under /sys/fs/cgroup (elsewhere, or through `..`), makes delete find the cgroup
/// itself: the cgroup goes, and the directories named in the state stay.
#[test]
fn delete_trusts_recorded_cgroup_dirs_only_when_they_are_the_cgroups() {
    for case in ["current", "missing", "elsewhere", "dotdot"] {
        let b = Bundle::new(&format!("rec{case}"), &["true"]);
        create_start(&b);
        assert!(wait_for(|| b.state().unwrap()["status"] == "stopped"));
        let state_path = b.root.join(&b.id).join("state.json");
        let mut state: Value =
            serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
        let mut recorded: Vec<PathBuf> = serde_json::from_value(state["cgroup_dirs"].clone())
            .unwrap_or_else(|e| panic!("{case}: cgroup_dirs in {state}: {e}"));
        let mut actual = b.cgroup_dirs();
        recorded.sort();
        actual.sort();
        assert_eq!(recorded, actual, "{case}: recorded directories");
        // An empty directory that ends with the cgroup's path, outside /sys/fs/cgroup.
        let decoy = b
            .root
            .parent()
            .unwrap()
            .join("decoy")
            .join(b.cgroup.trim_start_matches('/'));
        std::fs::create_dir_all(&decoy).unwrap();
        let through_dotdot =
            Path::new("/sys/fs/cgroup/../..").join(decoy.strip_prefix("/").unwrap());
        match case {
            "missing" => drop(state.as_object_mut().unwrap().remove("cgroup_dirs")),
            "elsewhere" => state["cgroup_dirs"] = json!([decoy]),
            "dotdot" => state["cgroup_dirs"] = json!([through_dotdot]),
            _ => {}
        }
        std::fs::write(&state_path, state.to_string()).unwrap();
        let out = b.amphi(&["delete", &b.id]);
        assert!(out.status.success(), "{case}: delete: {}", stderr(&out));
        assert!(
            b.cgroup_dirs().is_empty(),
            "{case}: cgroup left: {:?}",
            b.cgroup_dirs()
        );
        assert!(decoy.is_dir(), "{case}: delete removed {}", decoy.display());
    }
}

/// init and an exec'd process are members of the container's cgroup in every hierarchy, as the
/// host sees it in /proc/<pid>/cgroup: each v1 hierarchy (joined through `tasks`) and the cgroup2
/// mount (born there: clone3 with CLONE_INTO_CGROUP); each hierarchy's cgroup.procs lists exactly
/// these two.
#[test]
fn init_and_exec_are_in_every_hierarchy() {
    let b = Bundle::new("joinall", &["sleep", "1000"]);
    let init = create_start(&b);
    let out = b.amphi(&["exec", "-d", &b.id, "sleep", "1001"]);
    assert!(out.status.success(), "exec: {}", stderr(&out));
    assert!(wait_for(|| cg_procs(&b).len() == 2), "{:?}", cg_procs(&b));
    let procs = cg_procs(&b);
    assert!(procs.contains(&init), "init {init} not in {procs:?}");
    for pid in &procs {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // 9 v1 hierarchies (cpu, cpuacct, cpuset, memory, devices, freezer, blkio, pids,
        // name=systemd) and the cgroup2 mount ("0::").
        assert!(lines.len() >= 10, "{pid}: {text}");
        assert!(lines.iter().any(|l| l.starts_with("0::")), "{pid}: {text}");
        for l in lines {
            assert_eq!(
                l.splitn(3, ':').nth(2),
                Some(b.cgroup.as_str()),
                "{pid}: {l}"
            );
        }
    }
    let dirs = b.cgroup_dirs();
    assert!(dirs.contains(&cg_dir(&b, "unified")), "{dirs:?}");
    for d in dirs {
        let mut v: Vec<i64> = std::fs::read_to_string(d.join("cgroup.procs"))
            .unwrap()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        v.sort_unstable();
        assert_eq!(v, procs, "{}", d.display());
    }
}

// ---- unit tests of the public helpers ----

mod unit {
    use amphi::cgroups::{device_rule, resolve_path};
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType};
    use std::path::Path;

    fn rule(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
        access: Option<&str>,
    ) -> oci_spec::runtime::LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow);
        if let Some(t) = typ {
            b = b.typ(t);
        }
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        if let Some(a) = access {
            b = b.access(a);
        }
        b.build().unwrap()
    }

    #[test]
    fn device_rule_formats_v1_lines() {
        assert_eq!(
            device_rule(&rule(false, None, None, None, None)),
            "a *:* rwm"
        );
        assert_eq!(
            device_rule(&rule(false, None, None, None, Some("rwm"))),
            "a *:* rwm"
        );
        assert_eq!(
            device_rule(&rule(
                true,
                Some(LinuxDeviceType::C),
                Some(1),
                Some(3),
                Some("rw")
            )),
            "c 1:3 rw"
        );
        assert_eq!(
            device_rule(&rule(
                true,
                Some(LinuxDeviceType::B),
                Some(8),
                None,
                Some("m")
            )),
            "b 8:* m"
        );
        assert_eq!(
            device_rule(&rule(
                true,
                Some(LinuxDeviceType::C),
                Some(-1),
                Some(-1),
                None
            )),
            "c *:* rwm"
        );
        assert_eq!(
            device_rule(&rule(true, Some(LinuxDeviceType::A), None, None, Some("r"))),
            "a *:* r"
        );
        // An unbuffered character device is a character device to the device cgroup.
        assert_eq!(
            device_rule(&rule(
                true,
                Some(LinuxDeviceType::U),
                Some(1),
                Some(5),
                Some("rw")
            )),
            "c 1:5 rw"
        );
    }

    #[test]
    fn check_resources_json_names_the_field() {
        use amphi::cgroups::check_resources_json;
        use serde_json::json;
        let cfg = |res: serde_json::Value| json!({"linux": {"resources": res}});
        let field = |res| check_resources_json(&cfg(res)).map(|e| e.field);
        assert_eq!(
            field(json!({"blockIO": {"weight": -1}})).as_deref(),
            Some("linux.resources.blockIO.weight")
        );
        assert_eq!(
            field(json!({"blockIO": {"weight": 70000}})).as_deref(),
            Some("linux.resources.blockIO.weight")
        );
        assert_eq!(
            field(json!({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": -5}]}}))
                .as_deref(),
            Some("linux.resources.blockIO.weightDevice[0].weight")
        );
        assert_eq!(
            field(json!({"cpu": {"shares": -2}})).as_deref(),
            Some("linux.resources.cpu.shares")
        );
        assert_eq!(
            field(json!({"blockIO": {"weight": 500}, "cpu": {"shares": 2}})),
            None
        );
        assert!(check_resources_json(&json!({"linux": {}})).is_none());
    }

    #[test]
    fn with_linux_devices_appends_allow_rules() {
        use amphi::cgroups::with_linux_devices;
        use oci_spec::runtime::LinuxDeviceBuilder;
        let dev = |t, major, minor| {
            LinuxDeviceBuilder::default()
                .path("/dev/x")
                .typ(t)
                .major(major)
                .minor(minor)
                .build()
                .unwrap()
        };
        let own = rule(false, None, None, None, Some("rwm"));
        let mut res = oci_spec::runtime::LinuxResources::default();
        res.set_devices(Some(vec![own]));
        let out = with_linux_devices(
            Some(&res),
            &[
                dev(LinuxDeviceType::B, 7, 7),
                dev(LinuxDeviceType::U, 1, 3),
                dev(LinuxDeviceType::P, 0, 0),
            ],
        );
        let lines: Vec<(bool, String)> = out
            .devices()
            .as_ref()
            .unwrap()
            .iter()
            .map(|r| (r.allow(), device_rule(r)))
            .collect();
        assert_eq!(
            lines,
            vec![
                (false, "a *:* rwm".to_string()),
                (true, "b 7:7 rwm".to_string()),
                (true, "c 1:3 rwm".to_string()),
            ]
        );
        let none = with_linux_devices(None, &[]);
        assert!(none.devices().as_ref().is_none_or(|d| d.is_empty()));
    }

    #[test]
    fn resolve_path_cases() {
        assert_eq!(resolve_path(None, "c1", false).unwrap(), "/amphi/c1");
        assert_eq!(
            resolve_path(Some(Path::new("")), "c1", false).unwrap(),
            "/amphi/c1"
        );
        assert_eq!(
            resolve_path(Some(Path::new("/amphi-test/c1")), "c1", false).unwrap(),
            "/amphi-test/c1"
        );
        assert_eq!(
            resolve_path(Some(Path::new("amphi-test/c1/")), "x", false).unwrap(),
            "/amphi-test/c1"
        );
        for bad in ["/a/../../etc", "..", "a/..", "/a/b/.."] {
            let e = resolve_path(Some(Path::new(bad)), "c1", false).unwrap_err();
            assert!(e.to_string().contains("linux.cgroupsPath"), "{bad}: {e}");
        }
        for root in ["/", "//"] {
            assert!(
                resolve_path(Some(Path::new(root)), "c1", false).is_err(),
                "{root}"
            );
        }
        let e = resolve_path(Some(Path::new("system.slice:amphi:c1")), "c1", true).unwrap_err();
        assert!(e.to_string().contains("systemd"), "{e}");
    }
}

/// On cgroup v1 the cpu usage is runc's: `percpu` lists every CPU's nanoseconds (their sum is the
/// total), and `kernel`/`user` are nanoseconds too (converted from cpuacct.stat's clock ticks).
#[test]
fn events_stats_cpu_usage_in_nanoseconds_per_cpu() {
    if !std::path::Path::new("/sys/fs/cgroup/cpuacct").exists() {
        // Pure cgroup v2 host: the cpuacct files this checks do not exist.
        return;
    }
    let mut b = Bundle::new(
        "statscpu",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; touch /tmp/looped; sleep 1000",
        ],
    );
    b.config["root"]["readonly"] = json!(false);
    create_start(&b);
    let dir = b
        .cgroup_dirs()
        .into_iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/cpuacct"))
        .expect("cpuacct dir of the container");
    // Wait until the busy loop is over (the counters are stable while it sleeps) and has used at
    // least one clock tick of user time.
    assert!(
        wait_for(|| b.rootfs().join("tmp/looped").exists()),
        "the busy loop did not finish"
    );
    assert!(
        std::fs::read_to_string(dir.join("cpuacct.stat"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("user ") && l != "user 0"),
        "the busy loop used no user time"
    );
    let out = b.amphi(&["events", "--stats", &b.id]);
    assert!(out.status.success(), "events --stats: {}", stderr(&out));
    let ev: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let usage = &ev["data"]["cpu"]["usage"];
    let percpu: Vec<u64> = usage["percpu"]
        .as_array()
        .expect("percpu array")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let on_host = std::fs::read_to_string(dir.join("cpuacct.usage_percpu")).unwrap();
    assert_eq!(percpu.len(), on_host.split_whitespace().count(), "{ev}");
    let total = usage["total"].as_u64().unwrap();
    assert!(total > 0, "{ev}");
    // The two files are read at slightly different times; the container is asleep by now.
    let sum: u64 = percpu.iter().sum();
    assert!(
        sum.abs_diff(total) <= total / 100,
        "sum of percpu {sum} vs total {total}"
    );
    // Nanoseconds, not clock ticks: at least one tick (>= 1 ms at any USER_HZ) of user time.
    assert!(usage["user"].as_u64().unwrap() >= 1_000_000, "{ev}");
}

/// `exec --cgroup` takes runc's forms: `PATH` for every hierarchy, `CONTROLLER[,...]:PATH` for the
/// v1 hierarchies with those controllers (repeatable). The process lands in those sub-cgroups (and in
/// the container's own cgroup elsewhere); a missing sub-cgroup, `..`, or an unknown controller fail.
#[test]
fn exec_cgroup_takes_runcs_controller_syntax() {
    /// Removes the sub-cgroups even when an assertion fails (dropped before the bundle, whose own
    /// cleanup cannot remove a cgroup that still has children).
    struct SubDirs(Vec<PathBuf>);
    impl Drop for SubDirs {
        fn drop(&mut self) {
            for d in &self.0 {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
    let b = Bundle::new("exec-cg", &["sleep", "1000"]);
    create_start(&b);
    let _subs = SubDirs(b.cgroup_dirs().iter().map(|d| d.join("sub")).collect());
    for d in b.cgroup_dirs() {
        std::fs::create_dir(d.join("sub")).unwrap();
        // A v1 cpuset cgroup takes no process until it has cpus and mems.
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(v) = std::fs::read_to_string(d.join(f)) {
                std::fs::write(d.join("sub").join(f), v.trim()).unwrap();
            }
        }
    }
    // /proc/self/cgroup of a process exec'd with `--cgroup spec`.
    let cgroups_with = |spec: &str| {
        let out = b.amphi(&[
            "exec",
            "--cgroup",
            spec,
            b.id.as_str(),
            "cat",
            "/proc/self/cgroup",
        ]);
        assert!(out.status.success(), "--cgroup {spec}: {}", stderr(&out));
        stdout(&out)
    };
    let v1 = |ctrl: &str| Path::new("/sys/fs/cgroup").join(ctrl).exists();
    if v1("pids") && v1("memory") {
        let text = cgroups_with("pids:sub");
        let line = |ctrl: &str| {
            text.lines()
                .find(|l| {
                    l.split(':')
                        .nth(1)
                        .is_some_and(|c| c.split(',').any(|x| x == ctrl))
                })
                .unwrap_or_default()
                .to_string()
        };
        // The container has a cgroup namespace: paths are relative to its cgroup.
        assert!(line("pids").ends_with(":/sub"), "{text}");
        assert!(line("memory").ends_with(":/"), "{text}");
    }
    let text = cgroups_with("sub");
    assert!(text.lines().all(|l| l.ends_with(":/sub")), "{text}");
    for bad in ["nosuch", "pids:../x", "nosuchctrl:sub"] {
        let out = b.amphi(&["exec", "--cgroup", bad, b.id.as_str(), "true"]);
        assert!(!out.status.success(), "--cgroup {bad} accepted");
        assert!(stderr(&out).contains("--cgroup"), "{bad}: {}", stderr(&out));
    }
}
