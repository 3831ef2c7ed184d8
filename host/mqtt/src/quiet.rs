//! Keeping a socket's received bytes from waking the process: `SO_RCVLOWAT`. While the session
//! reads acknowledgements in batches, each PUBACK segment that arrives would still wake the
//! thread from `epoll_wait` (the socket turns readable), even though nothing reads it until the
//! batch's millisecond ends. With the low-water mark raised, the kernel signals the socket
//! readable only once that many bytes wait; lowering it again signals at once whatever arrived.

use std::io;
use std::os::fd::RawFd;

/// The low-water mark while quiet: far more than a millisecond of acknowledgements (4 bytes
/// each), so that only the batch's timer ends the wait, and well inside the receive buffer.
const QUIET: libc::c_int = 16 << 10;

/// Raise (`quiet`) or restore (1 byte) the low-water mark of `socket`, a socket the caller
/// holds open.
pub(crate) fn set(socket: RawFd, quiet: bool) -> io::Result<()> {
    let value: libc::c_int = if quiet { QUIET } else { 1 };
    let size = libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: setsockopt reads `size` bytes from the value's address, a `c_int` that outlives
    // the call. The caller holds `socket` open, so the option lands on that socket (a wrong
    // descriptor would only make the call fail).
    #[allow(unsafe_code)]
    let result =
        unsafe { libc::setsockopt(socket, libc::SOL_SOCKET, libc::SO_RCVLOWAT, (&raw const value).cast(), size) };
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use super::*;

    /// Raised, a few bytes do not make the socket readable; lowered again, they do at once.
    #[test]
    fn a_quiet_socket_is_not_readable_for_a_few_bytes_until_restored() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut sender = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (receiver, _) = listener.accept().unwrap();
        let readable = |timeout_ms: i32| {
            let mut fds = [libc::pollfd { fd: receiver.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
            // SAFETY: one valid `pollfd` for an open socket, and its count.
            #[allow(unsafe_code)]
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout_ms) };
            n == 1
        };
        set(receiver.as_raw_fd(), true).unwrap();
        // On loopback the bytes are queued before the write returns; the poll would also see
        // any that came within its 200 ms.
        sender.write_all(&[0x40, 2, 0, 1]).unwrap();
        assert!(!readable(200), "4 bytes woke a quiet socket");
        set(receiver.as_raw_fd(), false).unwrap();
        assert!(readable(0), "restored, the waiting bytes are readable");
        let mut buf = [0u8; 8];
        assert_eq!((&receiver).read(&mut buf).unwrap(), 4);
    }
}
