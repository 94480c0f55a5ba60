//! Small helpers shared by the pipeline: atomic writes, process identity. (Paths inside a rootfs
//! are resolved by `rootfs::resolve`.)

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Largest JSON document amphi reads (config.json, `exec --process`, `update --resources`): 64 MiB.
/// A real config is kilobytes (a large seccomp profile, about 100 KiB); the limit stops a symlink to
/// `/dev/zero` or a runaway file from taking the host's memory.
pub const MAX_JSON_BYTES: u64 = 64 << 20;

/// Reads a UTF-8 text of at most [`MAX_JSON_BYTES`] from `reader`.
///
/// Errors: a read error; `InvalidData` when the text is longer than the limit or not UTF-8.
pub fn read_json_text(reader: impl std::io::Read) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    let n = reader.take(MAX_JSON_BYTES + 1).read_to_string(&mut text)?;
    if n as u64 > MAX_JSON_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_JSON_BYTES >> 20),
        ));
    }
    Ok(text)
}

/// [`read_json_text`] of the file at `path`.
///
/// Errors: the file cannot be opened or read, or it is too large or not UTF-8.
pub fn read_json_file(path: &Path) -> std::io::Result<String> {
    read_json_text(std::fs::File::open(path)?)
}

/// Writes `data` to `path` atomically: a temporary file in the same directory, fsync-free rename.
/// Mode of a new file: `mode`.
///
/// An existing regular file at `path` is replaced by exchanging the two names (`renameat2(2)`
/// `RENAME_EXCHANGE`) and then unlinking the old file, so a reader always finds either the old or the
/// new content. A plain rename over an existing file makes ext4 (`auto_da_alloc`, the default) start
/// writeback of the new file inside the rename: 0.4 to 2.3 ms per state save here, where `/run` is
/// ext4. Anything else at `path` (nothing, a symlink, a directory), and a filesystem that cannot
/// exchange names, get a plain rename.
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
        replace_by_exchange(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Moves `tmp` to `path`: when `path` is a regular file, exchanges the names and unlinks the old file
/// (now at `tmp`); otherwise (no file yet, a symlink, a directory) renames, with rename(2)'s outcome
/// (a symlink is replaced, a directory refused with EISDIR and left as it was). See [`write_atomic`].
fn replace_by_exchange(tmp: &Path, path: &Path) -> std::io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    let regular = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
    if !regular {
        return std::fs::rename(tmp, path);
    }
    match renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => {
            // The new content is in place; an old file left behind is only litter.
            if let Err(e) = std::fs::remove_file(tmp) {
                log::warn!("remove {}: {e}", tmp.display());
            }
            Ok(())
        }
        // ENOENT: the file went away meanwhile; EINVAL/ENOSYS/EOPNOTSUPP: no exchange on this
        // filesystem or kernel; EPERM: a seccomp filter that does not know renameat2. rename(2)
        // reports a real problem again.
        Err(_) => std::fs::rename(tmp, path),
    }
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

/// Sends SIGKILL to the process `pid` that started at `start_time` and waits until it has exited (a
/// zombie counts as exited), at most `timeout`. Returns true when it is gone.
///
/// Through a pidfd (pidfd_open(2), pidfd_send_signal(2), Linux 5.3): the identity is checked after
/// the pidfd is opened, so neither the signal nor the wait can reach a process that reused the pid,
/// and the wait wakes the moment the process exits (poll(2) on the pidfd) instead of polling
/// `/proc`. Where pidfds are missing or refused, kill(2) and a 1 ms poll of `/proc/<pid>/stat`.
pub fn kill_and_wait(pid: i32, start_time: u64, timeout: std::time::Duration) -> bool {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Instant;
    if !process_alive(pid, start_time) {
        return true;
    }
    let last_errno = || std::io::Error::last_os_error().raw_os_error();
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is passed.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 && last_errno() == Some(libc::ESRCH) {
        return true; // exited and reaped since the check above
    }
    if raw >= 0 {
        // SAFETY: `raw` is a new pidfd returned to us above and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        if !process_alive(pid, start_time) {
            return true;
        }
        // SAFETY: the fd is a valid pidfd; a null siginfo means "as kill(2)"; flags must be 0.
        let sent = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if sent < 0 && last_errno() != Some(libc::ESRCH) {
            // Refused (a seccomp filter, an old kernel): signal and wait the plain way below.
            return kill_and_poll(pid, start_time, timeout);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: `pfd` is one valid pollfd that outlives the call.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n > 0 {
                return true;
            }
            let interrupted =
                n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR);
            if !interrupted || left.is_zero() {
                return !process_alive(pid, start_time);
            }
        }
    }
    kill_and_poll(pid, start_time, timeout)
}

/// [`kill_and_wait`] without pidfds: kill(2), then a 1 ms poll of `/proc/<pid>/stat`.
fn kill_and_poll(pid: i32, start_time: u64, timeout: std::time::Duration) -> bool {
    use std::time::Instant;
    if !process_alive(pid, start_time) {
        return true;
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let deadline = Instant::now() + timeout;
    while process_alive(pid, start_time) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    true
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

    #[test]
    fn write_atomic_creates_then_replaces_and_leaves_no_temporary() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"first", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let ino = std::fs::metadata(&path).unwrap().ino();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_atomic(&path, b"second, longer", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        // A new inode took the name (the old file was unlinked, not rewritten in place).
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), ino);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn write_atomic_over_a_directory_fails_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("pid");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), b"x").unwrap();
        assert!(write_atomic(&target, b"123", 0o644).is_err());
        assert_eq!(std::fs::read(target.join("keep")).unwrap(), b"x");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_atomic_replaces_a_symlink_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other");
        std::fs::write(&other, b"other").unwrap();
        let link = dir.path().join("pid");
        std::os::unix::fs::symlink(&other, &link).unwrap();
        write_atomic(&link, b"123", 0o644).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
        assert_eq!(std::fs::read(&link).unwrap(), b"123");
        assert_eq!(std::fs::read(&other).unwrap(), b"other");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};

    /// A `sleep 100` child with its pid and start time.
    fn sleeper() -> (std::process::Child, i32, u64) {
        let child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let (start, _) = proc_stat(pid).unwrap();
        (child, pid, start)
    }

    #[test]
    fn kill_and_wait_kills_only_the_process_it_names() {
        let (mut child, pid, start) = sleeper();
        // Another start time names another process, which is gone: this one is left alone.
        assert!(kill_and_wait(pid, start + 1, Duration::from_millis(50)));
        std::thread::sleep(Duration::from_millis(20));
        assert!(process_alive(pid, start));
        // The right one is killed, and the wait ends once it has exited (a zombie until reaped).
        let t = Instant::now();
        assert!(kill_and_wait(pid, start, Duration::from_secs(10)));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!process_alive(pid, start));
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        // Reaped: nothing left to wait for.
        assert!(kill_and_wait(pid, start, Duration::from_secs(1)));
    }

    #[test]
    fn kill_and_poll_kills_and_waits() {
        let (mut child, pid, start) = sleeper();
        assert!(kill_and_poll(pid, start, Duration::from_secs(10)));
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
}
