//! A faulty road to the API server (issue 13): a plain-HTTP proxy on 127.0.0.1 that the
//! operator is pointed at (its own kubeconfig), forwarding every request to the e2e API server
//! with the cluster's admin credentials (the operator's impersonation headers pass through, so
//! the chart's RBAC still decides). On the way it cuts watch streams mid-flight (the connection
//! drops, as when a load balancer or an API server goes away), answers a share of writes 429
//! `TooManyRequests` with `Retry-After` (the API server's priority-and-fairness refusal) and a
//! share of updates 409 `Conflict` (as a stale resourceVersion gets), and counts what it did.
//!
//! Conflicts are injected on updates and patches only: on a create a 409 means "already
//! exists", which would be a lie about the cluster; and never on the leader Lease, where a
//! conflict means that another replica holds it (the failover test covers that).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::http::{Method, Request, Response, StatusCode};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

/// How often each fault strikes.
#[derive(Debug, Clone)]
pub struct Faults {
    /// A watch stream is cut after a random time in this range (milliseconds).
    pub watch_lifetime_ms: std::ops::Range<u64>,
    /// Share of writes answered 429.
    pub throttled: f64,
    /// Share of updates and patches answered 409.
    pub conflicts: f64,
    pub seed: u64,
}

/// What the proxy did.
#[derive(Debug, Default)]
pub struct Injected {
    pub requests: AtomicU64,
    pub writes: AtomicU64,
    pub watches_cut: AtomicU64,
    pub throttled: AtomicU64,
    pub conflicts: AtomicU64,
}

impl std::fmt::Display for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = |c: &AtomicU64| c.load(Ordering::SeqCst);
        write!(
            f,
            "{} watch streams cut, {} writes answered 429, {} answered 409, of {} writes in {} requests",
            n(&self.watches_cut),
            n(&self.throttled),
            n(&self.conflicts),
            n(&self.writes),
            n(&self.requests)
        )
    }
}

pub struct FaultProxy {
    /// A kubeconfig naming the proxy (no credentials: the proxy adds them).
    pub kubeconfig: PathBuf,
    pub injected: Arc<Injected>,
    calm: Arc<AtomicBool>,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct State {
    upstream: kube::Client,
    faults: Faults,
    rng: Mutex<ChaCha8Rng>,
    injected: Arc<Injected>,
    /// Set: requests pass untouched and new watches run on.
    calm: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to the cluster of `upstream_kubeconfig`.
    pub async fn start(upstream_kubeconfig: &str, faults: Faults) -> FaultProxy {
        let options = kube::config::KubeConfigOptions::default();
        let kubeconfig = kube::config::Kubeconfig::read_from(upstream_kubeconfig).unwrap();
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.unwrap();
        // The operator's own client retries what it gets; the proxy passes answers on as they are.
        config.default_retry = false;
        let upstream = kube::Client::try_from(config).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let injected = Arc::new(Injected::default());
        let calm = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State {
            upstream,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(faults.seed)),
            faults,
            injected: injected.clone(),
            calm: calm.clone(),
        });
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(forward(&state, request).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig.yaml");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: faulty\n  cluster: {{server: 'http://{address}'}}\nusers:\n- name: faulty\n  user: {{}}\ncontexts:\n- name: faulty\n  context: {{cluster: faulty, user: faulty}}\ncurrent-context: faulty\n"
            ),
        )
        .unwrap();
        FaultProxy { kubeconfig: path, injected, calm, server, _dir: dir }
    }

    /// From now on, no more faults: what the operator still retries can succeed.
    pub fn calm(&self) {
        self.calm.store(true, Ordering::SeqCst);
    }
}

/// The fault a request draws, if any.
enum Fault {
    Throttle,
    Conflict,
}

async fn forward(state: &State, request: Request<Incoming>) -> Response<Body> {
    let injected = &state.injected;
    injected.requests.fetch_add(1, Ordering::SeqCst);
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let watch = parts.uri.query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let write = parts.method != Method::GET && parts.method != Method::HEAD;
    let calm = state.calm.load(Ordering::SeqCst);
    if write {
        injected.writes.fetch_add(1, Ordering::SeqCst);
        let update = parts.method == Method::PUT || parts.method == Method::PATCH;
        let fault = if calm {
            None
        } else {
            let mut rng = state.rng.lock().unwrap();
            let draw: f64 = rng.random();
            if draw < state.faults.throttled {
                Some(Fault::Throttle)
            } else if update && !path.contains("/leases/") && draw < state.faults.throttled + state.faults.conflicts {
                Some(Fault::Conflict)
            } else {
                None
            }
        };
        match fault {
            Some(Fault::Throttle) => {
                injected.throttled.fetch_add(1, Ordering::SeqCst);
                return status(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "too many requests, please try again later (injected by the fault proxy)",
                );
            }
            Some(Fault::Conflict) => {
                injected.conflicts.fetch_add(1, Ordering::SeqCst);
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {path}: the object has been modified; please apply your changes to the latest version and try again (injected by the fault proxy)"
                    ),
                );
            }
            None => {}
        }
    }
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "the proxy could not read the request body");
    };
    parts.uri = parts.uri.path_and_query().map_or_else(|| "/".to_string(), |p| p.to_string()).parse().unwrap();
    parts.headers.remove(hyper::header::HOST);
    let upstream = Request::from_parts(parts, kube::client::Body::from(body));
    let response = match state.upstream.send(upstream).await {
        Ok(response) => response,
        Err(e) => return status(StatusCode::BAD_GATEWAY, "ServiceUnavailable", &format!("the proxy: {e}")),
    };
    let (parts, body) = response.into_parts();
    let body = body.map_err(|e| Box::new(e) as BoxError);
    if !watch || calm || parts.status != StatusCode::OK {
        return Response::from_parts(parts, body.boxed_unsync());
    }
    // The watch runs for a while, then its connection drops mid-stream (an error in a
    // response body makes hyper abort the connection).
    let lifetime =
        Duration::from_millis(state.rng.lock().unwrap().random_range(state.faults.watch_lifetime_ms.clone()));
    let deadline = tokio::time::Instant::now() + lifetime;
    let injected = state.injected.clone();
    let frames = futures::stream::unfold(Some(Box::pin(body)), move |body| {
        let injected = injected.clone();
        async move {
            let mut body = body?;
            tokio::select! {
                frame = body.frame() => match frame {
                    Some(Ok(frame)) => Some((Ok(frame), Some(body))),
                    Some(Err(e)) => Some((Err(e), None)),
                    None => None,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    injected.watches_cut.fetch_add(1, Ordering::SeqCst);
                    Some((Err::<Frame<Bytes>, BoxError>("watch cut by the fault proxy".into()), None))
                }
            }
        }
    });
    Response::from_parts(parts, StreamBody::new(frames).boxed_unsync())
}

/// A Kubernetes `Status` answer.
fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).map_err(|e| match e {}).boxed_unsync());
    *response.status_mut() = code;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, "application/json".parse().unwrap());
    if code == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(hyper::header::RETRY_AFTER, "1".parse().unwrap());
    }
    response
}
