//! OCI hooks (config.md "POSIX-platform Hooks", runtime.md "Lifecycle").
//!
//! Where each kind runs in amphi:
//! - `prestart` (deprecated) and `createRuntime`: by the `create` process, in the runtime's
//!   namespaces, once the container's namespaces and mounts exist and before `pivot_root`. The state
//!   they read has status `creating` (as with runc).
//! - `createContainer`: by the init process, in the container's namespaces, before `pivot_root`
//!   (status `creating`).
//! - `startContainer`: by the init process after `start`, in the container, just before the workload
//!   (status `created`).
//! - `poststart`: by `start` once the workload runs (status `running`); a failure is logged as a
//!   warning.
//! - `poststop`: by `delete` once the container is gone (status `stopped`); a failure is logged as a
//!   warning.
//!
//! Each hook gets the container state JSON on stdin, `args` as given (`args[0]` is its argv\[0\]),
//! exactly `env`, and is killed after `timeout` seconds.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// Runs `hooks` (the config's `hooks.<kind>` list) in order with `state` on stdin.
///
/// Errors: the first hook that cannot be started, exits non-zero, or times out, named as
/// `hooks.<kind>[i]`, with what it wrote (stdout and stderr).
pub fn run(kind: &str, hooks: &[Hook], state: &serde_json::Value) -> anyhow::Result<()> {
    let input = serde_json::to_vec(state)?;
    for (i, hook) in hooks.iter().enumerate() {
        run_one(hook, &input).map_err(|e| anyhow::anyhow!("hooks.{kind}[{i}]: {e}"))?;
    }
    Ok(())
}

/// Runs `hooks` like [`run`], logging each failure as a warning instead of returning it, and going
/// on with the remaining hooks (poststart, poststop: runtime.md "Lifecycle").
pub fn run_warn(kind: &str, hooks: &[Hook], state: &serde_json::Value) {
    let input = match serde_json::to_vec(state) {
        Ok(i) => i,
        Err(e) => return log::warn!("hooks.{kind}: state: {e}"),
    };
    for (i, hook) in hooks.iter().enumerate() {
        if let Err(e) = run_one(hook, &input) {
            log::warn!("hooks.{kind}[{i}]: {e:#}");
        }
    }
}

fn run_one(hook: &Hook, input: &[u8]) -> anyhow::Result<()> {
    let path = hook.path();
    let mut cmd = Command::new(path);
    if let Some(args) = hook.args().as_ref().filter(|a| !a.is_empty()) {
        cmd.arg0(&args[0]);
        cmd.args(&args[1..]);
    }
    cmd.env_clear();
    for e in hook.env().iter().flatten() {
        match e.split_once('=') {
            Some((k, v)) => cmd.env(k, v),
            None => cmd.env(e, ""),
        };
    }
    // stdout and stderr share one pipe, kept for the error message (as runc): a hook's output must
    // not land in amphi's own stdout, which engines may read.
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| anyhow::anyhow!("hook {}: pipe: {e}", path.display()))?;
    let out_w2 = out_w
        .try_clone()
        .map_err(|e| anyhow::anyhow!("hook {}: pipe: {e}", path.display()))?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(out_w2));
    // Its own process group, so that a timeout kills what the hook started too, not only the hook.
    cmd.process_group(0);
    let spawned = cmd.spawn();
    // The parent's copies of the pipe's write end go with the command.
    drop(cmd);
    let mut child = spawned.map_err(|e| anyhow::anyhow!("start {}: {e}", path.display()))?;
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    // The hook's output is drained while it runs (a hook writing more than a pipe holds must not
    // stall), without blocking: a process the hook left behind may keep it open.
    let output = std::fs::File::from(out_r);
    set_nonblocking(output.as_raw_fd());
    let mut stderr = Some((output, Vec::new()));
    if let Some(stdin) = child.stdin.take() {
        feed_stdin(stdin, input, &mut child, &mut stderr, deadline)?;
    }
    let status = loop {
        drain(&mut stderr);
        if let Some(status) = child.try_wait()? {
            drain(&mut stderr);
            break status;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // The group still has its leader (not reaped yet), so its id cannot have been reused.
            if let Ok(pgid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{} timed out after {}s",
                path.display(),
                hook.timeout().unwrap_or(0)
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    if !status.success() {
        let err = stderr
            .map(|(_, buf)| String::from_utf8_lossy(&buf).into_owned())
            .unwrap_or_default();
        anyhow::bail!("{} failed ({status}): {}", path.display(), err.trim());
    }
    Ok(())
}

/// Writes `input` to the hook's stdin without blocking past `deadline` (a hook that never reads
/// its stdin is then caught by the timeout) and stops early, without error, when the hook exits or
/// closes its stdin: a hook that does not read its stdin is not an error. SIGPIPE is ignored for
/// the writes: amphi runs with it at its default (see cli::main), and a hook that exits before
/// reading would otherwise kill amphi (or init) instead of yielding EPIPE.
fn feed_stdin(
    mut stdin: std::process::ChildStdin,
    input: &[u8],
    child: &mut std::process::Child,
    stderr: &mut Option<(std::fs::File, Vec<u8>)>,
    deadline: Option<Instant>,
) -> anyhow::Result<()> {
    set_nonblocking(stdin.as_raw_fd());
    // SAFETY: signal(2) only swaps the disposition; the previous one is restored below.
    let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let mut rest = input;
    let result = loop {
        if rest.is_empty() {
            break Ok(());
        }
        match stdin.write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                drain(stderr);
                match child.try_wait() {
                    Ok(Some(_)) => break Ok(()),
                    Ok(None) => {}
                    Err(e) => break Err(e.into()),
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break Ok(());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            // EPIPE: the hook closed its stdin.
            Err(_) => break Ok(()),
        }
    };
    // SAFETY: as above, restoring the disposition read from the first call.
    unsafe { libc::signal(libc::SIGPIPE, old) };
    result
}

/// At most this much of a hook's stderr is kept for the error message.
const STDERR_KEEP: usize = 64 * 1024;

/// Reads what the hook's stderr holds now, without blocking, keeping the first [`STDERR_KEEP`]
/// bytes.
fn drain(stderr: &mut Option<(std::fs::File, Vec<u8>)>) {
    let Some((e, buf)) = stderr.as_mut() else {
        return;
    };
    let mut chunk = [0u8; 8192];
    loop {
        match e.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                let room = STDERR_KEEP.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn set_nonblocking(fd: std::os::fd::RawFd) {
    // SAFETY: fcntl(2) on a pipe fd of ours; it only changes its status flags.
    unsafe {
        libc::fcntl(
            fd,
            libc::F_SETFL,
            libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
        )
    };
}
