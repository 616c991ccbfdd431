//! The chain double (`src/bin/chain-double`, a stand-in subtensor node) as a test runs it: a real
//! process on a random 127.0.0.1 port, a subnet state written for it, a validator key file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use gradients::chain::ss58;
use serde_json::{Value, json};
use subxt_signer::sr25519::Keypair;

/// A running chain double; killed when dropped.
pub struct Double {
    child: Child,
    pub url: String,
    log: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Drop for Double {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Double {
    pub fn start(state: &Value) -> Double {
        let dir = tempfile::tempdir().unwrap();
        let (state_file, log, url_file) =
            (dir.path().join("state.json"), dir.path().join("log.jsonl"), dir.path().join("url"));
        std::fs::write(&state_file, state.to_string()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_chain-double"))
            .args(["--state".as_ref(), state_file.as_os_str(), "--log".as_ref(), log.as_os_str()])
            .args(["--url-file".as_ref(), url_file.as_os_str()])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = loop {
            if let Ok(url) = std::fs::read_to_string(&url_file) {
                break url;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("chain-double exited: {status}");
            }
            assert!(Instant::now() < deadline, "chain-double did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        Double { child, url, log, dir }
    }

    /// The double's log: one JSON object per submission.
    pub fn log(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn accepted(&self) -> Vec<Value> {
        self.log().into_iter().filter(|e| e.get("outcome").is_some()).collect()
    }
}

pub fn example(file: &str) -> String {
    format!("{}/examples/{file}", super::repo().display())
}

pub fn validator() -> Keypair {
    Keypair::from_secret_key([9; 32]).unwrap()
}

pub fn address(key: &Keypair) -> String {
    ss58::encode(&key.public_key().0)
}

/// The subnet of `examples/weights/uids.json` plus the validator at uid 5.
pub fn state(block: u64, last_update: u64) -> Value {
    let mut hotkeys: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(example("weights/uids.json")).unwrap()).unwrap();
    hotkeys.push(json!(address(&validator())));
    json!({
        "block": block,
        "subnets": [{
            "netuid": 56,
            "hotkeys": hotkeys,
            "LastUpdate": [0, 0, 0, 0, 0, last_update],
            "WeightsSetRateLimit": 100,
            "MinAllowedWeights": 1,
            "WeightsVersionKey": 10005000,
        }],
    })
}

pub fn key_file(dir: &Path, key: &Keypair, seed: [u8; 32]) -> PathBuf {
    let path = dir.join("hotkey");
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let body = json!({"secretSeed": format!("0x{hex}"), "ss58Address": address(key), "accountId": "0x"});
    std::fs::write(&path, body.to_string()).unwrap();
    path
}

/// `gradients weights push` of the example records against the double, signed with `key`: the
/// process output and its JSON report (null when it printed none).
pub fn push(double: &Double, key: &Path, extra: &[&str]) -> (Output, Value) {
    let records = example("score/records.json");
    let hotkeys = example("weights/hotkeys.json");
    let mut args = vec!["weights", "push", "--records", &records, "--netuid", "56", "--hotkeys", &hotkeys];
    let key = key.to_str().unwrap();
    args.extend(["--endpoint", &double.url, "--hotkey-file", key]);
    args.extend(extra);
    let out = super::gradients(&args, None);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, report)
}
