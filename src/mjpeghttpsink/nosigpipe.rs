// SPDX-License-Identifier: MPL-2.0

//! A TCP stream whose writes never raise SIGPIPE.
//!
//! Vectored writes go through writev(2), which has no MSG_NOSIGNAL: when a
//! viewer closes its tab mid-frame, the write raises SIGPIPE, and in a C
//! host such as gst-launch-1.0 (which does not ignore it) that ends the
//! whole process. sendmsg(2) with MSG_NOSIGNAL writes the same iovecs and
//! returns EPIPE instead.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

pub struct NoSigPipe(pub TcpStream);

impl NoSigPipe {
    /// Makes closing the socket send a reset and drop unsent data.
    pub fn reset_on_close(&self) {
        let _ = SockRef::from(&self.0).set_linger(Some(std::time::Duration::ZERO));
    }
}

impl AsyncRead for NoSigPipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for NoSigPipe {
    /// tokio's plain write is send(2) with MSG_NOSIGNAL already.
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            let sent = self.0.try_io(Interest::WRITABLE, || {
                SockRef::from(&self.0).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
            });
            match sent {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
