//! Paths inside a root, resolved without leaving it.

use std::collections::VecDeque;
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed while resolving one path (Linux's own limit is 40; filepath-securejoin uses
/// 255).
const MAX_SYMLINKS: usize = 255;

/// Resolves `unsafe_path` as if `root` were `/`: `..` cannot climb above `root`, and symlinks met on
/// the way (absolute or relative) are followed inside `root`. Components that do not exist are kept
/// as they are. The result always lies under `root`.
///
/// Used host-side to *read* (locate the workload binary before create). It checks names, not
/// objects, so it must not guard a mount or a write: the runtime resolves those with openat2
/// `RESOLVE_IN_ROOT` and uses the descriptor (`amphi::rootfs::resolve`).
///
/// Errors: more than 255 symlinks, or a symlink that cannot be read.
pub fn secure_join(root: &Path, unsafe_path: &Path) -> std::io::Result<PathBuf> {
    let mut pending: VecDeque<PathBuf> = unsafe_path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect();
    let mut resolved: Vec<PathBuf> = Vec::new();
    let mut links = 0usize;
    while let Some(part) = pending.pop_front() {
        if part.as_os_str() == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(resolved.iter());
        candidate.push(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(std::io::Error::other(format!(
                        "too many symlinks resolving {}",
                        unsafe_path.display()
                    )));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => pending.push_front(PathBuf::from(n)),
                        Component::ParentDir => pending.push_front(PathBuf::from("..")),
                        _ => {}
                    }
                }
            }
            _ => resolved.push(part),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(resolved.iter());
    Ok(out)
}

/// The search path of a container: `PATH` from `process.env`, or [`crate::linux::DEFAULT_PATH`].
pub fn search_path(spec: &oci_spec::runtime::Spec) -> String {
    spec.process()
        .as_ref()
        .and_then(|p| p.env().as_ref())
        .and_then(|env| env.iter().find_map(|e| e.strip_prefix("PATH=")))
        .unwrap_or(crate::linux::DEFAULT_PATH)
        .to_string()
}

/// Finds the file `process.args[0]` names, from the host, inside `rootfs`: a name with a `/` is taken
/// from the root (absolute) or `process.cwd` (relative); a bare name is searched in the container's
/// [`search_path`]. Symlinks are resolved inside the rootfs. Returns the host path of a regular file.
pub fn locate(spec: &oci_spec::runtime::Spec, rootfs: &Path) -> Option<PathBuf> {
    let process = spec.process().as_ref()?;
    let name = process.args().as_ref()?.first()?;
    let candidates: Vec<PathBuf> = if name.contains('/') {
        let p = Path::new(name);
        vec![if p.is_absolute() {
            p.to_path_buf()
        } else {
            process.cwd().join(p)
        }]
    } else if name.is_empty() {
        Vec::new()
    } else {
        search_path(spec)
            .split(':')
            .map(|d| Path::new(if d.is_empty() { "/" } else { d }).join(name))
            .collect()
    };
    candidates
        .into_iter()
        .filter_map(|c| secure_join(rootfs, &c).ok())
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn secure_join_stays_in_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../../..", r.join("a/b/up")).unwrap();
        symlink("b", r.join("a/rel")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        assert_eq!(secure_join(r, Path::new("/../../x")).unwrap(), r.join("x"));
        assert_eq!(
            secure_join(r, Path::new("/abs/passwd")).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(
            secure_join(r, Path::new("/a/b/up/etc")).unwrap(),
            r.join("etc")
        );
        assert_eq!(
            secure_join(r, Path::new("a/rel/c")).unwrap(),
            r.join("a/b/c")
        );
        assert!(secure_join(r, Path::new("/loop")).is_err());
    }
}
