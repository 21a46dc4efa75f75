//! `headgate probe`: asks a running headgate's admin listener whether it
//! is alive, for a container's `HEALTHCHECK` (the image has no shell or
//! curl). Loopback, cleartext, one short request; no secret is sent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// How long the probe waits in all.
const WAIT: Duration = Duration::from_secs(2);

/// GETs `path` on `addr`: success when the answer is `200`.
pub fn probe(addr: SocketAddr, path: &str) -> ExitCode {
    match ask(addr, path) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("{path} on {addr} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{path} on {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The status of one `GET path`.
fn ask(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, WAIT)?;
    s.set_read_timeout(Some(WAIT))?;
    s.set_write_timeout(Some(WAIT))?;
    // One write: a server that answers on the first bytes and closes must
    // not find the rest of the request unread (its kernel would reset).
    let req = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", addr.ip());
    s.write_all(req.as_bytes())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    // `HTTP/1.x NNN`
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_200_is_alive_and_anything_else_is_not() {
        for (answer, alive) in [
            (&b"HTTP/1.1 200 OK\r\n\r\n"[..], true),
            (b"HTTP/1.1 503 x\r\n\r\n", false),
            (b"junk", false),
        ] {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                let (mut c, _) = l.accept().unwrap();
                // The whole request, then the answer (as a server does).
                let mut got = Vec::new();
                let mut buf = [0u8; 256];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = c.write_all(answer);
            });
            assert_eq!(ask(addr, "/healthz").ok() == Some(200), alive);
            server.join().unwrap();
        }
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(ask(closed, "/healthz").is_err());
    }
}
