//! Containers: state on disk and one file per lifecycle operation (runtime.md "Operations").

pub mod create;
pub mod delete;
pub mod exec;
pub mod kill;
pub mod pause;
pub mod start;
pub mod state;

pub use create::{create, CreateOptions, Created};
pub use delete::{delete, destroy};
pub use kill::{kill, parse_signal};
pub use start::start;
pub use state::{ContainerDir, State, Status};

use std::path::Path;

/// Reads the state of container `id` under `root`.
///
/// Errors: the container does not exist.
pub fn load(root: &Path, id: &str) -> anyhow::Result<State> {
    crate::bundle::validate_id(id).map_err(|e| anyhow::anyhow!(e))?;
    let dir = ContainerDir::open(root, id)?;
    dir.load()
}

/// Ids of all containers under `root`, sorted.
pub fn list_ids(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join(state::STATE_FILE).exists())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}
