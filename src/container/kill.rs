//! `kill`: send a signal to the init process (or, with `--all`, to every process of the container).

use std::str::FromStr;

use nix::sys::signal::Signal;

use super::state::{State, Status};
use crate::cgroups::ContainerCgroup;

/// The highest signal number (SIGRTMAX).
fn sigrtmax() -> i32 {
    libc::SIGRTMAX()
}

/// Parses a signal given as a number (`9`, `37`), a name (`KILL`), a name with `SIG` (`SIGKILL`), in
/// any case, or a real-time signal as `RTMIN+N` / `RTMAX-N` (with or without `SIG`), as runc does.
/// Returns the signal number (0..=SIGRTMAX); 0 sends no signal and only checks that the init process
/// exists (kill(2)), which runc accepts too.
///
/// Errors: an unknown name or a number out of range, named.
pub fn parse_signal(s: &str) -> anyhow::Result<i32> {
    let unknown = || anyhow::anyhow!("unknown signal {s:?}");
    if let Ok(n) = s.parse::<i64>() {
        return if (0..=sigrtmax() as i64).contains(&n) {
            Ok(n as i32)
        } else {
            Err(unknown())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let rt = |base: i32, rest: &str, sign: i32| -> anyhow::Result<i32> {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.parse().map_err(|_| unknown())?
        };
        let n = base + sign * off;
        if (libc::SIGRTMIN()..=sigrtmax()).contains(&n) {
            Ok(n)
        } else {
            Err(unknown())
        }
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt(libc::SIGRTMIN(), rest.strip_prefix('+').unwrap_or(rest), 1);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return rt(sigrtmax(), rest.strip_prefix('-').unwrap_or(rest), -1);
    }
    Signal::from_str(&format!("SIG{name}"))
        .map(|sig| sig as i32)
        .map_err(|_| unknown())
}

/// Sends signal number `signal` to the container's init process; with `all`, to every process in its
/// cgroup.
///
/// Errors: the container is not running or created ("container not running"), except with `all`,
/// where a stopped container is not an error (containerd sends `kill --all ID 9` after exit).
pub fn kill(state: &State, signal: i32, all: bool) -> anyhow::Result<()> {
    let status = state.status();
    if status == Status::Stopped {
        if all {
            return Ok(());
        }
        anyhow::bail!("container not running");
    }
    if all {
        if let Some(path) = &state.cgroup_path {
            let cg = ContainerCgroup::open(path)?;
            cg.signal_all(signal);
        }
    }
    // SAFETY: kill(2) takes a pid and a signal number; no memory is involved.
    if unsafe { libc::kill(state.pid, signal) } != 0 {
        anyhow::bail!(
            "kill {} with signal {signal}: {}",
            state.id,
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), 10);
        assert_eq!(parse_signal("37").unwrap(), 37);
        assert_eq!(parse_signal("RTMIN+3").unwrap(), libc::SIGRTMIN() + 3);
        assert_eq!(parse_signal("SIGRTMAX").unwrap(), libc::SIGRTMAX());
        assert_eq!(parse_signal("sigrtmax-1").unwrap(), libc::SIGRTMAX() - 1);
        assert!(parse_signal("RTMIN+99").is_err());
        assert!(parse_signal("RTMIN+x").is_err());
        assert!(parse_signal("SIGNOPE").is_err());
        assert_eq!(parse_signal("0").unwrap(), 0);
        assert!(parse_signal("-1").is_err());
        assert!(parse_signal("99").is_err());
    }
}
