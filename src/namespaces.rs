//! The namespaces of a container (config-linux.md "Namespaces"): which are new, which are joined.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{open, OFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

/// The order in which existing namespaces are joined: user first (it decides the privileges for the
/// others), mount last (after it, host paths may no longer resolve; all fds are opened up front anyway).
const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
];

/// The clone flag of a namespace type.
pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME is not in nix's CloneFlags on every version.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The namespaces of one container, resolved on the host before any process is forked: new ones as
/// clone flags, joined ones as open file descriptors (so a bad `path` fails `create` early).
#[derive(Debug)]
pub struct NamespacePlan {
    /// Namespaces to create, other than the user namespace.
    pub new: CloneFlags,
    /// True when a new user namespace is created.
    pub new_user: bool,
    /// Namespaces to join, in [`JOIN_ORDER`].
    pub join: Vec<(LinuxNamespaceType, OwnedFd)>,
}

/// Refuses a mount namespace to join (`fd`, `linux.namespaces[i].path`) that is amphi's own or the
/// one of pid 1: the rootfs set up there (pivot_root) would replace the root of every process of the
/// host, not the container's.
fn refuse_own_mount_ns(fd: &OwnedFd, i: usize, path: &std::path::Path) -> anyhow::Result<()> {
    let target = nix::sys::stat::fstat(fd)
        .map_err(|e| anyhow::anyhow!("linux.namespaces[{i}].path: {}: {e}", path.display()))?;
    for own in ["/proc/self/ns/mnt", "/proc/1/ns/mnt"] {
        if let Ok(st) = nix::sys::stat::stat(own) {
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino) {
                anyhow::bail!(
                    "linux.namespaces[{i}].path: {} is the host's mount namespace ({own}): a \
                     container's rootfs set up there would become the root of every process in it",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

impl NamespacePlan {
    /// Builds the plan from `linux.namespaces`.
    ///
    /// Errors: a `path` that cannot be opened, named as `linux.namespaces[i].path`.
    pub fn from_spec(namespaces: &[LinuxNamespace]) -> anyhow::Result<NamespacePlan> {
        let mut plan = NamespacePlan {
            new: CloneFlags::empty(),
            new_user: false,
            join: Vec::new(),
        };
        for t in JOIN_ORDER {
            let Some((i, ns)) = namespaces.iter().enumerate().find(|(_, n)| n.typ() == t) else {
                continue;
            };
            match ns.path() {
                Some(path) => {
                    let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "linux.namespaces[{i}].path: cannot open {}: {e}",
                                path.display()
                            )
                        })?;
                    // A file that is not a namespace of this type would only fail at setns(2)
                    // inside the intermediate process, without naming the field: check it here.
                    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd.
                    let nstype = unsafe { libc::ioctl(fd.as_raw_fd(), libc::NS_GET_NSTYPE) };
                    if nstype < 0 {
                        anyhow::bail!(
                            "linux.namespaces[{i}].path: {} is not a namespace file: {}",
                            path.display(),
                            std::io::Error::last_os_error()
                        );
                    }
                    if nstype != clone_flag(t).bits() {
                        anyhow::bail!(
                            "linux.namespaces[{i}].path: {} is not a {t} namespace",
                            path.display()
                        );
                    }
                    if t == LinuxNamespaceType::Mount {
                        refuse_own_mount_ns(&fd, i, path)?;
                    }
                    plan.join.push((t, fd));
                }
                None if t == LinuxNamespaceType::User => plan.new_user = true,
                None => plan.new |= clone_flag(t),
            }
        }
        Ok(plan)
    }

    /// True when the container gets a new namespace of type `t`.
    pub fn is_new(&self, t: LinuxNamespaceType) -> bool {
        if t == LinuxNamespaceType::User {
            self.new_user
        } else {
            self.new.contains(clone_flag(t))
        }
    }

    /// True when the container has a namespace of type `t` of its own, new or joined by path.
    pub fn is_private(&self, t: LinuxNamespaceType) -> bool {
        self.is_new(t) || self.join.iter().any(|(j, _)| *j == t)
    }

    /// True when the container joins an existing user namespace.
    pub fn joins_user(&self) -> bool {
        self.join
            .iter()
            .any(|(t, _)| *t == LinuxNamespaceType::User)
    }

    /// Joins the namespaces of `types` in order (`setns(2)`).
    ///
    /// Errors: the namespace cannot be joined, naming its type.
    pub fn join_only(&self, types: &[LinuxNamespaceType]) -> anyhow::Result<()> {
        for (t, fd) in &self.join {
            if types.contains(t) {
                nix::sched::setns(fd.as_fd(), clone_flag(*t))
                    .map_err(|e| anyhow::anyhow!("join {t} namespace: {e}"))?;
            }
        }
        Ok(())
    }
}
