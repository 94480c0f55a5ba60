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
        let text = crate::utils::read_json_file(&path).map_err(|e| {
            err(
                "config.json",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let spec = parse_config(&text)?;
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

/// Parses the text of a config.json as runc reads it: capability names not spelt `CAP_...` and names
/// this build does not know are skipped with a warning ([`only_capability_names`],
/// [`without_unknown_capabilities`]). Not validated (see [`validate`]).
///
/// Errors: the text does not parse, as a [`ConfigError`] naming the field ([`parse_error`]).
pub(crate) fn parse_config(text: &str) -> Result<Spec, ConfigError> {
    let owned = only_capability_names(text);
    let text = owned.as_deref().unwrap_or(text);
    match serde_json::from_str(text) {
        Ok(spec) => Ok(spec),
        Err(e) => without_unknown_capabilities(text).ok_or_else(|| parse_error(text, e)),
    }
}

/// The error for a config.json that does not parse as a [`Spec`], naming the field: an unknown
/// seccomp action, operator, flag or architecture, or a bad resource value, with amphi's own words;
/// anything else with the path serde was at (`process.rlimits[0].type: unknown variant ...`).
fn parse_error(text: &str, e: serde_json::Error) -> ConfigError {
    let value = serde_json::from_str::<serde_json::Value>(text).ok();
    if let Some(found) = value.as_ref().and_then(|v| {
        v.pointer("/linux/seccomp")
            .and_then(crate::security::seccomp::check_json)
            .or_else(|| crate::cgroups::check_resources_json(v))
    }) {
        return found;
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, Spec>(de) {
        Err(pe) if value.is_some() && !matches!(pe.path().to_string().as_str(), "" | ".") => err(
            pe.path().to_string(),
            format!("invalid in config.json: {}", pe.inner()),
        ),
        _ => err("config.json", format!("invalid: {e}")),
    }
}

/// True for a capability name spelt as capabilities(7) and runc spell it: `CAP_` and then upper-case
/// letters, digits and underscores (`CAP_SYS_ADMIN`).
pub(crate) fn is_capability_name(s: &str) -> bool {
    s.strip_prefix("CAP_").is_some_and(|n| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    })
}

/// The sets of `process.capabilities` as written, for [`only_capability_names`].
#[derive(serde::Deserialize)]
struct RawConfig {
    process: Option<RawProcess>,
}

#[derive(serde::Deserialize)]
struct RawProcess {
    capabilities: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// The config text without the entries of `process.capabilities` that are not spelt as capability
/// names (`sys_admin`, `SYS_ADMIN`, `cap_kill`), each logged with its field: oci-spec would read them
/// as the capability they resemble, while runc knows only `CAP_` names and skips the others with a
/// warning (runtime-spec config.md, "capabilities": values that cannot be mapped are logged, not
/// fatal). `None` when there is nothing to drop, or the text does not parse (the full parse then
/// reports it).
fn only_capability_names(text: &str) -> Option<String> {
    // A first pass that reads only the capability lists, since nearly every config has nothing
    // to drop.
    let raw: RawConfig = serde_json::from_str(text).ok()?;
    let any = raw
        .process?
        .capabilities?
        .values()
        .filter_map(|l| l.as_array())
        .any(|l| l.iter().any(|c| misspelt(c).is_some()));
    if !any {
        return None;
    }
    // Unknown names go in the same pass, so that each warning gives the entry's index as written.
    only_capability_names_at(text, "/process/capabilities", "process.capabilities", |c| {
        misspelt(c).or_else(|| unknown(c))
    })
}

/// The same for the process of `amphi exec --process` (runtime-spec's process object), whose
/// capabilities are at `capabilities`.
pub(crate) fn process_only_capability_names(text: &str) -> Option<String> {
    only_capability_names_at(text, "/capabilities", "capabilities", misspelt)
}

fn only_capability_names_at(
    text: &str,
    pointer: &str,
    field: &str,
    why: impl Fn(&serde_json::Value) -> Option<&'static str>,
) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(text).ok()?;
    let skipped = skip_capabilities(&mut v, pointer, field, why);
    if skipped.is_empty() {
        return None;
    }
    skipped.iter().for_each(|w| log::warn!("{w}"));
    serde_json::to_string(&v).ok()
}

/// Why `c` is not a capability name, if it is a string that is not one.
fn misspelt(c: &serde_json::Value) -> Option<&'static str> {
    c.as_str()
        .filter(|s| !is_capability_name(s))
        .map(|_| "not a capability name (CAP_ and upper case)")
}

/// Why `c` is skipped, if it names no capability that oci-spec (and so this build) knows.
fn unknown(c: &serde_json::Value) -> Option<&'static str> {
    serde_json::from_value::<oci_spec::runtime::Capability>(c.clone())
        .is_err()
        .then_some("unknown capability")
}

/// Removes from the capability sets at `pointer` in `v` the entries for which `why` gives a reason,
/// and returns a warning for each: `<field>.<set>[i]: <entry>: <reason>, skipped (as runc does)`.
fn skip_capabilities(
    v: &mut serde_json::Value,
    pointer: &str,
    field: &str,
    why: impl Fn(&serde_json::Value) -> Option<&'static str>,
) -> Vec<String> {
    let mut skipped = Vec::new();
    let Some(caps) = v.pointer_mut(pointer).and_then(|c| c.as_object_mut()) else {
        return skipped;
    };
    for (set, list) in caps.iter_mut() {
        let Some(list) = list.as_array_mut() else {
            continue;
        };
        let mut i = 0;
        list.retain(|c| {
            let reason = why(c);
            if let Some(r) = reason {
                skipped.push(format!(
                    "{field}.{set}[{i}]: {c}: {r}, skipped (as runc does)"
                ));
            }
            i += 1;
            reason.is_none()
        });
    }
    skipped
}

/// The config without the capability names this build does not know, when those are what kept it
/// from parsing: runc skips unknown capabilities with a warning (a config written for a newer
/// kernel), and so does amphi, logging each one with its field. `None` when the config still does not
/// parse, or had no unknown capability.
fn without_unknown_capabilities(text: &str) -> Option<Spec> {
    let mut v: serde_json::Value = serde_json::from_str(text).ok()?;
    let skipped = skip_capabilities(
        &mut v,
        "/process/capabilities",
        "process.capabilities",
        unknown,
    );
    if skipped.is_empty() {
        return None;
    }
    let spec = serde_json::from_value::<Spec>(v).ok()?;
    skipped.iter().for_each(|w| log::warn!("{w}"));
    Some(spec)
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

/// The namespace a sysctl belongs to (runtime-spec config-linux.md "Sysctl"; the list runc allows):
/// the System V IPC and POSIX message queue ones to `ipc`, `kernel.hostname` and `kernel.domainname`
/// to `uts`, `net.*` to `network`; `None` for a host-wide one.
pub fn sysctl_namespace(key: &str) -> Option<LinuxNamespaceType> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(LinuxNamespaceType::Ipc)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(LinuxNamespaceType::Uts)
    } else if key.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else {
        None
    }
}

/// The paths below `/proc` that a mount may cover (runc's list: the files lxcfs emulates, and
/// `ns_last_pid` for CRIU). A mount anywhere else inside `/proc` could hide or redirect what the
/// runtime writes there (the CVE-2019-16884 class), so it is refused.
const PROC_MOUNTS_ALLOWED: [&str; 10] = [
    "cpuinfo",
    "diskstats",
    "meminfo",
    "stat",
    "swaps",
    "uptime",
    "loadavg",
    "slabinfo",
    "net/dev",
    "sys/kernel/ns_last_pid",
];

/// The part of `dest` below `/proc`, after a lexical clean-up (`.`, `..` as inside the rootfs, where
/// `..` stops at `/`; e.g. `sys/kernel` for `/tmp/../proc//sys/./kernel/`), or `None` when `dest` is
/// not strictly inside `/proc`.
fn inside_proc(dest: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in dest.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    (parts.len() > 1 && parts[0] == "proc").then(|| parts[1..].join("/"))
}

fn has_dotdot(p: &Path) -> bool {
    p.components().any(|c| c == Component::ParentDir)
}

/// Validates the process of a config (`create`) or of `exec` (`--process` or the flags): args, cwd,
/// env, rlimits, LSM labels, unsupported fields, and user ids (runtime-spec config.md "process").
/// Pure: looks at nothing on disk.
///
/// Errors: the first problem found, as a [`ConfigError`] naming the field.
pub fn validate_process(process: &oci_spec::runtime::Process) -> Result<(), ConfigError> {
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
    Ok(())
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
    validate_process(process)?;
    if let Some(h) = spec.hooks() {
        for (kind, list) in [
            ("prestart", h.prestart()),
            ("createRuntime", h.create_runtime()),
            ("createContainer", h.create_container()),
            ("startContainer", h.start_container()),
            ("poststart", h.poststart()),
            ("poststop", h.poststop()),
        ] {
            for (i, hook) in list.iter().flatten().enumerate() {
                if hook.timeout().is_some_and(|t| t <= 0) {
                    return Err(err(
                        format!("hooks.{kind}[{i}].timeout"),
                        "must be greater than zero (seconds)",
                    ));
                }
            }
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
        if let Some(inside) = inside_proc(m.destination()) {
            if !PROC_MOUNTS_ALLOWED.contains(&inside.as_str()) {
                return Err(err(
                    format!("mounts[{i}].destination"),
                    format!(
                        "{:?} is inside /proc, where only a proc mount at /proc itself and the \
                         files lxcfs emulates ({}) may be mounted",
                        m.destination(),
                        PROC_MOUNTS_ALLOWED.join(", ")
                    ),
                ));
            }
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
    let has_ns = |t: LinuxNamespaceType| linux.namespaces().iter().flatten().any(|n| n.typ() == t);
    for (key, _) in linux.sysctl().iter().flatten() {
        if key.is_empty() || key.contains('/') || key.split('.').any(|p| p.is_empty() || p == "..")
        {
            return Err(err(
                format!("linux.sysctl.{key}"),
                "not a valid sysctl name",
            ));
        }
        // Only a sysctl that belongs to a namespace of the container may be set: any other one
        // would change the host (runc's rule).
        match sysctl_namespace(key) {
            Some(t) if has_ns(t) => {}
            Some(t) => {
                let name = match t {
                    LinuxNamespaceType::Ipc => "ipc",
                    LinuxNamespaceType::Uts => "uts",
                    _ => "network",
                };
                return Err(err(
                    format!("linux.sysctl.{key}"),
                    format!(
                        "belongs to the {name} namespace, which linux.namespaces does not give \
                         the container: setting it would change the host"
                    ),
                ));
            }
            None => {
                return Err(err(
                    format!("linux.sysctl.{key}"),
                    "is not in a separate kernel namespace: setting it would change the host",
                ))
            }
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

    #[test]
    fn inside_proc_cleans_the_path_lexically() {
        let f = |p: &str| inside_proc(Path::new(p));
        assert_eq!(f("/proc"), None);
        assert_eq!(f("/proc/"), None);
        assert_eq!(f("/procfs/x"), None);
        assert_eq!(f("/etc/proc/x"), None);
        assert_eq!(f("/proc/../etc"), None);
        assert_eq!(f("/proc/sys"), Some("sys".into()));
        assert_eq!(f("/proc//sys/./kernel/"), Some("sys/kernel".into()));
        assert_eq!(f("/tmp/../proc/sys"), Some("sys".into()));
        assert_eq!(f("/../../proc/meminfo"), Some("meminfo".into()));
    }

    #[test]
    fn sysctls_outside_the_containers_namespaces_are_refused() {
        assert_eq!(
            sysctl_namespace("kernel.shmmax"),
            Some(LinuxNamespaceType::Ipc)
        );
        assert_eq!(
            sysctl_namespace("fs.mqueue.msg_max"),
            Some(LinuxNamespaceType::Ipc)
        );
        assert_eq!(
            sysctl_namespace("kernel.domainname"),
            Some(LinuxNamespaceType::Uts)
        );
        assert_eq!(
            sysctl_namespace("net.ipv4.ip_forward"),
            Some(LinuxNamespaceType::Network)
        );
        assert_eq!(sysctl_namespace("vm.swappiness"), None);
        assert_eq!(sysctl_namespace("kernel.pid_max"), None);
        let mut v = base();
        v["linux"]["sysctl"] = serde_json::json!({"kernel.shmmax": "1"});
        let e = check(v.clone()).unwrap_err();
        assert_eq!(e.field, "linux.sysctl.kernel.shmmax");
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "ipc"}));
        assert!(check(v).is_ok());
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

    #[test]
    fn capability_names_as_runc_spells_them() {
        for ok in ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_AMPHI_FUTURE", "CAP_2"] {
            assert!(is_capability_name(ok), "{ok}");
        }
        for bad in [
            "",
            "CAP_",
            "cap_chown",
            "Cap_Chown",
            "CHOWN",
            "sys_admin",
            "CAP_sys_admin",
            "CAP-X",
        ] {
            assert!(!is_capability_name(bad), "{bad}");
        }
        let text = serde_json::json!({
            "process": {"capabilities": {
                "bounding": ["CAP_CHOWN", "sys_admin", "cap_kill", "SYS_PTRACE", "CAP_KILL"],
                "effective": ["CAP_CHOWN"]
            }},
            "other": [1, 2]
        })
        .to_string();
        let kept: serde_json::Value =
            serde_json::from_str(&only_capability_names(&text).unwrap()).unwrap();
        assert_eq!(
            kept["process"]["capabilities"]["bounding"],
            serde_json::json!(["CAP_CHOWN", "CAP_KILL"])
        );
        assert_eq!(
            kept["process"]["capabilities"]["effective"],
            serde_json::json!(["CAP_CHOWN"])
        );
        assert_eq!(kept["other"], serde_json::json!([1, 2]));
        // With a misspelt name, an unknown one goes in the same pass.
        let text = r#"{"process": {"capabilities": {"bounding": ["sys_admin", "CAP_NO_SUCH", "CAP_KILL"]}}}"#;
        let kept: serde_json::Value =
            serde_json::from_str(&only_capability_names(text).unwrap()).unwrap();
        assert_eq!(
            kept["process"]["capabilities"]["bounding"],
            serde_json::json!(["CAP_KILL"])
        );
        // Nothing to drop, no capabilities, or not JSON: the text is used as it is.
        let clean = r#"{"process": {"capabilities": {"bounding": ["CAP_CHOWN"]}}}"#;
        assert!(only_capability_names(clean).is_none());
        assert!(only_capability_names(r#"{"process": {"args": ["x"]}}"#).is_none());
        assert!(only_capability_names("{not json").is_none());
    }
}
