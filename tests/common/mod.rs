//! Shared harness of the integration tests: real containers, run as root, through the real binary.
//!
//! Each [`Bundle`] has its own temporary `--root`, bundle directory, busybox rootfs, container id
//! and cgroup path under `/amphi-test/`; dropping it deletes the container (`delete --force`),
//! kills any process it recorded, and removes the cgroup directories it used, even when the test
//! failed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

/// The amphi binary under test (the front that engines call).
pub fn amphi_bin() -> &'static str {
    env!("CARGO_BIN_EXE_amphi")
}

/// `amphi-full`, which `amphi` runs for `create`, `run` and `exec`.
pub fn amphi_full_bin() -> &'static str {
    env!("CARGO_BIN_EXE_amphi-full")
}

/// Copies both binaries of the build (`amphi` and `amphi-full`) into `dir`, as an install does, and
/// returns the path of the copy of `amphi`.
pub fn install_binaries(dir: &Path) -> PathBuf {
    std::fs::copy(amphi_full_bin(), dir.join("amphi-full")).unwrap();
    let bin = dir.join("amphi");
    std::fs::copy(amphi_bin(), &bin).unwrap();
    bin
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Where busybox-static lives on Debian.
const BUSYBOX: &str = "/bin/busybox";

/// Panics unless running as root with busybox-static installed: these tests create real containers.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the integration tests create real containers and must run as root"
    );
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: apt-get install busybox-static"
    );
}

/// Builds a busybox rootfs at `dir`: the static binary plus one symlink per applet in /bin.
pub fn make_busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = bin.join(applet);
        if applet != "busybox" && !link.exists() {
            std::os::unix::fs::symlink("busybox", &link).unwrap();
        }
    }
    for d in ["proc", "sys", "dev", "etc", "tmp", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

/// One test container: its own state root, bundle, id and cgroup.
pub struct Bundle {
    _tmp: tempfile::TempDir,
    /// `--root` of this test.
    pub root: PathBuf,
    /// The bundle directory.
    pub dir: PathBuf,
    /// Container id (unique per test).
    pub id: String,
    /// `linux.cgroupsPath`.
    pub cgroup: String,
    /// The config that [`Bundle::write_config`] writes.
    pub config: Value,
}

impl Bundle {
    /// A bundle with a busybox rootfs and a config like `amphi spec`'s, without a terminal, running
    /// `args`.
    pub fn new(name: &str, args: &[&str]) -> Bundle {
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{name}-{}-{n}", std::process::id());
        let tmp = tempfile::Builder::new()
            .prefix("amphi-test-")
            .tempdir()
            .unwrap();
        let root = tmp.path().join("state");
        let dir = tmp.path().join("bundle");
        make_busybox_rootfs(&dir.join("rootfs"));
        let out = Command::new(amphi_bin())
            .args(["spec", "--bundle"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "amphi spec: {out:?}");
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let cgroup = format!("/amphi-test/{id}");
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        config["linux"]["cgroupsPath"] = json!(cgroup);
        let b = Bundle {
            _tmp: tmp,
            root,
            dir,
            id,
            cgroup,
            config,
        };
        b.write_config();
        b
    }

    /// Writes `self.config` to `config.json`.
    pub fn write_config(&self) {
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_string_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// The rootfs directory.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// A command `amphi --root <root> <args...>`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(amphi_bin());
        c.arg("--root").arg(&self.root).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Runs `amphi --root <root> <args...>` and returns its output.
    ///
    /// stdout and stderr go through files, not pipes: a container created by the command inherits
    /// them (as with runc) and would otherwise keep a pipe open after amphi exits.
    pub fn amphi(&self, args: &[&str]) -> Output {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let out_path = self.dir.join(format!(".out-{n}"));
        let err_path = self.dir.join(format!(".err-{n}"));
        let status = self
            .cmd(args)
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .status()
            .unwrap();
        let out = Output {
            status,
            stdout: std::fs::read(&out_path).unwrap_or_default(),
            stderr: std::fs::read(&err_path).unwrap_or_default(),
        };
        let _ = std::fs::remove_file(&out_path);
        let _ = std::fs::remove_file(&err_path);
        out
    }

    /// `amphi run --bundle <dir> <id>` in the foreground (config written first).
    pub fn run(&self) -> Output {
        self.write_config();
        let dir = self.dir.to_string_lossy().into_owned();
        self.amphi(&["run", "--bundle", &dir, &self.id])
    }

    /// `amphi create --bundle <dir> <id>` (config written first).
    pub fn create(&self) -> Output {
        self.write_config();
        let dir = self.dir.to_string_lossy().into_owned();
        self.amphi(&["create", "--bundle", &dir, &self.id])
    }

    /// `amphi state <id>` parsed, or `None` if it failed.
    pub fn state(&self) -> Option<Value> {
        let out = self.amphi(&["state", &self.id]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The cgroup directories of this container on the host that still exist.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup_dirs_of(&self.cgroup)
    }
}

/// Directories named `path` under every cgroup mount of the host that exist.
pub fn cgroup_dirs_of(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return out;
    };
    let mut roots: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for r in roots {
        let d = r.join(rel);
        if d.is_dir() && r.join("cgroup.procs").exists() {
            out.push(d);
        }
    }
    out
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let pid = self.state().and_then(|s| s["pid"].as_i64()).unwrap_or(0);
        let _ = self.amphi(&["delete", "--force", &self.id]);
        if pid > 0 {
            // Only the pid this test's container reported.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for d in self.cgroup_dirs() {
            let _ = std::fs::remove_dir(&d);
        }
        // The shared parent goes when the last test using it is done (rmdir fails while another
        // test's cgroup is still inside).
        for parent in cgroup_dirs_of("/amphi-test") {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Stdout as a string.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr as a string.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits up to 5 s for `cond`.
pub fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    cond()
}

/// Processes (other than this test) whose command line mentions `needle`; amphi's own forks keep
/// its argv, which holds the test's temporary directory, and a workload carries its args.
pub fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(needle) {
            found.push((pid, cmd));
        }
    }
    found
}

/// Asserts that nothing of `b` remains after a failed create (or a delete): nothing under its
/// `--root`, no cgroup directory, no process and no mount mentioning its temporary directory.
#[track_caller]
pub fn assert_no_leftovers(b: &Bundle) {
    if b.root.exists() {
        let entries: Vec<_> = std::fs::read_dir(&b.root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(entries.is_empty(), "left under --root: {entries:?}");
    }
    assert!(
        b.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        b.cgroup_dirs()
    );
    // The test's temporary directory holds both --root and the bundle.
    let tmp = b.root.parent().unwrap().to_str().unwrap();
    let procs = processes_mentioning(tmp);
    assert!(procs.is_empty(), "processes left: {procs:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(tmp)).collect();
    assert!(left.is_empty(), "mounts left: {left:?}");
}

// Terminals: the console-socket protocol and pty I/O.

/// Receives one fd over the connected unix socket `sock` (the console socket protocol).
pub fn recv_fd(sock: std::os::fd::BorrowedFd<'_>) -> std::os::fd::OwnedFd {
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(&sock),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .expect("recvmsg on the console socket");
    let mut fd = None;
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            for f in fds {
                // SAFETY: the kernel just installed this fd in our table; nothing else owns it.
                let owned: std::os::fd::OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(f) };
                if fd.is_none() {
                    fd = Some(owned);
                }
            }
        }
    }
    fd.expect("no fd in the console socket message")
}

/// Reads from the pty master `fd` into `acc` until it contains `needle`.
pub fn read_until(fd: std::os::fd::BorrowedFd<'_>, acc: &mut String, needle: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while !acc.contains(needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "{needle:?} not seen on the pty; got {acc:?}"
        );
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => panic!("poll: {e}"),
        }
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => panic!("pty closed before {needle:?}; got {acc:?}"),
            Ok(n) => acc.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
            Err(e) => panic!("pty read ({e}) before {needle:?}; got {acc:?}"),
        }
    }
}

/// Writes all of `data` to `fd`.
pub fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => panic!("write to pty: {e}"),
        }
    }
}

/// errno text of an open of a character device node whose driver does not exist (ENXIO): the device
/// cgroup let the open through.
pub const NO_DEVICE: &str = "No such device or address";
/// errno text of an open the device cgroup (v1 list or v2 program) refused (EPERM).
pub const DENIED: &str = "Operation not permitted";

/// Makes a character device node `major:minor` (mode 0666) at `path`.
pub fn mknod_char(path: &Path, major: u64, minor: u64) {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(major, minor),
    )
    .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
}

/// The container's directory in the cgroup2 mount of a hybrid host (`/sys/fs/cgroup/unified`).
pub fn unified_dir(b: &Bundle) -> PathBuf {
    Path::new("/sys/fs/cgroup/unified").join(b.cgroup.trim_start_matches('/'))
}
