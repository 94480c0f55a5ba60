//! Rootless operation: amphi run by an unprivileged user (runc's "rootless containers", runc(8)
//! `--rootless`; user_namespaces(7)).
//!
//! What changes when the caller is not root in the initial user namespace:
//! - the default state root is `$XDG_RUNTIME_DIR/amphi` ([`default_state_root`]);
//! - the Wasm AOT cache defaults to `$XDG_CACHE_HOME/amphi/wasm-cache` ([`default_wasm_cache_dir`]);
//! - id maps are written by the caller itself or by `newuidmap(1)`/`newgidmap(1)` (in
//!   [`crate::user_ns`]);
//! - cgroups are used only when delegated (writable); otherwise the container runs without one, as
//!   runc does, unless the config asks for limits or names a cgroup ([`cgroup_plan`]).

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

/// True when this process runs in a user namespace other than the initial one: its `uid_map` is not
/// the identity map of all ids (`0 0 4294967295`).
pub fn running_in_user_ns() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(m) => {
            let fields: Vec<&str> = m.split_whitespace().collect();
            fields != ["0", "0", "4294967295"]
        }
        Err(_) => false,
    }
}

/// The effective rootless mode for `--rootless[=VALUE]` (runc(8)): `true` and `false` force it;
/// `auto` or no flag mean rootless when the effective uid is not 0 or amphi runs inside a user
/// namespace.
pub fn is_rootless(flag: Option<&str>) -> bool {
    match flag {
        Some("true") => true,
        Some("false") => false,
        _ => !nix::unistd::geteuid().is_root() || running_in_user_ns(),
    }
}

/// Whether `$XDG_RUNTIME_DIR` is honoured for the state root, as runc's `shouldHonorXDGRuntimeDir`:
/// set to an absolute path, and the caller is not root (real root keeps `/run/amphi` even when
/// `XDG_RUNTIME_DIR=/run/user/0`); root inside a user namespace honours it unless `USER=root`.
fn honor_xdg_runtime_dir() -> bool {
    // A relative value is invalid and ignored (XDG Base Directory spec): it would put the state
    // under whatever the current directory is, where later commands would not find it.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none_or(|v| !Path::new(&v).is_absolute()) {
        return false;
    }
    if !nix::unistd::geteuid().is_root() {
        return true;
    }
    if !running_in_user_ns() {
        return false;
    }
    std::env::var("USER").map(|u| u != "root").unwrap_or(true)
}

/// The default `--root`: `/run/amphi` for root; for other users `$XDG_RUNTIME_DIR/amphi` (runc:
/// `$XDG_RUNTIME_DIR/runc`), else `/run/user/<euid>/amphi` when that runtime dir exists and belongs
/// to the caller (where pam_systemd puts it; runc has no such fallback and tries `/run/runc`).
/// The directory itself is created later, mode 0700, by the first `create`.
///
/// Errors: a non-root caller without `XDG_RUNTIME_DIR` and without its own `/run/user/<euid>`; the
/// message names both and `--root`.
pub fn default_state_root() -> anyhow::Result<PathBuf> {
    if honor_xdg_runtime_dir() {
        if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
            return Ok(Path::new(&x).join("amphi"));
        }
    }
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        return Ok(PathBuf::from(crate::cli::DEFAULT_ROOT));
    }
    let run_user = PathBuf::from(format!("/run/user/{euid}"));
    if let Ok(m) = std::fs::metadata(&run_user) {
        use std::os::unix::fs::MetadataExt;
        if m.is_dir() && m.uid() == euid.as_raw() {
            return Ok(run_user.join("amphi"));
        }
    }
    anyhow::bail!(
        "--root: no state directory for uid {euid}: XDG_RUNTIME_DIR is not set (or not an absolute \
         path) and {} does not exist (or belongs to another user); set XDG_RUNTIME_DIR or pass --root",
        run_user.display()
    )
}

/// Creates the default state root of a non-root caller (mode 0700 with the sticky bit, as runc does
/// for `$XDG_RUNTIME_DIR/runc`: the XDG Base Directory spec lets the system prune files in the
/// runtime dir that lack it). Root's `/run/amphi` is left to `create`.
///
/// Errors: the directory cannot be created or its mode set; the message names `--root`.
pub fn prepare_default_root(root: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if nix::unistd::geteuid().is_root() && !running_in_user_ns() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| anyhow::anyhow!("--root {}: create: {e}", root.display()))?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o1700))
        .map_err(|e| anyhow::anyhow!("--root {}: chmod 1700: {e}", root.display()))
}

/// The default Wasm AOT cache directory: `/var/lib/amphi/wasm-cache` for root in the initial user
/// namespace; otherwise `$XDG_CACHE_HOME/amphi/wasm-cache` (XDG Base Directory spec), falling back
/// to `$HOME/.cache/amphi/wasm-cache` and, without `HOME`, to the home directory of the passwd
/// entry. `None` when no home directory can be found (the cache is then not used).
pub fn default_wasm_cache_dir() -> Option<PathBuf> {
    if nix::unistd::geteuid().is_root() && !running_in_user_ns() {
        return Some(PathBuf::from(amphi_executors::wasm::cache::DEFAULT_DIR));
    }
    let abs = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").and_then(abs) {
        return Some(x.join("amphi/wasm-cache"));
    }
    let home = std::env::var_os("HOME").and_then(abs).or_else(|| {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.dir)
    })?;
    Some(home.join(".cache/amphi/wasm-cache"))
}

/// What a rootless `create` does about cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupPlan {
    /// The cgroup's directories (or their nearest existing ancestors) are writable: use it.
    Delegated,
    /// Nothing was delegated and nothing asks for a cgroup: run without one.
    None,
}

/// True when `dir`, or its nearest existing ancestor, is writable by the caller (access(2) W_OK).
fn writable_or_creatable(dir: &Path) -> bool {
    let mut d = Some(dir);
    while let Some(p) = d {
        if p.exists() {
            return nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok()
                && (p == dir || nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok());
        }
        d = p.parent();
    }
    false
}

/// The `linux.resources` fields that need a cgroup (devices excepted: in rootless mode the device
/// controller is not expected to work and is ignored, as in runc).
fn limits_requested(r: &LinuxResources) -> Vec<&'static str> {
    let mut out = Vec::new();
    if r.memory().is_some() {
        out.push("memory");
    }
    if r.cpu().is_some() {
        out.push("cpu");
    }
    if r.pids().is_some() {
        out.push("pids");
    }
    if r.block_io().is_some() {
        out.push("blockIO");
    }
    if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        out.push("hugepageLimits");
    }
    if r.network().is_some() {
        out.push("network");
    }
    if r.rdma().as_ref().is_some_and(|h| !h.is_empty()) {
        out.push("rdma");
    }
    if r.unified().as_ref().is_some_and(|h| !h.is_empty()) {
        out.push("unified");
    }
    out
}

/// Decides, for a rootless `create`, whether to use the cgroup whose host directories are `dirs`
/// (runc's rootless cgroup manager): a delegated cgroup (every directory, or its nearest existing
/// ancestor, writable by the caller) is used; otherwise the container runs without a cgroup.
///
/// Errors (runc fails in the same cases): no delegated cgroup but `linux.cgroupsPath` is set
/// (`explicit_path`), or `linux.resources` asks for limits ("cannot set memory limit: ...").
pub fn cgroup_plan(
    cgroup_path: &str,
    dirs: &[PathBuf],
    explicit_path: bool,
    resources: Option<&LinuxResources>,
) -> anyhow::Result<CgroupPlan> {
    if !dirs.is_empty() && dirs.iter().all(|d| writable_or_creatable(d)) {
        return Ok(CgroupPlan::Delegated);
    }
    let euid = nix::unistd::geteuid();
    if explicit_path {
        let not_writable: Vec<String> = dirs
            .iter()
            .filter(|d| !writable_or_creatable(d))
            .map(|d| d.display().to_string())
            .collect();
        anyhow::bail!(
            "linux.cgroupsPath: cgroup {cgroup_path} was not delegated to uid {euid} (not writable: {}); \
             rootless containers use a cgroup only when its directories are writable",
            not_writable.join(", ")
        );
    }
    if let Some(limits) = resources.map(limits_requested).filter(|l| !l.is_empty()) {
        anyhow::bail!(
            "linux.resources: cannot set {} limit: rootless container could not join or create cgroup \
             {cgroup_path} (no cgroup delegated to uid {euid})",
            limits.join(", ")
        );
    }
    // runc is silent here too: a rootless container without a cgroup is the common case.
    log::debug!(
        "rootless: no cgroup delegated to uid {euid}; the container runs without its own cgroup"
    );
    Ok(CgroupPlan::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_named() {
        let r: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":1048576},"pids":{"limit":5},"devices":[{"allow":false,"access":"rwm"}]}"#,
        )
        .unwrap();
        assert_eq!(limits_requested(&r), vec!["memory", "pids"]);
        let only_devices: LinuxResources =
            serde_json::from_str(r#"{"devices":[{"allow":false,"access":"rwm"}]}"#).unwrap();
        assert!(limits_requested(&only_devices).is_empty());
    }

    #[test]
    fn flag_values() {
        assert!(is_rootless(Some("true")));
        assert!(!is_rootless(Some("false")));
    }
}
