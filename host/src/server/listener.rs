//! Accepting connections: TCP, then TLS when configured, then HTTP/1.1 or HTTP/2 (hyper's
//! automatic builder; ALPN decides under TLS), each connection served by the router.
//!
//! Connections are bounded, so that clients who open sockets and send nothing cannot take the
//! server's file descriptors or memory:
//! - at most [`ConnectionLimits::max_connections`] at once; one more is closed at once (and
//!   counted), so the server keeps accepting when the slots free up;
//! - the TLS handshake and the first request's head must arrive within `header_timeout`, and
//!   every later request head too (HTTP/1.1: hyper's header-read timeout);
//! - a connection with no request in flight for `idle_timeout` after its last answer is
//!   closed (HTTP/1.1 keep-alive and HTTP/2 alike).
//!
//! Request bodies are bounded by ingest (size, minimum rate, in-flight bytes), not here.
//!
//! On shutdown the listener stops accepting and every open connection finishes the requests
//! it has in flight (HTTP/1.1 closes after its current answer, HTTP/2 sends GOAWAY).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use super::tls::{TlsListener, peer_identity};
use crate::shutdown::Shutdown;
use crate::telemetry::metrics;

/// Bounds on connections (`[server]` keys of the same names).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serve `router` on `listener` (over TLS when `tls` is set) until `shutdown`, then let the
/// open connections finish what they have in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<TlsListener>>,
    limits: ConnectionLimits,
    mut shutdown: Shutdown,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.recv() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors or memory: wait for connections to close rather than
                // spinning; per-connection errors (reset before accept) just go on.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics().ingest.connection_refused();
            tracing::debug!(%peer, max_connections = limits.max_connections, "connection limit reached; closing");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            router: router.clone(),
            peer,
            limits,
            watcher: graceful.watcher(),
            _slot: slot,
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.serve(tcp, None).await,
                Some(tls) => connection.serve_tls(tcp, &tls).await,
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One accepted connection.
struct Connection {
    router: Router,
    peer: SocketAddr,
    limits: ConnectionLimits,
    watcher: Watcher,
    /// Held for the connection's life: one of `max_connections`.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve_tls(self, tcp: TcpStream, tls: &TlsListener) {
        let handshake = tokio::time::timeout(self.limits.header_timeout, tls.acceptor().accept(tcp));
        let stream = match handshake.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                metrics().ingest.tls_handshake_failed();
                tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                metrics().ingest.tls_handshake_failed();
                tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                return;
            }
        };
        let identity = peer_identity(stream.get_ref().1).map(Arc::new);
        self.serve(stream, identity).await
    }

    async fn serve<I>(self, io: I, identity: Option<Arc<crate::ingest::auth::ClientIdentity>>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let peer = self.peer;
        let router = self.router;
        let in_service = activity.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let busy = in_service.begin();
            request.extensions_mut().insert(ConnectInfo(peer));
            if let Some(identity) = &identity {
                request.extensions_mut().insert(identity.clone());
            }
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(axum::body::Body::new)).await;
                drop(busy);
                response
            }
        });
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout);
        builder.http2().timer(TokioTimer::new());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        let connection = self.watcher.watch(connection.into_owned());
        tokio::select! {
            result = connection => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            _ = activity.expired(self.limits) => {
                metrics().ingest.connection_timed_out();
                tracing::debug!(%peer, "closing an idle connection");
            }
        }
    }
}

/// What a connection is doing, for the idle timeout.
struct Activity {
    in_flight: AtomicUsize,
    /// A request has been answered on this connection.
    served: AtomicBool,
    /// Since when nothing is in flight.
    idle_since: Mutex<Instant>,
}

/// Marks a request in flight until dropped.
struct Busy(Arc<Activity>);

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: Mutex::new(Instant::now()),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Resolves once nothing has been in flight for the limit that applies: `header_timeout`
    /// before the first answer (the first request must come promptly), `idle_timeout` after.
    async fn expired(&self, limits: ConnectionLimits) {
        loop {
            let limit = if self.served.load(Ordering::SeqCst) {
                limits.idle_timeout
            } else {
                limits.header_timeout
            };
            let idle_for = self.idle_since.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
            if self.in_flight.load(Ordering::SeqCst) == 0 && idle_for >= limit {
                return;
            }
            // Look again when the limit would be reached, or soon if a request is in flight.
            let wait = limit.saturating_sub(idle_for).max(Duration::from_millis(100));
            tokio::time::sleep(wait.min(limit)).await;
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.served.store(true, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(ms: u64) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_millis(ms),
            idle_timeout: Duration::from_millis(ms * 2),
            max_connections: 1,
        }
    }

    #[tokio::test]
    async fn an_unused_connection_expires_after_the_header_timeout() {
        let activity = Arc::new(Activity::new());
        let started = Instant::now();
        activity.expired(limits(150)).await;
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn a_request_in_flight_keeps_the_connection_and_idle_time_counts_from_its_answer() {
        let activity = Arc::new(Activity::new());
        let busy = activity.begin();
        let expiry = tokio::time::timeout(Duration::from_millis(400), activity.expired(limits(100)));
        assert!(expiry.await.is_err(), "expired while a request was in flight");
        drop(busy);
        let answered = Instant::now();
        activity.expired(limits(100)).await;
        assert!(
            answered.elapsed() >= Duration::from_millis(200),
            "idle_timeout applies after an answer"
        );
    }
}
