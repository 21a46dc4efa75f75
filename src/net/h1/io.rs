//! Reads and writes on a socket the core owns, straight through: the
//! socket is tried first and readiness awaited only when it has nothing
//! to give or no room to take. tokio's `read_buf` and `write_all` futures
//! ask for readiness (and take from the task's budget) before every
//! system call: about 250 instructions a read or write, four of them a
//! proxied request (callgrind). Only a wait spends budget here, so a
//! loop that may never wait (a body relayed between two fast peers)
//! keeps a tokio read in it: the task still yields.

use std::io;
use std::task::{Poll, ready};

use tokio::net::TcpStream;

/// Appends what `stream` has (at least one byte, waiting for it if need
/// be) to `buf`; 0 at the end of the stream.
pub async fn read_buf(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        loop {
            match stream.try_read_buf(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(stream.poll_read_ready(cx))?;
                }
                done => return Poll::Ready(done),
            }
        }
    })
    .await
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
