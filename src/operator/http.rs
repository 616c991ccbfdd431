//! `/live`, `/ready` and `/metrics` over HTTP/1.1, served by hyper (the server under axum and
//! tonic, already in the tree through kube's client). A peer can stall a connection; hyper's
//! header-read timeout and an overall per-connection limit close it, so a slow client never
//! holds a task or a socket for long, and each connection is served on its own task, so it
//! never delays the probes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// What the probes report. `ready` is true while this replica serves and its last call to the
/// API server succeeded (leader or standby), false on shutdown: readiness is not leadership,
/// or a rolling update would wait forever for a new replica while the old one holds the lease.
#[derive(Default)]
pub struct Health {
    /// The last call to the API server succeeded.
    pub reachable: AtomicBool,
    /// SIGTERM arrived: never ready again.
    pub stopping: AtomicBool,
}

impl Health {
    pub fn ready(&self) -> bool {
        self.reachable.load(Ordering::SeqCst) && !self.stopping.load(Ordering::SeqCst)
    }
}

/// How long a peer may take to send a request's head, and to take the whole exchange.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub connection: Duration,
}

impl Default for Timeouts {
    /// The kubelet's probes time out after 1 s by default and Prometheus after 10 s.
    fn default() -> Self {
        Self { header_read: Duration::from_secs(5), connection: Duration::from_secs(30) }
    }
}

pub async fn serve(
    address: SocketAddr,
    health: Arc<Health>,
    metrics: impl Fn() -> String + Send + Sync + 'static,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!(%address, "serving /live, /ready and /metrics");
    serve_on(listener, health, metrics, Timeouts::default()).await
}

/// [`serve`] on a bound listener (tests bind `127.0.0.1:0` and read the port back).
pub async fn serve_on(
    listener: TcpListener,
    health: Arc<Health>,
    metrics: impl Fn() -> String + Send + Sync + 'static,
    timeouts: Timeouts,
) -> std::io::Result<()> {
    let metrics: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(metrics);
    let mut http = http1::Builder::new();
    // One request per connection is all probes and scrapes need; no idle keep-alive to hold.
    http.timer(TokioTimer::new()).header_read_timeout(timeouts.header_read).keep_alive(false);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors and the like: wait a moment rather than end the server.
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (health, metrics, http) = (health.clone(), metrics.clone(), http.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = route(request.uri().path(), &health, metrics.as_ref());
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http.serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(timeouts.connection, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
                Err(_) => tracing::debug!(%peer, "connection closed: it took too long"),
            }
        });
    }
}

fn route(path: &str, health: &Health, metrics: &(dyn Fn() -> String + Send + Sync)) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, content_type: &'static str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    };
    match path {
        "/live" | "/livez" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/ready" | "/readyz" if health.ready() => text(StatusCode::OK, "text/plain", "ready\n".into()),
        "/ready" | "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n".into()),
        "/metrics" => text(StatusCode::OK, "text/plain; version=0.0.4", metrics()),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    async fn server(timeouts: Timeouts) -> (SocketAddr, Arc<Health>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let health = Arc::new(Health::default());
        tokio::spawn(serve_on(listener, health.clone(), || "gradients_up 1\n".to_string(), timeouts));
        (address, health)
    }

    #[tokio::test]
    async fn probes_and_metrics_answer() {
        let (address, health) = server(Timeouts::default()).await;
        assert!(get(address, "/live").await.starts_with("HTTP/1.1 200 OK"));
        assert!(get(address, "/ready").await.starts_with("HTTP/1.1 503"));
        health.reachable.store(true, Ordering::SeqCst);
        assert!(get(address, "/readyz").await.starts_with("HTTP/1.1 200 OK"));
        let metrics = get(address, "/metrics").await;
        assert!(metrics.contains("text/plain; version=0.0.4") && metrics.ends_with("gradients_up 1\n"), "{metrics}");
        assert!(get(address, "/nope").await.starts_with("HTTP/1.1 404"));
    }

    /// The attack: clients that open connections and send half a request, never the rest.
    #[tokio::test]
    async fn slow_clients_neither_block_the_probes_nor_hold_their_connection() {
        let timeouts = Timeouts { header_read: Duration::from_millis(500), connection: Duration::from_secs(5) };
        let (address, _) = server(timeouts).await;
        let mut stalled = Vec::new();
        for _ in 0..20 {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n").await.unwrap();
            stalled.push(stream);
        }
        let started = Instant::now();
        assert!(get(address, "/live").await.starts_with("HTTP/1.1 200 OK"));
        assert!(get(address, "/metrics").await.ends_with("gradients_up 1\n"));
        assert!(started.elapsed() < Duration::from_millis(400), "the probes waited for the stalled clients");
        // Each stalled connection is closed by the server once its header-read time is up.
        for mut stream in stalled {
            let mut rest = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
            assert!(closed.is_ok(), "a stalled connection was still open 3 s after its 0.5 s header timeout");
        }
    }

    fn status(path: &str, health: &Health) -> StatusCode {
        route(path, health, &String::new).status()
    }

    #[test]
    fn ready_means_reaching_the_api_server_until_shutdown_not_leading() {
        let health = Health::default();
        assert_eq!(status("/ready", &health), StatusCode::SERVICE_UNAVAILABLE, "before the first API call");
        health.reachable.store(true, Ordering::SeqCst);
        assert_eq!(status("/ready", &health), StatusCode::OK, "a standby that reaches the API server");
        health.reachable.store(false, Ordering::SeqCst);
        assert_eq!(status("/readyz", &health), StatusCode::SERVICE_UNAVAILABLE, "the API server is unreachable");
        health.reachable.store(true, Ordering::SeqCst);
        health.stopping.store(true, Ordering::SeqCst);
        assert_eq!(status("/ready", &health), StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        assert_eq!(status("/live", &health), StatusCode::OK);
    }
}
