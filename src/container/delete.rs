//! `delete`: stop what is left of a container and remove its cgroup and state.

use std::path::Path;
use std::time::Duration;

use super::state::{ContainerDir, State, Status};
use crate::cgroups::ContainerCgroup;
use crate::utils::kill_and_wait;

/// Kills the init process (if alive), waits for it to go (up to 10 s), and removes the cgroup.
///
/// Errors: the cgroup cannot be removed.
pub fn destroy(state: &State) -> anyhow::Result<()> {
    if state.status == Status::Paused {
        // Frozen processes cannot die: thaw them first.
        if let Some(path) = &state.cgroup_path {
            let _ = ContainerCgroup::open(path).and_then(|cg| cg.set_frozen(false));
        }
    }
    kill_and_wait(state.pid, state.pid_start_time, Duration::from_secs(10));
    if let Some(path) = &state.cgroup_path {
        ContainerCgroup::open(path)?.destroy()?;
    }
    Ok(())
}

/// Deletes container `id`: a stopped or created container is removed; a running one only with
/// `force` (it is killed first). With `force`, a container that does not exist is not an error.
///
/// Errors: "container ... does not exist" (without `force`), "cannot delete container ... that is not
/// stopped: running" (without `force`), or a cleanup step.
pub fn delete(root: &Path, id: &str, force: bool) -> anyhow::Result<()> {
    crate::bundle::validate_id(id).map_err(|e| anyhow::anyhow!(e))?;
    let dir = match ContainerDir::open(root, id) {
        Ok(d) => d,
        Err(_) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let state = match dir.load() {
        Ok(s) => s,
        // A corrupt state.json is not removed, even with `force`: its init process and cgroup
        // would live on with nothing left to find them by. Unless nothing can live on: no
        // state.json at all (a create that died before writing it), or one last written before
        // the machine booted (a crash on a disk-backed `--root` can leave it empty or cut).
        Err(_) if state_file_stale(&dir.path.join(super::state::STATE_FILE)) => {
            return dir.remove();
        }
        Err(e) => return Err(e),
    };
    match state.status() {
        Status::Stopped | Status::Created | Status::Creating => {}
        Status::Running | Status::Paused if force => {}
        s @ (Status::Running | Status::Paused) => {
            anyhow::bail!("cannot delete container {id} that is not stopped: {s}")
        }
    }
    destroy(&state)?;
    dir.remove()?;
    if let Some(list) = state.hooks.as_ref().and_then(|h| h.poststop().clone()) {
        crate::hooks::run_warn(
            "poststop",
            &list,
            &state.spec_state_json_as(Status::Stopped),
        );
    }
    Ok(())
}

/// `true` when `path` does not exist, or was last modified before the machine booted: no process
/// or cgroup it could name has survived the reboot. The boot time is the wall clock now minus
/// CLOCK_BOOTTIME, the same figure as `btime` in proc(5)'s `/proc/stat`.
fn state_file_stale(path: &Path) -> bool {
    let modified = match std::fs::symlink_metadata(path) {
        Err(e) => return e.kind() == std::io::ErrorKind::NotFound,
        Ok(m) => match m.modified() {
            Ok(t) => t,
            Err(_) => return false,
        },
    };
    boot_time().is_some_and(|boot| modified < boot)
}

/// The wall-clock time at which the machine booted, or `None` if a clock cannot be read.
fn boot_time() -> Option<std::time::SystemTime> {
    let up = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let up = Duration::new(
        u64::try_from(up.tv_sec()).ok()?,
        u32::try_from(up.tv_nsec()).ok()?,
    );
    std::time::SystemTime::now().checked_sub(up)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_or_pre_boot_state_file_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(state_file_stale(&path), "missing");
        std::fs::write(&path, b"").unwrap();
        assert!(!state_file_stale(&path), "written now");
        let boot = boot_time().unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(boot - Duration::from_secs(60)).unwrap();
        assert!(state_file_stale(&path), "written a minute before the boot");
        f.set_modified(boot + Duration::from_secs(60)).unwrap();
        assert!(!state_file_stale(&path), "written a minute after the boot");
    }
}
