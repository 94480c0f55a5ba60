//! `amphi pause` and `amphi resume` (runc-pause(8), runc-resume(8)).

use clap::Args;

use super::{ExitCode, Global};
use crate::container::{self, ContainerDir};

/// `amphi pause ID` / `amphi resume ID`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The container id.
    id: String,
}

/// Freezes the container.
pub fn run_pause(g: &Global, a: PauseArgs) -> anyhow::Result<ExitCode> {
    crate::bundle::validate_id(&a.id).map_err(|e| anyhow::anyhow!(e))?;
    let dir = ContainerDir::open(&g.root, &a.id)?;
    let mut state = dir.load()?;
    container::pause::pause(&dir, &mut state)?;
    Ok(0)
}

/// Thaws the container.
pub fn run_resume(g: &Global, a: PauseArgs) -> anyhow::Result<ExitCode> {
    crate::bundle::validate_id(&a.id).map_err(|e| anyhow::anyhow!(e))?;
    let dir = ContainerDir::open(&g.root, &a.id)?;
    let mut state = dir.load()?;
    container::pause::resume(&dir, &mut state)?;
    Ok(0)
}
