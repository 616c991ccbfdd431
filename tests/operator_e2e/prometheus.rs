//! A real Prometheus (the pinned server of `scripts/promtool --prometheus`, Debian's 2.42.0)
//! scraping the operator and the GPU agent every second while a tournament runs, and the
//! dashboard's queries asked of it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

pub struct Prometheus {
    child: Child,
    address: String,
    targets: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with no targets yet ([`Prometheus::scrape`] sets them).
    pub fn start() -> Prometheus {
        let binary = Command::new(root().join("scripts/promtool")).arg("--prometheus").output().unwrap();
        assert!(binary.status.success(), "scripts/promtool --prometheus: {binary:?}");
        let binary = String::from_utf8(binary.stdout).unwrap().lines().last().unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        let targets = dir.path().join("targets.json");
        std::fs::write(&targets, "[]").unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n- job_name: gradients\n  file_sd_configs: [{{files: [{}], refresh_interval: 1s}}]\n",
                targets.display()
            ),
        )
        .unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus { child, address, targets, _dir: dir }
    }

    /// Scrapes exactly these `host:port` targets from now on.
    pub fn scrape(&self, targets: &[String]) {
        let json = serde_json::json!([{"targets": targets}]).to_string();
        let partial = self.targets.with_extension("partial");
        std::fs::write(&partial, json).unwrap();
        std::fs::rename(partial, &self.targets).unwrap();
    }

    /// The result vector of an instant query (`data.result`).
    pub async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let encoded: String = expr
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        let body = format!("query={encoded}");
        // HTTP/1.0: the answer ends with the connection (never chunked).
        let request = format!(
            "POST /api/v1/query HTTP/1.0\r\nhost: prometheus\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(&self.address).await.expect("prometheus answers");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (_, json) = response.split_once("\r\n\r\n").unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {response}"));
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        answer["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until every target is up (scraped at least once).
    pub async fn wait_scraped(&self, targets: usize) {
        wait_until("prometheus to scrape its targets", Duration::from_secs(30), || async {
            self.query("up == 1").await.len() == targets
        })
        .await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every query of every panel of the shipped dashboard: (panel title, expression).
pub fn dashboard_queries() -> Vec<(String, String)> {
    let path = root().join("charts/gradients/dashboards/gradients-operator.json");
    let dashboard: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default().to_string();
            queries.push((title, target["expr"].as_str().unwrap().to_string()));
        }
    }
    queries
}
