//! `amphi kill` (runc-kill(8)).

use clap::Args;

use super::{ExitCode, Global};
use crate::container;

/// `amphi kill [--all] ID [SIGNAL]`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Send the signal to all processes in the container.
    #[arg(short = 'a', long)]
    all: bool,
    /// The container id.
    id: String,
    /// Signal name (with or without SIG) or number; default SIGTERM.
    #[arg(default_value = "SIGTERM")]
    signal: String,
}

/// Sends the signal.
pub fn run(g: &Global, a: KillArgs) -> anyhow::Result<ExitCode> {
    let signal = container::parse_signal(&a.signal)?;
    let state = container::load(&g.root, &a.id)?;
    container::kill(&state, signal, a.all)?;
    Ok(0)
}
