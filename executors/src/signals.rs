//! Stop signals of a container's pid 1. In its own pid namespace, pid 1 gets no signal it has no
//! handler for (pid_namespaces(7)), so `kill` with SIGTERM, SIGINT or SIGHUP would do nothing to a
//! process that runs amphi's code: the init waiting for `start`, and a Wasm guest for its whole life.

/// The signals that end a container's pid 1 while it runs amphi's code.
pub const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

extern "C" fn exit_on_signal(sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe; the process ends where it stands, as on a default action.
    unsafe { libc::_exit(128 + sig) }
}

/// Makes each of [`STOP_SIGNALS`] end the process at once with status 128+signal (the shell's
/// convention for a death by signal), and returns the dispositions they had, in that order, for
/// [`restore_stop_signals`]. A disposition that cannot be read is returned as `SIG_DFL`.
pub fn exit_on_stop_signals() -> Vec<libc::sigaction> {
    STOP_SIGNALS
        .iter()
        .map(|&sig| {
            // SAFETY: a zeroed sigaction with a handler that only calls the async-signal-safe
            // _exit and an empty mask is valid; the old one is written into a zeroed struct.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = exit_on_signal as *const () as usize;
                libc::sigemptyset(&mut sa.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &sa, &mut old) != 0 {
                    old.sa_sigaction = libc::SIG_DFL;
                }
                old
            }
        })
        .collect()
}

/// Puts back the dispositions that [`exit_on_stop_signals`] returned (a signal the caller ignored
/// stays ignored for the workload).
pub fn restore_stop_signals(before: &[libc::sigaction]) {
    for (&sig, old) in STOP_SIGNALS.iter().zip(before) {
        // SAFETY: `old` is a sigaction the kernel returned for this signal.
        unsafe { libc::sigaction(sig, old, std::ptr::null_mut()) };
    }
}
