//! `gradients await-isolation`: the first init container of a trainer pod, when
//! `workloads.awaitIsolation` is on. Some network plugins (kube-router, for one) program a new
//! pod's NetworkPolicy rules a moment after its sandbox starts; a miner's code that starts in
//! that moment reaches what the policy forbids. This waits, in the pod's own network, until a
//! connection the trainer policy forbids (the API server's Service) no longer goes through.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long one connection attempt may take: a policy that drops instead of rejecting
/// answers with silence, which is as good as a refusal here.
const ATTEMPT: Duration = Duration::from_secs(1);

/// The API server's Service address, from the variables the kubelet sets in every container.
pub fn api_server_from_env() -> Result<SocketAddr, String> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set (not in a pod?)"));
    let (host, port) = (var("KUBERNETES_SERVICE_HOST")?, var("KUBERNETES_SERVICE_PORT")?);
    let joined = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    joined
        .to_socket_addrs()
        .map_err(|e| format!("{joined}: {e}"))?
        .next()
        .ok_or_else(|| format!("{joined}: no address"))
}

/// Waits until `target` refuses or ignores a connection, retrying every `every` for at most
/// `limit`. Returns how long it waited and why the last attempt failed; an error when the
/// target still answered at the end (the pod is not isolated).
pub fn await_isolation(target: SocketAddr, limit: Duration, every: Duration) -> Result<(Duration, String), String> {
    let started = Instant::now();
    loop {
        match TcpStream::connect_timeout(&target, ATTEMPT) {
            Err(e) => return Ok((started.elapsed(), e.to_string())),
            Ok(stream) => drop(stream),
        }
        if started.elapsed() >= limit {
            return Err(format!(
                "{target} still accepts connections from this pod after {} s: the network plugin does not \
                 enforce NetworkPolicies, or the pod's policy allows it (workloads.awaitIsolation needs both)",
                limit.as_secs()
            ));
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_closed_port_is_isolation_at_once() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (waited, why) = await_isolation(port, Duration::from_secs(5), Duration::from_millis(10)).unwrap();
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        assert!(!why.is_empty());
    }

    #[test]
    fn a_target_that_keeps_answering_is_an_error_naming_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let error = await_isolation(target, Duration::from_millis(200), Duration::from_millis(20)).unwrap_err();
        assert!(error.contains(&target.to_string()) && error.contains("workloads.awaitIsolation"), "{error}");
    }

    #[test]
    fn it_waits_while_the_target_answers_and_returns_once_it_stops() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(listener);
        });
        let (waited, _) = await_isolation(target, Duration::from_secs(10), Duration::from_millis(20)).unwrap();
        closer.join().unwrap();
        assert!(waited >= Duration::from_millis(250), "returned before the port closed: {waited:?}");
    }
}
