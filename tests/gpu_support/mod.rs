//! The `gradients gpu-agent` binary as a child process, and /metrics fetched over TCP.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// NVML readings recorded by hand from two H100s: the stand-in for NVML on machines without a GPU.
pub fn recording() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .join("tests/fixtures/gpu/h100x2.json")
}

pub fn get(address: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to the agent");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the response");
    response
}

/// The agent binary, reading its address from its own announcement on stderr.
pub struct Agent {
    child: Child,
    pub address: SocketAddr,
    pub stderr: Vec<String>,
}

impl Agent {
    pub fn start(args: &[&str]) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gradients"))
            .args(["gpu-agent", "--listen", "127.0.0.1:0", "--interval-s", "1"])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gradients gpu-agent");
        let mut stderr = Vec::new();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let address = loop {
            let line = lines.next().expect("the agent announces its address").unwrap();
            stderr.push(line.clone());
            if let Some(address) = line.strip_prefix("gpu-agent: serving /metrics on ") {
                break address.parse().unwrap();
            }
        };
        // Keep draining: a closed pipe would fail the agent's later writes to stderr.
        std::thread::spawn(move || lines.for_each(drop));
        Agent { child, address, stderr }
    }

    /// /metrics once it holds `series` (the first sample follows the bind), or the last reply.
    pub fn metrics_with(&self, series: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let body = get(self.address, "/metrics");
            if body.contains(series) || Instant::now() > deadline {
                return body;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
