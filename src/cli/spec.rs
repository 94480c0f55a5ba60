//! `amphi spec` (runc-spec(8)): write a starter config.json.

use std::path::PathBuf;

use clap::Args;
use oci_spec::runtime::{Linux, Process, Spec};

use super::{ExitCode, Global};

/// `amphi spec [--bundle DIR] [--rootless]` (`--rootless` is the global flag, as in runc).
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Path to the root of the bundle directory.
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,
}

/// The starter config: runc's defaults (a `sh` with a terminal in `rootfs`, read-only root, the usual
/// mounts, masked and read-only paths), for the calling user when `rootless`.
pub fn starter_spec(rootless: bool) -> Spec {
    let mut spec = Spec::default();
    spec.set_version(crate::OCI_SPEC_VERSION.to_string());
    spec.set_hostname(Some("amphi".to_string()));
    let mut process = Process::default();
    process.set_terminal(Some(true));
    spec.set_process(Some(process));
    if rootless {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        spec.set_linux(Some(Linux::rootless(uid, gid)));
        // Without a network namespace sysfs cannot be mounted: bind the host's read-only instead.
        if let Some(mounts) = spec.mounts().clone() {
            let mounts = mounts
                .into_iter()
                .filter(|m| m.typ().as_deref() != Some("cgroup"))
                .map(|mut m| {
                    if m.destination() == &PathBuf::from("/sys") {
                        m.set_typ(Some("bind".into()));
                        m.set_source(Some("/sys".into()));
                        m.set_options(Some(
                            ["rbind", "nosuid", "noexec", "nodev", "ro"]
                                .map(String::from)
                                .to_vec(),
                        ));
                    }
                    m
                })
                .collect();
            spec.set_mounts(Some(mounts));
        }
    }
    spec
}

/// Writes `<bundle>/config.json`; refuses to overwrite one.
pub fn run(g: &Global, a: SpecArgs) -> anyhow::Result<ExitCode> {
    let path = a.bundle.join("config.json");
    if path.exists() {
        anyhow::bail!("File {} exists. Remove it first", path.display());
    }
    let spec = starter_spec(g.rootless);
    let text = serde_json::to_string_pretty(&spec)?;
    std::fs::write(&path, text + "\n")
        .map_err(|e| anyhow::anyhow!("write {}: {e}", path.display()))?;
    Ok(0)
}
