//! Device nodes under the rootfs's `/dev` (config-linux.md "Devices", "Default Devices") and the
//! standard `/dev` symlinks (runtime-linux.md "Dev symbolic links").

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::mountfd;
use super::resolve::{self, fd_path, Kind, Root};

/// One device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Absolute path inside the container, e.g. `/dev/null`.
    pub path: String,
    /// `c`, `b` or `p`.
    pub kind: char,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The default devices every container gets (config-linux.md "Default Devices").
pub fn default_devices() -> Vec<DeviceNode> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(path, major, minor)| DeviceNode {
        path: path.to_string(),
        kind: 'c',
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// Converts `linux.devices[i]`.
///
/// Errors: a negative major or minor number, named as `linux.devices[i]`.
pub fn from_spec(i: usize, d: &LinuxDevice) -> anyhow::Result<DeviceNode> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::P => 'p',
        LinuxDeviceType::A => anyhow::bail!("linux.devices[{i}].type: \"a\" is not a device type"),
    };
    if d.major() < 0 || d.minor() < 0 {
        anyhow::bail!("linux.devices[{i}]: major and minor must not be negative");
    }
    Ok(DeviceNode {
        path: d.path().to_string_lossy().into_owned(),
        kind,
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// Creates one node at `dev.path` inside `root`: the parent is resolved (and created) inside the
/// root, whatever the image had at that name (a symlink included) is unlinked, and the node is made
/// with mknodat(2) relative to the parent's descriptor, then opened without following and checked
/// before its mode and owner are set through that descriptor.
fn create_node(root: &Root, dev: &DeviceNode, bind_from_host: bool) -> anyhow::Result<()> {
    let err = |what: &str, e: std::io::Error| anyhow::anyhow!("device {}: {what}: {e}", dev.path);
    let (parent, name) = root
        .parent_of(Path::new(&dev.path))
        .map_err(|e| err("resolve in the rootfs", e))?;
    // A file of the image at this path is replaced.
    resolve::unlinkat(parent.as_fd(), &name).map_err(|e| err("replace", e))?;
    if bind_from_host {
        // In a user namespace mknod is not allowed: bind the host's node instead (runc does the same).
        let target = resolve::openat_nofollow(
            parent.as_fd(),
            &name,
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
            0o644,
        )
        .map_err(|e| err("create", e))?;
        let tree = mountfd::clone_tree(None, Path::new(&dev.path), false)
            .map_err(|e| err("bind from host", e))?;
        mountfd::attach(tree.as_fd(), target.as_fd()).map_err(|e| err("bind from host", e))?;
        return Ok(());
    }
    let kind = match dev.kind {
        'b' => SFlag::S_IFBLK,
        'p' => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    mknodat(
        parent.as_fd(),
        name.as_os_str(),
        kind,
        Mode::from_bits_truncate(dev.mode),
        makedev(dev.major, dev.minor),
    )
    .map_err(|e| err("mknod", e.into()))?;
    let node = resolve::openat_nofollow(parent.as_fd(), &name, libc::O_PATH, 0)
        .map_err(|e| err("open", e))?;
    let st = resolve::fstat(node.as_fd()).map_err(|e| err("stat", e))?;
    if st.st_mode & libc::S_IFMT != kind.bits() {
        anyhow::bail!("device {}: replaced while being created", dev.path);
    }
    // mknod is subject to the umask: set the exact mode (through the node's descriptor).
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &fd_path(node.as_fd()),
        Mode::from_bits_truncate(dev.mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| err("chmod", e.into()))?;
    fchownat(
        node.as_fd(),
        "",
        Some(Uid::from_raw(dev.uid)),
        Some(Gid::from_raw(dev.gid)),
        AtFlags::AT_EMPTY_PATH,
    )
    .map_err(|e| err("chown", e.into()))?;
    Ok(())
}

/// Creates the default devices and `linux.devices` under `root`, then the `/dev` symlinks
/// (`fd`, `stdin`, `stdout`, `stderr`, `core`, `ptmx` -> `pts/ptmx`), every one through descriptors
/// resolved inside the root (see [`Root`]).
///
/// `in_user_ns`: bind-mount host nodes instead of `mknod(2)` (only possible for host devices).
/// `dev_is_bind`: the config bind-mounts `/dev` from the host; nothing is created then.
/// `mounted`: the config's mount destinations (cleaned); no device is made at one of them.
///
/// Errors: a node cannot be created, named with its path.
pub fn setup(
    root: &Root,
    devices: &[DeviceNode],
    in_user_ns: bool,
    dev_is_bind: bool,
    mounted: &[PathBuf],
) -> anyhow::Result<()> {
    if dev_is_bind {
        return Ok(());
    }
    let mut all = default_devices();
    for d in devices {
        all.retain(|x| x.path != d.path);
        all.push(d.clone());
    }
    // A mount of the config at a device's path wins (as with runc): `-v /dev/urandom:/dev/random`.
    all.retain(|d| !mounted.iter().any(|m| m == Path::new(&d.path)));
    for dev in &all {
        create_node(root, dev, in_user_ns)?;
    }
    let dev = root
        .ensure(Path::new("/dev"), Kind::Dir, false)
        .map_err(|e| anyhow::anyhow!("/dev: resolve in the rootfs: {e}"))?;
    let link = |name: &str, target: &str| -> anyhow::Result<()> {
        symlinkat(target, dev.as_fd(), name)
            .map_err(|e| anyhow::anyhow!("/dev/{name}: symlink: {e}"))
    };
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        if !resolve::entry_exists(dev.as_fd(), OsStr::new(name)) {
            link(name, target)?;
        }
    }
    if Path::new("/proc/kcore").exists() && !resolve::entry_exists(dev.as_fd(), OsStr::new("core"))
    {
        let _ = link("core", "/proc/kcore");
    }
    let pts_is_dir = nix::sys::stat::fstatat(dev.as_fd(), "pts", AtFlags::AT_SYMLINK_NOFOLLOW)
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .unwrap_or(false);
    if pts_is_dir {
        resolve::unlinkat(dev.as_fd(), OsStr::new("ptmx"))
            .map_err(|e| anyhow::anyhow!("/dev/ptmx: replace: {e}"))?;
        link("ptmx", "pts/ptmx")?;
    }
    Ok(())
}
