//! `start`: release the init process waiting on the start socket.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use super::state::{ContainerDir, State, Status};
use crate::process::START_SOCKET;

/// Starts a created container: connects to its start socket, sends the start byte, and waits until
/// the workload runs (the init's end of the connection is closed by its exec) or reports why it
/// could not start.
///
/// Errors: the container is not `created` (runc's messages), or the workload failed to start (the
/// container is then stopped).
pub fn start(dir: &ContainerDir, state: &mut State) -> anyhow::Result<()> {
    match state.status() {
        Status::Created => {}
        Status::Stopped => anyhow::bail!("cannot start a container that has stopped"),
        Status::Running => anyhow::bail!("cannot start an already running container"),
        Status::Paused => anyhow::bail!("cannot start a paused container"),
        Status::Creating => anyhow::bail!("cannot start a container that is still being created"),
    }
    let path = format!("/proc/self/fd/{}/{START_SOCKET}", dir.as_fd().as_raw_fd());
    let mut conn = UnixStream::connect(&path)
        .map_err(|e| anyhow::anyhow!("start {}: connect to init: {e}", state.id))?;
    conn.write_all(&[0])
        .map_err(|e| anyhow::anyhow!("start {}: signal init: {e}", state.id))?;
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    let _ = std::fs::remove_file(dir.path.join(START_SOCKET));
    if !reply.is_empty() {
        state.status = Status::Stopped;
        dir.save(state)?;
        anyhow::bail!("start {}: {reply}", state.id);
    }
    state.status = Status::Running;
    dir.save(state)?;
    if let Some(list) = state.hooks.as_ref().and_then(|h| h.poststart().clone()) {
        crate::hooks::run_warn("poststart", &list, &state.spec_state_json());
    }
    Ok(())
}
