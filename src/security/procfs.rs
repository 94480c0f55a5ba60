//! Checked access to procfs (escape class 6 of issue 6; runc CVE-2019-16884, CVE-2019-19921 and the
//! 2023-2025 procfs redirection advisories).
//!
//! Every file that amphi writes (or reads for a decision) under `/proc` -- sysctls under `/proc/sys`,
//! `oom_score_adj`, `uid_map` / `gid_map` / `setgroups`, `timens_offsets` -- goes through [`open`]:
//! - the directory `/proc` is opened as a handle and must be the root of a procfs mount
//!   (`fstatfs(2)` `f_type == PROC_SUPER_MAGIC` and inode number 1, procfs's root inode), so a
//!   symlink, a bind mount of some other directory, or a bind mount of a procfs *subdirectory* at
//!   `/proc` is refused;
//! - the file is opened below that handle with `openat2(2)` `RESOLVE_BENEATH | RESOLVE_NO_XDEV |
//!   RESOLVE_NO_MAGICLINKS`: a path that crosses into another mount (something bind-mounted over
//!   `/proc/sys/...` by a config or an image's volume) or through a magic link fails with `EXDEV` /
//!   `ELOOP` instead of being redirected;
//! - the opened file must itself be on procfs (`fstatfs`), which also covers kernels without
//!   `openat2` (then `openat` with `O_NOFOLLOW` is used).
//!
//! Inside the container (after `pivot_root`) `/proc` is the procfs that amphi mounted from the
//! config's `proc` mount; before, it is the host's.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// procfs's `f_type` (statfs(2)).
const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// The inode number of the root of every procfs mount (`PROC_ROOT_INO`).
const PROC_ROOT_INO: u64 = 1;

const RESOLVE_NO_XDEV: u64 = 0x01;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn fs_type(fd: &OwnedFd) -> std::io::Result<i64> {
    let mut buf = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fstatfs writes one statfs struct into `buf`, which is large enough and zeroed.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), buf.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fstatfs succeeded, so the struct is initialised (it was zeroed before anyway).
    let t = unsafe { buf.assume_init() }.f_type;
    // f_type is `long` on x86_64 but a narrower type on some architectures.
    #[allow(clippy::unnecessary_cast)]
    Ok(t as i64)
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// Opens `/proc` as an `O_PATH` directory handle and checks that it is the root of a procfs mount.
///
/// Errors: `/proc` cannot be opened (a symlink is refused: `O_NOFOLLOW`), is not on procfs, or is
/// not the root of its procfs mount.
pub fn open_root() -> std::io::Result<OwnedFd> {
    // SAFETY: the path is a C string literal; open returns a new fd or -1.
    let fd = unsafe {
        libc::open(
            c"/proc".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: open returned a new fd that nothing else owns.
    let root = unsafe { OwnedFd::from_raw_fd(fd) };
    let t = fs_type(&root)?;
    if t != PROC_SUPER_MAGIC {
        return Err(invalid(format!(
            "/proc is not procfs (filesystem type {t:#x})"
        )));
    }
    let st = nix::sys::stat::fstat(&root).map_err(std::io::Error::from)?;
    if st.st_ino != PROC_ROOT_INO {
        return Err(invalid(format!(
            "/proc is not the root of a procfs mount (inode {})",
            st.st_ino
        )));
    }
    Ok(root)
}

/// Opens `/proc/<rel>` (`rel` relative, e.g. `sys/net/ipv4/ip_forward`, `self/oom_score_adj`,
/// `1234/uid_map`) with `flags` (`libc::O_*`; `O_CLOEXEC` is added) through a verified procfs root,
/// never crossing a mount or a magic link, and checks the result is on procfs. See the module
/// documentation.
///
/// Errors: [`open_root`]'s; `EXDEV` when the path crosses into another mount (something is mounted
/// over part of it); `ELOOP` for a magic link; the opened file is not on procfs; any open(2) error.
pub fn open(rel: &str, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    let root = open_root()?;
    let c = std::ffi::CString::new(rel.trim_start_matches('/'))
        .map_err(|_| invalid(format!("/proc/{rel}: path has a NUL byte")))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `c` and `how` are valid for the call and only read; openat2 returns a new fd or -1.
    let mut fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    } as i32;
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        // SAFETY: as above, with openat(2) (kernels before 5.6).
        fd = unsafe {
            libc::openat(
                root.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            )
        };
    }
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat2/openat returned a new fd that nothing else owns.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    let t = fs_type(&file)?;
    if t != PROC_SUPER_MAGIC {
        return Err(invalid(format!(
            "/proc/{rel} is not on procfs (filesystem type {t:#x})"
        )));
    }
    Ok(file)
}

/// Writes `data` to `/proc/<rel>` in a single write(2) (as the kernel wants for `uid_map` and sysctls),
/// through [`open`].
///
/// Errors: [`open`]'s; the write fails or is short. The message names `/proc/<rel>`.
pub fn write(rel: &str, data: &[u8]) -> std::io::Result<()> {
    let ctx = |e: std::io::Error| std::io::Error::new(e.kind(), format!("/proc/{rel}: {e}"));
    let mut f = std::fs::File::from(open(rel, libc::O_WRONLY).map_err(ctx)?);
    let n = f.write(data).map_err(ctx)?;
    if n != data.len() {
        return Err(ctx(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short write ({n} of {} bytes)", data.len()),
        )));
    }
    Ok(())
}

/// Reads `/proc/<rel>` through [`open`].
///
/// Errors: [`open`]'s; the read fails or the text is not UTF-8.
pub fn read_to_string(rel: &str) -> std::io::Result<String> {
    let mut s = String::new();
    std::fs::File::from(open(rel, libc::O_RDONLY)?).read_to_string(&mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_through_the_checked_handle() {
        assert_eq!(read_to_string("sys/kernel/ostype").unwrap(), "Linux\n");
        // `self` is a plain symlink inside procfs: allowed.
        assert!(read_to_string("self/status").unwrap().contains("Pid:"));
    }

    #[test]
    fn refuses_magic_links_and_escapes() {
        for rel in [
            "self/exe",
            "self/cwd/etc",
            "self/root/etc/hostname",
            "../etc/hostname",
        ] {
            let e = open(rel, libc::O_RDONLY).expect_err(rel);
            assert!(
                matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EXDEV)),
                "{rel}: {e}"
            );
        }
    }
}
