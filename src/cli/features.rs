//! `amphi features`: the runtime-spec features document (features.md), true to what this build
//! implements.

use clap::Args;

use super::{ExitCode, Global};

/// `amphi features`.
#[derive(Debug, Args)]
pub struct FeaturesArgs {}

/// Mount options understood by `mounts[].options` (see `rootfs::mounts::parse_options`).
pub const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
];

/// `enabled` or `disabled`, for the annotations that tell whether this host has an LSM.
fn host_state(on: bool) -> &'static str {
    if on {
        "enabled"
    } else {
        "disabled"
    }
}

/// The features document as JSON (runtime-spec features.md, features-linux.md).
pub fn features_json() -> serde_json::Value {
    let mut caps: Vec<String> = caps::all().into_iter().map(|c| c.to_string()).collect();
    caps.sort();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::OCI_SPEC_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": crate::security::seccomp::ACTIONS,
                "operators": crate::security::seccomp::OPERATORS,
                "archs": crate::security::seccomp::ARCHS,
                "knownFlags": crate::security::seccomp::KNOWN_FLAGS,
                "supportedFlags": crate::security::seccomp::supported_flags()
            },
            // features-linux.md: whether the runtime implements the LSM, "irrelevant to the
            // availability of AppArmor [SELinux] on the host"; the host's state is in annotations.
            "apparmor": {"enabled": true},
            "selinux": {"enabled": true},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "org.opencontainers.runtime-spec.features.amphi.version": env!("CARGO_PKG_VERSION"),
            "org.opencontainers.runtime-spec.features.amphi.executors": "linux,wasm",
            "org.opencontainers.runtime-spec.features.amphi.host.apparmor": host_state(crate::security::lsm::apparmor_enabled()),
            "org.opencontainers.runtime-spec.features.amphi.host.selinux": host_state(crate::security::lsm::selinux_enabled())
        }
    })
}

/// Prints the features document.
pub fn run(_g: &Global, _a: FeaturesArgs) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(&features_json())?);
    Ok(0)
}
