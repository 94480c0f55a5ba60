//! Loading and validating a bundle: `config.json` (runtime-spec config.md, config-linux.md) and its
//! rootfs. Every error names the config field at fault.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// A config field and what is wrong with it, e.g. `process.cwd: must be an absolute path`.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// The field in runtime-spec notation (`process.args`, `mounts[2].destination`, ...).
    pub field: String,
    /// What is wrong, in words a user can act on.
    pub problem: String,
}

fn err(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// A bundle whose config passed validation.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory, absolute and without symlinks.
    pub dir: PathBuf,
    /// The rootfs directory on the host, absolute and without symlinks (`root.path` resolved against
    /// the bundle).
    pub rootfs: PathBuf,
    /// The parsed config.
    pub spec: Spec,
}

/// The `ociVersion` majors accepted (runtime-spec: a runtime supports the versions of its major).
pub const SUPPORTED_MAJOR: u64 = 1;

impl Bundle {
    /// Reads `<dir>/config.json`, validates it for `create`, and resolves the rootfs.
    ///
    /// Errors: a [`ConfigError`] naming the field (the file itself is `config.json`).
    pub fn load(dir: &Path) -> Result<Bundle, ConfigError> {
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| err("bundle", format!("{}: {e}", dir.display())))?;
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            err(
                "config.json",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let spec: Spec = serde_json::from_str(&text).map_err(|e| {
            // An unknown seccomp action, operator, flag or architecture: name the field.
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v.pointer("/linux/seccomp")
                        .and_then(crate::security::seccomp::check_json)
                        .or_else(|| crate::cgroups::check_resources_json(&v))
                })
                .unwrap_or_else(|| err("config.json", format!("invalid: {e}")))
        })?;
        validate(&spec)?;
        let root = spec.root().as_ref().ok_or_else(|| err("root", "missing"))?;
        let rootfs = dir.join(root.path());
        let rootfs = std::fs::canonicalize(&rootfs)
            .map_err(|e| err("root.path", format!("{}: {e}", rootfs.display())))?;
        if !rootfs.is_dir() {
            return Err(err(
                "root.path",
                format!("{} is not a directory", rootfs.display()),
            ));
        }
        Ok(Bundle { dir, rootfs, spec })
    }
}

/// Checks `ociVersion` (semantic version whose major is [`SUPPORTED_MAJOR`]).
pub fn check_version(version: &str) -> Result<(), ConfigError> {
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u64>().ok());
    match major {
        Some(SUPPORTED_MAJOR) if version.split('.').count() >= 2 => Ok(()),
        Some(m) if version.split('.').count() >= 2 => Err(err(
            "ociVersion",
            format!(
                "unsupported version {version:?} (major {m}); amphi supports {SUPPORTED_MAJOR}.x"
            ),
        )),
        _ => Err(err(
            "ociVersion",
            format!("{version:?} is not a semantic version"),
        )),
    }
}

fn has_dotdot(p: &Path) -> bool {
    p.components().any(|c| c == Component::ParentDir)
}

/// Validates a config for `create`. Pure: looks at nothing on disk.
///
/// Errors: the first problem found, as a [`ConfigError`].
pub fn validate(spec: &Spec) -> Result<(), ConfigError> {
    check_version(spec.version())?;
    let root = spec.root().as_ref().ok_or_else(|| err("root", "missing"))?;
    if root.path().as_os_str().is_empty() {
        return Err(err("root.path", "must not be empty"));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| err("process", "missing (required by create)"))?;
    match process.args() {
        Some(args) if !args.is_empty() => {
            if args[0].is_empty() {
                return Err(err("process.args[0]", "must not be empty"));
            }
        }
        _ => return Err(err("process.args", "must contain at least one entry")),
    }
    if !process.cwd().is_absolute() {
        return Err(err(
            "process.cwd",
            format!("{:?} must be an absolute path", process.cwd()),
        ));
    }
    for (i, e) in process.env().iter().flatten().enumerate() {
        if !e.contains('=') {
            return Err(err(
                format!("process.env[{i}]"),
                format!("{e:?} is not of the form KEY=value"),
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, r) in process.rlimits().iter().flatten().enumerate() {
        if !seen.insert(r.typ().to_string()) {
            return Err(err(
                format!("process.rlimits[{i}].type"),
                format!("duplicate {}", r.typ()),
            ));
        }
        if r.soft() > r.hard() {
            return Err(err(
                format!("process.rlimits[{i}]"),
                format!("soft limit {} exceeds hard limit {}", r.soft(), r.hard()),
            ));
        }
    }
    // A profile or label for an LSM that the host does not have fails here, before anything is
    // made (runc: "apparmor failed to apply profile", "selinux label is specified in config, but
    // selinux is disabled or not supported").
    crate::security::lsm::check_process(process).map_err(|e| err(e.field, e.problem))?;
    if let Some(sched) = process.scheduler() {
        let _ = sched;
        return Err(err("process.scheduler", "not supported by amphi yet"));
    }
    if process.io_priority().is_some() {
        return Err(err("process.ioPriority", "not supported by amphi yet"));
    }
    // (uid_t)-1 means "leave unchanged" to setresuid(2)/setresgid(2): the workload would keep root.
    let user = process.user();
    let gids = user.additional_gids().as_deref().unwrap_or_default();
    for (field, id) in [
        ("process.user.uid".to_string(), user.uid()),
        ("process.user.gid".to_string(), user.gid()),
    ]
    .into_iter()
    .chain(
        gids.iter()
            .enumerate()
            .map(|(i, g)| (format!("process.user.additionalGids[{i}]"), *g)),
    ) {
        if id == u32::MAX {
            return Err(err(
                field,
                "4294967295 is not a valid id ((uid_t)-1 means \"unchanged\" to the kernel)",
            ));
        }
    }
    if process.terminal().unwrap_or(false) && process.console_size().is_some() {
        // Accepted: the size is applied to the pty.
    }

    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(err(
                format!("mounts[{i}].destination"),
                format!("{:?} must be an absolute path", m.destination()),
            ));
        }
        let opts = m.options().as_deref().unwrap_or_default();
        let is_bind =
            opts.iter().any(|o| o == "bind" || o == "rbind") || m.typ().as_deref() == Some("bind");
        if is_bind && m.source().is_none() {
            return Err(err(
                format!("mounts[{i}].source"),
                "required for a bind mount",
            ));
        }
        if !is_bind && m.typ().as_deref().unwrap_or("").is_empty() {
            return Err(err(
                format!("mounts[{i}].type"),
                "required unless the mount is a bind mount",
            ));
        }
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(err(
                format!("mounts[{i}].uidMappings"),
                "idmapped mounts are not supported by amphi yet",
            ));
        }
    }

    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| err("linux", "missing (required on Linux)"))?;
    let mut types = HashSet::new();
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    for (i, ns) in namespaces.iter().enumerate() {
        if !types.insert(ns.typ()) {
            return Err(err(
                format!("linux.namespaces[{i}].type"),
                format!("duplicate namespace {}", ns.typ()),
            ));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(err(
                    format!("linux.namespaces[{i}].path"),
                    format!("{p:?} must be an absolute path"),
                ));
            }
        }
    }
    let new_ns = |t: LinuxNamespaceType| {
        namespaces
            .iter()
            .any(|n| n.typ() == t && n.path().is_none())
    };
    if !types.contains(&LinuxNamespaceType::Mount) {
        return Err(err(
            "linux.namespaces",
            "a mount namespace is required (amphi never sets up a rootfs in the host's mount namespace)",
        ));
    }
    // As runc: a UTS namespace entry (new, or joined by path) is needed to set the names.
    let private_uts = types.contains(&LinuxNamespaceType::Uts);
    for (field, name) in [
        ("hostname", spec.hostname()),
        ("domainname", spec.domainname()),
    ] {
        if name.as_deref().is_some_and(|h| h.contains('\0')) {
            return Err(err(field, "contains a NUL byte"));
        }
    }
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !private_uts {
        return Err(err(
            "hostname",
            "setting the hostname requires a UTS namespace in linux.namespaces",
        ));
    }
    if spec.domainname().as_deref().is_some_and(|h| !h.is_empty()) && !private_uts {
        return Err(err(
            "domainname",
            "setting the domainname requires a UTS namespace in linux.namespaces",
        ));
    }
    let user_ns = types.contains(&LinuxNamespaceType::User);
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if has_maps && !user_ns {
        return Err(err(
            "linux.uidMappings",
            "id mappings are given but linux.namespaces has no user namespace",
        ));
    }
    if new_ns(LinuxNamespaceType::User) {
        for (field, maps) in [
            ("linux.uidMappings", linux.uid_mappings()),
            ("linux.gidMappings", linux.gid_mappings()),
        ] {
            let maps = maps.as_deref().unwrap_or_default();
            if maps.is_empty() {
                return Err(err(
                    field,
                    "a new user namespace needs at least one mapping",
                ));
            }
            for (i, m) in maps.iter().enumerate() {
                if m.size() == 0 {
                    return Err(err(format!("{field}[{i}].size"), "must be at least 1"));
                }
                let end = |start: u32| u64::from(start) + u64::from(m.size());
                if end(m.container_id()) > u64::from(u32::MAX)
                    || end(m.host_id()) > u64::from(u32::MAX)
                {
                    return Err(err(
                        format!("{field}[{i}]"),
                        "the range goes past 4294967294, the largest id",
                    ));
                }
                for (j, o) in maps[..i].iter().enumerate() {
                    let overlap = |a: u32, b: u32| {
                        u64::from(a) < u64::from(b) + u64::from(o.size()) && u64::from(b) < end(a)
                    };
                    if overlap(m.container_id(), o.container_id())
                        || overlap(m.host_id(), o.host_id())
                    {
                        return Err(err(
                            format!("{field}[{i}]"),
                            format!("overlaps {field}[{j}]"),
                        ));
                    }
                }
            }
            // user_namespaces(7): at most 340 lines, written in one write(2) shorter than a page.
            if maps.len() > 340 || crate::user_ns::render(maps).len() >= 4096 {
                return Err(err(
                    field,
                    format!(
                        "{} ranges do not fit in the kernel's map (at most 340 lines and 4095 bytes)",
                        maps.len()
                    ),
                ));
            }
        }
    }
    if let Some(offsets) = linux.time_offsets() {
        if !offsets.is_empty() && !new_ns(LinuxNamespaceType::Time) {
            return Err(err(
                "linux.timeOffsets",
                "time offsets require a new time namespace in linux.namespaces",
            ));
        }
        for clock in offsets.keys() {
            if clock != "monotonic" && clock != "boottime" {
                return Err(err(
                    format!("linux.timeOffsets.{clock}"),
                    "unknown clock (monotonic or boottime)",
                ));
            }
        }
    }
    for (key, _) in linux.sysctl().iter().flatten() {
        if key.is_empty() || key.contains('/') || key.split('.').any(|p| p.is_empty() || p == "..")
        {
            return Err(err(
                format!("linux.sysctl.{key}"),
                "not a valid sysctl name",
            ));
        }
    }
    if let Some(p) = linux.cgroups_path() {
        if has_dotdot(p) {
            return Err(err(
                "linux.cgroupsPath",
                format!("{p:?} must not contain '..'"),
            ));
        }
    }
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        if !d.path().is_absolute() || has_dotdot(d.path()) {
            return Err(err(
                format!("linux.devices[{i}].path"),
                format!("{:?} must be an absolute path without '..'", d.path()),
            ));
        }
        // makedev(3) takes 32-bit numbers: a larger one would silently become another device.
        for (name, n) in [("major", d.major()), ("minor", d.minor())] {
            if n > i64::from(u32::MAX) {
                return Err(err(
                    format!("linux.devices[{i}].{name}"),
                    format!("{n} is out of range"),
                ));
            }
        }
        if let Some(mode) = d.file_mode() {
            if mode > 0o7777 {
                return Err(err(
                    format!("linux.devices[{i}].fileMode"),
                    format!("{mode:#o} has bits beyond the permission bits (0o7777)"),
                ));
            }
        }
    }
    for (field, paths) in [
        ("linux.maskedPaths", linux.masked_paths()),
        ("linux.readonlyPaths", linux.readonly_paths()),
    ] {
        for (i, p) in paths.iter().flatten().enumerate() {
            if !p.starts_with('/') {
                return Err(err(
                    format!("{field}[{i}]"),
                    format!("{p:?} must be an absolute path"),
                ));
            }
        }
    }
    if let Some(p) = linux.rootfs_propagation() {
        if !p.is_empty() && crate::rootfs::propagation_flag(p).is_none() {
            return Err(err(
                "linux.rootfsPropagation",
                format!("unknown propagation {p:?}"),
            ));
        }
    }
    if let Some(s) = linux.seccomp() {
        // Builds the filter without loading it, so that a bad profile fails `create` here.
        crate::security::seccomp::build(s)?;
    }
    crate::security::lsm::check_mount_label(linux.mount_label().as_deref().unwrap_or(""))
        .map_err(|e| err(e.field, e.problem))?;
    if linux.intel_rdt().is_some() {
        return Err(err("linux.intelRdt", "not supported by amphi"));
    }
    if linux.personality().is_some() {
        return Err(err("linux.personality", "not supported by amphi yet"));
    }
    Ok(())
}

/// Checks a container id: not empty, no `/`, not `.` or `..`, no control characters or whitespace.
/// runc allows `^[\w+-\.]+$`; amphi follows the same alphabet.
///
/// Errors: a message naming the id.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("container id must not be empty".into());
    }
    if id == "." || id == ".." {
        return Err(format!("invalid container id {id:?}"));
    }
    if id.len() > 1024 {
        return Err("container id is longer than 1024 bytes".into());
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.')))
    {
        return Err(format!(
            "invalid container id {id:?}: character {c:?} is not allowed (use letters, digits, '_', '+', '-', '.')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
        })
    }

    fn check(v: serde_json::Value) -> Result<(), ConfigError> {
        let spec: Spec = serde_json::from_value(v).expect("parse");
        validate(&spec)
    }

    fn field_of(v: serde_json::Value) -> String {
        check(v).expect_err("should fail").field
    }

    #[test]
    fn accepts_minimal_config() {
        check(base()).unwrap();
    }

    #[test]
    fn versions() {
        for ok in ["1.0.0", "1.2.1", "1.3.0", "1.0.2-dev"] {
            check_version(ok).unwrap();
        }
        for bad in ["2.0.0", "0.5.0", "", "abc", "1"] {
            assert_eq!(check_version(bad).unwrap_err().field, "ociVersion");
        }
    }

    #[test]
    fn names_the_field() {
        let mut v = base();
        v["process"]["args"] = serde_json::json!([]);
        assert_eq!(field_of(v), "process.args");
        let mut v = base();
        v["process"]["cwd"] = serde_json::json!("relative");
        assert_eq!(field_of(v), "process.cwd");
        let mut v = base();
        v["hostname"] = serde_json::json!("h");
        assert_eq!(field_of(v), "hostname");
        let mut v = base();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}]);
        assert_eq!(field_of(v), "linux.namespaces");
        let mut v = base();
        v["mounts"] = serde_json::json!([{"destination": "/x", "source": "/y"}]);
        assert_eq!(field_of(v), "mounts[0].type");
        let mut v = base();
        v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"});
        check(v).unwrap();
        let mut v = base();
        v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 7, "value": 0, "op": "SCMP_CMP_EQ"}]}]});
        assert_eq!(field_of(v), "linux.seccomp.syscalls[0].args[0].index");
        let mut v = base();
        v["process"]["apparmorProfile"] = serde_json::json!("docker-default");
        if !crate::security::lsm::apparmor_enabled() {
            assert_eq!(field_of(v), "process.apparmorProfile");
        }
        let mut v = base();
        v["process"]["selinuxLabel"] = serde_json::json!("system_u:system_r:container_t:s0");
        if !crate::security::lsm::selinux_enabled() {
            assert_eq!(field_of(v), "process.selinuxLabel");
        }
        let mut v = base();
        v["linux"]["mountLabel"] = serde_json::json!("a\nb");
        assert_eq!(field_of(v), "linux.mountLabel");
        let mut v = base();
        v["linux"]["cgroupsPath"] = serde_json::json!("/a/../../b");
        assert_eq!(field_of(v), "linux.cgroupsPath");
        let mut v = base();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "user"}]);
        assert_eq!(field_of(v), "linux.uidMappings");
        let mut v = base();
        v["process"]["env"] = serde_json::json!(["NOEQUALS"]);
        assert_eq!(field_of(v), "process.env[0]");
    }

    #[test]
    fn ids() {
        for ok in ["a", "abc-1.2_x+y", "0123456789abcdef"] {
            validate_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\nb", "a\u{7f}"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}
