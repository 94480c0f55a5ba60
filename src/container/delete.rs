//! `delete`: stop what is left of a container and remove its cgroup and state.

use std::path::Path;
use std::time::Duration;

use super::state::{ContainerDir, State, Status};
use crate::cgroups::{ContainerCgroup, Placement};
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
    let init_gone = kill_and_wait(state.pid, state.pid_start_time, Duration::from_secs(10));
    if let Some(path) = &state.cgroup_path {
        if state.private_pid_ns && init_gone {
            // Its pid namespace ended with its init, and with it every process of the container:
            // whatever is in the cgroup now is someone else's. The directories recorded at create
            // spare opening the cgroup, which parses the mount table; older states open it.
            let cg = match Placement::recorded(path, &state.cgroup_dirs) {
                Some(recorded) => recorded,
                None => ContainerCgroup::open(path)?.placement(),
            };
            if !cg.remove_unless_busy()? {
                log::warn!(
                    "cgroup {path} not removed: it holds processes that are not container {}'s",
                    state.id
                );
            }
        } else {
            ContainerCgroup::open(path)?.destroy()?;
        }
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
        // state.json at all (a create that died before writing it), or a container created in an
        // earlier boot (a crash on a disk-backed `--root` can leave state.json empty or cut).
        Err(_)
            if !state_file_exists(&dir.path.join(super::state::STATE_FILE))
                || dir.from_earlier_boot() =>
        {
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

/// `false` only when `path` is known not to exist (ENOENT); any other error counts as present.
fn state_file_exists(path: &Path) -> bool {
    !matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}
