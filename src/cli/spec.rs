//! `amphi spec` (runc-spec(8)): write a starter config.json.

use std::path::{Path, PathBuf};

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
    // No inheritable or ambient capabilities by default (CVE-2022-29162; issue 6, escape class 7):
    // oci-spec's default process has them; runc's template has no inheritable set.
    if let Some(mut caps) = process.capabilities().clone() {
        caps.set_inheritable(None);
        caps.set_ambient(None);
        process.set_capabilities(Some(caps));
    }
    spec.set_process(Some(process));
    if !rootless {
        // runc's template: a deny-all device rule (amphi's device cgroup starts deny-all anyway; the
        // rule states it in the config, where engines and readers expect it).
        let deny_all = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build();
        if let (Some(mut linux), Ok(rule)) = (spec.linux().clone(), deny_all) {
            let mut res = linux.resources().clone().unwrap_or_default();
            res.set_devices(Some(vec![rule]));
            linux.set_resources(Some(res));
            spec.set_linux(Some(linux));
        }
    }
    if rootless {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        spec.set_linux(Some(Linux::rootless(uid, gid)));
        // As runc's `spec --rootless` (specconv.ToRootless): no network namespace, so sysfs cannot be
        // mounted: bind the host's read-only instead, and drop the other mounts under /sys (the
        // cgroup mount); no `uid=`/`gid=` mount options (gid 5 is not mapped); no resources.
        if let Some(mounts) = spec.mounts().clone() {
            let mounts = mounts
                .into_iter()
                .filter(|m| {
                    m.typ().as_deref() != Some("cgroup")
                        && (m.destination() == Path::new("/sys")
                            || !m.destination().starts_with("/sys"))
                })
                .map(|mut m| {
                    if let Some(opts) = m.options().clone() {
                        m.set_options(Some(
                            opts.into_iter()
                                .filter(|o| !o.starts_with("uid=") && !o.starts_with("gid="))
                                .collect(),
                        ));
                    }
                    if m.destination() == Path::new("/sys") {
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
