//! Reads and writes on our HTTP/1.1 sockets (the client's and a plain-HTTP provider's) with
//! the system calls made directly (`rustix`), not through libc.
//!
//! Why: glibc's `recv`, `read` and `writev` are cancellation points. In a process with more
//! than one thread (ours always has a few) each call switches the calling thread's
//! cancellation state on and off around the system call, two atomic operations a call and
//! four calls a request: about 1 % of the gateway's CPU under load (`perf`). A single-threaded
//! proxy such as nginx skips them.
//!
//! Readiness stays tokio's: a call that finds the socket not ready (`WouldBlock`) clears it
//! and waits, and a short read or write clears it too, as tokio's own `poll_read` and
//! `poll_write_vectored` do (on epoll, a short transfer means the socket has nothing more, or
//! no more room: trying again would only cost a system call that fails).

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The most one read takes (on the stack; `buf` keeps only what arrived).
pub const READ_SIZE: usize = 16 << 10;

/// Reads what `stream` has onto the end of `buf`: the bytes read (0: the peer closed its side).
pub fn poll_fill(stream: &TcpStream, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
    let mut stack = [MaybeUninit::<u8>::uninit(); READ_SIZE];
    loop {
        ready!(stream.poll_read_ready(cx))?;
        let mut read = 0;
        let tried = stream.try_io(Interest::READABLE, || {
            let (filled, _) = rustix::io::read(stream, &mut stack[..])?;
            buf.extend_from_slice(filled);
            read = filled.len();
            short(read, READ_SIZE)
        });
        if let Some(done) = settled(tried, read) {
            return Poll::Ready(done);
        }
    }
}

/// Writes some of `bufs` to `stream`: the bytes written.
pub fn poll_write(stream: &TcpStream, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    loop {
        ready!(stream.poll_write_ready(cx))?;
        let mut written = 0;
        let tried = stream.try_io(Interest::WRITABLE, || {
            written = rustix::io::writev(stream, bufs)?;
            short(written, total)
        });
        if let Some(done) = settled(tried, written) {
            return Poll::Ready(done);
        }
    }
}

/// A transfer of `n` bytes of `room` that did not fill it: reported to tokio as `WouldBlock`
/// (after the bytes moved), so that it clears the socket's readiness.
fn short(n: usize, room: usize) -> io::Result<()> {
    match n > 0 && n < room {
        true => Err(io::ErrorKind::WouldBlock.into()),
        false => Ok(()),
    }
}

/// What a try came to: `None` when nothing moved and the socket is to be tried again (after
/// waiting for it, when tokio cleared its readiness).
fn settled(tried: io::Result<()>, moved: usize) -> Option<io::Result<usize>> {
    match tried {
        Ok(()) => Some(Ok(moved)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => (moved > 0).then_some(Ok(moved)),
        // A signal before anything moved: try again (the socket is still marked ready).
        Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
        Err(e) => Some(Err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.expect("connect"), accepted.expect("accept").0)
    }

    async fn read(stream: &TcpStream) -> io::Result<Vec<u8>> {
        let mut buf = BytesMut::new();
        poll_fn(|cx| poll_fill(stream, cx, &mut buf)).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn bytes_written_in_pieces_arrive_whole_and_a_close_reads_as_zero() {
        let (client, mut server) = pair().await;
        let parts = [IoSlice::new(b"GET / HTTP/1.1\r\n"), IoSlice::new(b"host: a\r\n\r\n")];
        let n = poll_fn(|cx| poll_write(&client, cx, &parts)).await.expect("write");
        assert_eq!(n, 27);
        let mut got = Vec::new();
        while got.len() < 27 {
            got.extend(read(&server).await.expect("read"));
        }
        assert_eq!(got, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n");
        drop(client);
        assert!(read(&server).await.expect("read at close").is_empty());
        server.shutdown().await.expect("shutdown");
    }

    #[tokio::test]
    async fn a_read_after_the_socket_is_drained_waits_for_the_next_bytes() {
        let (mut client, server) = pair().await;
        client.write_all(b"one").await.expect("write");
        assert_eq!(read(&server).await.expect("first"), b"one");
        // The short read cleared readiness: the next read waits for the next bytes.
        let later = tokio::spawn(async move {
            tokio::task::yield_now().await;
            client.write_all(b"two").await.expect("write");
            client
        });
        assert_eq!(read(&server).await.expect("second"), b"two");
        drop(later.await.expect("writer"));
    }
}
