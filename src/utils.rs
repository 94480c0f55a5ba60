//! Small helpers shared by the pipeline: atomic writes, process identity. (Paths inside a rootfs
//! are resolved by `rootfs::resolve`.)

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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

    #[test]
    fn proc_stat_reads_self() {
        let (start, state) = proc_stat(std::process::id() as i32).unwrap();
        assert!(start > 0);
        assert!(state != 'Z' && state != 'X', "{state}");
        assert!(process_alive(std::process::id() as i32, start));
        assert!(!process_alive(std::process::id() as i32, start + 1));
    }
}
