//! `chain-double`: a STAND-IN for a subtensor node, for tests (no real node can run here). A
//! separate process speaking JSON-RPC over WebSocket on 127.0.0.1, answering the legacy RPC
//! methods a weight setter uses from the bundled mainnet metadata and a JSON state file. It
//! proves our extrinsics are well-formed, correctly signed for the runtime and chain the node
//! reports, and pass the pallet's set-weights checks as written in the reference notes; it does
//! not run the runtime (no Wasm, no stake, no consensus, no commit-reveal).
//!
//! `chain-double --state STATE.json --log LOG.jsonl --url-file URL` writes `ws://127.0.0.1:PORT`
//! to URL once it listens; LOG gets one JSON line per submission (accepted or refused).

mod chain;
mod extrinsic;
mod pallet;
mod rpc;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The chain's state (see state.rs): block, nonces, subnets by storage name.
    #[arg(long)]
    state: PathBuf,
    /// Where each submission is recorded (JSON lines).
    #[arg(long)]
    log: PathBuf,
    /// Written with the WebSocket URL once listening.
    #[arg(long)]
    url_file: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chain-double: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.state).map_err(|e| format!("{}: {e}", args.state.display()))?;
    let world = state::World::parse(&text).map_err(|e| format!("{}: {e}", args.state.display()))?;
    let chain = Arc::new(Mutex::new(chain::Chain::new(world, args.log)?));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let url = format!("ws://{}", listener.local_addr().map_err(|e| e.to_string())?);
    let tmp = args.url_file.with_extension("tmp");
    std::fs::write(&tmp, &url).and_then(|()| std::fs::rename(&tmp, &args.url_file)).map_err(|e| e.to_string())?;
    loop {
        let (socket, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let chain = chain.clone();
        tokio::spawn(async move {
            if let Err(e) = rpc::serve(socket, chain).await {
                eprintln!("chain-double: connection closed: {e}");
            }
        });
    }
}
