//! A TCP proxy whose target can move, standing in for the DNS name or virtual IP a
//! failover points at the new primary: connections opened after
//! [`Proxy::retarget`] reach the new port; those already open go on to the old one
//! until either side closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running proxy on 127.0.0.1.
pub struct Proxy {
    /// The port it listens on.
    pub port: u16,
    target: Arc<AtomicU16>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port and forwards each connection to `target` (a port on
    /// 127.0.0.1).
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let target = Arc::new(AtomicU16::new(target));
        let to = Arc::clone(&target);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let port = to.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { port, target, task }
    }

    /// Sends new connections to `port` from now on.
    pub fn retarget(&self, port: u16) {
        self.target.store(port, Ordering::SeqCst);
    }

    /// `url` with its port replaced by this proxy's.
    pub fn url(&self, url: &str, port: u16) -> String {
        url.replace(&format!(":{port}/"), &format!(":{}/", self.port))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
