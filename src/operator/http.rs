//! `/live`, `/ready` and `/metrics` over a minimal HTTP/1.1 server (one request per
//! connection is all probes and Prometheus need; no extra dependency).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

pub async fn serve(
    address: SocketAddr,
    health: Arc<Health>,
    metrics: impl Fn() -> String + Send + Sync + 'static,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!(%address, "serving /live, /ready and /metrics");
    serve_on(listener, health, metrics).await
}

/// [`serve`] on a bound listener (tests bind `127.0.0.1:0` and read the port back).
pub async fn serve_on(
    listener: TcpListener,
    health: Arc<Health>,
    metrics: impl Fn() -> String + Send + Sync + 'static,
) -> std::io::Result<()> {
    let metrics = Arc::new(metrics);
    loop {
        let (mut stream, _) = listener.accept().await?;
        let health = health.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            let mut read = 0;
            // Read until the end of the request head (or a full buffer: only the path matters).
            while read < buffer.len() {
                match stream.read(&mut buffer[read..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
                if buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buffer[..read]);
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let (status, content_type, body) = route(path, &health, metrics.as_ref());
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

fn route(path: &str, health: &Health, metrics: &dyn Fn() -> String) -> (&'static str, &'static str, String) {
    match path {
        "/live" | "/livez" => ("200 OK", "text/plain", "ok\n".to_string()),
        "/ready" | "/readyz" if health.ready() => ("200 OK", "text/plain", "ready\n".to_string()),
        "/ready" | "/readyz" => ("503 Service Unavailable", "text/plain", "not ready\n".to_string()),
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(path: &str, health: &Health) -> &'static str {
        route(path, health, &String::new).0
    }

    #[test]
    fn ready_means_reaching_the_api_server_until_shutdown_not_leading() {
        let health = Health::default();
        assert_eq!(status("/ready", &health), "503 Service Unavailable", "before the first API call");
        health.reachable.store(true, Ordering::SeqCst);
        assert_eq!(status("/ready", &health), "200 OK", "a standby that reaches the API server");
        health.reachable.store(false, Ordering::SeqCst);
        assert_eq!(status("/readyz", &health), "503 Service Unavailable", "the API server is unreachable");
        health.reachable.store(true, Ordering::SeqCst);
        health.stopping.store(true, Ordering::SeqCst);
        assert_eq!(status("/ready", &health), "503 Service Unavailable", "shutting down");
        assert_eq!(status("/live", &health), "200 OK");
    }
}
