//! Outgoing TCP connections bound to this node's own IP, so that a firewall rule on a pair of
//! 127.0.0.x addresses cuts exactly one link in multi-process tests (glommio's `connect` cannot
//! choose the source address). Knows no formats.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::io::AsRawFd;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Connects to `to` from `local_ip` (any port), failing after `timeout`. The connect itself is
/// non-blocking and polled with glommio timers, so the executor keeps running meanwhile.
pub async fn connect_from(
    local_ip: IpAddr,
    to: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let domain = if to.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if local_ip.is_ipv6() == to.is_ipv6() && !local_ip.is_unspecified() {
        socket.bind(&SockAddr::from(SocketAddr::new(local_ip, 0)))?;
    }
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::from(to)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            wait_connected(&socket, to, timeout).await?;
        }
        Err(e) => return Err(e),
    }
    socket.set_nonblocking(false)?;
    socket.set_nodelay(true)?;
    Ok(TcpStream::from(socket))
}

async fn wait_connected(socket: &Socket, to: SocketAddr, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(100);
    loop {
        let mut pfd = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd on the stack, zero timeout (never blocks).
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n > 0 {
            return match socket.take_error()? {
                None => Ok(()),
                Some(e) => Err(e),
            };
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "connecting to {to} timed out after {} ms",
                    timeout.as_millis()
                ),
            ));
        }
        glommio::timer::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use glommio::net::TcpListener;
    use glommio::LocalExecutor;

    #[test]
    fn connects_from_the_chosen_address() {
        LocalExecutor::default().run(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let accept = glommio::spawn_local(async move {
                let mut s = listener.accept().await.unwrap();
                let peer = s.peer_addr().unwrap();
                let mut buf = [0u8; 4];
                s.read_exact(&mut buf).await.unwrap();
                (peer, buf)
            });
            let local: IpAddr = "127.0.0.7".parse().unwrap();
            let mut c = connect_from(local, addr, Duration::from_secs(2))
                .await
                .unwrap();
            c.write_all(b"ping").await.unwrap();
            let (peer, buf) = accept.await;
            assert_eq!(peer.ip(), local);
            assert_eq!(&buf, b"ping");
        });
    }

    #[test]
    fn refused_connection_is_an_error() {
        LocalExecutor::default().run(async {
            // Bind then drop to find a port nobody listens on.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let to = SocketAddr::new("127.0.0.1".parse().unwrap(), port);
            let err = connect_from("127.0.0.1".parse().unwrap(), to, Duration::from_secs(2))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        });
    }
}
