//! Container state on disk: `<root>/<id>/state.json`, its status machine, and the per-container lock.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::utils::{process_alive, write_atomic};

/// The status of a container (runtime.md "State"; `paused` comes with the freezer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is under way.
    Creating,
    /// Created; init waits for `start`.
    Created,
    /// The workload runs.
    Running,
    /// The container's processes are frozen (`pause`).
    Paused,
    /// The init process has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What `state.json` holds: the runtime-spec state plus what amphi needs to manage the container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// `ociVersion` of the container's config.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Host pid of the init process (0 before it exists).
    pub pid: i32,
    /// Start time of the init process in clock ticks since boot (`/proc/<pid>/stat` field 22): tells
    /// the container's init from a later process that reuses its pid.
    pub pid_start_time: u64,
    /// Status as last recorded; [`State::status`] refines it with the init process's liveness.
    pub status: Status,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339 with nanoseconds (UTC).
    pub created: String,
    /// Owner (user name of the creating uid; runc leaves it empty for root... and so does amphi).
    pub owner: String,
    /// The config's annotations.
    pub annotations: HashMap<String, String>,
    /// The cgroup path from each hierarchy's root, when a cgroup was created.
    pub cgroup_path: Option<String>,
    /// The executor chosen at create (`linux` or `wasm`).
    pub executor: String,
    /// The config's hooks, kept for `poststart` and `poststop` (the bundle may change after create).
    #[serde(default)]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// The config's `linux.seccomp`, kept for `exec` (which confines its process with the same filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// True when the container has a pid namespace of its own (a `pid` entry without a path): all its
    /// processes end with its init, so `delete` signals nothing else in its cgroup. False (and in
    /// states written before this field) when it shares a pid namespace: `delete` then kills every
    /// process left in the cgroup, as runc does.
    #[serde(default)]
    pub private_pid_ns: bool,
    /// The cgroup's host directories, one per hierarchy, recorded at create (as runc keeps
    /// `cgroup_paths` in its state.json), so that `delete` of a container whose processes ended
    /// with its pid namespace removes them without parsing the mount table again (cgroups-rs reads
    /// `/proc/self/mountinfo` twice to open a cgroup, about 0.2 ms here). Empty in states written
    /// before this field: `delete` then opens the cgroup by `cgroup_path`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup_dirs: Vec<PathBuf>,
}

/// The JSON that `amphi state` prints: runc's `containerState` fields, in runc's order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateOutput {
    /// `ociVersion`.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// `id`.
    pub id: String,
    /// `pid`: 0 once stopped, as runc.
    pub pid: i32,
    /// `status`.
    pub status: String,
    /// `bundle`.
    pub bundle: String,
    /// `rootfs`.
    pub rootfs: String,
    /// `created`, RFC 3339.
    pub created: String,
    /// `annotations`, omitted when empty (runc: `omitempty`).
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
    /// `owner`.
    pub owner: String,
}

impl State {
    /// The status now: a `created` or `running` (or interrupted `creating`) container whose init
    /// process is gone is `stopped`.
    pub fn status(&self) -> Status {
        match self.status {
            Status::Stopped => Status::Stopped,
            s => {
                if process_alive(self.pid, self.pid_start_time) {
                    if s == Status::Creating {
                        Status::Created
                    } else {
                        s
                    }
                } else {
                    Status::Stopped
                }
            }
        }
    }

    /// The runc-shaped view of this state.
    pub fn output(&self) -> StateOutput {
        let status = self.status();
        StateOutput {
            oci_version: self.oci_version.clone(),
            id: self.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status: status.to_string(),
            bundle: self.bundle.display().to_string(),
            rootfs: self.rootfs.display().to_string(),
            created: self.created.clone(),
            annotations: self.annotations.clone(),
            owner: self.owner.clone(),
        }
    }

    /// The state as runtime-spec's state JSON for hooks (runtime.md "State"), with `status`.
    pub fn spec_state_json_as(&self, status: Status) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": status.to_string(),
            "pid": self.pid,
            "bundle": self.bundle,
            "annotations": self.annotations,
        })
    }

    /// The state JSON for hooks with the current status.
    pub fn spec_state_json(&self) -> serde_json::Value {
        self.spec_state_json_as(self.status())
    }
}

/// An exclusive lock on a container's state directory (flock(2) on the directory itself), held for
/// the whole of one command so concurrent commands on one id cannot interleave.
#[derive(Debug)]
pub struct ContainerDir {
    /// `<root>/<id>`.
    pub path: PathBuf,
    _lock: Flock<File>,
}

/// The file name of the state inside the container directory.
pub const STATE_FILE: &str = "state.json";

/// The file in a container's directory that holds the kernel's boot id (proc(5),
/// `/proc/sys/kernel/random/boot_id`) of the boot in which the container was created.
pub const BOOT_ID_FILE: &str = "boot_id";

/// The kernel's id of the current boot (a UUID, 36 characters), or `None` if it cannot be read.
fn current_boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (id.len() == 36).then(|| id.to_string())
}

impl ContainerDir {
    /// Creates `<root>/<id>` (mode 0700) and locks it. The directory's creation is the atomic
    /// "this id is taken" step.
    ///
    /// Errors: the id exists ("container with id ... already exists"), or the root is not writable.
    pub fn create(root: &Path, id: &str) -> anyhow::Result<ContainerDir> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| anyhow::anyhow!("--root {}: {e}", root.display()))?;
        let path = root.join(id);
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                anyhow::bail!("container with id {id} already exists")
            }
            Err(e) => anyhow::bail!("create {}: {e}", path.display()),
        }
        let dir = Self::lock(path)?;
        // Only `delete` reads it, to tell a state.json cut by a crash from one that is still in use
        // (see [`ContainerDir::from_earlier_boot`]): without it, that case is refused as before.
        if let Some(id) = current_boot_id() {
            if let Err(e) = std::fs::write(dir.path.join(BOOT_ID_FILE), id) {
                log::debug!("write {BOOT_ID_FILE}: {e}");
            }
        }
        Ok(dir)
    }

    /// `true` only when the directory records the boot id of another boot than the current one: the
    /// machine has rebooted since the container was created, so none of its processes or cgroups
    /// still exist. `false` when either id cannot be read or the recorded one is not a boot id.
    pub fn from_earlier_boot(&self) -> bool {
        let Ok(recorded) = std::fs::read_to_string(self.path.join(BOOT_ID_FILE)) else {
            return false;
        };
        let recorded = recorded.trim();
        recorded.len() == 36 && current_boot_id().is_some_and(|now| now != recorded)
    }

    /// Opens and locks the directory of an existing container.
    ///
    /// Errors: no such container ("container ... does not exist").
    pub fn open(root: &Path, id: &str) -> anyhow::Result<ContainerDir> {
        let path = root.join(id);
        let dir = Self::lock(path.clone())
            .map_err(|_| anyhow::anyhow!("container {id} does not exist"))?;
        // A delete may have removed the directory while we waited for the lock; a file under the
        // root is no container either.
        if !path.is_dir() {
            anyhow::bail!("container {id} does not exist");
        }
        Ok(dir)
    }

    fn lock(path: PathBuf) -> anyhow::Result<ContainerDir> {
        let f = File::open(&path).map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
        let lock = Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("lock {}: {e}", path.display()))?;
        Ok(ContainerDir { path, _lock: lock })
    }

    /// Reads `state.json`.
    ///
    /// Errors: missing (the container does not exist, or its create never got that far) or corrupt.
    pub fn load(&self) -> anyhow::Result<State> {
        let p = self.path.join(STATE_FILE);
        let text = std::fs::read_to_string(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "container {} does not exist",
                    self.path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                )
            } else {
                anyhow::anyhow!("read {}: {e}", p.display())
            }
        })?;
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: corrupt: {e}", p.display()))
    }

    /// Writes `state.json` atomically.
    ///
    /// Errors: the write fails.
    pub fn save(&self, state: &State) -> anyhow::Result<()> {
        let data = serde_json::to_vec(state)?;
        write_atomic(&self.path.join(STATE_FILE), &data, 0o600)
            .map_err(|e| anyhow::anyhow!("write state of {}: {e}", state.id))
    }

    /// Removes the directory and everything in it (the lock goes with it).
    pub fn remove(self) -> anyhow::Result<()> {
        std::fs::remove_dir_all(&self.path)
            .map_err(|e| anyhow::anyhow!("remove {}: {e}", self.path.display()))
    }

    /// The directory as an fd (for the start socket, bound under `/proc/self/fd/N/`).
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self._lock.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_boot_id_marks_an_earlier_boot() {
        let root = tempfile::tempdir().unwrap();
        let dir = ContainerDir::create(root.path(), "c").unwrap();
        let now = current_boot_id().unwrap();
        let file = dir.path.join(BOOT_ID_FILE);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), now);
        assert!(!dir.from_earlier_boot(), "this boot");
        let other = if now.starts_with('0') { "1" } else { "0" }.to_string() + &now[1..];
        std::fs::write(&file, &other).unwrap();
        assert!(dir.from_earlier_boot(), "another boot");
        for bad in ["", "garbage", &now[..35]] {
            std::fs::write(&file, bad).unwrap();
            assert!(!dir.from_earlier_boot(), "{bad:?}");
        }
        std::fs::remove_file(&file).unwrap();
        assert!(!dir.from_earlier_boot(), "no file");
    }
}
