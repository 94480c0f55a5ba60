//! `amphi start` (runc-start(8)).

use clap::Args;

use super::{ExitCode, Global};
use crate::container::{self, ContainerDir};

/// `amphi start ID`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The container id.
    id: String,
}

/// Starts a created container.
pub fn run(g: &Global, a: StartArgs) -> anyhow::Result<ExitCode> {
    crate::bundle::validate_id(&a.id).map_err(|e| anyhow::anyhow!(e))?;
    let dir = ContainerDir::open(&g.root, &a.id)?;
    let mut state = dir.load()?;
    container::start(&dir, &mut state)?;
    Ok(0)
}
