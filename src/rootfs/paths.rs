//! After `pivot_root`: `linux.readonlyPaths`, `linux.maskedPaths` and `root.readonly`.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

use super::mounts::locked_flags;

fn missing(e: Errno) -> bool {
    e == Errno::ENOENT
}

/// Remounts each path read-only (bind onto itself, then a read-only remount). Missing paths are
/// skipped, as the spec allows.
///
/// Errors: a mount fails, named as `linux.readonlyPaths[i]`.
pub fn readonly_paths(paths: &[String]) -> anyhow::Result<()> {
    for (i, p) in paths.iter().enumerate() {
        let path = Path::new(p);
        match mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => {}
            Err(e) if missing(e) => continue,
            Err(e) => anyhow::bail!("linux.readonlyPaths[{i}]: bind {p}: {e}"),
        }
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_REC
            | locked_flags(path);
        mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
            .map_err(|e| anyhow::anyhow!("linux.readonlyPaths[{i}]: remount {p} read-only: {e}"))?;
    }
    Ok(())
}

/// Masks each path: a directory gets an empty read-only tmpfs, anything else `/dev/null` bound over
/// it. Missing paths are skipped.
///
/// Errors: a mount fails, named as `linux.maskedPaths[i]`.
pub fn masked_paths(paths: &[String]) -> anyhow::Result<()> {
    for (i, p) in paths.iter().enumerate() {
        let path = Path::new(p);
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(_) => continue,
        };
        let result = if meta.is_dir() {
            mount(
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0k,nr_inodes=1"),
            )
        } else {
            mount(
                Some("/dev/null"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        match result {
            Ok(()) => {}
            Err(e) if missing(e) => {}
            Err(e) => anyhow::bail!("linux.maskedPaths[{i}]: mask {p}: {e}"),
        }
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
