//! A client that goes away cancels its request: while the core waits on
//! the upstream (for the response head, or for the next bytes of a
//! streamed body such as an SSE stream or `subscriptions/listen`), it
//! also watches the client's connection, and an end or a reset there
//! ends the exchange at once, closing the upstream connection (MCP
//! 2026-07-28 cancels a request by closing its stream). Watching costs no
//! system call while the client is quiet: only a readiness the kernel
//! reported is looked at, by a peek that consumes nothing.

use std::pin::pin;
use std::task::Poll;

use crate::net::h1::wire::{Watched, Wire};

/// `fut`'s output, or `None` once `client` has closed or reset its
/// connection. A client that sends more bytes meanwhile (a pipelined
/// request) cannot be told apart from one still waiting: it is no longer
/// watched for this wait.
pub(super) async fn or_gone<F: Future>(client: &mut Wire, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut watching = true;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if !watching {
            return Poll::Pending;
        }
        match client.poll_gone(cx) {
            Poll::Ready(Watched::Gone) => Poll::Ready(None),
            Poll::Ready(Watched::Sent) => {
                watching = false;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_closed_client_ends_the_wait_and_a_talking_one_does_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let never = std::future::pending::<()>();
        drop(client);
        let waited =
            tokio::time::timeout(Duration::from_secs(2), or_gone(&mut server.into(), never)).await;
        assert_eq!(waited, Ok(None), "the close was not seen");

        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let slow = tokio::time::sleep(Duration::from_millis(100));
        assert_eq!(
            or_gone(&mut server.into(), slow).await,
            Some(()),
            "pipelined bytes ended the wait"
        );
    }
}
