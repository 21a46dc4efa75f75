//! The public listener's sockets: one per worker, all bound to the same
//! address with `SO_REUSEPORT`, so the kernel spreads new connections over
//! the workers and no accept is shared between threads.

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Socket, Type};

/// Pending connections each socket queues (tokio's default).
const BACKLOG: i32 = 1024;

/// `n` (at least one) non-blocking listening sockets on `addr`; port 0
/// picks one port for all. The address they got.
pub fn reuseport(addr: SocketAddr, n: usize) -> std::io::Result<(Vec<TcpListener>, SocketAddr)> {
    let first = socket(addr)?;
    let bound = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n.max(1) {
        all.push(socket(bound)?);
    }
    Ok((all, bound))
}

fn socket(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_socket_shares_the_port_picked_for_the_first() {
        let (all, bound) = reuseport("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_eq!(all.len(), 3);
        assert_ne!(bound.port(), 0);
        for l in &all {
            assert_eq!(l.local_addr().unwrap(), bound);
        }
    }
}
