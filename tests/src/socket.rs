//! Reading a socket option of one of this process's PostgreSQL connections, found by
//! its two ends (as the server reports them) among `/proc/self/fd`: sqlx gives no
//! access to its sockets. Linux only, as the test machines are.

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};

use socket2::SockRef;

/// Whether `TCP_NODELAY` is on for this process's TCP socket from `local` to `peer`;
/// `None` when no such socket is open. IPv4-mapped IPv6 addresses compare as IPv4.
pub fn nodelay_of_socket(local: SocketAddr, peer: SocketAddr) -> Option<bool> {
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (local, peer) = (canonical(local), canonical(peer));
    let entries = std::fs::read_dir("/proc/self/fd").expect("list /proc/self/fd");
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for the calls below; one closed by
        // another thread meanwhile makes them fail (or read another socket, whose
        // addresses then do not match). Nothing is written through it.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = SockRef::from(&fd);
        let addr = |a: std::io::Result<socket2::SockAddr>| {
            a.ok().and_then(|a| a.as_socket()).map(canonical)
        };
        if addr(socket.local_addr()) == Some(local) && addr(socket.peer_addr()) == Some(peer) {
            return socket.tcp_nodelay().ok();
        }
    }
    None
}
