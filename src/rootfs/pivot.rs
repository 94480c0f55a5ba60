//! Switching the root: `pivot_root(2)`, or `MS_MOVE` + `chroot(2)` with `--no-pivot`.

use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, chroot, fchdir, pivot_root as sys_pivot_root};

/// Makes `rootfs` the root of the mount namespace and detaches the old root, so that nothing of the
/// host's file system stays reachable. With `no_pivot`, moves the rootfs mount over `/` and chroots
/// instead (for ramdisk roots where `pivot_root(2)` fails; weaker isolation).
///
/// Errors: the step that failed.
pub fn pivot_root(rootfs: &Path, no_pivot: bool) -> anyhow::Result<()> {
    if no_pivot {
        chdir(rootfs).map_err(|e| anyhow::anyhow!("chdir {}: {e}", rootfs.display()))?;
        mount(
            Some(rootfs),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(|e| anyhow::anyhow!("--no-pivot: move {} to /: {e}", rootfs.display()))?;
        chroot(".").map_err(|e| anyhow::anyhow!("--no-pivot: chroot: {e}"))?;
        chdir("/").map_err(|e| anyhow::anyhow!("chdir /: {e}"))?;
        return Ok(());
    }
    let old_root = open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| anyhow::anyhow!("open /: {e}"))?;
    let new_root = open(
        rootfs,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| anyhow::anyhow!("open {}: {e}", rootfs.display()))?;
    fchdir(&new_root).map_err(|e| anyhow::anyhow!("chdir to rootfs: {e}"))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; it is then detached below.
    sys_pivot_root(".", ".")
        .map_err(|e| anyhow::anyhow!("pivot_root {}: {e}", rootfs.display()))?;
    fchdir(&old_root).map_err(|e| anyhow::anyhow!("chdir to old root: {e}"))?;
    // Make sure the unmount does not propagate to the host.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| anyhow::anyhow!("make old root rslave: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| anyhow::anyhow!("detach old root: {e}"))?;
    chdir("/").map_err(|e| anyhow::anyhow!("chdir /: {e}"))?;
    Ok(())
}
