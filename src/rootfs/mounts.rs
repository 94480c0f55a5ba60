//! `mounts` of config.md: options, bind mounts, file systems, and the `cgroup` mount.

use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

use super::mountfd;
use super::resolve::{self, fd_path, Kind, Root};

/// Mount options parsed from a config's `options` list (mount(8) words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags to set.
    pub flags: MsFlags,
    /// True for `bind` or `rbind`.
    pub bind: bool,
    /// True for `rbind`.
    pub recursive: bool,
    /// Propagation changes to apply after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// File-system specific options, joined with `,` as mount(2)'s data (e.g. `mode=755,size=64k`).
    pub data: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            bind: false,
            recursive: false,
            propagation: Vec::new(),
            data: Vec::new(),
        }
    }
}

/// Options that configure the runtime rather than the kernel and are not passed to mount(2).
const IGNORED: &[&str] = &["defaults", "tmpcopyup", "notmpcopyup", "z", "Z", "U"];

/// Parses mount `options` (config.md "mounts.options", mount(8)).
///
/// Errors: a recursive attribute (`rro`, `rnosuid`, ...) or `idmap`, which are not supported yet,
/// named with the option.
pub fn parse_options(options: &[String]) -> Result<MountOptions, String> {
    let mut o = MountOptions::default();
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "idmap" | "ridmap" => {
                return Err(format!(
                    "option {opt:?} (idmapped mounts) is not supported yet"
                ))
            }
            other => {
                if let Some(p) = super::propagation_flag(other) {
                    o.propagation.push(p);
                    continue;
                }
                if other.len() > 1
                    && other.starts_with('r')
                    && parse_options(&[other[1..].to_string()])
                        .map(|x| x.data.is_empty() && !x.flags.is_empty())
                        .unwrap_or(false)
                {
                    return Err(format!(
                        "option {opt:?} (recursive mount attribute) is not supported yet"
                    ));
                }
                if IGNORED.contains(&other) {
                    continue;
                }
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags.insert(set);
        o.flags.remove(clear);
    }
    Ok(o)
}

/// How the container's `cgroup` mount is built, decided by the parent from the host's cgroup layout.
#[derive(Debug, Clone)]
pub enum CgroupMount {
    /// Unified host: mount cgroup2 (with a new cgroup namespace), else bind the container's directory.
    V2 {
        /// The container's cgroup directory on the host.
        dir: PathBuf,
        /// True when the container has a new cgroup namespace.
        new_ns: bool,
    },
    /// v1 or hybrid host: a tmpfs with each hierarchy's container directory bound under its name.
    V1 {
        /// (name under the mount, e.g. `memory`; container cgroup dir on the host).
        hierarchies: Vec<(String, PathBuf)>,
    },
    /// No cgroup was set up (should not happen for a created container).
    None,
}

/// Statvfs flags of the mount holding `path`, as mount(2) flags, so that a remount keeps flags the
/// kernel has locked (in a user namespace, dropping nosuid/nodev/noexec fails with EPERM).
pub fn locked_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let mut out = MsFlags::empty();
    if let Ok(st) = statvfs(path) {
        let f = st.flags();
        for (a, b) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            // ST_RELATIME (statvfs(3), 4096): musl's headers, and so nix on musl, lack the name.
            (FsFlags::from_bits_retain(4096), MsFlags::MS_RELATIME),
        ] {
            if f.contains(a) {
                out |= b;
            }
        }
    }
    out
}

/// mount(2) through a path the caller made (a host path, or the `/proc/self/fd/N` of a descriptor);
/// `shown` is the destination as the config names it, for the message.
fn do_mount(
    field: &str,
    source: Option<&Path>,
    target: &Path,
    shown: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> anyhow::Result<()> {
    mount(source, target, fstype, flags, data).map_err(|e| {
        anyhow::anyhow!(
            "{field}: mount {} on {} (type {}): {e}",
            source.map(|s| s.display().to_string()).unwrap_or_default(),
            shown.display(),
            fstype.unwrap_or("none")
        )
    })
}

/// Bind-mounts the host path `source` onto the object `target` holds (an `O_PATH` descriptor from
/// [`Root`]): a detached clone of the source attached onto the descriptor, then the other flags by
/// a remount and the propagation changes, both through the new mount's own descriptor.
fn bind(
    field: &str,
    source: &Path,
    target: BorrowedFd<'_>,
    shown: &Path,
    o: &MountOptions,
) -> anyhow::Result<()> {
    let tree = mountfd::clone_tree(None, source, o.recursive)
        .map_err(|e| anyhow::anyhow!("{field}: bind {}: {e}", source.display()))?;
    mountfd::attach(tree.as_fd(), target).map_err(|e| {
        anyhow::anyhow!(
            "{field}: bind {} on {}: {e}",
            source.display(),
            shown.display()
        )
    })?;
    let dest = fd_path(tree.as_fd());
    let extra = o.flags - MsFlags::MS_REMOUNT;
    if !extra.is_empty() {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra | locked_flags(&dest);
        do_mount(field, None, &dest, shown, None, flags, None)?;
    }
    for p in &o.propagation {
        do_mount(field, None, &dest, shown, None, *p, None)?;
    }
    Ok(())
}

/// `PROC_SUPER_MAGIC` and `SYSFS_MAGIC` (statfs(2)).
const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;

/// The file-system magic a mount of type `typ` must show, for the types whose mount point must be
/// a real directory (escape class 4 of issue 6, as runc 1.1.12+).
fn required_magic(typ: &str) -> Option<i64> {
    match typ {
        "proc" => Some(PROC_SUPER_MAGIC),
        "sysfs" => Some(SYSFS_MAGIC),
        _ => None,
    }
}

/// Resolves (creating it if missing) `mounts[i].destination` inside the root.
fn destination(
    root: &Root,
    field: &str,
    dest: &Path,
    kind: Kind,
    no_symlinks: bool,
) -> anyhow::Result<OwnedFd> {
    root.ensure(dest, kind, no_symlinks)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) if no_symlinks => anyhow::anyhow!(
            "{field}.destination: {} is a symlink or passes through one; this file system must be \
             mounted on a real directory of the rootfs",
            dest.display()
        ),
            Some(libc::ENOTDIR) => anyhow::anyhow!(
                "{field}.destination: {} (in the rootfs): a component is not a directory",
                dest.display()
            ),
            _ => anyhow::anyhow!(
                "{field}.destination: resolve {} in the rootfs: {e}",
                dest.display()
            ),
        })
}

/// Mounts every entry of `mounts` under `root`, in order. Runs in the init process's mount
/// namespace before `pivot_root`, so bind sources are host paths; relative bind sources are taken
/// from `bundle`. Each destination is resolved inside the rootfs by [`Root::ensure`] and mounted
/// onto through its descriptor; `proc` and `sysfs` must go onto a real directory (no symlink in
/// the path) and are checked to be procfs / sysfs before they are attached.
///
/// Errors: the first mount that fails, named as `mounts[i]`.
pub fn mount_all(
    root: &Root,
    bundle: &Path,
    mounts: &[Mount],
    cgroup: &CgroupMount,
) -> anyhow::Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let o = parse_options(m.options().as_deref().unwrap_or_default())
            .map_err(|e| anyhow::anyhow!("{field}.options: {e}"))?;
        let shown = m.destination().as_path();
        let typ = m.typ().as_deref().unwrap_or("");
        if o.bind || typ == "bind" {
            let source = m
                .source()
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("{field}.source: required for a bind mount"))?;
            let source = if source.is_absolute() {
                source.clone()
            } else {
                bundle.join(source)
            };
            let meta = fs::metadata(&source)
                .map_err(|e| anyhow::anyhow!("{field}.source: {}: {e}", source.display()))?;
            let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
            let dest = destination(root, &field, shown, kind, false)?;
            bind(&field, &source, dest.as_fd(), shown, &o)?;
            continue;
        }
        if typ == "cgroup" || typ == "cgroup2" {
            let dest = destination(root, &field, shown, Kind::Dir, false)?;
            mount_cgroup(&field, dest.as_fd(), shown, &o, cgroup)?;
            continue;
        }
        let magic = required_magic(typ);
        let dest = destination(root, &field, shown, Kind::Dir, magic.is_some())?;
        let source = m
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| typ.to_string());
        if o.flags.contains(MsFlags::MS_REMOUNT) {
            // A remount changes the mount already at the destination, reached through its fd.
            let data = o.data.join(",");
            do_mount(
                &field,
                Some(Path::new(&source)),
                &fd_path(dest.as_fd()),
                shown,
                Some(typ),
                o.flags,
                (!data.is_empty()).then_some(data.as_str()),
            )?;
            continue;
        }
        let mnt = match mountfd::new_fs(typ, &source, o.flags, &o.data) {
            // sysfs can be made only by the owner of the network namespace: in a user namespace
            // without its own netns (rootless) that fails with EPERM; bind the host's /sys instead
            // with the same flags, as runc and crun do.
            Err(e) if typ == "sysfs" && e.kind() == std::io::ErrorKind::PermissionDenied => {
                let bo = MountOptions {
                    flags: o.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    bind: true,
                    recursive: true,
                    propagation: o.propagation.clone(),
                    data: Vec::new(),
                };
                bind(&field, Path::new("/sys"), dest.as_fd(), shown, &bo)?;
                continue;
            }
            r => r.map_err(|e| {
                anyhow::anyhow!(
                    "{field}: mount {source} on {} (type {typ}): {e}",
                    shown.display()
                )
            })?,
        };
        if let Some(want) = magic {
            let got = mountfd::fs_magic(mnt.as_fd())
                .map_err(|e| anyhow::anyhow!("{field}: fstatfs of the new {typ} mount: {e}"))?;
            if got != want {
                anyhow::bail!(
                    "{field}: the new mount of type {typ} is not {typ} (magic {got:#x}); refused"
                );
            }
        }
        mountfd::attach(mnt.as_fd(), dest.as_fd()).map_err(|e| {
            anyhow::anyhow!(
                "{field}: mount {source} on {} (type {typ}): {e}",
                shown.display()
            )
        })?;
        let attached = fd_path(mnt.as_fd());
        for p in &o.propagation {
            do_mount(&field, None, &attached, shown, None, *p, None)?;
        }
    }
    Ok(())
}

fn mount_cgroup(
    field: &str,
    dest: BorrowedFd<'_>,
    shown: &Path,
    o: &MountOptions,
    cgroup: &CgroupMount,
) -> anyhow::Result<()> {
    let ro = o.flags.contains(MsFlags::MS_RDONLY);
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let fail = |what: &str, e: std::io::Error| {
        anyhow::anyhow!("{field}: {what} on {}: {e}", shown.display())
    };
    match cgroup {
        CgroupMount::None => Ok(()),
        CgroupMount::V2 { dir, new_ns } => {
            if *new_ns {
                let mnt = mountfd::new_fs("cgroup2", "cgroup2", o.flags | base, &[])
                    .map_err(|e| fail("mount cgroup2", e))?;
                mountfd::attach(mnt.as_fd(), dest).map_err(|e| fail("mount cgroup2", e))
            } else {
                let bo = MountOptions {
                    flags: o.flags | base,
                    bind: true,
                    recursive: true,
                    ..Default::default()
                };
                bind(field, dir, dest, shown, &bo)
            }
        }
        CgroupMount::V1 { hierarchies } => {
            // linux.mountLabel, when set (security::lsm::with_mount_label).
            let data = crate::security::lsm::with_mount_label(vec!["mode=755".to_string()]);
            let tmpfs = mountfd::new_fs("tmpfs", "tmpfs", base, &data)
                .map_err(|e| fail("mount tmpfs", e))?;
            mountfd::attach(tmpfs.as_fd(), dest).map_err(|e| fail("mount tmpfs", e))?;
            let bo = MountOptions {
                flags: base
                    | if ro {
                        MsFlags::MS_RDONLY
                    } else {
                        MsFlags::empty()
                    },
                bind: true,
                recursive: false,
                ..Default::default()
            };
            for (name, dir) in hierarchies {
                let sub_shown = shown.join(name);
                let name = std::ffi::OsStr::new(name);
                match resolve::mkdirat(tmpfs.as_fd(), name, resolve::DIR_MODE) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(fail(&format!("create {}", sub_shown.display()), e)),
                }
                let sub = resolve::openat_nofollow(
                    tmpfs.as_fd(),
                    name,
                    libc::O_PATH | libc::O_DIRECTORY,
                    0,
                )
                .map_err(|e| fail(&format!("open {}", sub_shown.display()), e))?;
                if dir.is_dir() {
                    bind(field, dir, sub.as_fd(), &sub_shown, &bo)?;
                }
            }
            if ro {
                do_mount(
                    field,
                    None,
                    &fd_path(tmpfs.as_fd()),
                    shown,
                    None,
                    MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
                    Some("mode=755"),
                )?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Result<MountOptions, String> {
        parse_options(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_and_data() {
        let o = opts(&[
            "nosuid",
            "strictatime",
            "mode=755",
            "size=65536k",
            "rprivate",
        ])
        .unwrap();
        assert!(o
            .flags
            .contains(MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME));
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        let o = opts(&["rbind", "ro", "rw"]).unwrap();
        assert!(o.bind && o.recursive);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(opts(&["rro"]).is_err());
        assert!(opts(&["idmap"]).is_err());
        let o = opts(&["newinstance", "ptmxmode=0666", "gid=5"]).unwrap();
        assert_eq!(o.data.len(), 3);
    }
}
