//! The intermediate process: joins the cgroup, enters or creates the namespaces, forks init (so that
//! init is pid 1 of a new pid namespace), reports init's pid, and exits.

use nix::sched::{unshare, CloneFlags};
use nix::unistd::{fork, setresgid, setresuid, ForkResult, Gid, Uid};
use oci_spec::runtime::LinuxNamespaceType;

use super::channel::{Channel, Msg};
use super::{init, InitConfig};

/// Runs the intermediate process; returns its exit code. Errors are sent to the parent.
pub fn run(cfg: &mut InitConfig, ch: &Channel) -> i32 {
    for fd in &cfg.close_in_child {
        // SAFETY: the fd belongs to the parent's lock File, of which this forked child holds a copy
        // that it never uses; closing the number releases only this process's reference.
        unsafe { libc::close(*fd) };
    }
    match steps(cfg, ch) {
        Ok(()) => 0,
        Err(e) => {
            let _ = ch.send(&Msg::Error(format!("{e:#}")));
            1
        }
    }
}

fn write_time_offsets(cfg: &InitConfig) -> anyhow::Result<()> {
    let Some(offsets) = cfg
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, off) in offsets {
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    if !text.is_empty() {
        crate::security::procfs::write("self/timens_offsets", text.as_bytes())
            .map_err(|e| anyhow::anyhow!("linux.timeOffsets: {e}"))?;
    }
    Ok(())
}

fn steps(cfg: &mut InitConfig, ch: &Channel) -> anyhow::Result<()> {
    // The cgroup is joined first: before a new cgroup namespace is made (so it becomes the
    // namespace's root) and while still root in the host's user namespace.
    if let Some(cg) = cfg.cgroup.as_ref() {
        match &cfg.cgroup_join {
            Some(dirs) => cg.join(dirs)?,
            None => cg.join(cg.dirs())?,
        }
    }
    let ns = &cfg.namespaces;
    if ns.joins_user() {
        ns.join_only(&[LinuxNamespaceType::User])?;
    } else if ns.new_user {
        unshare(CloneFlags::CLONE_NEWUSER)
            .map_err(|e| anyhow::anyhow!("unshare user namespace: {e}"))?;
        ch.send(&Msg::UserNsReady)?;
        ch.expect(&Msg::MappingsWritten, "parent")?;
    }
    if ns.new_user || ns.joins_user() {
        // Become root of the user namespace when it maps uid/gid 0 (the usual case).
        let _ = setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0));
        let _ = setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0));
    }
    let others: Vec<LinuxNamespaceType> = [
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Time,
        LinuxNamespaceType::Mount,
    ]
    .to_vec();
    ns.join_only(&others)?;
    if !ns.new.is_empty() {
        unshare(ns.new).map_err(|e| anyhow::anyhow!("unshare namespaces {:?}: {e}", ns.new))?;
    }
    if ns.is_new(LinuxNamespaceType::Time) {
        write_time_offsets(cfg)?;
    }
    // Init waits on this pipe until its pid is reported: every message it sends then follows
    // `InitPid`, and if this process dies first, init sees EOF and gives up instead of waiting for a
    // `start` that the parent, still waiting for `InitPid`, would never allow.
    let gate = super::fork::Gate::new()?;
    // SAFETY: this process is single-threaded (a fork of a single-threaded parent).
    match unsafe { fork() }.map_err(|e| anyhow::anyhow!("fork init: {e}"))? {
        ForkResult::Child => init::run(cfg, ch, gate.child()),
        ForkResult::Parent { child } => {
            let gate = gate.parent();
            ch.send(&Msg::InitPid(child.as_raw()))?;
            gate.release()?;
            Ok(())
        }
    }
}
