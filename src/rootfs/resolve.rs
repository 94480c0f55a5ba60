//! Paths inside the container's root, resolved by the kernel and held as file descriptors (escape
//! class 3 of issue 6; the runc CVE-2019-16884 / CVE-2021-30465 / CVE-2023-27561 family).
//!
//! Every path of the rootfs that the runtime mounts on, creates or writes through goes through
//! [`Root`]: the kernel resolves it with openat2(2) `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` from an
//! `O_PATH` descriptor of the root, so `..` stops at the root and every symlink (absolute or relative,
//! in any component) is taken as if the root were `/`. The caller receives an `O_PATH` descriptor of
//! what was found and acts on that descriptor (mount onto it with [`super::mountfd`], create children
//! with `mkdirat`/`mknodat`/`openat` relative to it), never on a path string that could be swapped for
//! a symlink between the check and the use.
//!
//! Missing directories are created one component at a time with `mkdirat(2)` relative to a descriptor
//! that was itself resolved inside the root, and the whole path is resolved again by the kernel
//! afterwards; a dangling symlink met on the way is followed inside the root (its target is created
//! there), which is what runc's `securejoin.MkdirAll` does.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Most symlinks substituted while creating one path (the kernel's own limit is 40).
const MAX_LINKS: usize = 40;

/// Mode of the directories the runtime creates in a rootfs (as runc; init runs with umask 0).
pub const DIR_MODE: u32 = 0o755;

/// Mode of the empty files the runtime creates as bind-mount targets.
pub const FILE_MODE: u32 = 0o644;

/// What [`Root::ensure`] creates when the path is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory (the result is opened with `O_DIRECTORY`: an existing non-directory is
    /// `ENOTDIR`).
    Dir,
    /// An empty regular file (mode [`FILE_MODE`]); an existing object of any type is accepted.
    File,
}

/// A directory that paths are resolved inside of, held as an `O_PATH` descriptor.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// Splits `path` into the components openat2 is given: names and `..`; `/` and `.` are dropped
/// (with `RESOLVE_IN_ROOT` a leading `/` means the root anyway).
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn join(parts: &[OsString]) -> PathBuf {
    if parts.is_empty() {
        return PathBuf::from(".");
    }
    parts.iter().collect()
}

fn cstr(p: &OsStr) -> io::Result<CString> {
    CString::new(p.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// openat2(2) on `dirfd`; `EAGAIN` (a concurrent rename seen by `RESOLVE_IN_ROOT`) and `EINTR` are
/// retried.
///
/// Errors: the errno of openat2; `ENOSYS` on kernels before 5.6.
pub fn openat2(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    flags: i32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    // SAFETY: open_how is a plain C struct of integers; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    for _ in 0..128 {
        // SAFETY: `c` is a valid C string and `how` a valid open_how, both outliving the call; the
        // size passed is the size of that struct.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if rc >= 0 {
            // SAFETY: openat2 returned a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) });
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

/// openat(2) of one name in `dir`, never following a symlink there (`O_NOFOLLOW`).
///
/// Errors: the errno of openat.
pub fn openat_nofollow(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: i32,
    mode: u32,
) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: `c` is a valid C string that outlives the call.
    let rc = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

/// fstat(2) of a descriptor (works on `O_PATH` descriptors).
///
/// Errors: the errno of fstat.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat buffer for the duration of the call.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// The `/proc/self/fd/N` path of `fd`, for the few system calls that take only a path (mount(2)
/// remounts and propagation changes). The kernel resolves it to the very object `fd` holds, not by
/// name.
pub fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

impl Root {
    /// Opens `path` (a host path, e.g. the bundle's rootfs, or `/` after `pivot_root`) as the root
    /// that later paths are resolved in.
    ///
    /// Errors: `path` cannot be opened as a directory.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(io::Error::from)?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The host path this root was opened from (for messages only).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn resolve_flags(no_symlinks: bool) -> u64 {
        let mut r = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        if no_symlinks {
            r |= libc::RESOLVE_NO_SYMLINKS;
        }
        r
    }

    /// Resolves an existing `path` inside the root (symlinks followed inside it, the last one too)
    /// and returns it opened with `flags` (e.g. `O_PATH`, `O_PATH | O_NOFOLLOW`, `O_RDONLY`).
    ///
    /// Errors: the errno of openat2 (`ENOENT` for a missing path).
    pub fn open_at(&self, path: &Path, flags: i32) -> io::Result<OwnedFd> {
        openat2(
            self.fd.as_fd(),
            &join(&components(path)),
            flags,
            Self::resolve_flags(false),
        )
    }

    /// Resolves `path` inside the root, creating what is missing: parent directories (mode
    /// [`DIR_MODE`]) and the last component as `kind`. Returns an `O_PATH` descriptor of the result.
    ///
    /// `no_symlinks`: refuse a symlink in any component (`ELOOP`), for `/proc` and `/sys`.
    ///
    /// Errors: `ENOTDIR` (a component, or a `Dir` result, is not a directory), `ELOOP` (too many
    /// symlinks, or one at all with `no_symlinks`), or the errno of openat2/mkdirat/openat.
    pub fn ensure(&self, path: &Path, kind: Kind, no_symlinks: bool) -> io::Result<OwnedFd> {
        let resolve = Self::resolve_flags(no_symlinks);
        let final_flags = libc::O_PATH
            | if kind == Kind::Dir {
                libc::O_DIRECTORY
            } else {
                0
            };
        let mut parts = components(path);
        let mut links = 0usize;
        // Each round creates one component or substitutes one symlink, so this ends.
        for _ in 0..(4 * MAX_LINKS + 4 * parts.len() + 8) {
            match openat2(self.fd.as_fd(), &join(&parts), final_flags, resolve) {
                Ok(fd) => return Ok(fd),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
            // The longest prefix that exists; the root itself always does.
            let mut n = parts.len();
            let parent = loop {
                if n == 0 {
                    return Err(io::Error::from_raw_os_error(libc::ENOENT));
                }
                n -= 1;
                match openat2(
                    self.fd.as_fd(),
                    &join(&parts[..n]),
                    libc::O_PATH | libc::O_DIRECTORY,
                    resolve,
                ) {
                    Ok(fd) => break fd,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                    Err(e) => return Err(e),
                }
            };
            let name = parts[n].clone();
            if name == ".." {
                // `..` of an existing directory always exists: the tree changed under us.
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            let last = n + 1 == parts.len();
            let made = if last && kind == Kind::File {
                openat_nofollow(
                    parent.as_fd(),
                    &name,
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                    FILE_MODE,
                )
                .map(drop)
            } else {
                mkdirat(parent.as_fd(), &name, DIR_MODE)
            };
            match made {
                Ok(()) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e),
            }
            // It exists, yet the kernel found nothing there: a dangling symlink. Take its target
            // inside the root, as the kernel would have.
            let target = match readlinkat(parent.as_fd(), &name) {
                Ok(t) => t,
                // Not a symlink (created meanwhile by someone else): resolve again.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => continue,
                Err(e) => return Err(e),
            };
            if no_symlinks {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let mut next: Vec<OsString> = if target.is_absolute() {
                Vec::new()
            } else {
                parts[..n].to_vec()
            };
            next.extend(components(&target));
            next.extend(parts[n + 1..].iter().cloned());
            parts = next;
        }
        Err(io::Error::from_raw_os_error(libc::ELOOP))
    }

    /// Resolves (creating as directories) the parent of `path` inside the root and returns it with
    /// the last component's name, so that the caller can create, replace or unlink that entry
    /// relative to the parent's descriptor without following a symlink there.
    ///
    /// Errors: `path` has no last name (`/`, or ends in `..` or `.`): `EINVAL`; else as
    /// [`Root::ensure`].
    pub fn parent_of(&self, path: &Path) -> io::Result<(OwnedFd, OsString)> {
        let mut parts = components(path);
        let name = match parts.pop() {
            Some(n) if n != ".." && !path.as_os_str().as_bytes().ends_with(b"/.") => n,
            _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        let parent = self.ensure(&join(&parts), Kind::Dir, false)?;
        Ok((parent, name))
    }
}

/// mkdirat(2) of one name in `dir`.
///
/// Errors: the errno of mkdirat (`EEXIST` when anything, a symlink included, is there).
pub fn mkdirat(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: `c` is a valid C string that outlives the call.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// readlinkat(2) of one name in `dir`.
///
/// Errors: `EINVAL` when the entry is not a symlink, else the errno of readlinkat.
pub fn readlinkat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<PathBuf> {
    nix::fcntl::readlinkat(dir, name)
        .map(PathBuf::from)
        .map_err(io::Error::from)
}

/// unlinkat(2) of one non-directory entry in `dir`; a missing entry is not an error.
///
/// Errors: the errno of unlinkat (`EISDIR` for a directory).
pub fn unlinkat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: `c` is a valid C string that outlives the call.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
    }
    Ok(())
}

/// True when `dir` has an entry `name` of any type (a dangling symlink counts), not following it.
pub fn entry_exists(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn real(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(fd_path(fd.as_fd())).unwrap()
    }

    #[test]
    fn resolves_and_creates_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        let r = tmp.path().join("root");
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, r.join("abs")).unwrap();
        symlink("../../../../../..", r.join("a/b/up")).unwrap();
        symlink("/nowhere/deep", r.join("dangling")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        std::fs::write(r.join("file"), "x").unwrap();
        let root = Root::open(&r).unwrap();
        let abs = root.ensure(Path::new("/abs/x"), Kind::Dir, false).unwrap();
        assert_eq!(
            real(&abs),
            r.join(outside.strip_prefix("/").unwrap()).join("x")
        );
        let up = root
            .ensure(Path::new("/a/b/up/etc"), Kind::Dir, false)
            .unwrap();
        assert_eq!(real(&up), r.join("etc"));
        let dd = root
            .ensure(Path::new("/../../y/../z"), Kind::File, false)
            .unwrap();
        assert_eq!(real(&dd), r.join("z"));
        let dang = root
            .ensure(Path::new("/dangling/f"), Kind::File, false)
            .unwrap();
        assert_eq!(real(&dang), r.join("nowhere/deep/f"));
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        let e = root
            .ensure(Path::new("/loop/x"), Kind::Dir, false)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        let e = root.ensure(Path::new("/abs"), Kind::Dir, true).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        let e = root
            .ensure(Path::new("/file"), Kind::Dir, false)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
        let (p, name) = root.parent_of(Path::new("/abs/q/node")).unwrap();
        assert_eq!(name, "node");
        assert_eq!(
            real(&p),
            r.join(outside.strip_prefix("/").unwrap()).join("q")
        );
        assert!(root.parent_of(Path::new("/a/..")).is_err());
        assert!(root.parent_of(Path::new("/")).is_err());
    }
}
