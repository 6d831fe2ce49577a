//! An HTTP/2 connection's stream, watched until the client's connection preface has
//! arrived.
//!
//! Pingora's HTTP/2 loop waits for the preface without a deadline, and only then starts
//! its idle timeout: a client that completes the TLS handshake, negotiates `h2` and then
//! sends nothing would hold its connection slot for ever. `server::connections` gives
//! Pingora this wrapper and closes the connection if the preface (24 bytes, RFC 9113
//! §3.4) has not been read by `limits.header_timeout`. Everything else passes through.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
const PREFACE_LEN: usize = 24;

/// A stream that sets `arrived` once the first [`PREFACE_LEN`] bytes have been read.
#[derive(Debug)]
pub struct PrefaceWatch {
    inner: Stream,
    read: usize,
    arrived: Arc<AtomicBool>,
}

impl PrefaceWatch {
    pub fn new(inner: Stream) -> (PrefaceWatch, Arc<AtomicBool>) {
        let arrived = Arc::new(AtomicBool::new(false));
        let watch = PrefaceWatch {
            inner,
            read: 0,
            arrived: arrived.clone(),
        };
        (watch, arrived)
    }
}

impl AsyncRead for PrefaceWatch {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.read < PREFACE_LEN {
            let now = self.read + (buf.filled().len() - before);
            self.read = now;
            if now >= PREFACE_LEN {
                self.arrived.store(true, Ordering::Release);
            }
        }
        polled
    }
}

impl AsyncWrite for PrefaceWatch {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for PrefaceWatch {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for PrefaceWatch {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for PrefaceWatch {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for PrefaceWatch {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> std::time::Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> std::time::Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for PrefaceWatch {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for PrefaceWatch {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait]
impl Peek for PrefaceWatch {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

// `IO` (and so `Stream`) follows from the traits above.

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_flag_rises_once_the_whole_preface_was_read() {
        let (client, server) = tokio::io::duplex(64);
        let (mut watch, arrived) = PrefaceWatch::new(Box::new(server));
        let mut client = client;
        client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = watch.read(&mut buf).await.unwrap();
        assert_eq!(n, 16);
        assert!(!arrived.load(Ordering::Acquire));
        client.write_all(b"\r\nSM\r\n\r\nmore").await.unwrap();
        let n = watch.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"\r\nSM\r\n\r\nmore");
        assert!(arrived.load(Ordering::Acquire));
    }
}
