//! `exec`: run a new process in a created or running container (runc-exec(8)).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use amphi_executors::Workload;
use nix::fcntl::{open, OFlag};
use nix::sys::signal::SigSet;
use nix::sys::stat::Mode;
use oci_spec::runtime::{Process, Spec};

use super::state::{ContainerDir, State, Status};
use crate::cgroups::ContainerCgroup;
use crate::process::exec::{proc_name, spawn, ExecConfig, JOIN_ORDER};

/// The options of `amphi exec` besides the process itself.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
    /// `--cgroup`: a sub-cgroup of the container's to put the process in (relative path).
    /// `--cgroup` values, runc's syntax: `PATH` (every hierarchy) or `CONTROLLER[,CONTROLLER...]:PATH`
    /// (cgroup v1 hierarchies with those controllers); PATH is relative to the container's cgroup.
    pub sub_cgroup: Vec<String>,
    /// The directory of the Wasm AOT cache.
    pub wasm_cache_dir: PathBuf,
    /// `--ignore-paused`: exec even into a paused container.
    pub ignore_paused: bool,
}

/// Reads `/etc/passwd`-style `file` under the container root `root` and returns the fields of the
/// first line whose field `key_index` equals `key`.
fn lookup(root: &Path, file: &str, key_index: usize, key: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(root.join(file)).ok()?;
    text.lines()
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.get(key_index).map(String::as_str) == Some(key))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
        && !s.chars().all(|c| c.is_ascii_digit())
}

/// Parses `-u/--user` strictly: `UID`, `UID:GID`, `NAME` or `NAME:GROUP`; names are looked up in the
/// container's `/etc/passwd` and `/etc/group` (under `root`). Without a group, the user's primary
/// group from `/etc/passwd` is used (0 if the uid has no entry).
///
/// Errors: any other form, an unknown name, or a number out of range; never falls back to root.
pub fn parse_user(spec: &str, root: &Path) -> anyhow::Result<(u32, u32)> {
    let bad = || anyhow::anyhow!("--user {spec:?}: expected UID, UID:GID, NAME or NAME:GROUP");
    let mut parts = spec.splitn(2, ':');
    let user = parts.next().ok_or_else(bad)?;
    let group = parts.next();
    let form_ok =
        |s: &str| !s.is_empty() && (s.chars().all(|c| c.is_ascii_digit()) || valid_name(s));
    if !form_ok(user) || group.is_some_and(|g| !form_ok(g)) {
        return Err(bad());
    }
    let (uid, primary) = if !user.is_empty() && user.chars().all(|c| c.is_ascii_digit()) {
        let uid: u32 = user.parse().map_err(|_| bad())?;
        let primary = lookup(root, "etc/passwd", 2, user)
            .and_then(|f| f.get(3).and_then(|g| g.parse().ok()))
            .unwrap_or(0);
        (uid, primary)
    } else if valid_name(user) {
        let f = lookup(root, "etc/passwd", 0, user).ok_or_else(|| {
            anyhow::anyhow!("--user {spec:?}: no user {user:?} in the container's /etc/passwd")
        })?;
        let uid = f.get(2).and_then(|u| u.parse().ok()).ok_or_else(bad)?;
        let gid = f.get(3).and_then(|g| g.parse().ok()).ok_or_else(bad)?;
        (uid, gid)
    } else {
        return Err(bad());
    };
    let gid = match group {
        None => primary,
        Some(g) if !g.is_empty() && g.chars().all(|c| c.is_ascii_digit()) => {
            g.parse().map_err(|_| bad())?
        }
        Some(g) if valid_name(g) => lookup(root, "etc/group", 0, g)
            .and_then(|f| f.get(2).and_then(|x| x.parse().ok()))
            .ok_or_else(|| {
                anyhow::anyhow!("--user {spec:?}: no group {g:?} in the container's /etc/group")
            })?,
        Some(_) => return Err(bad()),
    };
    Ok((uid, gid))
}

/// The home directory of `uid` in the container's `/etc/passwd`, or `/`.
pub fn home_of(uid: u32, root: &Path) -> String {
    lookup(root, "etc/passwd", 2, &uid.to_string())
        .and_then(|f| f.get(5).cloned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// Sets `HOME` from the container's `/etc/passwd` when the environment has none (as runc).
pub fn ensure_home(process: &mut Process, root: &Path) {
    let mut env = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(process.user().uid(), root)));
        process.set_env(Some(env));
    }
}

/// Starts `process` in container `state` (created or running); returns its host pid once the
/// workload runs. `console`: an already connected console socket (foreground `exec -t` proxies the
/// pty itself).
///
/// Errors: the container is stopped, the process cannot be set up or started.
pub fn exec(
    dir: &ContainerDir,
    state: &State,
    process: Process,
    opts: &ExecOptions,
    console: Option<OwnedFd>,
    sigmask: SigSet,
) -> anyhow::Result<i32> {
    match state.status() {
        Status::Created | Status::Running => {}
        Status::Paused if opts.ignore_paused => {}
        Status::Paused => {
            anyhow::bail!("cannot exec in a paused container (use --ignore-paused to override)")
        }
        _ => anyhow::bail!("cannot exec in a stopped container"),
    }
    // As for create: a profile or label for an LSM the host does not have is refused, never dropped.
    crate::security::lsm::check_process(&process)?;
    match process.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => anyhow::bail!("process.args: a command to execute is required"),
    }
    let root = PathBuf::from(format!("/proc/{}/root", state.pid));
    let terminal = process.terminal().unwrap_or(false);
    let console = match (terminal, console, &opts.console_socket) {
        (true, Some(fd), _) => Some(fd),
        (true, None, Some(path)) => Some(crate::tty::connect_console_socket(path)?),
        (true, None, None) => {
            anyhow::bail!(
                "process.terminal: a terminal was requested but no --console-socket was given"
            )
        }
        (false, _, Some(_)) => {
            anyhow::bail!("--console-socket: given, but the process does not ask for a terminal")
        }
        (false, _, None) => None,
    };

    // The command's executor is chosen by content only (the container's annotations describe its
    // init, not what is exec'd).
    let mut spec = Spec::default();
    spec.set_process(Some(process));
    spec.set_annotations(None);
    let workload = Workload {
        spec: &spec,
        rootfs: &root,
        invoked_as: "amphi",
        wasm_cache_dir: &opts.wasm_cache_dir,
    };
    let mut executor = amphi_executors::select(&workload);
    executor
        .prepare(&workload)
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let mut cgroup_dirs = Vec::new();
    if let Some(path) = &state.cgroup_path {
        let cg = ContainerCgroup::open(path)?;
        let subs = SubCgroups::parse(&opts.sub_cgroup)?;
        let depth = path
            .trim_matches('/')
            .split('/')
            .filter(|c| !c.is_empty())
            .count();
        let dirs = cg.dirs();
        // The hierarchy of each directory: the name of its mount point (`cpu,cpuacct`, `unified`).
        let hierarchies: Vec<String> = dirs
            .iter()
            .map(|d| {
                d.ancestors()
                    .nth(depth)
                    .and_then(|m| m.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect();
        for c in subs.per_controller.iter().flat_map(|(cs, _)| cs) {
            if !hierarchies.iter().any(|h| hierarchy_has(h, c)) {
                anyhow::bail!("--cgroup {c}:...: no cgroup v1 hierarchy has the controller {c:?}");
            }
        }
        for (d, h) in dirs.into_iter().zip(&hierarchies) {
            let d = match subs.for_hierarchy(h) {
                Some(sub) => d.join(sub),
                None => d,
            };
            if !d.is_dir() {
                anyhow::bail!("--cgroup: {} does not exist", d.display());
            }
            cgroup_dirs.push(d);
        }
    }

    let mut namespaces = Vec::new();
    for t in JOIN_ORDER {
        let theirs = format!("/proc/{}/ns/{}", state.pid, proc_name(t));
        let ours = format!("/proc/self/ns/{}", proc_name(t));
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
            continue;
        };
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let fd = open(
            Path::new(&theirs),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| anyhow::anyhow!("open {theirs}: {e}"))?;
        namespaces.push((t, fd));
    }

    let reveal_proc = state.executor == "wasm" && executor.name() != "wasm";
    let mut cfg = ExecConfig {
        spec,
        cgroup_dirs,
        namespaces,
        console,
        preserve_fds: opts.preserve_fds,
        executor,
        sigmask,
        close_in_child: vec![dir.as_fd().as_raw_fd()],
        reveal_proc,
        seccomp: state.seccomp.clone(),
        seccomp_listener: crate::security::seccomp::Listener::connect(
            state.seccomp.as_ref(),
            state.spec_state_json_as(Status::Running),
        )?,
    };
    spawn(&mut cfg)
}

/// `exec --cgroup` values, parsed (runc's syntax).
#[derive(Debug, Default)]
struct SubCgroups {
    /// The path for every hierarchy not named below.
    all: Option<String>,
    /// Paths for the hierarchies with these controllers.
    per_controller: Vec<(Vec<String>, String)>,
}

impl SubCgroups {
    /// Errors: a path with `..`, or two paths for all hierarchies.
    fn parse(values: &[String]) -> anyhow::Result<SubCgroups> {
        let mut s = SubCgroups::default();
        for v in values {
            let (ctrls, path) = match v.split_once(':') {
                Some((c, p)) => (c, p),
                None => ("", v.as_str()),
            };
            let path = path.trim_start_matches('/');
            if path.split('/').any(|c| c == "..") {
                anyhow::bail!("--cgroup {v:?}: must not contain '..'");
            }
            let ctrls: Vec<String> = ctrls
                .split(',')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
            if ctrls.is_empty() {
                if s.all.is_some() {
                    anyhow::bail!("--cgroup {v:?}: a path for every controller was given twice");
                }
                s.all = Some(path.to_string());
            } else {
                s.per_controller.push((ctrls, path.to_string()));
            }
        }
        Ok(s)
    }

    /// The sub-path for hierarchy `h` (its mount point's name).
    fn for_hierarchy(&self, h: &str) -> Option<&str> {
        self.per_controller
            .iter()
            .find(|(cs, _)| cs.iter().any(|c| hierarchy_has(h, c)))
            .map(|(_, p)| p.as_str())
            .or(self.all.as_deref())
            .filter(|p| !p.is_empty())
    }
}

/// True when hierarchy `h` (`cpu,cpuacct`, `systemd`) holds controller `c` (`cpu`, `name=systemd`).
fn hierarchy_has(h: &str, c: &str) -> bool {
    let c = c.strip_prefix("name=").unwrap_or(c);
    h != "unified" && h.split(',').any(|x| x == c)
}
