//! Rootless (issue 8): amphi run by an unprivileged user, Linux and Wasm containers.
//!
//! The tests run as root under cargo; each creates (once per host, idempotently and under a lock) the
//! system user `amphi-rootless` with subordinate id ranges in /etc/subuid and /etc/subgid, and runs
//! every amphi command as that user (`setpriv --reuid --regid --init-groups`), with a clean
//! environment: `XDG_RUNTIME_DIR` and `HOME` are directories of the test owned by the user, and no
//! `--root` or `--wasm-cache-dir` is passed, so the defaults for a non-root caller are what is tested.
//! The bundle (busybox rootfs and the config written by `amphi spec --rootless`, run as the user) is
//! owned by the user too. No cgroup is delegated on this host: containers run without one.

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use common::{amphi_bin, make_busybox_rootfs, processes_mentioning, require_root, wait_for};
use serde_json::{json, Value};

const USER: &str = "amphi-rootless";
/// Size of the subordinate range given to the test user.
const SUB_COUNT: u64 = 65536;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The amphi binary as the test user can run it: the one cargo built when every directory above it
/// is searchable by others, else a hard link (or copy) of it and of `amphi-full` in
/// `/tmp/amphi-rootless-bin/` — a clone
/// of the repository in a private (0700) directory would otherwise fail every test here.
fn user_amphi() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = Path::new(amphi_bin());
        let reachable = bin.ancestors().skip(1).all(|d| {
            d.as_os_str().is_empty()
                || std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
        });
        if reachable {
            return amphi_bin().to_string();
        }
        let dir = Path::new("/tmp/amphi-rootless-bin");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Both binaries of the build: amphi runs create, run and exec through amphi-full.
        for (src, name) in [
            (common::amphi_full_bin(), "amphi-full"),
            (amphi_bin(), "amphi"),
        ] {
            let tmp = dir.join(format!("{name}.{}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            if std::fs::hard_link(src, &tmp).is_err() {
                std::fs::copy(src, &tmp).unwrap();
            }
            std::fs::rename(&tmp, dir.join(name)).unwrap();
        }
        dir.join("amphi").to_str().unwrap().to_string()
    })
}

/// The unprivileged test user and its subordinate ranges (first id of the range in /etc/subuid and
/// /etc/subgid).
struct TestUser {
    uid: u32,
    gid: u32,
    subuid: u64,
    subgid: u64,
}

/// `name:start:count` entries of `file` for `name`.
fn sub_ranges(file: &str, name: &str) -> Vec<(u64, u64)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split(':').collect();
            if f.len() == 3 && f[0] == name {
                Some((f[1].parse().ok()?, f[2].parse().ok()?))
            } else {
                None
            }
        })
        .collect()
}

/// Gives `name` a range of `SUB_COUNT` ids in `file` unless it has one; the new range starts after
/// every range already listed (never overlapping another user's). Returns the start of its first
/// range.
fn ensure_sub_range(file: &str, name: &str) -> u64 {
    if let Some((start, count)) = sub_ranges(file, name).first() {
        assert!(*count >= SUB_COUNT, "{file}: {name} has only {count} ids");
        return *start;
    }
    let end = std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split(':').collect();
            let s: u64 = f.get(1)?.parse().ok()?;
            let c: u64 = f.get(2)?.parse().ok()?;
            Some(s + c)
        })
        .max()
        .unwrap_or(0);
    let start = end.max(100000);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)
        .unwrap();
    writeln!(f, "{name}:{start}:{SUB_COUNT}").unwrap();
    start
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, USER]).output().unwrap();
    assert!(out.status.success(), "id {flag} {USER}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Creates the test user once per host (under an exclusive lock, so parallel test processes do not
/// race) and its subordinate ranges; later calls reuse it.
fn test_user() -> &'static TestUser {
    static USER_ONCE: OnceLock<TestUser> = OnceLock::new();
    USER_ONCE.get_or_init(|| {
        require_root();
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/amphi-rootless-user.lock")
            .unwrap();
        let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .unwrap();
        let exists = Command::new("id")
            .arg(USER)
            .output()
            .unwrap()
            .status
            .success();
        if !exists {
            let out = Command::new("useradd")
                .args(["--system", "--create-home", "--shell", "/bin/sh", USER])
                .output()
                .unwrap();
            assert!(out.status.success(), "useradd {USER}: {out:?}");
        }
        let subuid = ensure_sub_range("/etc/subuid", USER);
        let subgid = ensure_sub_range("/etc/subgid", USER);
        drop(lock);
        TestUser {
            uid: id_of("-u"),
            gid: id_of("-g"),
            subuid,
            subgid,
        }
    })
}

fn chown_r(path: &Path, u: &TestUser) {
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", u.uid, u.gid))
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "chown -R {}: {out:?}", path.display());
}

/// One rootless container of a test: a temporary directory owned by the test user with
/// `run/` (its `XDG_RUNTIME_DIR`), `home/` (its `HOME`) and `bundle/` (busybox rootfs and the config
/// of `amphi spec --rootless`).
struct RlBundle {
    tmp: tempfile::TempDir,
    user: &'static TestUser,
    id: String,
    config: Value,
    /// Extra environment for every amphi call (e.g. `XDG_CACHE_HOME`).
    env: Vec<(String, String)>,
    /// `cgroup.procs` files that every amphi call joins first (as root, before dropping to the
    /// user), as a login session does in its delegated cgroup.
    join_cgroups: Vec<PathBuf>,
}

impl RlBundle {
    /// A bundle running `args` without a terminal, from the config that `amphi spec --rootless`
    /// writes as the test user.
    fn new(name: &str, args: &[&str]) -> RlBundle {
        let b = Self::with_spec(name);
        let mut b = b;
        b.config["process"]["terminal"] = json!(false);
        b.config["process"]["args"] = json!(args);
        b.write_config();
        b
    }

    /// A bundle with the untouched `amphi spec --rootless` config.
    fn with_spec(name: &str) -> RlBundle {
        let user = test_user();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tmp = tempfile::Builder::new()
            .prefix("amphi-rootless-")
            .tempdir()
            .unwrap();
        for d in ["run", "home", "bundle"] {
            std::fs::create_dir(tmp.path().join(d)).unwrap();
        }
        make_busybox_rootfs(&tmp.path().join("bundle/rootfs"));
        chown_r(tmp.path(), user);
        let mut b = RlBundle {
            tmp,
            user,
            id: format!("{name}-{}-{n}", std::process::id()),
            config: Value::Null,
            env: Vec::new(),
            join_cgroups: Vec::new(),
        };
        let out = b.amphi(&["spec", "--rootless"]);
        assert!(out.status.success(), "amphi spec --rootless: {out:?}");
        b.config =
            serde_json::from_str(&std::fs::read_to_string(b.bundle().join("config.json")).unwrap())
                .unwrap();
        b
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn bundle(&self) -> PathBuf {
        self.path().join("bundle")
    }

    /// The state root amphi should pick for the user: `$XDG_RUNTIME_DIR/amphi`.
    fn state_root(&self) -> PathBuf {
        self.path().join("run/amphi")
    }

    fn write_config(&self) {
        let p = self.bundle().join("config.json");
        std::fs::write(&p, serde_json::to_string_pretty(&self.config).unwrap()).unwrap();
        std::os::unix::fs::chown(&p, Some(self.user.uid), Some(self.user.gid)).unwrap();
    }

    /// `amphi <args>` as the test user, in the bundle directory, with a clean environment; stdin
    /// is `stdin` (or /dev/null). stdout and stderr go through files, not pipes, so a detached
    /// container holding them cannot block the call.
    fn amphi_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let out_path = self.path().join(format!(".out-{n}"));
        let err_path = self.path().join(format!(".err-{n}"));
        // `sh -c SCRIPT wrap N file1..fileN setpriv ...`: join the N delegated cgroups (if any) as
        // root, then exec setpriv, which drops to the user.
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(
                "n=$1; shift; while [ \"$n\" -gt 0 ]; do echo $$ > \"$1\" || exit 99; shift; \
                 n=$((n-1)); done; exec \"$@\"",
            )
            .arg("wrap")
            .arg(self.join_cgroups.len().to_string())
            .args(&self.join_cgroups)
            .arg("setpriv");
        c.arg(format!("--reuid={}", self.user.uid))
            .arg(format!("--regid={}", self.user.gid))
            .arg("--init-groups")
            .arg("--")
            .arg(user_amphi())
            .args(args)
            .current_dir(self.bundle())
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", self.path().join("home"))
            .env("USER", USER)
            .env("XDG_RUNTIME_DIR", self.path().join("run"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap());
        let status = match stdin {
            None => c.stdin(Stdio::null()).status().unwrap(),
            Some(data) => {
                c.stdin(Stdio::piped());
                let mut child = c.spawn().unwrap();
                let mut si = child.stdin.take().unwrap();
                let _ = si.write_all(data);
                drop(si);
                child.wait().unwrap()
            }
        };
        let out = Output {
            status,
            stdout: std::fs::read(&out_path).unwrap_or_default(),
            stderr: std::fs::read(&err_path).unwrap_or_default(),
        };
        let _ = std::fs::remove_file(&out_path);
        let _ = std::fs::remove_file(&err_path);
        out
    }

    fn amphi(&self, args: &[&str]) -> Output {
        self.amphi_with_stdin(args, None)
    }

    /// `amphi run <id>` in the foreground.
    fn run(&self) -> Output {
        self.write_config();
        self.amphi(&["run", &self.id])
    }

    fn state(&self) -> Option<Value> {
        let out = self.amphi(&["state", &self.id]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Asserts that nothing of this container is left: no state directory under the user's
    /// `$XDG_RUNTIME_DIR/amphi`, no process and no mount mentioning the test's directory, no
    /// cgroup named after the container, and no process `pid` (its init) when given.
    #[track_caller]
    fn assert_no_leftovers(&self, pid: Option<i32>) {
        let root = self.state_root();
        if root.exists() {
            let entries: Vec<_> = std::fs::read_dir(&root)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert!(
                entries.is_empty(),
                "left under {}: {entries:?}",
                root.display()
            );
        }
        let tmp = self.path().to_str().unwrap();
        let procs = processes_mentioning(tmp);
        assert!(procs.is_empty(), "processes left: {procs:?}");
        if let Some(pid) = pid {
            let gone = wait_for(|| !Path::new(&format!("/proc/{pid}")).exists());
            assert!(gone, "init process {pid} is still there");
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let left: Vec<&str> = mounts.lines().filter(|l| l.contains(tmp)).collect();
        assert!(left.is_empty(), "mounts left: {left:?}");
        let cg = common::cgroup_dirs_of(&format!("/amphi/{}", self.id));
        assert!(cg.is_empty(), "cgroup left: {cg:?}");
    }
}

impl Drop for RlBundle {
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
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Uid and gid maps giving container ids 0 (the caller) and 1..=65536 (its subordinate range).
fn multi_range(b: &mut RlBundle) {
    let u = b.user;
    b.config["linux"]["uidMappings"] = json!([
        {"containerID": 0, "hostID": u.uid, "size": 1},
        {"containerID": 1, "hostID": u.subuid, "size": SUB_COUNT},
    ]);
    b.config["linux"]["gidMappings"] = json!([
        {"containerID": 0, "hostID": u.gid, "size": 1},
        {"containerID": 1, "hostID": u.subgid, "size": SUB_COUNT},
    ]);
}

/// Fields of the first line of a `/proc/<pid>/uid_map` style text.
fn map_lines(text: &str) -> Vec<Vec<u64>> {
    text.lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .filter(|v: &Vec<u64>| v.len() == 3)
        .collect()
}

#[test]
fn unprivileged_user_namespaces_work_here() {
    // The precondition of every other test here: an unprivileged process may create a user
    // namespace (Debian's kernel.unprivileged_userns_clone, when present, must be 1).
    let u = test_user();
    if let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone") {
        assert_eq!(v.trim(), "1", "kernel.unprivileged_userns_clone is off");
    }
    let o = Command::new("setpriv")
        .arg(format!("--reuid={}", u.uid))
        .arg(format!("--regid={}", u.gid))
        .args(["--init-groups", "unshare", "-Ur", "id", "-u"])
        .output()
        .unwrap();
    assert!(o.status.success(), "unshare -Ur as {USER}: {o:?}");
    assert_eq!(out(&o).trim(), "0");
}

#[test]
fn spec_rootless_is_for_the_caller() {
    let b = RlBundle::with_spec("rl-spec");
    let c = &b.config;
    let u = b.user;
    assert_eq!(
        c["linux"]["uidMappings"],
        json!([{"containerID": 0, "hostID": u.uid, "size": 1}])
    );
    assert_eq!(
        c["linux"]["gidMappings"],
        json!([{"containerID": 0, "hostID": u.gid, "size": 1}])
    );
    let ns: Vec<&str> = c["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(ns.contains(&"user"), "{ns:?}");
    assert!(!ns.contains(&"network"), "{ns:?}");
    assert!(c["linux"].get("resources").is_none_or(|r| r.is_null()));
    let mounts = c["mounts"].as_array().unwrap();
    let sys: Vec<&Value> = mounts
        .iter()
        .filter(|m| m["destination"] == "/sys")
        .collect();
    assert_eq!(sys.len(), 1, "{mounts:?}");
    assert_eq!(sys[0]["source"], "/sys");
    assert!(sys[0]["options"]
        .as_array()
        .unwrap()
        .contains(&json!("rbind")));
    for m in mounts {
        for o in m["options"].as_array().into_iter().flatten() {
            let o = o.as_str().unwrap();
            assert!(!o.starts_with("gid=") && !o.starts_with("uid="), "{m}");
        }
        assert_ne!(m["type"], "cgroup", "{m}");
    }
}

#[test]
fn spec_rootless_runs_as_is() {
    // The config exactly as `amphi spec --rootless` wrote it (a `sh` on a terminal, read-only root):
    // the foreground `run` proxies its pty, so commands are fed on stdin.
    let b = RlBundle::with_spec("rl-asis");
    let o = b.amphi_with_stdin(
        &["run", &b.id],
        Some(b"echo ID=$(id -u):$(id -g); cat /proc/self/uid_map; exit 7\n"),
    );
    let text = out(&o);
    assert_eq!(o.status.code(), Some(7), "{o:?}");
    assert!(text.contains("ID=0:0"), "{text}");
    let maps = map_lines(&text);
    assert!(
        maps.contains(&vec![0, b.user.uid as u64, 1]),
        "uid_map should map 0 to the caller: {text}"
    );
    b.assert_no_leftovers(None);
}

#[test]
fn single_mapping_root_is_the_caller() {
    let b = RlBundle::new(
        "rl-single",
        &["sh", "-c", "id; cat /proc/self/uid_map /proc/self/gid_map; ls /sys/kernel >/dev/null && echo SYS=ok; cat /dev/null && echo DEV=ok"],
    );
    let o = b.run();
    let text = out(&o);
    assert!(o.status.success(), "{o:?}");
    assert!(text.contains("uid=0(root) gid=0(root)"), "{text}");
    let maps = map_lines(&text);
    assert_eq!(
        maps,
        vec![vec![0, b.user.uid as u64, 1], vec![0, b.user.gid as u64, 1]],
        "{text}"
    );
    // sysfs (bound from the host: no network namespace) and the device nodes (bound from the host).
    assert!(text.contains("SYS=ok") && text.contains("DEV=ok"), "{text}");
    // The state went to $XDG_RUNTIME_DIR/amphi, owned by the user, mode 0700 plus the sticky bit
    // (as runc's $XDG_RUNTIME_DIR/runc).
    let m = std::fs::metadata(b.state_root()).unwrap();
    assert_eq!(m.uid(), b.user.uid);
    assert_eq!(m.mode() & 0o7777, 0o1700);
    b.assert_no_leftovers(None);
}

#[test]
fn multi_range_mapping_through_newuidmap() {
    let mut b = RlBundle::new(
        "rl-multi",
        &["sh", "-c", "id; cat /proc/self/uid_map /proc/self/gid_map; touch /data/f && chown 1000:2000 /data/f && echo CHOWN=ok"],
    );
    multi_range(&mut b);
    // `spec`'s capabilities lack CAP_CHOWN.
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_CHOWN"));
    }
    let data = b.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(b.user.uid), Some(b.user.gid)).unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]}),
    );
    let o = b.run();
    let text = out(&o);
    assert!(o.status.success(), "{o:?}");
    assert!(text.contains("uid=0(root) gid=0(root)"), "{text}");
    let u = b.user;
    assert_eq!(
        map_lines(&text),
        vec![
            vec![0, u.uid as u64, 1],
            vec![1, u.subuid, SUB_COUNT],
            vec![0, u.gid as u64, 1],
            vec![1, u.subgid, SUB_COUNT],
        ],
        "{text}"
    );
    // Container uid 1000 / gid 2000 are host ids subuid+999 / subgid+1999.
    assert!(text.contains("CHOWN=ok"), "{text}");
    let m = std::fs::metadata(data.join("f")).unwrap();
    assert_eq!(m.uid() as u64, u.subuid + 999);
    assert_eq!(m.gid() as u64, u.subgid + 1999);
    b.assert_no_leftovers(None);
}

#[test]
fn files_created_in_a_bind_mount_belong_to_the_caller() {
    let mut b = RlBundle::new("rl-bind", &["sh", "-c", "echo inside > /data/made-inside"]);
    let data = b.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(b.user.uid), Some(b.user.gid)).unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]}),
    );
    let o = b.run();
    assert!(o.status.success(), "{o:?}");
    let f = data.join("made-inside");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "inside\n");
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!((m.uid(), m.gid()), (b.user.uid, b.user.gid));
    b.assert_no_leftovers(None);
}

#[test]
fn create_start_exec_kill_delete() {
    let mut b = RlBundle::new("rl-life", &["sleep", "1000"]);
    multi_range(&mut b);
    b.write_config();
    let o = b.amphi(&["create", &b.id]);
    assert!(o.status.success(), "create: {o:?}");
    let st = b.state().expect("state after create");
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().unwrap() as i32;
    // The init process belongs to the caller on the host, in a user namespace of its own.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1).unwrap(),
        b.user.uid.to_string(),
        "{uid_line}"
    );
    assert!(b.state_root().join(&b.id).is_dir());
    let o = b.amphi(&["start", &b.id]);
    assert!(o.status.success(), "start: {o:?}");
    assert_eq!(b.state().unwrap()["status"], "running");
    let list = b.amphi(&["list", "--format", "json"]);
    assert!(out(&list).contains(&b.id), "{list:?}");

    let o = b.amphi(&[
        "exec",
        &b.id,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; cat /proc/1/cmdline",
    ]);
    let text = out(&o);
    assert!(o.status.success(), "exec: {o:?}");
    assert_eq!(text.lines().next(), Some("0"), "{text}");
    assert!(
        map_lines(&text).contains(&vec![0, b.user.uid as u64, 1]),
        "{text}"
    );
    assert!(
        text.contains("sleep"),
        "exec'd process should see the container's pid 1: {text}"
    );

    let o = b.amphi(&["kill", &b.id, "KILL"]);
    assert!(o.status.success(), "kill: {o:?}");
    assert!(
        wait_for(|| b.state().is_some_and(|s| s["status"] == "stopped")),
        "state after kill: {:?}",
        b.state()
    );
    let o = b.amphi(&["delete", &b.id]);
    assert!(o.status.success(), "delete: {o:?}");
    assert!(b.state().is_none());
    b.assert_no_leftovers(Some(pid));
}

/// A WASI command (text format) printing `text`.
fn hello_wat(text: &str) -> String {
    let bytes: String = text.bytes().map(|c| format!("\\{c:02x}")).collect();
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{bytes}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const {len}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#,
        len = text.len()
    )
}

/// The `.cwasm` artefacts in `dir`.
fn artefacts(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".cwasm"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn wasm_container_with_cache_in_the_users_home() {
    // A module unique to this test process, so its cache key cannot already exist anywhere.
    let text = format!("hello rootless wasm {}\n", std::process::id());
    let b = RlBundle::new("rl-wasm", &["/hello.wat"]);
    let wat = b.bundle().join("rootfs/hello.wat");
    std::fs::write(&wat, hello_wat(&text)).unwrap();
    std::os::unix::fs::chown(&wat, Some(b.user.uid), Some(b.user.gid)).unwrap();
    let o = b.run();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(out(&o), text);
    // No XDG_CACHE_HOME: the cache is ~/.cache/amphi/wasm-cache, owned by the user.
    let cache = b.path().join("home/.cache/amphi/wasm-cache");
    let found = artefacts(&cache);
    assert_eq!(found.len(), 1, "{}: {found:?}", cache.display());
    let m = std::fs::metadata(cache.join(&found[0])).unwrap();
    assert_eq!(m.uid(), b.user.uid);
    assert!(
        !Path::new(amphi_executors_default_dir())
            .join(&found[0])
            .exists(),
        "the user's module must not be compiled into root's cache"
    );
    b.assert_no_leftovers(None);
}

/// Root's default cache directory (`/var/lib/amphi/wasm-cache`).
fn amphi_executors_default_dir() -> &'static str {
    "/var/lib/amphi/wasm-cache"
}

#[test]
fn wasm_cache_follows_xdg_cache_home() {
    let text = format!("hello xdg cache {}\n", std::process::id());
    let mut b = RlBundle::new("rl-wasm-xdg", &["/hello.wat"]);
    let xdg = b.path().join("xdg-cache");
    std::fs::create_dir(&xdg).unwrap();
    std::os::unix::fs::chown(&xdg, Some(b.user.uid), Some(b.user.gid)).unwrap();
    b.env
        .push(("XDG_CACHE_HOME".into(), xdg.to_string_lossy().into_owned()));
    let wat = b.bundle().join("rootfs/hello.wat");
    std::fs::write(&wat, hello_wat(&text)).unwrap();
    std::os::unix::fs::chown(&wat, Some(b.user.uid), Some(b.user.gid)).unwrap();
    let o = b.run();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(out(&o), text);
    assert_eq!(artefacts(&xdg.join("amphi/wasm-cache")).len(), 1);
    assert!(!b.path().join("home/.cache").exists());
    // Second run: loaded from the cache, same output.
    let o = b.run();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(out(&o), text);
    b.assert_no_leftovers(None);
}

#[test]
fn mapping_outside_the_subordinate_ranges_is_refused() {
    let mut b = RlBundle::new("rl-outside", &["true"]);
    let u = b.user;
    // Right after the user's subordinate range: not delegated to it.
    let outside = u.subuid + SUB_COUNT;
    b.config["linux"]["uidMappings"] = json!([
        {"containerID": 0, "hostID": u.uid, "size": 1},
        {"containerID": 1, "hostID": outside, "size": 1000},
    ]);
    let o = b.run();
    assert!(!o.status.success(), "{o:?}");
    let e = err(&o);
    assert!(e.contains("linux.uidMappings"), "{e}");
    assert!(e.contains(&format!("1 {outside} 1000")), "{e}");
    assert!(e.contains("/etc/subuid"), "{e}");
    assert!(b.state().is_none());
    b.assert_no_leftovers(None);
}

#[test]
fn gid_mapping_outside_the_subordinate_ranges_is_refused() {
    let mut b = RlBundle::new("rl-outside-gid", &["true"]);
    multi_range(&mut b);
    b.config["linux"]["gidMappings"] = json!([
        {"containerID": 0, "hostID": 0, "size": 1},
    ]);
    let o = b.run();
    assert!(!o.status.success(), "{o:?}");
    let e = err(&o);
    assert!(e.contains("linux.gidMappings"), "{e}");
    assert!(e.contains("/etc/subgid"), "{e}");
    b.assert_no_leftovers(None);
}

#[test]
fn a_rootless_container_needs_a_user_namespace() {
    let mut b = RlBundle::new("rl-nouserns", &["true"]);
    let ns: Vec<Value> = b.config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] != "user")
        .cloned()
        .collect();
    b.config["linux"]["namespaces"] = json!(ns);
    let o = b.run();
    assert!(!o.status.success(), "{o:?}");
    let e = err(&o);
    assert!(
        e.contains("linux.namespaces") && e.contains("user namespace"),
        "{e}"
    );
    b.assert_no_leftovers(None);
}

#[test]
fn limits_without_a_delegated_cgroup_are_refused() {
    let mut b = RlBundle::new("rl-limits", &["true"]);
    b.config["linux"]["resources"] = json!({"memory": {"limit": 67108864}});
    let o = b.run();
    assert!(!o.status.success(), "{o:?}");
    let e = err(&o);
    assert!(e.contains("cannot set memory limit"), "{e}");
    b.assert_no_leftovers(None);
    // An explicit cgroupsPath that is not delegated is refused too (runc does the same).
    b.config["linux"]["resources"] = Value::Null;
    b.config["linux"]["cgroupsPath"] = json!(format!("/amphi-test/{}", b.id));
    let o = b.run();
    assert!(!o.status.success(), "{o:?}");
    let e = err(&o);
    assert!(
        e.contains("linux.cgroupsPath") && e.contains("not delegated"),
        "{e}"
    );
    b.assert_no_leftovers(None);
}

#[test]
fn no_state_dir_without_xdg_runtime_dir() {
    // Neither XDG_RUNTIME_DIR nor /run/user/<uid>: a clear error, nothing created.
    let b = RlBundle::new("rl-noxdg", &["true"]);
    if Path::new(&format!("/run/user/{}", b.user.uid)).exists() {
        return;
    }
    let o = Command::new("setpriv")
        .arg(format!("--reuid={}", b.user.uid))
        .arg(format!("--regid={}", b.user.gid))
        .args(["--init-groups", "--"])
        .arg(user_amphi())
        .args(["list"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", b.path().join("home"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success(), "{o:?}");
    let e = err(&o);
    assert!(e.contains("XDG_RUNTIME_DIR") && e.contains("--root"), "{e}");
}

/// A cgroup delegated to the test user in every hierarchy of the host (v1 controllers and the
/// cgroup2 mount), as a login manager delegates a session's subtree: directories and their
/// `cgroup.procs`/`tasks` owned by the user, cpusets initialised. Removed on drop (after the
/// processes that joined it are gone).
struct Delegated {
    dirs: Vec<PathBuf>,
    path: String,
}

impl Delegated {
    fn new(name: &str, u: &TestUser) -> Delegated {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = format!("/amphi-test/{name}-{}-{n}", std::process::id());
        let mut dirs = Vec::new();
        for root in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let root = root.path();
            if !root.join("cgroup.procs").exists() {
                continue;
            }
            let dir = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(&dir).unwrap();
            // A new v1 cpuset is empty: copy cpus and mems down from the root.
            if root.join("cpuset.cpus").exists() {
                let mut chain: Vec<&Path> = dir
                    .ancestors()
                    .take_while(|p| p.starts_with(&root))
                    .collect();
                chain.reverse();
                for pair in chain.windows(2) {
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        if std::fs::read_to_string(pair[1].join(f))
                            .unwrap()
                            .trim()
                            .is_empty()
                        {
                            let v = std::fs::read_to_string(pair[0].join(f)).unwrap();
                            std::fs::write(pair[1].join(f), v.trim()).unwrap();
                        }
                    }
                }
            }
            std::os::unix::fs::chown(&dir, Some(u.uid), Some(u.gid)).unwrap();
            for f in ["cgroup.procs", "tasks", "cgroup.subtree_control"] {
                if dir.join(f).exists() {
                    std::os::unix::fs::chown(dir.join(f), Some(u.uid), Some(u.gid)).unwrap();
                }
            }
            dirs.push(dir);
        }
        Delegated { dirs, path }
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        for d in &self.dirs {
            // Children first (what a failed test left), then the delegated directory.
            if let Ok(rd) = std::fs::read_dir(d) {
                for e in rd.flatten() {
                    if e.path().is_dir() {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            wait_for(|| std::fs::remove_dir(d).is_ok() || !d.exists());
        }
        for parent in common::cgroup_dirs_of("/amphi-test") {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

#[test]
fn a_delegated_cgroup_is_used() {
    let mut b = RlBundle::new("rl-deleg", &["sleep", "1000"]);
    let d = Delegated::new("rl-deleg", b.user);
    let cg = format!("{}/ctr", d.path);
    b.join_cgroups = d.procs_files();
    b.config["linux"]["cgroupsPath"] = json!(cg);
    b.config["linux"]["resources"] = json!({"pids": {"limit": 20}});
    // The container sees its own cgroup at /sys/fs/cgroup (over the host's /sys bound read-only).
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
    }));
    b.write_config();
    let o = b.amphi(&["run", "--detach", &b.id]);
    assert!(o.status.success(), "run -d: {o:?}");
    let st = b.state().expect("state");
    assert_eq!(st["status"], "running");
    let pid = st["pid"].as_i64().unwrap() as i32;
    let own = common::cgroup_dirs_of(&cg);
    assert!(!own.is_empty());
    let pids_dir = own
        .iter()
        .find(|p| p.starts_with("/sys/fs/cgroup/pids"))
        .expect("pids hierarchy");
    assert_eq!(
        std::fs::read_to_string(pids_dir.join("pids.max"))
            .unwrap()
            .trim(),
        "20"
    );
    for dir in &own {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l.trim() == pid.to_string()),
            "init {pid} not in {}: {procs:?}",
            dir.display()
        );
    }
    let o = b.amphi(&["exec", &b.id, "cat", "/sys/fs/cgroup/pids/pids.max"]);
    assert!(o.status.success(), "exec: {o:?}");
    assert_eq!(out(&o).trim(), "20");
    let o = b.amphi(&["delete", "--force", &b.id]);
    assert!(o.status.success(), "delete -f: {o:?}");
    assert!(
        common::cgroup_dirs_of(&cg).is_empty(),
        "the container's cgroup is removed"
    );
    b.assert_no_leftovers(Some(pid));
}

#[test]
fn rootless_false_insists_on_a_cgroup() {
    // `--rootless=false` turns the rootless cgroup handling off: without a delegated cgroup the
    // create fails on the cgroup (as runc), and leaves nothing behind.
    let b = RlBundle::new("rl-false", &["true"]);
    b.write_config();
    let o = b.amphi(&["--rootless=false", "run", &b.id]);
    assert!(!o.status.success(), "{o:?}");
    let e = err(&o);
    assert!(e.contains("cgroup") && e.contains(&b.id), "{e}");
    b.assert_no_leftovers(None);
    // The same config runs in the default (auto) mode.
    let o = b.run();
    assert!(o.status.success(), "{o:?}");
    b.assert_no_leftovers(None);
}
