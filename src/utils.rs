//! Small helpers shared by the pipeline: path resolution inside a root, atomic writes, process
//! identity.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed while resolving one path (Linux's own limit is 40; filepath-securejoin uses
/// 255).
const MAX_SYMLINKS: usize = 255;

/// Resolves `unsafe_path` as if `root` were `/`: `..` cannot climb above `root`, and symlinks met on
/// the way (absolute or relative) are followed inside `root`. Components that do not exist are kept
/// as they are. The result always lies under `root`.
///
/// This is the lexical check that every mount destination, device path and masked path of the
/// pipeline goes through before the runtime creates or mounts anything there.
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

/// Writes `data` to `path` atomically: a temporary file in the same directory, fsync-free rename.
/// Mode of a new file: `mode`.
///
/// Errors: the directory is not writable, or the rename fails.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Start time of process `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22), and its state
/// letter (field 3). Together with the pid this identifies a process across pid reuse.
///
/// Returns `None` when the process does not exist.
pub fn proc_stat(pid: i32) -> Option<(u64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

/// True when `pid` is alive (not a zombie) and still the process that started at `start_time`.
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match proc_stat(pid) {
        Some((start, state)) => start == start_time && state != 'Z' && state != 'X',
        None => false,
    }
}

/// Makes `path` absolute against the current working directory, without touching the file system.
pub fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(path))
    }
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

    #[test]
    fn proc_stat_reads_self() {
        let (start, state) = proc_stat(std::process::id() as i32).unwrap();
        assert!(start > 0);
        assert!(state != 'Z' && state != 'X', "{state}");
        assert!(process_alive(std::process::id() as i32, start));
        assert!(!process_alive(std::process::id() as i32, start + 1));
    }
}
