//! Device nodes under the rootfs's `/dev` (config-linux.md "Devices", "Default Devices") and the
//! standard `/dev` symlinks (runtime-linux.md "Dev symbolic links").

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{chown, Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use crate::utils::{create_dir_all_0755, secure_join};

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

fn create_node(rootfs: &Path, dev: &DeviceNode, bind_from_host: bool) -> anyhow::Result<()> {
    let dest = secure_join(rootfs, Path::new(&dev.path))
        .map_err(|e| anyhow::anyhow!("device {}: {e}", dev.path))?;
    if let Some(parent) = dest.parent() {
        create_dir_all_0755(parent)
            .map_err(|e| anyhow::anyhow!("device {}: create parent: {e}", dev.path))?;
    }
    // A file of the image at this path is replaced.
    if fs::symlink_metadata(&dest).is_ok() {
        let _ = fs::remove_file(&dest);
    }
    if bind_from_host {
        // In a user namespace mknod is not allowed: bind the host's node instead (runc does the same).
        fs::File::create(&dest).map_err(|e| anyhow::anyhow!("device {}: {e}", dev.path))?;
        mount(
            Some(Path::new(&dev.path)),
            &dest,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| anyhow::anyhow!("device {}: bind from host: {e}", dev.path))?;
        return Ok(());
    }
    let kind = match dev.kind {
        'b' => SFlag::S_IFBLK,
        'p' => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    mknod(
        &dest,
        kind,
        Mode::from_bits_truncate(dev.mode),
        makedev(dev.major, dev.minor),
    )
    .map_err(|e| anyhow::anyhow!("device {}: mknod: {e}", dev.path))?;
    // mknod is subject to the umask: set the exact mode.
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &dest,
        Mode::from_bits_truncate(dev.mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| anyhow::anyhow!("device {}: chmod: {e}", dev.path))?;
    chown(
        &dest,
        Some(Uid::from_raw(dev.uid)),
        Some(Gid::from_raw(dev.gid)),
    )
    .map_err(|e| anyhow::anyhow!("device {}: chown: {e}", dev.path))?;
    Ok(())
}

/// Creates the default devices and `linux.devices` under `rootfs`, then the `/dev` symlinks
/// (`fd`, `stdin`, `stdout`, `stderr`, `ptmx` -> `pts/ptmx`).
///
/// `in_user_ns`: bind-mount host nodes instead of `mknod(2)` (only possible for host devices).
/// `dev_is_bind`: the config bind-mounts `/dev` from the host; nothing is created then.
///
/// Errors: a node cannot be created, named with its path.
pub fn setup(
    rootfs: &Path,
    devices: &[DeviceNode],
    in_user_ns: bool,
    dev_is_bind: bool,
) -> anyhow::Result<()> {
    if dev_is_bind {
        return Ok(());
    }
    let mut all = default_devices();
    for d in devices {
        all.retain(|x| x.path != d.path);
        all.push(d.clone());
    }
    for dev in &all {
        create_node(rootfs, dev, in_user_ns)?;
    }
    let dev = secure_join(rootfs, Path::new("/dev"))?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let link = dev.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(target, &link).map_err(|e| anyhow::anyhow!("/dev/{name}: symlink: {e}"))?;
        }
    }
    if Path::new("/proc/kcore").exists() {
        let link = dev.join("core");
        if fs::symlink_metadata(&link).is_err() {
            let _ = symlink("/proc/kcore", &link);
        }
    }
    let ptmx = dev.join("ptmx");
    if dev.join("pts").is_dir() {
        let _ = fs::remove_file(&ptmx);
        symlink("pts/ptmx", &ptmx).map_err(|e| anyhow::anyhow!("/dev/ptmx: symlink: {e}"))?;
    }
    Ok(())
}
