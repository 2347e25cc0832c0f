//! `TCP_NODELAY` on the project's PostgreSQL connections — a workaround to **delete
//! once a sqlx release sets the option itself**.
//!
//! sqlx 0.9.0 stopped setting `TCP_NODELAY` on its TCP sockets (launchbadge/sqlx
//! issue #4335; the fix, PR #4336, is merged upstream but in no crates.io release yet).
//! Without it, Nagle's algorithm holds back a small second segment until the server's
//! delayed ACK (about 40 ms) whenever a connection writes twice before it reads, which
//! TLS record framing makes common: over `sslmode=require` the queue worker ran at 0.28×
//! the raw-SQL baseline, and at 0.95× with the option forced on (see `docs/tls.md`).
//!
//! sqlx gives no access to its socket, so it is found from outside: the server tells
//! the connection's ports (`inet_client_port()`, `inet_server_port()`), and the
//! process's open descriptors (`/proc/self/fd`) are searched for the TCP socket whose
//! local port and peer port are those two. Chosen over the alternatives because it
//! touches exactly that connection's socket and nothing else: setting the option on
//! every socket to the server's port would reach sockets that are not ours; a fork or
//! vendored copy of sqlx would be the whole driver to maintain; `LD_PRELOAD` tricks act
//! outside the program. Where the search cannot work the connection is left as it was
//! (and runs as fast as sqlx lets it): over a Unix socket (no ports, and no Nagle), behind
//! a proxy or NAT that rewrites ports, and on systems without `/proc/self/fd`.
//!
//! What uses it: [`crate::db::connect`]'s pools ([`on_every_connection`]) and the
//! connections the components open for themselves (the worker's claimer and
//! completer, the caches' flushers). **An application that brings its own
//! `DatabaseConnection`** loses it on that pool's connections — the enqueue, cache
//! and heartbeat round trips, which then pay the ~40 ms stall whenever sqlx writes a
//! statement in two segments — and gets it back with one line on its `ConnectOptions`:
//! `opt.map_sqlx_postgres_pool_opts(service::db::tcp_nodelay::on_every_connection)`.

use std::io;

use sea_orm::sqlx::{self, PgConnection, postgres::PgPoolOptions};

/// The connection's (client port, server port) as the server sees them; NULLs over
/// a Unix socket.
pub const PORTS_SQL: &str = "SELECT inet_client_port(), inet_server_port()";

/// Sets `TCP_NODELAY` on `conn`'s socket. One round trip ([`PORTS_SQL`]). Returns
/// whether the socket was found and set (`false` over a Unix socket, or when a proxy
/// between rewrote the ports).
pub async fn set_tcp_nodelay(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let ports: (Option<i32>, Option<i32>) = sqlx::query_as(PORTS_SQL).fetch_one(conn).await?;
    Ok(set_for_server_ports(ports))
}

/// `options` with [`set_tcp_nodelay`] run on every connection the pool opens (one
/// more round trip per new connection, none per query). For SeaORM:
/// `ConnectOptions::map_sqlx_postgres_pool_opts(on_every_connection)`. It replaces an
/// `after_connect` callback set earlier on `options`.
pub fn on_every_connection(options: PgPoolOptions) -> PgPoolOptions {
    options.after_connect(|conn, _| {
        Box::pin(async move {
            if !set_tcp_nodelay(conn).await? {
                tracing::debug!("TCP_NODELAY not set: no TCP socket with the connection's ports");
            }
            Ok(())
        })
    })
}

/// Sets `TCP_NODELAY` on the socket with the (client port, server port) the server
/// reported; returns whether it did. A failure is logged, never returned: the
/// connection works without the option, only slower.
pub(crate) fn set_for_server_ports(ports: (Option<i32>, Option<i32>)) -> bool {
    let (Some(client), Some(server)) = ports else {
        return false;
    };
    let (Ok(client), Ok(server)) = (u16::try_from(client), u16::try_from(server)) else {
        return false;
    };
    match set_for_ports(client, server) {
        Ok(found) => found,
        Err(e) => {
            tracing::debug!(client, server, error = %e, "setting TCP_NODELAY failed");
            false
        }
    }
}

/// Sets `TCP_NODELAY` on this process's TCP socket whose local port is `local` and
/// whose peer's port is `peer`. Returns whether such a socket was found. Costs one
/// directory read of `/proc/self/fd` and two system calls per open descriptor.
pub fn set_for_ports(local: u16, peer: u16) -> io::Result<bool> {
    let Some(fd) = sys::find_socket(local, peer)? else {
        return Ok(false);
    };
    sys::set_nodelay(fd, true)?;
    Ok(true)
}

/// Whether `TCP_NODELAY` is set on the socket [`set_for_ports`] would set; `None`
/// when there is no such socket. For tests and diagnostics.
pub fn nodelay_of_ports(local: u16, peer: u16) -> io::Result<Option<bool>> {
    match sys::find_socket(local, peer)? {
        Some(fd) => sys::nodelay(fd).map(Some),
        None => Ok(None),
    }
}

#[cfg(target_os = "linux")]
mod sys {
    //! The system calls, on raw descriptors listed in `/proc/self/fd`. A descriptor
    //! closed (or reused) by another thread between the listing and a call makes that
    //! call fail or read another socket's address, which then does not match: no
    //! memory is touched but the buffers passed here.

    use std::io;
    use std::os::fd::RawFd;

    /// The descriptor of the TCP socket with local port `local` and peer port `peer`.
    pub(super) fn find_socket(local: u16, peer: u16) -> io::Result<Option<RawFd>> {
        for entry in std::fs::read_dir("/proc/self/fd")? {
            let Some(fd) = entry?
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<RawFd>().ok())
            else {
                continue;
            };
            if port(fd, libc::getsockname) == Some(local)
                && port(fd, libc::getpeername) == Some(peer)
            {
                return Ok(Some(fd));
            }
        }
        Ok(None)
    }

    type AddressCall =
        unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

    /// The port of `fd`'s local or peer address (by `call`), if it is an IP socket.
    fn port(fd: RawFd, call: AddressCall) -> Option<u16> {
        // SAFETY: an all-zero sockaddr_storage is a valid value of that plain C struct.
        let mut address: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `address` is a writable sockaddr_storage, large enough for any
        // address, and `len` says so; on a descriptor that is not a socket the call
        // fails and writes nothing.
        let rc = unsafe { call(fd, (&raw mut address).cast(), &mut len) };
        if rc != 0 {
            return None;
        }
        match libc::c_int::from(address.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let v4 = unsafe { &*(&raw const address).cast::<libc::sockaddr_in>() };
                Some(u16::from_be(v4.sin_port))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let v6 = unsafe { &*(&raw const address).cast::<libc::sockaddr_in6>() };
                Some(u16::from_be(v6.sin6_port))
            }
            _ => None,
        }
    }

    pub(super) fn set_nodelay(fd: RawFd, on: bool) -> io::Result<()> {
        let value = libc::c_int::from(on);
        // SAFETY: `value` is a c_int that outlives the call, and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub(super) fn nodelay(fd: RawFd) -> io::Result<bool> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` is a writable c_int and `len` is its size.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw mut value).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            Ok(value != 0)
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    //! No `/proc/self/fd`: the socket cannot be found, and is left as sqlx made it.

    use std::io;

    pub(super) fn find_socket(_local: u16, _peer: u16) -> io::Result<Option<i32>> {
        Ok(None)
    }

    pub(super) fn set_nodelay(_fd: i32, _on: bool) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn nodelay(_fd: i32) -> io::Result<bool> {
        Ok(false)
    }
}
