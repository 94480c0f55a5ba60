//! The parent side of the create pipeline (the `amphi create` or `amphi run` process).

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::channel::{Channel, Msg};
use super::{exit_child, intermediate, InitConfig};
use crate::user_ns;

/// Forks the intermediate process, answers its requests (id maps), and waits until the init process
/// reports ready. Returns the init process's pid (in the caller's pid namespace).
///
/// On error, every process this call forked is killed and reaped before it returns.
///
/// Errors: any step of the intermediate or init, with its message.
///
/// `runtime_hooks` runs the `prestart` and `createRuntime` hooks when init asks for them, with the init
/// process's pid.
pub fn spawn(
    cfg: &mut InitConfig,
    runtime_hooks: &mut dyn FnMut(i32) -> anyhow::Result<()>,
) -> anyhow::Result<i32> {
    let (parent_ch, child_ch) = Channel::pair()?;
    let dirs = cfg
        .cgroup
        .as_ref()
        .map(|c| c.dirs().to_vec())
        .unwrap_or_default();
    // SAFETY: amphi is single-threaded when it creates a container, so the child may run any code.
    let (forked, to_join) = unsafe { super::fork::fork_for_cgroup(&dirs) }?;
    let child = match forked {
        ForkResult::Child => {
            drop(parent_ch);
            cfg.cgroup_join = Some(to_join);
            let code = intermediate::run(cfg, &child_ch);
            exit_child(code);
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_ch);
    // Only init uses the seccomp agent's connection: the agent must see it close once init has
    // sent the notify fd, not when a foreground `run` ends.
    let seccomp_listener = cfg.seccomp_listener.take().is_some();
    let mut init_pid: Option<i32> = None;
    let result = drive(
        cfg,
        &parent_ch,
        child,
        &mut init_pid,
        seccomp_listener,
        runtime_hooks,
    );
    if result.is_err() {
        if let Some(pid) = init_pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
    }
    result
}

fn drive(
    cfg: &InitConfig,
    ch: &Channel,
    child: Pid,
    init_pid: &mut Option<i32>,
    seccomp_listener: bool,
    runtime_hooks: &mut dyn FnMut(i32) -> anyhow::Result<()>,
) -> anyhow::Result<i32> {
    if cfg.namespaces.new_user {
        ch.expect(&Msg::UserNsReady, "intermediate process")?;
        let linux = cfg.spec.linux().as_ref();
        let uid = linux
            .and_then(|l| l.uid_mappings().clone())
            .unwrap_or_default();
        let gid = linux
            .and_then(|l| l.gid_mappings().clone())
            .unwrap_or_default();
        user_ns::write_maps(child.as_raw(), &uid, &gid)?;
        ch.send(&Msg::MappingsWritten)?;
    }
    let pid = match ch.recv()? {
        Some(Msg::InitPid(pid)) => pid,
        Some(Msg::Error(e)) => return Err(anyhow::anyhow!(e)),
        Some(other) => anyhow::bail!("intermediate process: unexpected {other:?}"),
        None => anyhow::bail!("intermediate process exited during create"),
    };
    *init_pid = Some(pid);
    if seccomp_listener {
        ch.send(&Msg::HostPid(pid))?;
    }
    match waitpid(child, None) {
        Ok(WaitStatus::Exited(_, 0)) => {}
        Ok(status) => anyhow::bail!("intermediate process ended with {status:?}"),
        Err(e) => anyhow::bail!("wait for intermediate process: {e}"),
    }
    loop {
        match ch.recv()? {
            Some(Msg::HooksPoint) => {
                runtime_hooks(pid)?;
                ch.send(&Msg::HooksDone(pid))?;
            }
            Some(Msg::Ready) => return Ok(pid),
            Some(Msg::Error(e)) => return Err(anyhow::anyhow!(e)),
            Some(other) => anyhow::bail!("init process: unexpected {other:?}"),
            None => anyhow::bail!("init process exited during create"),
        }
    }
}
