//! After `pivot_root`: `linux.readonlyPaths`, `linux.maskedPaths` (escape class 5 of issue 6) and
//! `root.readonly`; every path resolved inside the container's root and used through its descriptor.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::mount::{mount, MsFlags};

use super::mountfd;
use super::mounts::locked_flags;
use super::resolve::{self, Root};

/// Resolves `linux.<field>[i]` inside `root`; `None` when it does not exist (the spec lets missing
/// paths be skipped).
fn resolve_existing(
    root: &Root,
    field: &str,
    i: usize,
    p: &str,
) -> anyhow::Result<Option<OwnedFd>> {
    match root.open_at(Path::new(p), libc::O_PATH) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => anyhow::bail!("linux.{field}[{i}]: resolve {p} in the container: {e}"),
    }
}

/// Remounts each path read-only: a clone of the mount at the path, made read-only while still
/// detached (mount_setattr(2)), attached back onto the path's descriptor, so the path is never
/// looked up by name and is never writable through the new mount. Missing paths are skipped, as
/// the spec allows. `root` is the container's `/` (after `pivot_root`).
///
/// Errors: a step fails, named as `linux.readonlyPaths[i]`.
pub fn readonly_paths(root: &Root, paths: &[String]) -> anyhow::Result<()> {
    for (i, p) in paths.iter().enumerate() {
        let Some(target) = resolve_existing(root, "readonlyPaths", i, p)? else {
            continue;
        };
        let err = |what: &str, e: std::io::Error| {
            anyhow::anyhow!("linux.readonlyPaths[{i}]: {what} {p}: {e}")
        };
        let tree = mountfd::clone_tree(Some(target.as_fd()), Path::new(""), true)
            .map_err(|e| err("bind", e))?;
        mountfd::set_readonly(tree.as_fd()).map_err(|e| err("make read-only", e))?;
        mountfd::attach(tree.as_fd(), target.as_fd()).map_err(|e| err("bind", e))?;
    }
    Ok(())
}

/// The container's `/dev/null`, opened without following a symlink and checked to be the null
/// character device (1:3), so that a masked path can never be bound to anything else.
///
/// Errors: it is missing, a symlink, or anything but the 1:3 character device.
fn open_dev_null(root: &Root) -> anyhow::Result<OwnedFd> {
    let fd = root
        .open_at(Path::new("/dev/null"), libc::O_PATH | libc::O_NOFOLLOW)
        .map_err(|e| anyhow::anyhow!("linux.maskedPaths: open /dev/null of the container: {e}"))?;
    let st = resolve::fstat(fd.as_fd())
        .map_err(|e| anyhow::anyhow!("linux.maskedPaths: stat /dev/null of the container: {e}"))?;
    let is_chr = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
    if !is_chr || libc::major(st.st_rdev) != 1 || libc::minor(st.st_rdev) != 3 {
        anyhow::bail!(
            "linux.maskedPaths: /dev/null of the container is not the null device (character \
             1:3); refusing to mask with it"
        );
    }
    Ok(fd)
}

/// Masks each path: a directory gets an empty read-only tmpfs, anything else the container's
/// `/dev/null`, checked to be the null device ([`open_dev_null`]) and bound from its descriptor.
/// Each path is resolved inside `root` (the container's `/`, after `pivot_root`) and mounted onto
/// through its descriptor. Missing paths are skipped.
///
/// Errors: a mount fails, or `/dev/null` is not the null device, named as `linux.maskedPaths[i]`.
pub fn masked_paths(root: &Root, paths: &[String]) -> anyhow::Result<()> {
    let mut null: Option<OwnedFd> = None;
    for (i, p) in paths.iter().enumerate() {
        let Some(target) = resolve_existing(root, "maskedPaths", i, p)? else {
            continue;
        };
        let err = |e: std::io::Error| anyhow::anyhow!("linux.maskedPaths[{i}]: mask {p}: {e}");
        let st = resolve::fstat(target.as_fd()).map_err(err)?;
        let mnt = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            mountfd::new_fs(
                "tmpfs",
                "tmpfs",
                MsFlags::MS_RDONLY,
                // linux.mountLabel, when set (security::lsm::with_mount_label).
                &crate::security::lsm::with_mount_label(vec![
                    "size=0k".to_string(),
                    "nr_inodes=1".to_string(),
                ]),
            )
            .map_err(err)?
        } else {
            if null.is_none() {
                null = Some(open_dev_null(root).map_err(|e| anyhow::anyhow!("{e} (masking {p})"))?);
            }
            let Some(n) = null.as_ref() else {
                anyhow::bail!("linux.maskedPaths[{i}]: /dev/null unavailable");
            };
            mountfd::clone_tree(Some(n.as_fd()), Path::new(""), false).map_err(err)?
        };
        mountfd::attach(mnt.as_fd(), target.as_fd()).map_err(err)?;
    }
    Ok(())
}

/// `root.readonly`: remounts `/` read-only, keeping its other flags.
///
/// Errors: the remount fails.
pub fn readonly_root() -> anyhow::Result<()> {
    let flags =
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(Path::new("/"));
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
        .map_err(|e| anyhow::anyhow!("root.readonly: remount / read-only: {e}"))
}
