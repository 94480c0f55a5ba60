//! `linux.seccomp` (config-linux.md "Seccomp") through libseccomp: the filter is built (and so
//! validated) on the host during `create`, built again in the container's init or exec'd process, and
//! loaded there as late as the kernel's rules allow (see [`load`] for the order).
//!
//! Semantics follow runc: `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` return `errnoRet` (EPERM when
//! absent); the default action uses `defaultErrnoRet`; syscall names this libseccomp does not know
//! are skipped with a debug line (engine profiles list newer syscalls); a rule whose action equals
//! the default action is skipped; `args` on distinct indices are AND-ed in one rule, args sharing an
//! index become one rule each (OR); for `SCMP_CMP_MASKED_EQ`, `value` is the mask and `valueTwo` the
//! value compared with. libseccomp's own `no_new_privs` attribute is turned off: `no_new_privs` is
//! set only when `process.noNewPrivileges` asks for it.
//!
//! `SCMP_ACT_NOTIFY` hands the filter's notify fd to a seccomp agent at `listenerPath`
//! (config-linux.md "Seccomp"; the message is the `ContainerProcessState` of runtime-spec
//! state.md, one per connection, the fd in an `SCM_RIGHTS` control message, as runc sends it):
//! the container's process loads the filter and sends `{"ociVersion", "fds": ["seccompFd"],
//! "pid", "metadata", "state"}` over a [`Listener`] that amphi connected on the host before the
//! first fork (so neither `pivot_root` nor a user namespace stands between init and the socket),
//! then closes both the notify fd and the connection, so the workload holds neither. `pid` is the
//! process's pid as the host sees it; `state.status` is `creating` when the filter is loaded
//! during `create`, `created` when it is loaded after `start` (with `noNewPrivileges`, see
//! [`load_early`]) and `running` for an `exec`'d process, whose `state.pid` is the container's
//! init. Between the load and the hand-over the process makes only `sendmsg(2)` (and whatever
//! libseccomp's `free` of its BPF buffer needs), so NOTIFY is refused for those syscalls and as the
//! default action; every later syscall of the runtime that the profile notifies waits for the
//! agent, as with runc.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use serde::de::DeserializeOwned;

use crate::bundle::ConfigError;

/// The actions amphi implements, for `features`.
pub const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

/// The argument operators, for `features`.
pub const OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// The architectures, for `features`.
pub const ARCHS: &[&str] = &[
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
];

/// The filter flags amphi knows, for `features` (`knownFlags`).
pub const KNOWN_FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

fn err(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// The flags of [`KNOWN_FLAGS`] that this libseccomp and kernel accept (`supportedFlags`).
pub fn supported_flags() -> Vec<&'static str> {
    KNOWN_FLAGS
        .iter()
        .copied()
        .filter(|name| {
            let Ok(flag) = name.parse::<LinuxSeccompFilterFlag>() else {
                return false;
            };
            ScmpFilterContext::new(ScmpAction::Allow)
                .map(|mut ctx| set_flag(&mut ctx, flag).is_ok())
                .unwrap_or(false)
        })
        .collect()
}

fn set_flag(ctx: &mut ScmpFilterContext, flag: LinuxSeccompFilterFlag) -> Result<(), String> {
    let r = match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => ctx.set_ctl_waitkill(true),
    };
    r.map(|_| ()).map_err(|e| e.to_string())
}

/// Names the field of `linux.seccomp` (raw JSON) that oci-spec could not parse: an unknown action,
/// architecture, flag or operator. Used when config.json fails to parse, to name the field instead
/// of a line and column.
pub fn check_json(seccomp: &serde_json::Value) -> Option<ConfigError> {
    fn bad<T: DeserializeOwned>(
        v: &serde_json::Value,
        field: String,
        what: &str,
    ) -> Option<ConfigError> {
        if serde_json::from_value::<T>(v.clone()).is_ok() {
            return None;
        }
        Some(match v.as_str() {
            Some(s) => err(field, format!("unknown {what} {s:?}")),
            None => err(field, format!("must be a string naming the {what}")),
        })
    }
    let p = "linux.seccomp";
    if let Some(v) = seccomp.get("defaultAction") {
        if let Some(e) = bad::<LinuxSeccompAction>(v, format!("{p}.defaultAction"), "action") {
            return Some(e);
        }
    }
    for (i, v) in seccomp
        .get("architectures")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(e) = bad::<Arch>(v, format!("{p}.architectures[{i}]"), "architecture") {
            return Some(e);
        }
    }
    for (i, v) in seccomp
        .get("flags")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(e) = bad::<LinuxSeccompFilterFlag>(v, format!("{p}.flags[{i}]"), "flag") {
            return Some(e);
        }
    }
    for (i, sc) in seccomp
        .get("syscalls")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(v) = sc.get("action") {
            if let Some(e) =
                bad::<LinuxSeccompAction>(v, format!("{p}.syscalls[{i}].action"), "action")
            {
                return Some(e);
            }
        }
        for (j, a) in sc
            .get("args")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(v) = a.get("op") {
                if let Some(e) = bad::<LinuxSeccompOperator>(
                    v,
                    format!("{p}.syscalls[{i}].args[{j}].op"),
                    "operator",
                ) {
                    return Some(e);
                }
            }
        }
    }
    None
}

fn action(
    a: LinuxSeccompAction,
    errno_ret: Option<u32>,
    field: &str,
) -> Result<ScmpAction, ConfigError> {
    let ret = |what: &str| -> Result<u16, ConfigError> {
        match errno_ret {
            None => Ok(libc::EPERM as u16),
            Some(v) => u16::try_from(v).map_err(|_| {
                err(
                    field.to_string(),
                    format!("{what} {v} is out of range (0-65535)"),
                )
            }),
        }
    };
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(ret("errno")?.into()),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret("trace value")?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

fn compare(op: LinuxSeccompOperator, index: u32, value: u64, value_two: u64) -> ScmpArgCompare {
    let (op, datum) = match op {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, value),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        // runc: `value` is the mask, `valueTwo` the value the masked argument must equal.
        LinuxSeccompOperator::ScmpCmpMaskedEq => (ScmpCompareOp::MaskedEqual(value), value_two),
    };
    ScmpArgCompare::new(index, op, datum)
}

/// Syscalls that NOTIFY must not catch: the process makes them after loading the filter and
/// before the agent holds the notify fd, so a notification could never be answered (`sendmsg`
/// hands the fd over; the allocator may call the others when libseccomp frees its BPF buffer).
/// runc refuses `write` for the same reason (its init writes the fd number to its parent); amphi's
/// process does not write there, so `write` may be notified.
pub const NOTIFY_REFUSED: &[&str] = &["sendmsg", "brk", "munmap", "madvise"];

/// Whether a rule of `s` uses `SCMP_ACT_NOTIFY`.
pub fn uses_notify(s: &LinuxSeccomp) -> bool {
    s.default_action() == LinuxSeccompAction::ScmpActNotify
        || s.syscalls()
            .iter()
            .flatten()
            .any(|sc| sc.action() == LinuxSeccompAction::ScmpActNotify)
}

/// Checks `SCMP_ACT_NOTIFY` and the listener fields (config-linux.md "Seccomp"): NOTIFY needs an
/// absolute `listenerPath`; `listenerMetadata` needs `listenerPath`; NOTIFY cannot be the default
/// action nor catch a syscall of [`NOTIFY_REFUSED`].
fn check_notify(s: &LinuxSeccomp) -> Result<(), ConfigError> {
    let p = "linux.seccomp";
    if s.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(err(
            format!("{p}.defaultAction"),
            "SCMP_ACT_NOTIFY cannot be the default action: the process must make syscalls \
             (sendmsg) to hand the notify fd to the agent after the filter is loaded",
        ));
    }
    let mut first_notify = None;
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        if sc.action() != LinuxSeccompAction::ScmpActNotify {
            continue;
        }
        first_notify.get_or_insert(i);
        for (k, name) in sc.names().iter().enumerate() {
            if NOTIFY_REFUSED.contains(&name.as_str()) {
                return Err(err(
                    format!("{p}.syscalls[{i}].names[{k}]"),
                    format!(
                        "SCMP_ACT_NOTIFY cannot be used for {name}: amphi needs it after loading \
                         the filter and before the agent holds the notify fd (refused: {})",
                        NOTIFY_REFUSED.join(", ")
                    ),
                ));
            }
        }
    }
    match (s.listener_path(), first_notify) {
        (Some(path), _) if !path.is_absolute() => {
            return Err(err(
                format!("{p}.listenerPath"),
                format!("{:?} must be an absolute path", path.display().to_string()),
            ))
        }
        (None, Some(i)) => {
            return Err(err(
                format!("{p}.listenerPath"),
                format!(
                    "must be set: {p}.syscalls[{i}].action is SCMP_ACT_NOTIFY, which sends the \
                     notify fd to a seccomp agent listening there"
                ),
            ))
        }
        _ => {}
    }
    if s.listener_metadata().is_some() && s.listener_path().is_none() {
        return Err(err(
            format!("{p}.listenerMetadata"),
            format!("must not be set without {p}.listenerPath"),
        ));
    }
    Ok(())
}

/// Builds the filter of `linux.seccomp` without loading it.
///
/// Errors: a [`ConfigError`] naming the field (`linux.seccomp.syscalls[3].args[0].index`,
/// `linux.seccomp.listenerPath`, ...).
pub fn build(s: &LinuxSeccomp) -> Result<ScmpFilterContext, ConfigError> {
    let p = "linux.seccomp";
    check_notify(s)?;
    let default = action(
        s.default_action(),
        s.default_errno_ret(),
        &format!("{p}.defaultAction"),
    )?;
    if s.default_errno_ret().is_some()
        && !matches!(
            s.default_action(),
            LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
        )
    {
        return Err(err(
            format!("{p}.defaultErrnoRet"),
            format!(
                "only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {}",
                s.default_action()
            ),
        ));
    }
    let mut ctx = ScmpFilterContext::new(default)
        .map_err(|e| err(format!("{p}.defaultAction"), format!("libseccomp: {e}")))?;
    ctx.set_ctl_nnp(false)
        .map_err(|e| err(p, format!("libseccomp: turn off its no_new_privs: {e}")))?;
    for (i, a) in s.architectures().iter().flatten().enumerate() {
        let a = arch(*a);
        let present = ctx.is_arch_present(a).map_err(|e| {
            err(
                format!("{p}.architectures[{i}]"),
                format!("libseccomp: {e}"),
            )
        })?;
        if !present {
            ctx.add_arch(a).map_err(|e| {
                err(
                    format!("{p}.architectures[{i}]"),
                    format!("libseccomp: {e}"),
                )
            })?;
        }
    }
    for (i, f) in s.flags().iter().flatten().enumerate() {
        set_flag(&mut ctx, *f).map_err(|e| {
            err(
                format!("{p}.flags[{i}]"),
                format!("{f} is not supported by this libseccomp or kernel: {e}"),
            )
        })?;
    }
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let field = format!("{p}.syscalls[{i}]");
        let act = action(sc.action(), sc.errno_ret(), &format!("{field}.action"))?;
        let mut conds = Vec::new();
        let mut indices = std::collections::HashSet::new();
        let mut shared_index = false;
        for (j, a) in sc.args().iter().flatten().enumerate() {
            if a.index() > 5 {
                return Err(err(
                    format!("{field}.args[{j}].index"),
                    format!(
                        "{} is out of range (a syscall has arguments 0-5)",
                        a.index()
                    ),
                ));
            }
            shared_index |= !indices.insert(a.index());
            conds.push(compare(
                a.op(),
                a.index() as u32,
                a.value(),
                a.value_two().unwrap_or(0),
            ));
        }
        if sc.names().is_empty() {
            return Err(err(
                format!("{field}.names"),
                "must name at least one syscall",
            ));
        }
        if act == default {
            log::debug!("{field}: action equals the default action; rule skipped");
            continue;
        }
        for (k, name) in sc.names().iter().enumerate() {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                log::debug!(
                    "{field}.names[{k}]: syscall {name:?} is unknown to libseccomp; skipped"
                );
                continue;
            };
            let add = |ctx: &mut ScmpFilterContext, c: &[ScmpArgCompare]| {
                ctx.add_rule_conditional(act, nr, c)
                    .map(|_| ())
                    .map_err(|e| {
                        err(
                            format!("{field}.names[{k}]"),
                            format!("add rule for {name}: {e}"),
                        )
                    })
            };
            if shared_index {
                // Conditions on one argument cannot be AND-ed by libseccomp: one rule each (OR).
                for c in &conds {
                    add(&mut ctx, std::slice::from_ref(c))?;
                }
            } else {
                add(&mut ctx, &conds)?;
            }
        }
    }
    Ok(ctx)
}

/// Whether the filter must be loaded before the process drops its privileges.
///
/// Loading a filter needs `no_new_privs` or CAP_SYS_ADMIN (seccomp(2)). As runc: with
/// `noNewPrivileges` the filter is loaded as late as possible, after the user switch and capability
/// drop and right before the workload starts, so the profile need not allow the runtime's own last
/// steps; without it, the filter is loaded while the process still has CAP_SYS_ADMIN, before
/// `security::finalize`, and then also confines those last steps (user switch, capability sets, the
/// ready and start handshake, startContainer hooks).
pub fn load_early(no_new_privileges: bool) -> bool {
    !no_new_privileges
}

/// Loads a built filter into the calling process (and its future children).
///
/// Errors: seccomp(2) refused it.
pub fn load(ctx: &ScmpFilterContext) -> anyhow::Result<()> {
    ctx.load()
        .map_err(|e| anyhow::anyhow!("linux.seccomp: load the filter: {e}"))
}

/// A connection to the seccomp agent at `linux.seccomp.listenerPath`, made on the host (by
/// `create` or `exec`, before the first fork) and inherited by the container's process, which
/// sends the notify fd over it with [`load_and_notify`]. Close-on-exec; owned, so dropping it
/// closes the connection (the agent then reads end-of-file).
#[derive(Debug)]
pub struct Listener {
    sock: OwnedFd,
    path: PathBuf,
    metadata: Option<String>,
    /// The runtime-spec state of the container (state.md); `status` is set when sending.
    state: serde_json::Value,
    /// The process's pid as the host sees it; 0 until [`Listener::set_pid`].
    pid: i32,
}

impl Listener {
    /// Connects to the listener of `seccomp` when one of its rules uses `SCMP_ACT_NOTIFY`
    /// (`Ok(None)` otherwise: runc ignores `listenerPath` then). `state` is the container's
    /// runtime-spec state JSON (`ociVersion`, `id`, `status`, `pid`, `bundle`, `annotations`).
    ///
    /// Errors: the listener cannot be reached (naming `linux.seccomp.listenerPath` and the path),
    /// or the profile is invalid (see [`build`]).
    pub fn connect(
        seccomp: Option<&LinuxSeccomp>,
        state: serde_json::Value,
    ) -> anyhow::Result<Option<Listener>> {
        let Some(s) = seccomp.filter(|s| uses_notify(s)) else {
            return Ok(None);
        };
        check_notify(s)?;
        let Some(path) = s.listener_path() else {
            return Ok(None);
        };
        let stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
            anyhow::anyhow!(
                "linux.seccomp.listenerPath: connect to the seccomp agent at {}: {e}",
                path.display()
            )
        })?;
        Ok(Some(Listener {
            sock: OwnedFd::from(stream),
            path: path.clone(),
            metadata: s.listener_metadata().clone(),
            state,
            pid: 0,
        }))
    }

    /// Records the process's pid as the host sees it; for the container's init it is also the
    /// state's `pid`.
    pub fn set_pid(&mut self, pid: i32, container_init: bool) {
        self.pid = pid;
        if container_init {
            self.state["pid"] = pid.into();
        }
    }

    /// The connection's descriptor (to keep it open while stray fds are closed).
    pub fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// The `ContainerProcessState` (runtime-spec state.md) with `state.status` = `status`.
    fn message(&self, status: &str) -> serde_json::Value {
        let mut state = self.state.clone();
        state["status"] = status.into();
        let mut msg = serde_json::json!({
            "ociVersion": state["ociVersion"].clone(),
            "fds": [oci_spec::runtime::SECCOMP_FD_NAME],
            "pid": self.pid,
            "state": state,
        });
        if let Some(m) = &self.metadata {
            msg["metadata"] = m.clone().into();
        }
        msg
    }
}

/// Sends `data` with `fd` in one `SCM_RIGHTS` control message over the stream socket `sock`.
/// Nothing here allocates: the filter may already be loaded (see [`NOTIFY_REFUSED`]).
fn send_with_fd(sock: RawFd, data: &[u8], fd: RawFd) -> std::io::Result<()> {
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut control = Control([0; 64]);
    let fd_len = std::mem::size_of::<libc::c_int>() as libc::c_uint;
    let mut sent = 0usize;
    while sent < data.len() {
        let rest = &data[sent..];
        let mut iov = libc::iovec {
            iov_base: rest.as_ptr() as *mut libc::c_void,
            iov_len: rest.len(),
        };
        // SAFETY: an all-zero msghdr is a valid empty message; the fields are set below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if sent == 0 {
            // The fd goes with the first bytes only.
            msg.msg_control = control.0.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE only computes a size.
            msg.msg_controllen = unsafe { libc::CMSG_SPACE(fd_len) } as _;
            // SAFETY: msg_control points at 64 aligned bytes, more than CMSG_SPACE(4) = 24, so the
            // first header and its data lie inside `control`.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                if cmsg.is_null() {
                    return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
                }
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(fd_len) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
            }
        }
        // SAFETY: `msg` points at `iov` and `control`, which outlive the call; sendmsg only reads.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        sent += n as usize;
    }
    Ok(())
}

/// Loads a built filter like [`load`]; with a `listener`, then sends the filter's notify fd and
/// the `ContainerProcessState` (with `state.status` = `status`) to the seccomp agent, and closes
/// the notify fd and the connection, so the workload holds neither. The message is serialized
/// before the load; after it the process makes only `sendmsg(2)` and `close(2)`. On an error
/// after the load the notify fd is closed first, so that a notified syscall made while reporting
/// the error fails with ENOSYS instead of waiting for an agent that has no fd.
///
/// Errors: seccomp(2) refused the filter, libseccomp has no notify fd, or the agent cannot be
/// sent the message (named by `linux.seccomp.listenerPath`).
pub fn load_and_notify(
    ctx: &ScmpFilterContext,
    listener: Option<Listener>,
    status: &str,
) -> anyhow::Result<()> {
    let Some(listener) = listener else {
        return load(ctx);
    };
    let data = serde_json::to_vec(&listener.message(status))
        .map_err(|e| anyhow::anyhow!("linux.seccomp: encode the container process state: {e}"))?;
    load(ctx)?;
    let fd = ctx.get_notify_fd().map_err(|e| {
        anyhow::anyhow!("linux.seccomp: the filter uses SCMP_ACT_NOTIFY but has no notify fd: {e}")
    })?;
    let sent = send_with_fd(listener.as_raw_fd(), &data, fd);
    // SAFETY: `fd` is the notify fd that the kernel gave libseccomp at load time; this process
    // never uses it again, and libseccomp only hands its number out (seccomp_notify_fd(3)).
    unsafe { libc::close(fd) };
    let path = listener.path.clone();
    drop(listener);
    sent.map_err(|e| {
        anyhow::anyhow!(
            "linux.seccomp.listenerPath: send the notify fd to the seccomp agent at {}: {e}",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).expect("parse")
    }

    #[test]
    fn builds_and_names_fields() {
        build(&parse(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["read", "write", "no_such_syscall_xyz"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
            ]
        })))
        .unwrap();
        let e = build(&parse(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]
        })))
        .unwrap_err();
        assert_eq!(e.field, "linux.seccomp.syscalls[0].args[0].index");
        let e = build(&parse(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]
        })))
        .unwrap_err();
        assert_eq!(e.field, "linux.seccomp.listenerPath");
        build(&parse(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "listenerMetadata": "m",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        })))
        .unwrap();
        for (v, field) in [
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "agent.sock",
                    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
                "linux.seccomp.listenerPath",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/a.sock"}),
                "linux.seccomp.defaultAction",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/a.sock",
                    "syscalls": [{"names": ["mkdir", "sendmsg"], "action": "SCMP_ACT_NOTIFY"}]}),
                "linux.seccomp.syscalls[0].names[1]",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m"}),
                "linux.seccomp.listenerMetadata",
            ),
        ] {
            assert_eq!(build(&parse(v)).unwrap_err().field, field);
        }
        let e = check_json(&serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": 0, "op": "X"}]}]
        }))
        .unwrap();
        assert_eq!(
            e.to_string(),
            "linux.seccomp.syscalls[0].args[0].op: unknown operator \"X\""
        );
        let e = check_json(&serde_json::json!({"defaultAction": "SCMP_ACT_NOPE"})).unwrap();
        assert_eq!(e.field, "linux.seccomp.defaultAction");
    }
}
