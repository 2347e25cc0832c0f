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
//! the connection's two ends (`inet_client_addr()`, `inet_client_port()`,
//! `inet_server_addr()`, `inet_server_port()`), and the process's open descriptors
//! (`/proc/self/fd`) are searched for the TCP socket whose local and peer addresses
//! are those two — a TCP connection's four-tuple, which no other socket shares.
//! Chosen over the alternatives because it touches that connection's socket and
//! nothing else: setting the option on
//! every socket to the server's port would reach sockets that are not ours; a fork or
//! vendored copy of sqlx would be the whole driver to maintain; `LD_PRELOAD` tricks act
//! outside the program. Where the search cannot work the connection is left as it was
//! (and runs as fast as sqlx lets it): over a Unix socket (no TCP, and no Nagle), behind
//! a proxy or NAT that rewrites addresses, and on systems without `/proc/self/fd`.
//!
//! What uses it: [`crate::db::connect`]'s pools ([`on_every_connection`]) and the
//! connections the components open for themselves (the worker's claimer and
//! completer, the caches' flushers). **An application that brings its own
//! `DatabaseConnection`** loses it on that pool's connections — the enqueue, cache
//! and heartbeat round trips, which then pay the ~40 ms stall whenever sqlx writes a
//! statement in two segments — and gets it back with one line on its `ConnectOptions`:
//! `opt.map_sqlx_postgres_pool_opts(service::db::tcp_nodelay::on_every_connection)`.

use std::io;
use std::net::{IpAddr, SocketAddr};

use sea_orm::sqlx::{self, PgConnection, postgres::PgPoolOptions};

/// The connection's ends as the server sees them (client address and port, server
/// address and port), read by [`Endpoints::SQL`]; all NULL over a Unix socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// The client's address.
    pub client_addr: Option<String>,
    /// The client's port.
    pub client_port: Option<i32>,
    /// The server's address.
    pub server_addr: Option<String>,
    /// The server's port.
    pub server_port: Option<i32>,
}

impl Endpoints {
    /// The query that reads them on a connection.
    pub const SQL: &str = "SELECT host(inet_client_addr()) AS client_addr, \
        inet_client_port() AS client_port, host(inet_server_addr()) AS server_addr, \
        inet_server_port() AS server_port";

    /// Reads them on `conn`: one round trip.
    pub async fn of(conn: &mut PgConnection) -> Result<Self, sqlx::Error> {
        Ok(Self::from_row(
            sqlx::query_as(Self::SQL).fetch_one(conn).await?,
        ))
    }

    /// From a row of [`Endpoints::SQL`]'s four columns, in order.
    pub(crate) fn from_row(row: EndpointsRow) -> Self {
        let (client_addr, client_port, server_addr, server_port) = row;
        Self {
            client_addr,
            client_port,
            server_addr,
            server_port,
        }
    }

    /// (this process's end, the server's end), if both are IP endpoints.
    pub fn sockets(&self) -> Option<(SocketAddr, SocketAddr)> {
        let end = |addr: &Option<String>, port: Option<i32>| {
            let ip: IpAddr = addr.as_deref()?.parse().ok()?;
            Some(SocketAddr::new(ip, u16::try_from(port?).ok()?))
        };
        Some((
            end(&self.client_addr, self.client_port)?,
            end(&self.server_addr, self.server_port)?,
        ))
    }
}

/// A row of [`Endpoints::SQL`], as sqlx decodes it.
pub(crate) type EndpointsRow = (Option<String>, Option<i32>, Option<String>, Option<i32>);

/// Sets `TCP_NODELAY` on `conn`'s socket. One round trip ([`Endpoints::SQL`]).
/// Returns whether the socket was found and set (`false` over a Unix socket, or when
/// a proxy or NAT between rewrote the addresses).
pub async fn set_tcp_nodelay(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    Ok(set_for_endpoints(&Endpoints::of(conn).await?))
}

/// `options` with [`set_tcp_nodelay`] run on every connection the pool opens (one
/// more round trip per new connection, none per query). For SeaORM:
/// `ConnectOptions::map_sqlx_postgres_pool_opts(on_every_connection)`. It replaces an
/// `after_connect` callback set earlier on `options`.
pub fn on_every_connection(options: PgPoolOptions) -> PgPoolOptions {
    options.after_connect(|conn, _| {
        Box::pin(async move {
            if !set_tcp_nodelay(conn).await? {
                tracing::debug!(
                    "TCP_NODELAY not set: no TCP socket with the connection's addresses"
                );
            }
            Ok(())
        })
    })
}

/// Sets `TCP_NODELAY` on the socket of the connection whose ends the server
/// reported; returns whether it did. A failure is logged, never returned: the
/// connection works without the option, only slower.
pub(crate) fn set_for_endpoints(ends: &Endpoints) -> bool {
    let Some((local, peer)) = ends.sockets() else {
        return false;
    };
    match set_for_socket(local, peer) {
        Ok(found) => found,
        Err(e) => {
            tracing::debug!(%local, %peer, error = %e, "setting TCP_NODELAY failed");
            false
        }
    }
}

/// Sets `TCP_NODELAY` on this process's TCP socket from `local` to `peer`. Returns
/// whether such a socket was found. Costs one directory read of `/proc/self/fd` and
/// up to three system calls per open descriptor.
pub fn set_for_socket(local: SocketAddr, peer: SocketAddr) -> io::Result<bool> {
    let Some(fd) = sys::find_socket(local, peer)? else {
        return Ok(false);
    };
    sys::set_nodelay(fd, true)?;
    Ok(true)
}

/// Whether `TCP_NODELAY` is set on the socket [`set_for_socket`] would set; `None`
/// when there is no such socket. For tests and diagnostics.
pub fn nodelay_of_socket(local: SocketAddr, peer: SocketAddr) -> io::Result<Option<bool>> {
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
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::os::fd::RawFd;

    /// The descriptor of the TCP socket from `local` to `peer` (IPv4-mapped IPv6
    /// addresses compare as IPv4).
    pub(super) fn find_socket(local: SocketAddr, peer: SocketAddr) -> io::Result<Option<RawFd>> {
        let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        let (local, peer) = (canonical(local), canonical(peer));
        for entry in std::fs::read_dir("/proc/self/fd")? {
            let Some(fd) = entry?
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<RawFd>().ok())
            else {
                continue;
            };
            if address(fd, libc::getsockname).map(canonical) == Some(local)
                && address(fd, libc::getpeername).map(canonical) == Some(peer)
                && is_stream(fd)
            {
                return Ok(Some(fd));
            }
        }
        Ok(None)
    }

    type AddressCall =
        unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

    /// `fd`'s local or peer address (by `call`), if it is an IP socket.
    fn address(fd: RawFd, call: AddressCall) -> Option<SocketAddr> {
        // SAFETY: an all-zero sockaddr_storage is a valid value of that plain C struct.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `storage` is a writable sockaddr_storage, large enough for any
        // address, and `len` says so; on a descriptor that is not a socket the call
        // fails and writes nothing.
        let rc = unsafe { call(fd, (&raw mut storage).cast(), &mut len) };
        if rc != 0 {
            return None;
        }
        match libc::c_int::from(storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let v4 = unsafe { &*(&raw const storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
                Some(SocketAddr::new(ip.into(), u16::from_be(v4.sin_port)))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let v6 = unsafe { &*(&raw const storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
                Some(SocketAddr::new(ip.into(), u16::from_be(v6.sin6_port)))
            }
            _ => None,
        }
    }

    /// Whether `fd` is a stream (TCP) socket.
    fn is_stream(fd: RawFd) -> bool {
        let mut kind: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `kind` is a writable c_int and `len` is its size.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TYPE,
                (&raw mut kind).cast(),
                &mut len,
            )
        };
        rc == 0 && kind == libc::SOCK_STREAM
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
    use std::net::SocketAddr;

    pub(super) fn find_socket(_local: SocketAddr, _peer: SocketAddr) -> io::Result<Option<i32>> {
        Ok(None)
    }

    pub(super) fn set_nodelay(_fd: i32, _on: bool) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn nodelay(_fd: i32) -> io::Result<bool> {
        Ok(false)
    }
}
