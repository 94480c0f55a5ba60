//! The typed channel between the parent, the intermediate and the init process: a
//! `SOCK_SEQPACKET` socketpair carrying one JSON message per packet.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

/// The messages of the create pipeline, in the order they are sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// intermediate -> parent: the user namespace exists; write the id maps.
    UserNsReady,
    /// parent -> intermediate: the id maps are written.
    MappingsWritten,
    /// intermediate -> parent: the init process was forked; its pid as seen by the parent.
    InitPid(i32),
    /// init -> parent: the namespaces and mounts exist (before `pivot_root`): run the `prestart` and
    /// `createRuntime` hooks. Sent only when the config has hooks.
    HooksPoint,
    /// parent -> init: the runtime hooks ran; the init process's pid as the host sees it (for the
    /// state that the container's own hooks read).
    HooksDone(i32),
    /// parent -> init or exec'd process: its pid as the host sees it, for the seccomp agent's
    /// `ContainerProcessState`. Sent right after `InitPid`, only when `linux.seccomp` has a listener.
    HostPid(i32),
    /// init -> parent: the container is set up and init waits for `start`.
    Ready,
    /// intermediate or init -> parent: setup failed; the message is shown to the user.
    Error(String),
}

/// One end of the pipeline's socketpair (close-on-exec, so it never reaches the workload).
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// Largest message accepted (an error text).
const MAX_MSG: usize = 64 * 1024;

impl Channel {
    /// A connected pair of channels.
    ///
    /// Errors: socketpair(2) fails.
    pub fn pair() -> anyhow::Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| anyhow::anyhow!("socketpair: {e}"))?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Sends one message.
    ///
    /// Errors: the peer is gone.
    pub fn send(&self, msg: &Msg) -> anyhow::Result<()> {
        let data = serde_json::to_vec(msg)?;
        nix::sys::socket::send(
            self.fd.as_raw_fd(),
            &data,
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        )
        .map_err(|e| anyhow::anyhow!("pipeline channel: send: {e}"))?;
        Ok(())
    }

    /// Receives one message; `Ok(None)` when every peer has closed its end.
    ///
    /// Errors: a read error or a malformed message.
    pub fn recv(&self) -> anyhow::Result<Option<Msg>> {
        let mut buf = vec![0u8; MAX_MSG];
        loop {
            match nix::sys::socket::recv(
                self.fd.as_raw_fd(),
                &mut buf,
                nix::sys::socket::MsgFlags::empty(),
            ) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    return serde_json::from_slice(&buf[..n])
                        .map(Some)
                        .map_err(|e| anyhow::anyhow!("pipeline channel: bad message: {e}"))
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => anyhow::bail!("pipeline channel: recv: {e}"),
            }
        }
    }

    /// Receives the next message and checks it is `want`; an `Error` message becomes an error.
    ///
    /// Errors: the peer reported an error, closed, or sent something else.
    pub fn expect(&self, want: &Msg, who: &str) -> anyhow::Result<()> {
        match self.recv()? {
            Some(m) if &m == want => Ok(()),
            Some(Msg::Error(e)) => Err(anyhow::anyhow!(e)),
            Some(other) => anyhow::bail!("{who}: expected {want:?}, got {other:?}"),
            None => anyhow::bail!("{who} exited before sending {want:?}"),
        }
    }

    /// The underlying descriptor.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
