//! Reads and writes on a socket the core owns, straight through: the
//! socket is tried first and readiness awaited only when it has nothing
//! to give or no room to take. tokio's `read_buf` and `write_all` futures
//! ask for readiness (and take from the task's budget) before every
//! system call, four times a proxied request. Only a wait spends budget here, so a
//! loop that may never wait (a body relayed between two fast peers)
//! keeps a tokio read in it: the task still yields.

use std::io;
use std::task::{Poll, ready};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Appends what `stream` has (at least one byte, waiting for it if need
/// be) to `buf`; 0 at the end of the stream.
pub async fn read_buf(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        loop {
            match read_now(stream, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(stream.poll_read_ready(cx))?;
                }
                done => return Poll::Ready(done),
            }
        }
    })
    .await
}

/// What `stream` has now, appended to `buf`, without waiting. A read
/// that leaves room in `buf` has drained the socket: it clears the
/// socket's readiness, as tokio's own reads do, so the next read waits
/// for the next bytes instead of trying first. Trying would cost a
/// system call that finds nothing (`EAGAIN`) on nearly every read of a
/// proxied request, and an idle connection would take a buffer for it.
fn read_now(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() == buf.len() {
        buf.reserve(64);
    }
    let room = buf.capacity() - buf.len();
    let mut got = None;
    let tried = stream.try_io(Interest::READABLE, || {
        let n = stream.try_read_buf(buf)?;
        got = Some(n);
        match n {
            // Readiness is cleared only for the event it was read at: bytes
            // that arrived since set it again.
            1.. if n < room => Err(io::ErrorKind::WouldBlock.into()),
            _ => Ok(n),
        }
    });
    got.map_or(tried, Ok)
}

/// Writes all of `bytes` to `stream`.
pub async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// More than a socket buffer takes at once: the writer must wait for
    /// room and the reader for bytes, and every byte arrives in order.
    #[tokio::test]
    async fn large_writes_wait_for_room_and_reads_for_bytes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        let expected = sent.clone();
        let writer = tokio::spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            write_all(&s, &sent).await.unwrap();
        });
        let (s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        loop {
            let before = got.len();
            if read_buf(&s, &mut got).await.unwrap() == 0 {
                break;
            }
            assert!(got.len() > before);
        }
        writer.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the bytes arrived changed or out of order");
    }

    /// A read that drained the socket leaves it not ready: the next wait
    /// (an idle keep-alive connection's, before it takes a buffer) waits
    /// for new bytes. Left ready, every request cost a read that found
    /// nothing, and every idle connection a buffer.
    #[tokio::test]
    async fn a_drained_socket_is_not_left_ready() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let (s, _) = listener.accept().await.unwrap();
        peer.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = Vec::with_capacity(1024);
        assert_eq!(read_buf(&s, &mut buf).await.unwrap(), 18);
        let wait = std::time::Duration::from_millis(100);
        let idle = tokio::time::timeout(wait, s.readable()).await;
        assert!(idle.is_err(), "ready with nothing to read");
        peer.write_all(b"next").await.unwrap();
        tokio::time::timeout(wait * 20, s.readable())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read_buf(&s, &mut buf).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn a_read_waits_for_the_peer_and_sees_its_close() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            s.write_all(b"late").await.unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            rest
        });
        let s = TcpStream::connect(addr).await.unwrap();
        let mut got = Vec::new();
        assert_eq!(read_buf(&s, &mut got).await.unwrap(), 4);
        assert_eq!(got, b"late");
        write_all(&s, b"bye").await.unwrap();
        drop(s);
        assert_eq!(peer.await.unwrap(), b"bye");
    }
}
