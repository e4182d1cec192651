// SPDX-License-Identifier: MPL-2.0

//! One client connection's socket: writes that make no progress for the
//! write timeout fail, and a connection closed for stalling is reset, so
//! that a viewer that stops reading cannot pin a socket, its file
//! descriptor and the frames queued for it.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::nosigpipe::NoSigPipe;

/// Asks a connection's task to drop the connection (its stream feed found
/// the client stalled).
#[derive(Debug, Default)]
pub struct Abort {
    requested: AtomicBool,
    notify: Notify,
}

impl Abort {
    pub fn abort(&self) {
        self.requested.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    pub async fn requested(&self) {
        self.notify.notified().await
    }

    fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }
}

pub struct ClientSocket {
    socket: NoSigPipe,
    write_timeout: Duration,
    /// Running while a write waits for the socket to accept something.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: bool,
    abort: std::sync::Arc<Abort>,
}

impl ClientSocket {
    pub fn new(
        socket: NoSigPipe,
        write_timeout: Duration,
        abort: std::sync::Arc<Abort>,
    ) -> ClientSocket {
        ClientSocket {
            socket,
            write_timeout,
            stalled: None,
            timed_out: false,
            abort,
        }
    }

    fn deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if write.is_ready() {
            self.stalled = None;
            return write;
        }
        let timeout = self.write_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stalled.as_mut().poll(cx).is_ready() {
            self.timed_out = true;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client accepted nothing for {timeout:?}"),
            )));
        }
        Poll::Pending
    }
}

impl Drop for ClientSocket {
    fn drop(&mut self) {
        if self.timed_out || self.abort.is_requested() {
            // A reset frees what the kernel still holds for an unresponsive
            // client at once, instead of retrying it for minutes.
            self.socket.reset_on_close();
        }
    }
}

impl AsyncRead for ClientSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let write = Pin::new(&mut this.socket).poll_write(cx, buf);
        this.deadline(cx, write)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let write = Pin::new(&mut this.socket).poll_write_vectored(cx, bufs);
        this.deadline(cx, write)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flush = Pin::new(&mut this.socket).poll_flush(cx);
        this.deadline(cx, flush)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_shutdown(cx)
    }
}
