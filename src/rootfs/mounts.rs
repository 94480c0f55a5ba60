//! `mounts` of config.md: options, bind mounts, file systems, and the `cgroup` mount.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

use crate::utils::{create_dir_all_0755, secure_join};

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
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(a) {
                out |= b;
            }
        }
    }
    out
}

fn create_target(dest: &Path, dir: bool) -> std::io::Result<()> {
    if dir {
        return create_dir_all_0755(dest);
    }
    if let Some(parent) = dest.parent() {
        create_dir_all_0755(parent)?;
    }
    if fs::symlink_metadata(dest).is_err() {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .mode(0o644)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dest)?;
    }
    Ok(())
}

fn do_mount(
    field: &str,
    source: Option<&Path>,
    dest: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> anyhow::Result<()> {
    mount(source, dest, fstype, flags, data).map_err(|e| {
        anyhow::anyhow!(
            "{field}: mount {} on {} (type {}): {e}",
            source.map(|s| s.display().to_string()).unwrap_or_default(),
            dest.display(),
            fstype.unwrap_or("none")
        )
    })
}

/// Bind-mounts `source` on `dest` and applies the other flags by a remount, then propagation.
fn bind(field: &str, source: &Path, dest: &Path, o: &MountOptions) -> anyhow::Result<()> {
    let mut flags = MsFlags::MS_BIND;
    if o.recursive {
        flags |= MsFlags::MS_REC;
    }
    do_mount(field, Some(source), dest, None, flags, None)?;
    let extra = o.flags - MsFlags::MS_REMOUNT;
    if !extra.is_empty() {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra | locked_flags(dest);
        do_mount(field, None, dest, None, flags, None)?;
    }
    for p in &o.propagation {
        do_mount(field, None, dest, None, *p, None)?;
    }
    Ok(())
}

/// Mounts every entry of `mounts` under `rootfs`, in order. Runs in the init process's mount
/// namespace before `pivot_root`, so bind sources are host paths; relative bind sources are taken
/// from `bundle`.
///
/// Errors: the first mount that fails, named as `mounts[i]`.
pub fn mount_all(
    rootfs: &Path,
    bundle: &Path,
    mounts: &[Mount],
    cgroup: &CgroupMount,
) -> anyhow::Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let o = parse_options(m.options().as_deref().unwrap_or_default())
            .map_err(|e| anyhow::anyhow!("{field}.options: {e}"))?;
        let dest = secure_join(rootfs, m.destination())
            .map_err(|e| anyhow::anyhow!("{field}.destination: {e}"))?;
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
            create_target(&dest, meta.is_dir()).map_err(|e| {
                anyhow::anyhow!("{field}.destination: create {}: {e}", dest.display())
            })?;
            bind(&field, &source, &dest, &o)?;
            continue;
        }
        if typ == "cgroup" || typ == "cgroup2" {
            create_target(&dest, true).map_err(|e| {
                anyhow::anyhow!("{field}.destination: create {}: {e}", dest.display())
            })?;
            mount_cgroup(&field, &dest, &o, cgroup)?;
            continue;
        }
        create_target(&dest, true)
            .map_err(|e| anyhow::anyhow!("{field}.destination: create {}: {e}", dest.display()))?;
        let data = o.data.join(",");
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        let flags = o.flags;
        do_mount(
            &field,
            Some(&source),
            &dest,
            Some(typ),
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        )?;
        for p in &o.propagation {
            do_mount(&field, None, &dest, None, *p, None)?;
        }
    }
    Ok(())
}

fn mount_cgroup(
    field: &str,
    dest: &Path,
    o: &MountOptions,
    cgroup: &CgroupMount,
) -> anyhow::Result<()> {
    let ro = o.flags.contains(MsFlags::MS_RDONLY);
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match cgroup {
        CgroupMount::None => Ok(()),
        CgroupMount::V2 { dir, new_ns } => {
            if *new_ns {
                do_mount(
                    field,
                    Some(Path::new("cgroup2")),
                    dest,
                    Some("cgroup2"),
                    o.flags | base,
                    None,
                )
            } else {
                let bo = MountOptions {
                    flags: o.flags | base,
                    bind: true,
                    recursive: true,
                    ..Default::default()
                };
                bind(field, dir, dest, &bo)
            }
        }
        CgroupMount::V1 { hierarchies } => {
            do_mount(
                field,
                Some(Path::new("tmpfs")),
                dest,
                Some("tmpfs"),
                base,
                Some("mode=755"),
            )?;
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
                let target = dest.join(name);
                create_dir_all_0755(&target)
                    .map_err(|e| anyhow::anyhow!("{field}: create {}: {e}", target.display()))?;
                if dir.is_dir() {
                    bind(field, dir, &target, &bo)?;
                }
            }
            if ro {
                do_mount(
                    field,
                    None,
                    dest,
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
