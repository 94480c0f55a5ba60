//! `amphi delete` (runc-delete(8)).

use clap::Args;

use super::{ExitCode, Global};
use crate::container;

/// `amphi delete [--force] ID`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Forcibly delete the container if it is still running (uses SIGKILL).
    #[arg(short = 'f', long)]
    force: bool,
    /// The container id.
    id: String,
}

/// Deletes the container.
pub fn run(g: &Global, a: DeleteArgs) -> anyhow::Result<ExitCode> {
    container::delete(&g.root, &a.id, a.force)?;
    Ok(0)
}
