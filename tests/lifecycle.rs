//! The lifecycle through the CLI: run, create/start/state/kill/delete, exit codes, leftovers.

mod common;

use common::{stderr, stdout, wait_for, Bundle};

#[test]
fn run_prints_and_exits_with_status() {
    let b = Bundle::new("run", &["sh", "-c", "echo hello from amphi; exit 7"]);
    let out = b.run();
    assert_eq!(
        stdout(&out),
        "hello from amphi\n",
        "stderr: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(7));
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
    assert!(!b.root.join(&b.id).exists(), "state dir left");
}

#[test]
fn create_start_state_kill_delete() {
    let b = Bundle::new("cycle", &["sleep", "1000"]);
    let pid_file = b.dir.join("init.pid");
    b.write_config();
    let out = b.amphi(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
    ]);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let st = b.state().expect("state");
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    assert_eq!(st["id"], b.id.as_str());
    assert_eq!(st["bundle"], b.dir.to_str().unwrap());
    assert!(st["created"].as_str().unwrap().ends_with('Z'));

    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    assert_eq!(b.state().unwrap()["status"], "running");
    // The init process is in the container's cgroup in every hierarchy.
    for d in b.cgroup_dirs() {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "{d:?}: {procs}"
        );
    }

    let out = b.amphi(&["delete", &b.id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not stopped"), "{}", stderr(&out));

    // Signal 0 only probes (kill(2)): the container keeps running.
    let out = b.amphi(&["kill", &b.id, "0"]);
    assert!(out.status.success(), "kill 0: {}", stderr(&out));
    assert_eq!(b.state().unwrap()["status"], "running");

    let out = b.amphi(&["kill", &b.id, "KILL"]);
    assert!(out.status.success(), "kill: {}", stderr(&out));
    assert!(wait_for(|| b.state().unwrap()["status"] == "stopped"));
    assert_eq!(b.state().unwrap()["pid"], 0);
    let out = b.amphi(&["kill", &b.id, "0"]);
    assert!(
        !out.status.success(),
        "kill 0 of a stopped container must fail"
    );
    let out = b.amphi(&["kill", &b.id, "9"]);
    assert!(
        !out.status.success(),
        "kill of a stopped container must fail"
    );
    let out = b.amphi(&["kill", "--all", &b.id, "9"]);
    assert!(
        out.status.success(),
        "kill --all of a stopped container: {}",
        stderr(&out)
    );

    let out = b.amphi(&["delete", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert!(b.state().is_none());
    assert!(b.cgroup_dirs().is_empty());
    let out = b.amphi(&["delete", "--force", &b.id]);
    assert!(
        out.status.success(),
        "delete --force of a missing id must succeed"
    );
    let out = b.amphi(&["delete", &b.id]);
    assert!(!out.status.success(), "delete of a missing id must fail");
}

#[test]
fn pause_resume_and_delete_paused() {
    let b = Bundle::new("pause", &["sleep", "1000"]);
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    // The v1 freezer where there is one (v1 and hybrid hosts), else cgroup v2's.
    let dirs = b.cgroup_dirs();
    let freezer = dirs
        .iter()
        .find(|d| d.join("freezer.state").exists())
        .or_else(|| dirs.iter().find(|d| d.join("cgroup.freeze").exists()))
        .cloned()
        .expect("a freezer for the container");
    let frozen = || {
        std::fs::read_to_string(freezer.join("freezer.state"))
            .map(|s| s.trim() == "FROZEN")
            .or_else(|_| {
                std::fs::read_to_string(freezer.join("cgroup.events"))
                    .map(|s| s.lines().any(|l| l == "frozen 1"))
            })
            .unwrap_or(false)
    };
    assert!(!frozen());

    let out = b.amphi(&["pause", &b.id]);
    assert!(out.status.success(), "pause: {}", stderr(&out));
    assert_eq!(b.state().unwrap()["status"], "paused");
    assert!(frozen(), "the cgroup must be frozen");
    // exec into a paused container is refused unless --ignore-paused; start is refused.
    let out = b.amphi(&["exec", &b.id, "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("paused"), "{}", stderr(&out));
    let out = b.amphi(&["start", &b.id]);
    assert!(!out.status.success());
    let out = b.amphi(&["delete", &b.id]);
    assert!(
        !out.status.success(),
        "delete of a paused container needs --force"
    );
    assert!(stderr(&out).contains("paused"), "{}", stderr(&out));

    let out = b.amphi(&["resume", &b.id]);
    assert!(out.status.success(), "resume: {}", stderr(&out));
    assert_eq!(b.state().unwrap()["status"], "running");
    assert!(!frozen());
    let out = b.amphi(&["resume", &b.id]);
    assert!(
        !out.status.success(),
        "resume of a running container must fail"
    );

    // A paused container is thawed and killed by delete --force, leaving nothing.
    let out = b.amphi(&["pause", &b.id]);
    assert!(out.status.success(), "pause: {}", stderr(&out));
    let out = b.amphi(&["delete", "--force", &b.id]);
    assert!(out.status.success(), "delete -f: {}", stderr(&out));
    assert!(b.state().is_none());
    assert!(
        wait_for(|| b.cgroup_dirs().is_empty()),
        "{:?}",
        b.cgroup_dirs()
    );
}

#[test]
fn a_cgroup_in_use_by_another_container_is_refused() {
    let a = Bundle::new("cg-owner", &["sleep", "1000"]);
    let out = a.create();
    assert!(out.status.success(), "create A: {}", stderr(&out));
    let pid = a.state().unwrap()["pid"].as_i64().unwrap();

    let mut b = Bundle::new("cg-intruder", &["true"]);
    b.config["linux"]["cgroupsPath"] = serde_json::json!(a.cgroup.clone());
    let out = b.create();
    assert!(!out.status.success(), "a second container in A's cgroup");
    assert!(
        stderr(&out).contains("linux.cgroupsPath"),
        "{}",
        stderr(&out)
    );
    assert!(b.state().is_none());
    // A is untouched: alive, created, still in its cgroup.
    assert_eq!(a.state().unwrap()["status"], "created");
    for d in a.cgroup_dirs() {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "{d:?}: {procs}"
        );
    }
    // B's drop must not remove A's cgroup: point it back at its own path.
    b.cgroup = format!("{}-none", b.cgroup);
}

/// Receives one fd sent with SCM_RIGHTS on `listener`'s next connection.
fn receive_fd(listener: &std::os::unix::net::UnixListener) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd};
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel installed this fd for us just now.
            return unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no fd received");
}

/// The pid a pidfd refers to, from /proc/self/fdinfo.
fn pidfd_pid(fd: &std::os::fd::OwnedFd) -> i64 {
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .map(|p| p.trim().parse().unwrap())
        .expect("not a pidfd")
}

#[test]
fn pidfd_socket_receives_a_pidfd_of_init_and_of_exec() {
    let b = Bundle::new("pidfd", &["sleep", "1000"]);
    let sock = b.dir.join("pidfd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    b.write_config();
    let (s, d) = (
        sock.to_str().unwrap().to_string(),
        b.dir.to_str().unwrap().to_string(),
    );
    let receiver = std::thread::spawn(move || receive_fd(&listener));
    let out = b.amphi(&["create", "--bundle", &d, "--pidfd-socket", &s, &b.id]);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let fd = receiver.join().unwrap();
    assert_eq!(pidfd_pid(&fd), b.state().unwrap()["pid"].as_i64().unwrap());

    std::fs::remove_file(&sock).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || receive_fd(&listener));
    let pid_file = b.dir.join("exec.pid");
    let out = b.amphi(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--pidfd-socket",
        &s,
        &b.id,
        "sleep",
        "999",
    ]);
    assert!(out.status.success(), "exec: {}", stderr(&out));
    let fd = receiver.join().unwrap();
    let exec_pid: i64 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(pidfd_pid(&fd), exec_pid);
}

/// `delete` of a stopped container that had its own pid namespace signals nothing in its cgroup:
/// another container given the same `cgroupsPath` since (allowed, the cgroup was empty) keeps
/// running, and the cgroup stays for it, as runc leaves a busy cgroup. Deleting that container then
/// removes the cgroup.
#[test]
fn delete_of_a_stopped_container_spares_a_newer_one_in_its_cgroup() {
    let a = Bundle::new("cg-reuse-a", &["true"]);
    assert!(a.create().status.success());
    let out = a.amphi(&["start", &a.id]);
    assert!(out.status.success(), "start a: {}", stderr(&out));
    assert!(wait_for(|| a
        .state()
        .is_some_and(|s| s["status"] == "stopped")));

    let mut b = Bundle::new("cg-reuse-b", &["sleep", "1000"]);
    b.cgroup = a.cgroup.clone();
    b.config["linux"]["cgroupsPath"] = serde_json::json!(a.cgroup);
    b.write_config();
    let out = b.create();
    assert!(out.status.success(), "create b: {}", stderr(&out));
    let out = b.amphi(&["start", &b.id]);
    assert!(out.status.success(), "start b: {}", stderr(&out));
    let b_pid = b.state().unwrap()["pid"].as_i64().unwrap() as i32;

    let out = a.amphi(&["delete", &a.id]);
    assert!(out.status.success(), "delete a: {}", stderr(&out));
    assert!(a.state().is_none(), "a's state is left");
    // b's init still runs, in the cgroup, which is still there.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(b.state().unwrap()["status"], "running");
    assert!(
        std::path::Path::new(&format!("/proc/{b_pid}")).exists(),
        "b's init was killed"
    );
    assert!(!b.cgroup_dirs().is_empty(), "the shared cgroup was removed");

    let out = b.amphi(&["delete", "-f", &b.id]);
    assert!(out.status.success(), "delete b: {}", stderr(&out));
    common::assert_no_leftovers(&b);
}

/// `kill` of a created container (not started yet) with SIGTERM, SIGINT or SIGHUP stops it, as with
/// runc: init is pid 1 of its namespace and would otherwise ignore them. The workload never runs.
#[test]
fn kill_of_a_created_container_with_term_int_or_hup_stops_it() {
    for sig in ["TERM", "INT", "HUP"] {
        let mut b = Bundle::new("kill-created", &["touch", "/workload-ran"]);
        b.config["root"]["readonly"] = serde_json::json!(false);
        b.write_config();
        assert!(b.create().status.success());
        let out = b.amphi(&["kill", &b.id, sig]);
        assert!(out.status.success(), "kill {sig}: {}", stderr(&out));
        assert!(
            wait_for(|| b.state().is_some_and(|s| s["status"] == "stopped")),
            "{sig}: still {:?}",
            b.state().map(|s| s["status"].clone())
        );
        assert!(
            !b.rootfs().join("workload-ran").exists(),
            "{sig}: the workload ran"
        );
        let out = b.amphi(&["delete", &b.id]);
        assert!(out.status.success(), "delete: {}", stderr(&out));
        common::assert_no_leftovers(&b);
    }
}

/// A signal the caller of amphi ignores stays ignored for the workload (as with runc under nohup):
/// init's own handlers for SIGTERM, SIGINT and SIGHUP before `start` do not leak into it.
#[test]
fn a_signal_ignored_by_the_caller_stays_ignored_in_the_workload() {
    let b = Bundle::new("sig-ign", &["grep", "^SigIgn:", "/proc/self/status"]);
    let cmd = format!(
        "trap '' HUP; exec {} --root {} run --bundle {} {}",
        common::amphi_bin(),
        b.root.display(),
        b.dir.display(),
        b.id
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &cmd])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mask = u64::from_str_radix(text.trim().trim_start_matches("SigIgn:").trim(), 16).unwrap();
    assert_ne!(mask & 1, 0, "SIGHUP (bit 0) not ignored: {text}");
    assert_eq!(mask & (1 << 14), 0, "SIGTERM (bit 14) ignored: {text}");
}
