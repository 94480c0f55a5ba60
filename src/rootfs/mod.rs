//! The container's root file system, built inside the init process's new mount namespace
//! (config.md "Root", "Mounts"; config-linux.md "Default Devices", "Masked Paths", "Readonly Paths",
//! "Rootfs Mount Propagation").
//!
//! Order (as runc): [`prepare_root`] (propagation of `/`, bind the rootfs onto itself) ->
//! [`mounts::mount_all`] (`mounts` in order) -> [`devices::setup`] -> [`pivot::pivot_root`] ->
//! [`paths::readonly_paths`] / [`paths::masked_paths`] -> [`paths::readonly_root`] (`root.readonly`).
//!
//! Every path inside the rootfs that is mounted on, created or written through is resolved by the
//! kernel inside the rootfs ([`resolve::Root`], openat2 `RESOLVE_IN_ROOT`) and used through the
//! descriptor it yields ([`mountfd`]: open_tree / fsmount / move_mount), never by a path string.

pub mod devices;
pub mod mountfd;
pub mod mounts;
pub mod paths;
pub mod pivot;
pub mod resolve;

use std::path::Path;

use nix::mount::{mount, MsFlags};

/// The propagation flag named by `name` (`private`, `rprivate`, `shared`, `rshared`, `slave`,
/// `rslave`, `unbindable`, `runbindable`), or `None` for any other word.
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// First step inside the new mount namespace: set the propagation of `/` (`linux.rootfsPropagation`,
/// default `rslave` so nothing leaks back to the host), then bind-mount the rootfs onto itself so it is
/// a mount point that `pivot_root(2)` accepts.
///
/// Errors: a mount fails; the message names the step.
pub fn prepare_root(rootfs: &Path, propagation: Option<&str>) -> anyhow::Result<()> {
    let flag = propagation
        .filter(|p| !p.is_empty())
        .and_then(propagation_flag)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    // A shared "/" would let the container's mounts propagate to the host: keep it slave during setup
    // and apply a shared rootfsPropagation to the new root only (after pivot_root).
    let setup_flag = if flag.contains(MsFlags::MS_SHARED) {
        MsFlags::MS_SLAVE | MsFlags::MS_REC
    } else {
        flag
    };
    mount(None::<&str>, "/", None::<&str>, setup_flag, None::<&str>)
        .map_err(|e| anyhow::anyhow!("linux.rootfsPropagation: set propagation of /: {e}"))?;
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| anyhow::anyhow!("root.path: bind mount {}: {e}", rootfs.display()))?;
    Ok(())
}
