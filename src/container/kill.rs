//! `kill`: send a signal to the init process (or, with `--all`, to every process of the container).

use std::str::FromStr;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::state::{State, Status};
use crate::cgroups::ContainerCgroup;

/// Parses a signal given as a number (`9`), a name (`KILL`) or a name with `SIG` (`SIGKILL`), in any
/// case, as runc does.
///
/// Errors: an unknown signal, named.
pub fn parse_signal(s: &str) -> anyhow::Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| anyhow::anyhow!("unknown signal {s:?}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| anyhow::anyhow!("unknown signal {s:?}"))
}

/// Sends `signal` to the container's init process; with `all`, to every process in its cgroup.
///
/// Errors: the container is not running or created ("container not running"), except with `all`,
/// where a stopped container is not an error (containerd sends `kill --all ID 9` after exit).
pub fn kill(state: &State, signal: Signal, all: bool) -> anyhow::Result<()> {
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
    nix::sys::signal::kill(Pid::from_raw(state.pid), signal)
        .map_err(|e| anyhow::anyhow!("kill {} with {signal}: {e}", state.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), Signal::SIGUSR1);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("99").is_err());
    }
}
