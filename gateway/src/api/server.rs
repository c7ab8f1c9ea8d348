//! The HTTP listener: a bounded number of connections, each with a header-read and an
//! idle timeout, drained at shutdown.
//!
//! `axum::serve` runs hyper without a timer, so a client that opens a connection and
//! sends nothing holds it (and a file descriptor) for ever. Here every connection is
//! served by hyper with a timer, watched for inactivity, and counted against a cap.
//! With `[server.tls]` each connection is a TLS one, its handshake due within the header
//! timeout.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

/// Limits for every HTTP connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// A request's headers must arrive within this time.
    pub header_timeout: Duration,
    /// A connection with no bytes moving either way for this long is closed: first
    /// gracefully, and after as long again, at once.
    pub idle_timeout: Duration,
    /// Most connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// How long requests in flight may take to finish once shutdown begins.
    pub drain: Duration,
}

/// Counters a user graphs for the listener.
#[derive(Clone, Default)]
pub struct ConnMetrics {
    /// Connections open now.
    pub open: prometheus_client::metrics::gauge::Gauge,
    /// Connections closed because they were idle.
    pub idle_closed: prometheus_client::metrics::counter::Counter,
    /// TLS handshakes that failed or did not finish in time.
    pub tls_failed: prometheus_client::metrics::counter::Counter,
}

/// How connections arrive: plain or TLS, and from which proxies forwarded headers count.
#[derive(Clone, Default)]
pub struct Transport {
    /// Set: every connection is TLS.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Reverse proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed.
    pub proxies: Arc<super::client::TrustedProxies>,
}

/// Serves `router` on `listener` until `shutdown` fires, then lets requests in flight
/// finish for at most `limits.drain`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    transport: Transport,
    metrics: ConnMetrics,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let metrics = metrics.clone();
        let stop = shutdown.clone();
        let transport = transport.clone();
        conns.spawn(async move {
            metrics.open.inc();
            serve_connection(stream, peer, router, limits, transport, &metrics, stop).await;
            metrics.open.dec();
            drop(permit);
        });
        // Reap finished connections so the set does not grow with every client.
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.drain, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(
            after_s = limits.drain.as_secs(),
            open = conns.len(),
            "HTTP requests still open at shutdown were dropped"
        );
        conns.shutdown().await;
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnLimits,
    transport: Transport,
    metrics: &ConnMetrics,
    shutdown: CancellationToken,
) {
    let activity = Activity::new();
    let watched = Watched { inner: stream, activity: activity.clone() };
    let Some(acceptor) = &transport.tls else {
        let conn = Conn { peer, tls: false, router, proxies: transport.proxies.clone(), limits, activity };
        return conn.drive(watched, metrics, shutdown).await;
    };
    let handshake = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = tokio::time::timeout(limits.header_timeout, acceptor.accept(watched)) => r,
    };
    match handshake {
        Ok(Ok(tls)) => {
            let conn = Conn { peer, tls: true, router, proxies: transport.proxies.clone(), limits, activity };
            conn.drive(tls, metrics, shutdown).await
        }
        Ok(Err(e)) => {
            metrics.tls_failed.inc();
            debug!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            metrics.tls_failed.inc();
            debug!(%peer, "TLS handshake not finished within the header timeout");
        }
    }
}

/// One accepted connection, ready for HTTP.
struct Conn {
    peer: SocketAddr,
    tls: bool,
    router: Router,
    proxies: Arc<super::client::TrustedProxies>,
    limits: ConnLimits,
    activity: Activity,
}

impl Conn {
    async fn drive<I>(self, io: I, metrics: &ConnMetrics, shutdown: CancellationToken)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn { peer, tls, router, proxies, limits, activity } = self;
        let io = TokioIo::new(io);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let client = proxies.client(peer.ip(), tls, req.headers());
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(client);
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
        let conn = http.serve_connection(io, service);
        tokio::pin!(conn);
        let mut closing = false;
        let mut tick = tokio::time::interval(Duration::from_secs(1).min(limits.idle_timeout));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                    return;
                }
                _ = shutdown.cancelled(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = tick.tick() => {
                    if activity.idle_for() < limits.idle_timeout {
                        continue;
                    }
                    if closing {
                        // Still nothing moved since the graceful close: a client that stopped
                        // reading a response. Drop it.
                        metrics.idle_closed.inc();
                        return;
                    }
                    metrics.idle_closed.inc();
                    closing = true;
                    activity.touch();
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// When bytes last moved on a connection.
#[derive(Clone)]
struct Activity {
    base: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self { base: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }

    fn touch(&self) {
        self.last_ms.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.base.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A stream that notes every read or write that moved bytes.
struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits() -> ConnLimits {
        ConnLimits {
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(2),
            max_connections: 4,
            drain: Duration::from_secs(1),
        }
    }

    async fn start() -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>, ConnMetrics) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let stop = CancellationToken::new();
        let metrics = ConnMetrics::default();
        let task = tokio::spawn(serve(listener, router, limits(), Transport::default(), metrics.clone(), stop.clone()));
        (addr, stop, task, metrics)
    }

    async fn get(addr: SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    /// Reads until the server closes the connection; how long that took.
    async fn time_to_close(mut s: tokio::net::TcpStream, deadline: Duration) -> Option<Duration> {
        let t = Instant::now();
        let mut buf = [0u8; 512];
        loop {
            match tokio::time::timeout(deadline.saturating_sub(t.elapsed()), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(t.elapsed()),
                Ok(Ok(_)) => continue,
                Err(_) => return None,
            }
        }
    }

    #[tokio::test]
    async fn silent_connections_are_closed_after_the_header_timeout_while_others_are_served() {
        let (addr, stop, task, _) = start().await;
        let mut silent = Vec::new();
        for _ in 0..3 {
            silent.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        }
        assert!(get(addr).await.ends_with("ok"), "a normal request is served beside silent ones");
        for s in silent {
            let closed = time_to_close(s, Duration::from_secs(5)).await.expect("closed within 5 s");
            assert!(closed < Duration::from_secs(2), "closed after {closed:?}, header timeout 300 ms");
        }
        stop.cancel();
        task.await.expect("server ends");
    }

    #[tokio::test]
    async fn a_kept_alive_connection_is_closed_once_idle() {
        let (addr, stop, task, metrics) = start().await;
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.expect("response");
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("ok"));
        let closed = time_to_close(s, Duration::from_secs(8)).await.expect("closed");
        assert!(closed < Duration::from_secs(5), "closed after {closed:?}");
        stop.cancel();
        task.await.expect("server ends");
        assert!(metrics.open.get() == 0, "no connection counted open after shutdown");
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_for_a_free_slot() {
        let (addr, stop, task, metrics) = start().await;
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while metrics.open.get() < 4 && Instant::now() < deadline {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(metrics.open.get(), 4);
        // The fifth is accepted only when a held one is closed (here by the header timeout).
        assert!(get(addr).await.ends_with("ok"));
        assert!(metrics.open.get() <= 4, "never more than the cap open");
        stop.cancel();
        task.await.expect("server ends");
    }
}
