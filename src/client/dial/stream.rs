//! A connection to the server ([`Conn`], plain or TLS), and what the server said first on it
//! ([`Greeting`]), recorded under TLS by [`Watched`] as the bytes are read.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The first bytes a server sent on a connection (up to five, a TLS record header), shared
/// between the connection, which records them as it reads them, and whoever explains a failure.
#[derive(Debug, Clone, Default)]
pub struct Greeting(Arc<Mutex<Vec<u8>>>);

/// A TLS record header is five bytes; two tell it apart from anything else.
const GREETING_LEN: usize = 5;

impl Greeting {
    /// Keeps the start of `read`, until [`GREETING_LEN`] bytes are kept; returns whether it has
    /// all it wants.
    fn record(&self, read: &[u8]) -> bool {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = GREETING_LEN.saturating_sub(kept.len());
        kept.extend_from_slice(&read[..room.min(read.len())]);
        kept.len() >= GREETING_LEN
    }

    fn bytes(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the server began with a TLS record: a content type from 20 (change cipher spec)
    /// to 24 (heartbeat), then major version 3. A TLS server that cannot make sense of what it
    /// received answers with an alert (21) before closing; rustls does.
    pub fn is_tls(&self) -> bool {
        matches!(self.bytes()[..], [0x14..=0x18, 0x03, ..])
    }

    /// Whether the server said something first, and it was not TLS (`HTTP/1.1 400 ...`).
    pub fn is_other(&self) -> bool {
        let bytes = self.bytes();
        !bytes.is_empty() && !self.is_tls()
    }

    /// Whether the server has sent nothing yet.
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }
}

/// A stream that records the first bytes read from it into a [`Greeting`], then gets out of the
/// way.
pub struct Watched<S> {
    inner: S,
    greeting: Greeting,
    /// Whether the greeting still wants bytes: once it has them, reads cost nothing extra.
    watching: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.watching && matches!(result, Poll::Ready(Ok(()))) {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                self.watching = !self.greeting.record(read);
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection to the server, plain or TLS.
pub enum Conn {
    /// Plain TCP.
    Plain(Watched<TcpStream>),
    /// TLS over TCP (boxed: rustls's state is several kilobytes).
    Tls(Box<TlsStream<Watched<TcpStream>>>),
}

impl Conn {
    /// The first bytes the server sent on this connection, as they arrive.
    pub fn greeting(&self) -> Greeting {
        match self {
            Conn::Plain(tcp) => tcp.greeting.clone(),
            Conn::Tls(tls) => tls.get_ref().0.greeting.clone(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl<S> Watched<S> {
    /// `inner`, recording its first bytes into `greeting`.
    pub(super) fn new(inner: S, greeting: Greeting) -> Watched<S> {
        Watched {
            inner,
            greeting,
            watching: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greeting(bytes: &[u8]) -> Greeting {
        let g = Greeting::default();
        g.record(bytes);
        g
    }

    #[test]
    fn a_greeting_tells_tls_from_plain_http() {
        // rustls's alert to a plain-text client: decode_error.
        assert!(greeting(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]).is_tls());
        assert!(greeting(&[0x16, 0x03, 0x01]).is_tls());
        let http = greeting(b"HTTP/1.1 400 Bad Request\r\n");
        assert!(!http.is_tls() && http.is_other());
        assert_eq!(http.bytes(), b"HTTP/");
        let empty = Greeting::default();
        assert!(empty.is_empty() && !empty.is_tls() && !empty.is_other());
        // One byte is not enough to say TLS; it is enough to say something was sent.
        let one = greeting(&[0x15]);
        assert!(!one.is_tls() && one.is_other());
    }

    #[test]
    fn a_greeting_keeps_only_the_first_bytes_across_reads() {
        let g = Greeting::default();
        assert!(!g.record(&[0x15, 0x03]));
        assert!(g.record(&[0x03, 0x00, 0x02, 0x02, 0x32]));
        assert_eq!(g.bytes(), [0x15, 0x03, 0x03, 0x00, 0x02]);
        assert!(g.record(b"more"));
        assert_eq!(g.bytes().len(), GREETING_LEN);
    }
}
