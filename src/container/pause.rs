//! `pause` and `resume`: freeze and thaw every process of a container (cgroup freezer).

use super::state::{ContainerDir, State, Status};
use crate::cgroups::ContainerCgroup;

fn cgroup_of(state: &State) -> anyhow::Result<ContainerCgroup> {
    let path = state
        .cgroup_path
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("container {} has no cgroup", state.id))?;
    ContainerCgroup::open(path)
}

/// Freezes a running container; its status becomes `paused`.
///
/// Errors: the container is not running ("container not running"), or the freezer fails.
pub fn pause(dir: &ContainerDir, state: &mut State) -> anyhow::Result<()> {
    match state.status() {
        Status::Running | Status::Created => {}
        Status::Paused => anyhow::bail!("container {} is already paused", state.id),
        _ => anyhow::bail!("container not running"),
    }
    cgroup_of(state)?.set_frozen(true)?;
    state.status = Status::Paused;
    dir.save(state)
}

/// Thaws a paused container; its status becomes `running`.
///
/// Errors: the container is not paused ("container not paused"), or the freezer fails.
pub fn resume(dir: &ContainerDir, state: &mut State) -> anyhow::Result<()> {
    if state.status() != Status::Paused {
        anyhow::bail!("container not paused");
    }
    cgroup_of(state)?.set_frozen(false)?;
    state.status = Status::Running;
    dir.save(state)
}
