//! Mounting through file descriptors with the new mount API (Linux 5.2+; open_tree(2),
//! move_mount(2), fsopen(2), fsconfig(2), fsmount(2)), so that neither the source nor the target of
//! a mount inside the rootfs is looked up by name at the moment of the mount.
//!
//! The target is always an `O_PATH` descriptor from [`super::resolve::Root`]. A new mount is first
//! built detached (a clone of a bind source, or a fresh file system), can be checked there (its
//! file-system magic with fstatfs(2)), and is then attached onto the target's descriptor. The
//! descriptor of the new mount stays valid after attaching and names exactly that mount, so later
//! remounts and propagation changes reach it through [`super::resolve::fd_path`].

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::mount::MsFlags;

fn cstring(s: &str, what: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::other(format!("{what} {s:?} contains a NUL byte")))
}

fn owned(rc: libc::c_long) -> io::Result<OwnedFd> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the system call returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

/// A detached copy of the mount at `path` (a host path, or `""` with `dir` to clone what `dir`
/// holds), like the source side of `mount --bind` (`--rbind` with `recursive`): open_tree(2)
/// `OPEN_TREE_CLONE`. Symlinks in `path` are followed, as mount(2) follows a bind source's.
///
/// Errors: the errno of open_tree (`ENOENT`, `EINVAL` for an unbindable source, ...).
pub fn clone_tree(
    dir: Option<BorrowedFd<'_>>,
    path: &Path,
    recursive: bool,
) -> io::Result<OwnedFd> {
    let c = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    if path.as_os_str().is_empty() {
        flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    }
    let dirfd = dir.map(|d| d.as_raw_fd()).unwrap_or(libc::AT_FDCWD);
    // SAFETY: `c` is a valid C string that outlives the call; the flags are open_tree's.
    owned(unsafe { libc::syscall(libc::SYS_open_tree, dirfd, c.as_ptr(), flags) })
}

/// Attaches the detached mount `mnt` onto the object `target` holds: move_mount(2) with both
/// `MOVE_MOUNT_F_EMPTY_PATH` and `MOVE_MOUNT_T_EMPTY_PATH`, so no name is looked up.
///
/// Errors: the errno of move_mount (`ENOTDIR` when a directory goes onto a file or back).
pub fn attach(mnt: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    let empty = c"";
    // SAFETY: both descriptors are open; the paths are the empty C string, as the flags require.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn fsconfig(
    fs: &OwnedFd,
    cmd: libc::c_uint,
    key: Option<&CString>,
    value: Option<&CString>,
) -> io::Result<()> {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: `fs` is an fsopen descriptor; key and value are valid C strings (or NULL, as the
    // command allows) that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            key.map(|k| k.as_ptr()).unwrap_or(null),
            value
                .map(|v| v.as_ptr() as *const libc::c_void)
                .unwrap_or(std::ptr::null()),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The messages the kernel queued on an fsopen descriptor (fsopen(2) "Message retrieval").
fn kernel_messages(fs: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    for _ in 0..8 {
        // SAFETY: `buf` is a writable buffer of the given length.
        let n = unsafe { libc::read(fs.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.push(
            String::from_utf8_lossy(&buf[..n as usize])
                .trim()
                .to_string(),
        );
    }
    out.join("; ")
}

/// mount(2) flags that belong to the mount (set by fsmount), as `MOUNT_ATTR_*`.
fn mount_attrs(flags: MsFlags) -> u64 {
    let mut a = 0;
    for (f, m) in [
        (MsFlags::MS_RDONLY, libc::MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, libc::MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
        (MsFlags::MS_NODIRATIME, libc::MOUNT_ATTR_NODIRATIME),
    ] {
        if flags.contains(f) {
            a |= m;
        }
    }
    if flags.contains(MsFlags::MS_NOATIME) {
        a |= libc::MOUNT_ATTR_NOATIME;
    } else if flags.contains(MsFlags::MS_STRICTATIME) {
        a |= libc::MOUNT_ATTR_STRICTATIME;
    }
    a
}

/// A new, detached instance of file system `fstype`, as `mount -t fstype -o data source` would make
/// it: fsopen(2), fsconfig(2) with `source`, the superblock flags of `flags` (`ro`, `sync`,
/// `dirsync`, `mand`, `lazytime`) and each `data` word (`key=value` as a string, a bare `key` as a
/// flag), then fsmount(2) with the mount flags of `flags` (`nosuid`, `nodev`, `noexec`, `ro`,
/// atime). Returns the mount's descriptor, ready for [`attach`].
///
/// Errors: the failing step and errno, with the kernel's own message when it gave one.
pub fn new_fs(fstype: &str, source: &str, flags: MsFlags, data: &[String]) -> io::Result<OwnedFd> {
    let t = cstring(fstype, "type")?;
    // SAFETY: `t` is a valid C string that outlives the call.
    let fs = owned(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), libc::FSOPEN_CLOEXEC) })
        .map_err(|e| io::Error::new(e.kind(), format!("fsopen {fstype}: {e}")))?;
    let fail = |what: &str, e: io::Error| {
        let msg = kernel_messages(&fs);
        let msg = if msg.is_empty() {
            String::new()
        } else {
            format!(" ({msg})")
        };
        io::Error::new(e.kind(), format!("{what}: {e}{msg}"))
    };
    let src_key = cstring("source", "key")?;
    let src = cstring(source, "source")?;
    fsconfig(&fs, libc::FSCONFIG_SET_STRING, Some(&src_key), Some(&src))
        .map_err(|e| fail(&format!("source {source:?}"), e))?;
    for (f, key) in [
        (MsFlags::MS_RDONLY, "ro"),
        (MsFlags::MS_SYNCHRONOUS, "sync"),
        (MsFlags::MS_DIRSYNC, "dirsync"),
        (MsFlags::MS_MANDLOCK, "mand"),
        (MsFlags::MS_LAZYTIME, "lazytime"),
    ] {
        if flags.contains(f) {
            let k = cstring(key, "option")?;
            fsconfig(&fs, libc::FSCONFIG_SET_FLAG, Some(&k), None)
                .map_err(|e| fail(&format!("option {key}"), e))?;
        }
    }
    for word in data {
        match word.split_once('=') {
            Some((k, v)) => {
                let (kc, vc) = (cstring(k, "option")?, cstring(v, "option")?);
                fsconfig(&fs, libc::FSCONFIG_SET_STRING, Some(&kc), Some(&vc))
            }
            None => {
                let kc = cstring(word, "option")?;
                fsconfig(&fs, libc::FSCONFIG_SET_FLAG, Some(&kc), None)
            }
        }
        .map_err(|e| fail(&format!("option {word}"), e))?;
    }
    fsconfig(&fs, libc::FSCONFIG_CMD_CREATE, None, None).map_err(|e| fail("create", e))?;
    // SAFETY: `fs` is a configured fsopen descriptor; flags and attributes are fsmount's.
    owned(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            mount_attrs(flags),
        )
    })
    .map_err(|e| fail("fsmount", e))
}

/// Makes the detached mount tree `mnt` read-only, submounts included: mount_setattr(2) with
/// `AT_EMPTY_PATH | AT_RECURSIVE` and `MOUNT_ATTR_RDONLY`; other attributes are kept.
///
/// Errors: the errno of mount_setattr.
pub fn set_readonly(mnt: BorrowedFd<'_>) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: `mnt` is open, the path is the empty C string (AT_EMPTY_PATH) and `attr` a valid
    // mount_attr of the size passed; all outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The file-system magic number of what `fd` holds (fstatfs(2) `f_type`).
///
/// Errors: the errno of fstatfs.
pub fn fs_magic(fd: BorrowedFd<'_>) -> io::Result<i64> {
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable statfs buffer for the duration of the call.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_attrs_follow_flags() {
        assert_eq!(mount_attrs(MsFlags::empty()), 0);
        assert_eq!(
            mount_attrs(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC),
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOEXEC
        );
        assert_eq!(
            mount_attrs(MsFlags::MS_STRICTATIME | MsFlags::MS_NODEV),
            libc::MOUNT_ATTR_STRICTATIME | libc::MOUNT_ATTR_NODEV
        );
    }
}
