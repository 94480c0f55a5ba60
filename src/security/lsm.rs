//! Linux Security Module labels: `process.apparmorProfile`, `process.selinuxLabel` and
//! `linux.mountLabel` (runtime-spec config.md "POSIX process", config-linux.md "Mount Label"), as
//! runc applies them (libcontainer/apparmor, go-selinux `label`, validate/validator.go `security()`).
//!
//! - Detection: [`apparmor_enabled_at`] and [`selinux_enabled_at`] take a root directory so that
//!   unit tests can run them on fixture trees; [`apparmor_enabled`] / [`selinux_enabled`] look at
//!   the host.
//! - Not enabled: a profile or a process label fails `create` (and `exec`) with an error naming the
//!   field ([`check_process`]); so does a mount label ([`check_mount_label`]). runc fails such a
//!   config too, at its first tmpfs mount with `EINVAL`; amphi says why, before anything is made.
//!   Nothing is ever reported as running with a label that was not applied.
//! - Enabled, Linux workload: the profile and the label take effect at the workload's `execve`:
//!   `exec <profile>` is written to `/proc/thread-self/attr/apparmor/exec` (or `attr/exec` on
//!   kernels without the per-LSM directory; aa_change_onexec(2)), the SELinux label to
//!   `attr/exec` (setexeccon(3)). For init's session keyring the label also goes to
//!   `attr/keycreate` while the keyring is joined.
//! - Enabled, Wasm workload: amphi's own process runs the guest and never execs, so the profile is
//!   entered at once with `changeprofile <profile>` on `attr/apparmor/current` (or `attr/current`;
//!   aa_change_profile(2)) and the SELinux label written to `attr/current` (setcon(3)), right before
//!   the guest runs. A label written by one thread confines only that thread: [`ProcessLabels`]
//!   refuses to apply it when the process has more than one thread (amphi's Wasm runtime runs on one
//!   thread, so this is a guard, not a limitation met in practice).
//! - The `/proc` files are opened through the verified procfs handle ([`super::procfs::open`])
//!   while `/proc` is still reachable (a Wasm executor hides it from the guest), and written as the
//!   last step before the workload; the descriptors are close-on-exec and are closed by the write.
//! - `mountLabel` (SELinux enabled): `context=<label>` on every file-system mount that is not a
//!   bind, `proc`, `sysfs`, `mqueue` or cgroup mount ([`label_mounts`]: `/dev`, `/dev/shm`,
//!   `/dev/pts`, other tmpfs), on the cgroup v1 tmpfs and on the tmpfs of masked directories
//!   ([`with_mount_label`]). An `mqueue` mount shares the IPC namespace's superblock, which the
//!   kernel labelled when it made the namespace, so, as runc does, its root gets the label as the
//!   `security.selinux` extended attribute instead ([`set_file_label`]).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use oci_spec::runtime::{Mount, Process};

use super::procfs;

/// selinuxfs's `f_type` (statfs(2), `SELINUX_MAGIC`).
pub const SELINUX_MAGIC: i64 = 0xf97c_ff8c;

/// The extended attribute that holds a file's SELinux context.
pub const SELINUX_XATTR: &str = "security.selinux";

/// Mount types that never get `context=` (runc mounts proc and sysfs without a label, labels mqueue
/// through its root's extended attribute, and binds carry the source's labels).
const UNLABELLED_TYPES: &[&str] = &["bind", "proc", "sysfs", "mqueue", "cgroup", "cgroup2"];

/// A label that cannot be applied: the config field (or `exec` flag) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct LsmError {
    /// `process.apparmorProfile`, `process.selinuxLabel` or `linux.mountLabel`.
    pub field: String,
    /// What is wrong, for the user.
    pub problem: String,
}

fn lsm_err(field: &str, problem: String) -> LsmError {
    LsmError {
        field: field.to_string(),
        problem,
    }
}

/// True when AppArmor is enabled on the host whose root directory is `root` (`/` for this host),
/// as runc's `apparmor.IsEnabled`: `<root>/sys/kernel/security/apparmor` exists and
/// `<root>/sys/module/apparmor/parameters/enabled` starts with `Y`.
///
/// Errors: none; anything unreadable means "not enabled".
pub fn apparmor_enabled_at(root: &Path) -> bool {
    if std::fs::metadata(root.join("sys/kernel/security/apparmor")).is_err() {
        return false;
    }
    std::fs::read(root.join("sys/module/apparmor/parameters/enabled"))
        .map(|b| b.first() == Some(&b'Y'))
        .unwrap_or(false)
}

/// [`apparmor_enabled_at`] for this host.
pub fn apparmor_enabled() -> bool {
    apparmor_enabled_at(Path::new("/"))
}

/// Reads `<root>/proc/<rel>`; for the host's own `/` through the verified procfs handle.
fn read_proc(root: &Path, rel: &str) -> Option<String> {
    if root == Path::new("/") {
        procfs::read_to_string(rel).ok()
    } else {
        std::fs::read_to_string(root.join("proc").join(rel)).ok()
    }
}

/// Undoes the octal escapes (`\040` for a space, ...) of a `/proc/self/mountinfo` path field.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(oct) = b.get(i + 1..i + 4) {
                if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                    let v = oct
                        .iter()
                        .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                    if let Ok(byte) = u8::try_from(v) {
                        out.push(byte);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points of every `selinuxfs` mount listed in `mountinfo` (proc(5) format: the file
/// system type is the first field after the ` - ` separator, the mount point the fifth field).
pub fn selinuxfs_mount_points(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            if tail.split_whitespace().next()? != "selinuxfs" {
                return None;
            }
            head.split_whitespace().nth(4).map(unescape_mountinfo)
        })
        .collect()
}

/// True when `path` is a writable selinuxfs mount: statfs(2) type `SELINUX_MAGIC` and no
/// `ST_RDONLY` (go-selinux `verifySELinuxfsMount`).
pub fn is_selinuxfs(path: &Path) -> bool {
    let Ok(fs) = nix::sys::statfs::statfs(path) else {
        return false;
    };
    // f_type is `long` on x86_64 but a narrower type on some architectures.
    #[allow(clippy::unnecessary_cast)]
    let t = fs.filesystem_type().0 as i64;
    if (t & 0xffff_ffff) != SELINUX_MAGIC {
        return false;
    }
    nix::sys::statvfs::statvfs(path)
        .map(|v| !v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false)
}

/// Where selinuxfs is mounted under `root`, as go-selinux's `findSELinuxfs`: `<root>/sys/fs/selinux`
/// when `verify` accepts it; otherwise, when `<root>/proc/filesystems` lists `selinuxfs`, the first
/// selinuxfs mount point of `<root>/proc/self/mountinfo` that `verify` accepts.
pub fn selinuxfs_at(root: &Path, verify: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    let default = root.join("sys/fs/selinux");
    if verify(&default) {
        return Some(default);
    }
    if !read_proc(root, "filesystems")?.contains("\tselinuxfs\n") {
        return None;
    }
    selinuxfs_mount_points(&read_proc(root, "self/mountinfo")?)
        .into_iter()
        .map(|m| root.join(m.trim_start_matches('/')))
        .find(|p| verify(p))
}

/// True when SELinux is enabled on the host whose root directory is `root`, as go-selinux's
/// `GetEnabled`: a selinuxfs mount is found ([`selinuxfs_at`], each candidate checked by `verify`,
/// which is [`is_selinuxfs`] for a real host) and the current process's context
/// (`<root>/proc/thread-self/attr/current`) is not `kernel` (SELinux built in but no policy loaded).
///
/// Errors: none; anything missing means "not enabled".
pub fn selinux_enabled_at(root: &Path, verify: &dyn Fn(&Path) -> bool) -> bool {
    if selinuxfs_at(root, verify).is_none() {
        return false;
    }
    let current = read_proc(root, "thread-self/attr/current").unwrap_or_default();
    current.trim_end_matches(['\0', '\n']) != "kernel"
}

/// [`selinux_enabled_at`] for this host (`/`, selinuxfs checked with [`is_selinuxfs`]).
pub fn selinux_enabled() -> bool {
    selinux_enabled_at(Path::new("/"), &is_selinuxfs)
}

/// The text aa_change_onexec(2) writes: `exec <profile>`.
pub fn apparmor_exec_value(profile: &str) -> String {
    format!("exec {profile}")
}

/// The text aa_change_profile(2) writes: `changeprofile <profile>`.
pub fn apparmor_changeprofile_value(profile: &str) -> String {
    format!("changeprofile {profile}")
}

/// The mount option that applies SELinux context `label` to a whole new mount: `context=<label>`.
///
/// amphi makes file systems with fsconfig(2), which passes the value to the LSM as one parameter,
/// so the label (which has commas, as in `s0:c1,c2`) is not quoted; go-selinux's
/// `FormatMountLabel` quotes it (`context="<label>"`) because mount(2) data is split on commas and
/// the kernel strips the quotes there, but an fsconfig value keeps them and would not be a context.
pub fn mount_label_option(label: &str) -> String {
    format!("context={label}")
}

fn has_context_option(options: &[String]) -> bool {
    options.iter().any(|o| {
        ["context=", "fscontext=", "defcontext=", "rootcontext="]
            .iter()
            .any(|p| o.starts_with(p))
    })
}

/// `mounts` with [`mount_label_option`] added to the options of each mount that takes the mount
/// label: every mount that is not a bind (type `bind`, or a `bind`/`rbind` option), `proc`,
/// `sysfs`, `mqueue` or cgroup mount, is not a `remount`, and has no SELinux context option of its
/// own. `label` empty: `mounts` unchanged.
pub fn label_mounts(mounts: &[Mount], label: &str) -> Vec<Mount> {
    mounts
        .iter()
        .map(|m| {
            let opts = m.options().clone().unwrap_or_default();
            let typ = m.typ().as_deref().unwrap_or("");
            let skip = label.is_empty()
                || UNLABELLED_TYPES.contains(&typ)
                || opts
                    .iter()
                    .any(|o| o == "bind" || o == "rbind" || o == "remount")
                || has_context_option(&opts);
            if skip {
                return m.clone();
            }
            let mut m = m.clone();
            let mut opts = opts;
            opts.push(mount_label_option(label));
            m.set_options(Some(opts));
            m
        })
        .collect()
}

/// The mount label of the container being built, set once by its init ([`set_mount_label`]).
static MOUNT_LABEL: OnceLock<String> = OnceLock::new();

/// Records `linux.mountLabel` for the mounts that the runtime makes on its own (the cgroup v1 tmpfs,
/// the tmpfs of masked directories): see [`with_mount_label`]. Called once, by a container's init
/// (a process of its own); an empty label is not recorded.
pub fn set_mount_label(label: &str) {
    if !label.is_empty() {
        let _ = MOUNT_LABEL.set(label.to_string());
    }
}

/// `data` (fsconfig words of a new tmpfs) with [`mount_label_option`] added when
/// [`set_mount_label`] recorded a label in this process.
pub fn with_mount_label(mut data: Vec<String>) -> Vec<String> {
    if let Some(l) = MOUNT_LABEL.get() {
        data.push(mount_label_option(l));
    }
    data
}

/// Sets the SELinux context of the open file `fd` to `label` (fsetxattr(2) of
/// [`SELINUX_XATTR`]; go-selinux `SetFileLabel`), for the root of an `mqueue` mount.
///
/// Errors: the errno of fsetxattr.
pub fn set_file_label(fd: &impl AsRawFd, label: &str) -> std::io::Result<()> {
    let name = std::ffi::CString::new(SELINUX_XATTR)
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `name` is a valid C string and `label` a valid buffer of the given length; both
    // outlive the call, which only reads them.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            label.as_ptr().cast(),
            label.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Labels the root of each `mqueue` mount of `mounts` (already mounted inside `root`) with `label`
/// through [`set_file_label`], as runc does: the IPC namespace's mqueue superblock exists before
/// the mount, so a `context=` option could not apply. `label` empty: nothing to do.
///
/// Errors: a destination cannot be opened inside the root, or the attribute cannot be set; named
/// `mounts[i]` and `linux.mountLabel`.
pub fn label_mqueue_mounts(
    root: &crate::rootfs::resolve::Root,
    mounts: &[Mount],
    label: &str,
) -> anyhow::Result<()> {
    if label.is_empty() {
        return Ok(());
    }
    for (i, m) in mounts.iter().enumerate() {
        let bind = m
            .options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind");
        if m.typ().as_deref() != Some("mqueue") || bind {
            continue;
        }
        let dest = m.destination();
        let fd = root
            .open_at(dest, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .map_err(|e| anyhow::anyhow!("mounts[{i}]: open {}: {e}", dest.display()))?;
        set_file_label(&fd, label).map_err(|e| {
            anyhow::anyhow!(
                "mounts[{i}]: linux.mountLabel: label {} as {label:?}: {e}",
                dest.display()
            )
        })?;
    }
    Ok(())
}

fn check_text(field: &str, value: &str) -> Result<(), LsmError> {
    if value.contains(['\0', '\n']) {
        return Err(lsm_err(
            field,
            format!("{value:?} contains a NUL byte or a newline"),
        ));
    }
    Ok(())
}

/// Checks `process.apparmorProfile` against whether AppArmor is `enabled` (`field` names it in
/// the error: the config field, or `--apparmor`).
///
/// Errors: a profile is set but AppArmor is not enabled (runc: "apparmor failed to apply
/// profile"), or the name has a NUL byte or a newline.
pub fn check_apparmor(field: &str, profile: &str, enabled: bool) -> Result<(), LsmError> {
    if profile.is_empty() {
        return Ok(());
    }
    check_text(field, profile)?;
    if !enabled {
        return Err(lsm_err(
            field,
            format!(
                "apparmor failed to apply profile {profile:?}: AppArmor is not enabled on this host \
                 (/sys/kernel/security/apparmor is missing or /sys/module/apparmor/parameters/enabled \
                 is not Y); refusing to run without the confinement asked for"
            ),
        ));
    }
    Ok(())
}

/// Checks `process.selinuxLabel` against whether SELinux is `enabled` (`field` names it: the
/// config field, or `--process-label`).
///
/// Errors: a label is set but SELinux is not enabled (runc's "selinux label is specified in config,
/// but selinux is disabled or not supported"), or it has a NUL byte or a newline.
pub fn check_selinux(field: &str, label: &str, enabled: bool) -> Result<(), LsmError> {
    if label.is_empty() {
        return Ok(());
    }
    check_text(field, label)?;
    if !enabled {
        return Err(lsm_err(
            field,
            format!(
                "selinux label {label:?} is specified in config, but selinux is disabled or not \
                 supported on this host (no writable selinuxfs is mounted)"
            ),
        ));
    }
    Ok(())
}

/// Checks a process's AppArmor profile and SELinux label against whether each LSM is enabled.
///
/// Errors: those of [`check_apparmor`] and [`check_selinux`], named `process.apparmorProfile` and
/// `process.selinuxLabel`.
pub fn check_process_with(
    process: &Process,
    apparmor: bool,
    selinux: bool,
) -> Result<(), LsmError> {
    check_apparmor(
        "process.apparmorProfile",
        process.apparmor_profile().as_deref().unwrap_or(""),
        apparmor,
    )?;
    check_selinux(
        "process.selinuxLabel",
        process.selinux_label().as_deref().unwrap_or(""),
        selinux,
    )
}

/// [`check_process_with`] on this host (each LSM is detected only when its field is set).
///
/// Errors: as [`check_process_with`].
pub fn check_process(process: &Process) -> Result<(), LsmError> {
    let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let apparmor = has(process.apparmor_profile()) && apparmor_enabled();
    let selinux = has(process.selinux_label()) && selinux_enabled();
    check_process_with(process, apparmor, selinux)
}

/// Checks `linux.mountLabel` against whether SELinux is `enabled`.
///
/// Errors: a label is set but SELinux is not enabled (a `context=` option would make the first
/// tmpfs mount fail with `EINVAL`, as it does with runc), or it has a NUL byte or a newline.
pub fn check_mount_label_with(label: &str, enabled: bool) -> Result<(), LsmError> {
    const FIELD: &str = "linux.mountLabel";
    if label.is_empty() {
        return Ok(());
    }
    check_text(FIELD, label)?;
    if !enabled {
        return Err(lsm_err(
            FIELD,
            format!(
                "mount label {label:?} is specified in config, but selinux is disabled or not \
                 supported on this host, so it cannot be applied"
            ),
        ));
    }
    Ok(())
}

/// [`check_mount_label_with`] on this host.
///
/// Errors: as [`check_mount_label_with`].
pub fn check_mount_label(label: &str) -> Result<(), LsmError> {
    check_mount_label_with(label, !label.is_empty() && selinux_enabled())
}

/// Writes `label` to `/proc/thread-self/attr/keycreate` (go-selinux `SetKeyLabel`), so that a
/// keyring created next (init's session keyring) gets the container's context; an empty label
/// resets it. A kernel without the file is tolerated, as go-selinux does.
///
/// Errors: the write fails (e.g. the policy refuses the context), named `process.selinuxLabel`.
pub fn set_key_label(label: &str) -> anyhow::Result<()> {
    match procfs::write("thread-self/attr/keycreate", label.as_bytes()) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "process.selinuxLabel: set the key creation label {label:?}: {e}"
        )),
        Ok(()) => Ok(()),
    }
}

/// When the labels of [`ProcessLabels`] take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// At the next execve(2) (a Linux workload): `attr/exec`.
    OnExec,
    /// At once, for the calling thread (a Wasm workload, which runs in amphi's own process):
    /// `attr/current`.
    Now,
}

/// One pending write to a `/proc/thread-self/attr` file.
#[derive(Debug)]
struct Pending {
    field: &'static str,
    what: &'static str,
    path: String,
    file: File,
    value: String,
}

/// The AppArmor profile and SELinux label of a process, with their `/proc/thread-self/attr` files
/// already open (so that `/proc` need not be reachable, and no open(2) needs to be allowed by a
/// seccomp filter, when they are applied). Made by [`ProcessLabels::open`] in the process that will
/// run the workload; [`ProcessLabels::apply`] is the last step before the workload.
#[derive(Debug, Default)]
pub struct ProcessLabels {
    writes: Vec<Pending>,
    /// `/proc/self/status`, for the thread count check of [`Transition::Now`].
    status: Option<File>,
}

fn open_attr(rel: &str) -> std::io::Result<File> {
    procfs::open(rel, libc::O_WRONLY).map(File::from)
}

impl ProcessLabels {
    /// Opens the attribute files for `process`'s `apparmorProfile` and `selinuxLabel` (none when
    /// both are empty). AppArmor uses `attr/apparmor/<exec|current>` and falls back to
    /// `attr/<exec|current>` where the kernel has no per-LSM directory (as runc). Must run in the
    /// thread that will run the workload, with `/proc` the container's procfs.
    ///
    /// Errors: an attribute file cannot be opened through the verified procfs handle, named with
    /// the field and the file.
    pub fn open(process: &Process, when: Transition) -> anyhow::Result<ProcessLabels> {
        let mut out = ProcessLabels::default();
        let attr = match when {
            Transition::OnExec => "exec",
            Transition::Now => "current",
        };
        if let Some(profile) = process
            .apparmor_profile()
            .as_deref()
            .filter(|p| !p.is_empty())
        {
            let own = format!("thread-self/attr/apparmor/{attr}");
            let (path, file) = match open_attr(&own) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let old = format!("thread-self/attr/{attr}");
                    let f = open_attr(&old);
                    (old, f)
                }
                r => (own, r),
            };
            let file = file.map_err(|e| {
                anyhow::anyhow!(
                    "process.apparmorProfile: apparmor failed to apply profile {profile:?}: open /proc/{path}: {e}"
                )
            })?;
            let value = match when {
                Transition::OnExec => apparmor_exec_value(profile),
                Transition::Now => apparmor_changeprofile_value(profile),
            };
            out.writes.push(Pending {
                field: "process.apparmorProfile",
                what: "apparmor failed to apply profile",
                path,
                file,
                value,
            });
        }
        if let Some(label) = process.selinux_label().as_deref().filter(|l| !l.is_empty()) {
            let path = format!("thread-self/attr/{attr}");
            let file = open_attr(&path).map_err(|e| {
                anyhow::anyhow!(
                    "process.selinuxLabel: can't set process label {label:?}: open /proc/{path}: {e}"
                )
            })?;
            out.writes.push(Pending {
                field: "process.selinuxLabel",
                what: "can't set process label",
                path,
                file,
                value: label.to_string(),
            });
        }
        if when == Transition::Now && !out.writes.is_empty() {
            let status = procfs::open("self/status", libc::O_RDONLY)
                .map_err(|e| anyhow::anyhow!("open /proc/self/status: {e}"))?;
            out.status = Some(File::from(status));
        }
        Ok(out)
    }

    /// True when there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Writes each label (AppArmor first) in one write(2) and closes the files.
    ///
    /// Errors: a write fails or is short (a profile or context the kernel does not know, a policy
    /// that forbids the transition), named with the field; for [`Transition::Now`], the process
    /// has more than one thread (the label would confine only the calling one).
    pub fn apply(self) -> anyhow::Result<()> {
        if let Some(mut status) = self.status {
            let mut text = String::new();
            status
                .read_to_string(&mut text)
                .map_err(|e| anyhow::anyhow!("read /proc/self/status: {e}"))?;
            let threads = text
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if threads != 1 {
                let field = self.writes.first().map(|w| w.field).unwrap_or("process");
                anyhow::bail!(
                    "{field}: the runtime has {threads} threads; a label applied now would confine only one of them; refused"
                );
            }
        }
        for mut w in self.writes {
            match w.file.write(w.value.as_bytes()) {
                Ok(n) if n == w.value.len() => {}
                Ok(n) => anyhow::bail!(
                    "{}: {}: write /proc/{}: short write ({n} of {} bytes)",
                    w.field,
                    w.what,
                    w.path,
                    w.value.len()
                ),
                Err(e) => anyhow::bail!("{}: {}: write /proc/{}: {e}", w.field, w.what, w.path),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn apparmor_detection_on_fixtures() {
        let t = tree();
        let r = t.path();
        assert!(!apparmor_enabled_at(r), "empty tree");
        put(r, "sys/module/apparmor/parameters/enabled", "Y\n");
        assert!(!apparmor_enabled_at(r), "no securityfs directory");
        fs::create_dir_all(r.join("sys/kernel/security/apparmor")).unwrap();
        assert!(apparmor_enabled_at(r));
        put(r, "sys/module/apparmor/parameters/enabled", "N\n");
        assert!(!apparmor_enabled_at(r), "parameter N");
        put(r, "sys/module/apparmor/parameters/enabled", "");
        assert!(!apparmor_enabled_at(r), "empty parameter");
        put(r, "sys/module/apparmor/parameters/enabled", "Y");
        assert!(apparmor_enabled_at(r), "Y without a newline");
    }

    /// A fixture verifier: a selinuxfs mount point is a directory with a readable `enforce`.
    fn has_enforce(p: &Path) -> bool {
        fs::read(p.join("enforce")).is_ok()
    }

    #[test]
    fn selinux_detection_default_mount_point() {
        let t = tree();
        let r = t.path();
        assert!(!selinux_enabled_at(r, &has_enforce), "empty tree");
        put(r, "sys/fs/selinux/enforce", "1");
        assert!(selinux_enabled_at(r, &has_enforce));
        assert_eq!(
            selinuxfs_at(r, &has_enforce),
            Some(r.join("sys/fs/selinux"))
        );
        // SELinux in the kernel but no policy loaded: the context is "kernel".
        put(r, "proc/thread-self/attr/current", "kernel\0");
        assert!(!selinux_enabled_at(r, &has_enforce));
        put(
            r,
            "proc/thread-self/attr/current",
            "system_u:system_r:unconfined_t:s0\0",
        );
        assert!(selinux_enabled_at(r, &has_enforce));
    }

    #[test]
    fn selinux_detection_through_mountinfo() {
        let t = tree();
        let r = t.path();
        put(r, "selinux mnt/enforce", "0");
        let mi = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                  35 22 0:33 / /selinux\\040mnt rw,relatime shared:9 - selinuxfs selinuxfs rw\n";
        put(r, "proc/self/mountinfo", mi);
        // /proc/filesystems must list selinuxfs before mountinfo is searched (go-selinux).
        assert!(!selinux_enabled_at(r, &has_enforce));
        put(r, "proc/filesystems", "nodev\tproc\nnodev\tselinuxfs\n");
        assert!(selinux_enabled_at(r, &has_enforce));
        assert_eq!(selinuxfs_at(r, &has_enforce), Some(r.join("selinux mnt")));
        // A listed mount point that the verifier refuses does not count.
        fs::remove_file(r.join("selinux mnt/enforce")).unwrap();
        assert!(!selinux_enabled_at(r, &has_enforce));
    }

    #[test]
    fn mountinfo_parsing() {
        let mi = "1 0 0:1 / / rw - ext4 /dev/sda rw\n\
                  2 1 0:2 / /a\\040b\\011c rw master:1 - selinuxfs none rw\n\
                  3 1 0:3 / /sys/fs/selinux rw - selinuxfs selinuxfs rw\n\
                  garbage line\n";
        assert_eq!(
            selinuxfs_mount_points(mi),
            vec!["/a b\tc".to_string(), "/sys/fs/selinux".to_string()]
        );
    }

    #[test]
    fn this_host_detection_is_statfs_based() {
        // A plain directory with an `enforce` file is not selinuxfs for the real verifier.
        let t = tree();
        put(t.path(), "enforce", "1");
        assert!(!is_selinuxfs(t.path()));
        assert!(!is_selinuxfs(Path::new("/proc")));
        assert!(!is_selinuxfs(Path::new("/nonexistent/amphi")));
    }

    #[test]
    fn value_formatting() {
        assert_eq!(apparmor_exec_value("docker-default"), "exec docker-default");
        assert_eq!(
            apparmor_changeprofile_value("amphi//wasm"),
            "changeprofile amphi//wasm"
        );
        let l = "system_u:object_r:container_file_t:s0:c1,c2";
        assert_eq!(
            mount_label_option(l),
            "context=system_u:object_r:container_file_t:s0:c1,c2"
        );
        assert_eq!(with_mount_label(vec!["mode=755".into()]).len(), 1);
    }

    #[test]
    fn mounts_that_take_the_label() {
        let mounts: Vec<Mount> = serde_json::from_value(serde_json::json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "mode=755"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["size=64k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs"},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"},
            {"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts"},
            {"destination": "/data", "source": "/srv", "options": ["rbind"]},
            {"destination": "/own", "type": "tmpfs", "options": ["context=user_u:object_r:x_t:s0"]},
            {"destination": "/again", "type": "tmpfs", "options": ["remount"]}
        ]))
        .unwrap();
        let l = "system_u:object_r:container_file_t:s0:c1,c2";
        let out = label_mounts(&mounts, l);
        let ctx = mount_label_option(l);
        let labelled: Vec<bool> = out
            .iter()
            .map(|m| m.options().iter().flatten().any(|o| *o == ctx))
            .collect();
        assert_eq!(
            labelled,
            vec![false, true, true, true, false, false, false, false, false, false, false]
        );
        // The mount's own options are kept, the label comes last.
        assert_eq!(
            out[1].options().clone().unwrap(),
            vec!["nosuid".to_string(), "mode=755".into(), ctx.clone()]
        );
        // Labelled options still parse: the context is one fsconfig word, key `context`.
        let o = crate::rootfs::mounts::parse_options(out[3].options().as_deref().unwrap()).unwrap();
        assert_eq!(o.data, vec!["size=64k".to_string(), ctx]);
        // No label: nothing changes.
        assert_eq!(label_mounts(&mounts, ""), mounts);
    }

    fn process(json: serde_json::Value) -> Process {
        let mut v = serde_json::json!({"cwd": "/", "args": ["true"], "user": {"uid": 0, "gid": 0}});
        for (k, x) in json.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn checks_name_the_field() {
        let p = process(serde_json::json!({"apparmorProfile": "docker-default"}));
        let e = check_process_with(&p, false, false).unwrap_err();
        assert_eq!(e.field, "process.apparmorProfile");
        assert!(
            e.problem.contains("apparmor failed to apply profile"),
            "{e}"
        );
        assert!(e.problem.contains("not enabled"), "{e}");
        check_process_with(&p, true, false).unwrap();

        let p = process(serde_json::json!({"selinuxLabel": "system_u:system_r:container_t:s0"}));
        let e = check_process_with(&p, true, false).unwrap_err();
        assert_eq!(e.field, "process.selinuxLabel");
        assert!(
            e.problem.contains("selinux is disabled or not supported"),
            "{e}"
        );
        check_process_with(&p, false, true).unwrap();

        let p = process(serde_json::json!({"apparmorProfile": "", "selinuxLabel": ""}));
        check_process_with(&p, false, false).unwrap();
        let p = process(serde_json::json!({"apparmorProfile": "a\nchangeprofile b"}));
        let e = check_process_with(&p, true, true).unwrap_err();
        assert!(e.problem.contains("newline"), "{e}");

        let e = check_mount_label_with("system_u:object_r:x_t:s0", false).unwrap_err();
        assert_eq!(e.field, "linux.mountLabel");
        check_mount_label_with("system_u:object_r:x_t:s0", true).unwrap();
        check_mount_label_with("", false).unwrap();
        let e = check_apparmor("--apparmor", "p", false).unwrap_err();
        assert_eq!(e.to_string().split(':').next(), Some("--apparmor"));
    }

    #[test]
    fn apply_reaches_the_kernel_interface() {
        // A profile and a context that no host has: the kernel refuses the write (EINVAL without
        // the LSM, ENOENT/EINVAL with it), so the test thread's confinement never changes.
        for (json, field) in [
            (
                serde_json::json!({"apparmorProfile": "amphi-test-no-such-profile"}),
                "process.apparmorProfile: apparmor failed to apply profile",
            ),
            (
                serde_json::json!({"selinuxLabel": "amphi_u:amphi_r:no_such_t:s0"}),
                "process.selinuxLabel: can't set process label",
            ),
        ] {
            let p = process(json);
            let labels = ProcessLabels::open(&p, Transition::OnExec).unwrap();
            assert!(!labels.is_empty());
            let e = labels.apply().unwrap_err().to_string();
            assert!(e.starts_with(field), "{e}");
            assert!(e.contains("/proc/thread-self/attr/"), "{e}");
        }
        let none = ProcessLabels::open(&process(serde_json::json!({})), Transition::Now).unwrap();
        assert!(none.is_empty());
        none.apply().unwrap();
    }

    #[test]
    fn apply_now_refuses_a_threaded_process() {
        // The test harness runs tests on several threads; a label written now would confine only
        // one of them.
        let p = process(serde_json::json!({"apparmorProfile": "amphi-test-no-such-profile"}));
        let labels = ProcessLabels::open(&p, Transition::Now).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let parked = std::thread::spawn(move || rx.recv());
        let e = labels.apply().unwrap_err().to_string();
        drop(tx);
        let _ = parked.join();
        assert!(e.contains("threads"), "{e}");
    }
}
