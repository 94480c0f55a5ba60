//! Escape class 1 of issue 6 (runc CVE-2019-5736): amphi's own image must never be writable, or
//! reopenable for writing, through `/proc/<pid>/exe` of a process inside a container.
//!
//! amphi forks its container processes instead of re-executing itself, so the init process waiting for
//! `start`, an `exec`'d process until its `execve`, and a Wasm container's pid 1 (for its whole life)
//! all run amphi's image; and a workload that `execve`s `/proc/self/exe` (directly or as a `#!`
//! interpreter) runs it too, as a container process. If that image is the host's binary, a container
//! root could open it (`O_PATH`, then reopen `/proc/self/fd/N` for writing once it is no longer
//! running) and replace the host's runtime.
//!
//! Defence: `create`, `run` and `exec` first re-execute amphi (once, `execveat(2)` of a file
//! descriptor) from an image that cannot be written by anyone:
//! 1. preferred, no copy: the binary opened through a detached, read-only overlayfs mount whose only
//!    layers are the binary's directory and a dummy lower layer (an overlay without an upper layer has
//!    no way to be written, and being detached (fsmount(2), never attached) it is in no mount
//!    namespace that anyone could remount it in) -- runc 1.2's choice;
//! 2. fallback (no CAP_SYS_ADMIN, e.g. rootless; or no overlayfs): a copy in a sealed memfd
//!    (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`), as runc 1.0 and crun do.
//!
//! No re-execution happens when the running image is already safe: on a read-only mount, a sealed
//! memfd, or not writable by the caller at all (then a container of this caller, whose root has no
//! more rights on the host than the caller, cannot write it either).
//!
//! The front binary `amphi` never enters a container: for those three subcommands it executes
//! [`FULL_BINARY`] ([`exec_full`]) instead of itself, protected by the same rules, so that the
//! subcommand still starts one image, not two.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Set in the environment of the re-executed process so that a kernel that does not protect the new
/// image cannot make amphi re-execute itself forever. Removed again on entry.
const MARK: &str = "_AMPHI_EXE_PROTECTED";

/// Lower layers that can stand in as the second, dummy lower layer of the overlay (an overlay without
/// an upper layer needs two); the first one that neither contains nor is contained in the binary's
/// directory is used (overlayfs refuses overlapping layers with ELOOP).
const DUMMY_LOWER: [&str; 3] = ["/dev", "/sys", "/run"];

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
const MFD_EXEC: libc::c_uint = 0x10;

/// How the running image is protected (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// On a read-only mount (amphi's own overlay, or an administrator's read-only mount).
    ReadOnlyMount,
    /// A memfd sealed against writes.
    SealedMemfd,
    /// A file the caller cannot write (EACCES or EPERM from `faccessat(W_OK, AT_EACCESS)`).
    NotWritable,
}

fn last_err(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", std::io::Error::last_os_error())
}

/// How the open file `file` (named `name` in errors) is protected against writes, or `None` when the
/// caller could write it.
fn protection_of(file: &impl AsFd, name: &str) -> anyhow::Result<Option<Protection>> {
    let fd = file.as_fd().as_raw_fd();
    // SAFETY: F_GET_SEALS only reads the seals of the open file; no memory is passed.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    if seals >= 0 && seals & libc::F_SEAL_WRITE != 0 {
        return Ok(Some(Protection::SealedMemfd));
    }
    let vfs =
        nix::sys::statvfs::fstatvfs(file).map_err(|e| anyhow::anyhow!("statvfs {name}: {e}"))?;
    if vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
        return Ok(Some(Protection::ReadOnlyMount));
    }
    // The fd's magic link names exactly the open file (an O_PATH fd has no access mode to ask).
    let link = CString::new(format!("/proc/self/fd/{fd}"))
        .map_err(|_| anyhow::anyhow!("fd path has a NUL byte"))?;
    // SAFETY: the path is a valid NUL-terminated C string; faccessat only reads it.
    let rc =
        unsafe { libc::faccessat(libc::AT_FDCWD, link.as_ptr(), libc::W_OK, libc::AT_EACCESS) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EROFS) => return Ok(Some(Protection::ReadOnlyMount)),
            Some(libc::EACCES) | Some(libc::EPERM) => return Ok(Some(Protection::NotWritable)),
            _ => anyhow::bail!("access {name}: {e}"),
        }
    }
    Ok(None)
}

/// Makes sure the running process's image cannot be written through `/proc/<pid>/exe`: returns at
/// once when it is already protected ([`Protection`]), otherwise re-executes amphi with the
/// same arguments and environment from a read-only overlayfs view of its binary, or, when that cannot
/// be made, from a sealed memfd copy. Call it first thing in the subcommands whose processes enter a
/// container (`create`, `run`, `exec`), while the process is single-threaded and holds nothing that
/// must survive (fds without close-on-exec are inherited as they are).
///
/// Errors: both protections failed (both reasons are given), or the image is still writable after a
/// re-execution.
pub fn ensure_protected() -> anyhow::Result<()> {
    let mark = std::env::var_os(MARK);
    let marked = mark.is_some();
    if let Some(v) = mark {
        std::env::remove_var(MARK);
        // After the execve fallback of `reexec`, MARK holds the number of the fd it executed.
        if let Some(fd) = v
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .filter(|fd| *fd > 2)
        {
            close_if_own_image(fd);
        }
    }
    let running =
        File::open("/proc/self/exe").map_err(|e| anyhow::anyhow!("open /proc/self/exe: {e}"))?;
    if let Some(p) = protection_of(&running, "/proc/self/exe")? {
        log::debug!("runtime image protected: {p:?}");
        return Ok(());
    }
    if marked {
        // Also reached when the caller's environment carries MARK: the protection is then not
        // skipped, amphi refuses (the mark cannot tell a caller's value from its own).
        anyhow::bail!(
            "/proc/self/exe is writable although {MARK} is set, which amphi sets only when it has \
             re-executed itself from a protected copy of its binary: either the caller's \
             environment carries {MARK} (unset it) or this kernel did not protect the copy; \
             refusing to run containers (CVE-2019-5736)"
        );
    }
    let target = std::fs::read_link("/proc/self/exe")
        .map_err(|e| anyhow::anyhow!("readlink /proc/self/exe: {e}"))?;
    let fd = protected_view(&target, &running, "amphi's binary")?;
    reexec(&fd)
}

/// File name of the binary that serves `create`, `run` and `exec` for the front `amphi`: the whole of
/// amphi (the create pipeline and both executors), installed in the same directory as `amphi`.
pub const FULL_BINARY: &str = "amphi-full";

/// Replaces the running front (`amphi`) with [`FULL_BINARY`] from the directory of the running
/// image, with the same arguments and environment (plus the mark that [`ensure_protected`] expects),
/// executed from an image that no container can write: the file itself when it is already protected
/// (on a read-only mount, or not writable by the caller), else the file seen through a detached
/// read-only overlayfs mount of its directory, else a sealed memfd copy of it.
///
/// Returns only on failure, with an error that names the file: it is missing or not a regular file
/// (both binaries of a build must be installed together), no protected image of it could be made, or
/// the exec failed.
pub fn exec_full() -> anyhow::Error {
    let (fd, target) = match full_image() {
        Ok(image) => image,
        Err(e) => return e,
    };
    match reexec(&fd) {
        Ok(()) => anyhow::anyhow!("exec {} returned", target.display()),
        Err(e) => e.context(format!(
            "{} (amphi runs create, run and exec through it)",
            target.display()
        )),
    }
}

/// An fd of [`FULL_BINARY`], protected (see [`exec_full`]), and the file's path.
fn full_image() -> anyhow::Result<(OwnedFd, std::path::PathBuf)> {
    let front = std::fs::read_link("/proc/self/exe")
        .map_err(|e| anyhow::anyhow!("readlink /proc/self/exe: {e}"))?;
    let Some(dir) = front.parent().filter(|_| front.is_absolute()) else {
        anyhow::bail!(
            "/proc/self/exe points to {}: no directory to find {FULL_BINARY} in",
            front.display()
        );
    };
    let named = dir.join(FULL_BINARY);
    // A symlink there (a package that keeps its files elsewhere) is followed.
    let file = nix::fcntl::open(
        &named,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}: amphi runs create, run and exec through {FULL_BINARY}, which must be \
             installed next to it (both come from the same build)",
            named.display()
        )
    })?;
    // The file's own path, which the overlay view needs (its directory, its name).
    let target = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| anyhow::anyhow!("readlink of the fd of {}: {e}", named.display()))?;
    let st = nix::sys::stat::fstat(&file)
        .map_err(|e| anyhow::anyhow!("stat {}: {e}", target.display()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        anyhow::bail!(
            "{} is not a regular file (amphi runs create, run and exec through it)",
            target.display()
        );
    }
    if protection_of(&file, &target.to_string_lossy())?.is_some() {
        return Ok((file, target));
    }
    let view = protected_view(&target, &file, FULL_BINARY)?;
    Ok((view, target))
}

/// `target` (an absolute path whose open file is `file`) opened from an image that no container can
/// write: through a read-only overlay of its directory, else as a sealed memfd copy. `what` names it
/// in the error, which gives both reasons.
fn protected_view(target: &Path, file: &impl AsFd, what: &str) -> anyhow::Result<OwnedFd> {
    match overlay_view(target, file) {
        Ok(fd) => Ok(fd),
        Err(overlay_err) => sealed_memfd(file).map_err(|e| {
            anyhow::anyhow!(
                "cannot protect {what} against writes from containers (CVE-2019-5736): \
                 read-only overlayfs: {overlay_err:#}; sealed memfd copy: {e:#}"
            )
        }),
    }
}

/// Closes `fd` if it refers to the running image (the fd that `reexec`'s execve fallback left open),
/// never an fd of the caller that merely has that number.
fn close_if_own_image(fd: i32) {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return;
    };
    // SAFETY: fstat writes one stat struct into each zeroed buffer; the fds are only inspected.
    let (a, b) = unsafe {
        let mut a: libc::stat = std::mem::zeroed();
        let mut b: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut a) != 0 || libc::fstat(exe.as_raw_fd(), &mut b) != 0 {
            return;
        }
        (a, b)
    };
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
        // SAFETY: the fd was left open by our previous image for this one to close, and refers to
        // our own image: nothing in this process uses it.
        unsafe { libc::close(fd) };
    }
}

/// `target` (an absolute path, whose open file is `file`) opened (`O_PATH`) through a detached
/// read-only overlayfs mount of its directory.
fn overlay_view(target: &Path, file: &impl AsFd) -> anyhow::Result<OwnedFd> {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        anyhow::bail!("{} has no directory", target.display());
    };
    if !target.is_absolute() || target.as_os_str().as_bytes().ends_with(b" (deleted)") {
        anyhow::bail!("{} is not a path on a mount", target.display());
    }
    let dummy = DUMMY_LOWER
        .iter()
        .map(Path::new)
        .find(|d| !dir.starts_with(d) && !d.starts_with(dir) && d.is_dir())
        .ok_or_else(|| anyhow::anyhow!("no dummy lower layer for {}", dir.display()))?;
    let escape = |p: &Path| {
        let s = p.as_os_str().as_bytes();
        let mut out = Vec::with_capacity(s.len());
        for &b in s {
            if b == b'\\' || b == b':' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out
    };
    let mut lower = escape(dir);
    lower.push(b':');
    lower.extend(escape(dummy));
    let lower = CString::new(lower).map_err(|_| anyhow::anyhow!("binary path has a NUL byte"))?;

    // SAFETY: fsopen takes a C string literal and flags; it returns a new fd or -1.
    let ctx = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) };
    if ctx < 0 {
        return Err(last_err("fsopen overlay"));
    }
    // SAFETY: fsopen returned a new fd that nothing else owns.
    let ctx = unsafe { OwnedFd::from_raw_fd(ctx as i32) };
    let set = |key: &std::ffi::CStr, value: &std::ffi::CStr| -> libc::c_long {
        // SAFETY: the key and value are valid C strings that outlive the call; fsconfig only reads them.
        unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                ctx.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        }
    };
    if set(c"lowerdir", &lower) < 0 {
        return Err(last_err(&format!(
            "overlayfs lowerdir={}",
            String::from_utf8_lossy(lower.as_bytes())
        )));
    }
    // xino only produces kernel log noise here; not every kernel knows it.
    let _ = set(c"xino", c"off");
    // SAFETY: FSCONFIG_CMD_CREATE takes no pointers (NULL key and value).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc < 0 {
        return Err(last_err("create overlayfs"));
    }
    // SAFETY: fsmount takes the context fd and integer flags; it returns a new fd or -1.
    let mnt = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            ctx.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        )
    };
    if mnt < 0 {
        return Err(last_err("fsmount overlayfs"));
    }
    // SAFETY: fsmount returned a new fd that nothing else owns.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as i32) };
    let view = nix::fcntl::openat(
        &mnt,
        name,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| anyhow::anyhow!("open {name:?} in the overlay: {e}"))?;
    // The file seen through the overlay must be the one opened (same size and mode bits): the
    // dummy layer cannot shadow it (the binary's layer is on top), this guards against surprises.
    let a = nix::sys::stat::fstat(&view).map_err(|e| anyhow::anyhow!("stat overlay file: {e}"))?;
    let b = nix::sys::stat::fstat(file)
        .map_err(|e| anyhow::anyhow!("stat {}: {e}", target.display()))?;
    if a.st_size != b.st_size || a.st_mode != b.st_mode {
        anyhow::bail!("the overlay shows a different {}", target.display());
    }
    Ok(view)
}

/// A sealed memfd copy of the open file `file`.
fn sealed_memfd(file: &impl AsFd) -> anyhow::Result<OwnedFd> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create takes a C string literal and flags; it returns a new fd or -1.
    let mut fd = unsafe { libc::memfd_create(c"amphi".as_ptr(), flags | MFD_EXEC) };
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // Kernels before 6.3 do not know MFD_EXEC (and make every memfd executable).
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(c"amphi".as_ptr(), flags) };
    }
    if fd < 0 {
        return Err(last_err("memfd_create"));
    }
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    let mut mem = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    // Reopened for reading through its magic link: `file` may be an O_PATH fd.
    let link = format!("/proc/self/fd/{}", file.as_fd().as_raw_fd());
    let mut src = File::open(&link).map_err(|e| anyhow::anyhow!("open {link}: {e}"))?;
    std::io::copy(&mut src, &mut mem).map_err(|e| anyhow::anyhow!("copy the binary: {e}"))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS takes an integer argument only.
    if unsafe { libc::fcntl(mem.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(last_err("seal memfd"));
    }
    Ok(OwnedFd::from(mem))
}

/// `execveat(fd, "", argv, envp + MARK, AT_EMPTY_PATH)` with this process's arguments and environment.
fn reexec(fd: &OwnedFd) -> anyhow::Result<()> {
    let cstr = |s: &[u8]| CString::new(s).map_err(|_| anyhow::anyhow!("argument has a NUL byte"));
    let argv: Vec<CString> = std::env::args_os()
        .map(|a| cstr(a.as_bytes()))
        .collect::<anyhow::Result<_>>()?;
    let mut envp: Vec<CString> = Vec::new();
    // A mark from the caller's environment is never passed on: the new image gets this process's.
    for (k, v) in std::env::vars_os().filter(|(k, _)| k != MARK) {
        let mut kv = OsString::from(&k);
        kv.push("=");
        kv.push(&v);
        envp.push(cstr(kv.as_bytes())?);
    }
    envp.push(cstr(format!("{MARK}=1").as_bytes())?);
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: argv_p and envp_p are NULL-terminated arrays of pointers to C strings that outlive the
    // call; execveat only reads them, and returns only on failure.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv_p.as_ptr(),
            envp_p.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    let first = std::io::Error::last_os_error();
    // Where execveat(2) is missing or emulated without AT_EMPTY_PATH (valgrind), execve(2) of the
    // fd's magic link runs the same file.
    // The fd stays open across this execve (an emulator may open the path after the exec), and
    // its number is passed in MARK for the new image to close (see `ensure_protected`).
    let path = cstr(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes())?;
    if let Some(mark) = envp
        .iter_mut()
        .find(|e| e.as_bytes().starts_with(MARK.as_bytes()))
    {
        *mark = cstr(format!("{MARK}={}", fd.as_raw_fd()).as_bytes())?;
    }
    let envp_p: Vec<*const libc::c_char> = envp
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    // SAFETY: F_SETFD on our own fd; execve gets NULL-terminated arrays of C strings that outlive
    // the call and returns only on failure.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0);
        libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr());
    }
    Err(anyhow::anyhow!(
        "execute amphi from a protected image: execveat: {first}; execve {}: {}",
        path.to_string_lossy(),
        std::io::Error::last_os_error()
    ))
}
