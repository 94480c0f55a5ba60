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
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// Runs `hooks` (the config's `hooks.<kind>` list) in order with `state` on stdin.
///
/// Errors: the first hook that cannot be started, exits non-zero, or times out, named as
/// `hooks.<kind>[i]`, with what it wrote on stderr.
pub fn run(kind: &str, hooks: &[Hook], state: &serde_json::Value) -> anyhow::Result<()> {
    let input = serde_json::to_vec(state)?;
    for (i, hook) in hooks.iter().enumerate() {
        run_one(hook, &input).map_err(|e| anyhow::anyhow!("hooks.{kind}[{i}]: {e}"))?;
    }
    Ok(())
}

/// Runs `hooks` like [`run`], logging a failure as a warning instead of returning it (poststart,
/// poststop).
pub fn run_warn(kind: &str, hooks: &[Hook], state: &serde_json::Value) {
    if let Err(e) = run(kind, hooks, state) {
        log::warn!("{e:#}");
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
    cmd.stdin(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("start {}: {e}", path.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is not an error.
        let _ = stdin.write_all(input);
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
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
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        anyhow::bail!("{} failed ({status}): {}", path.display(), err.trim());
    }
    Ok(())
}
