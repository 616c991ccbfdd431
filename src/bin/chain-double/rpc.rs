//! JSON-RPC 2.0 over one WebSocket connection: the legacy methods a subxt client and the
//! Python SDK call, answered from the chain. Subscriptions get their updates at once (blocks are
//! final as soon as they are made).

use std::sync::{Arc, Mutex};

use serde_json::{Value as Json, json};
use soketto::handshake::{Server, server::Response};
use subxt::ext::codec::Encode;
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncReadCompatExt;

use crate::chain::{Chain, hex};

pub async fn serve(socket: TcpStream, chain: Arc<Mutex<Chain>>) -> Result<(), String> {
    let mut server = Server::new(socket.compat());
    let key = server.receive_request().await.map_err(|e| e.to_string())?.key();
    server.send_response(&Response::Accept { key, protocol: None }).await.map_err(|e| e.to_string())?;
    let (mut sender, mut receiver) = server.into_builder().finish();
    let mut next_subscription = 0u64;
    loop {
        let mut data = Vec::new();
        match receiver.receive_data(&mut data).await {
            Ok(_) => {}
            Err(soketto::connection::Error::Closed) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
        let request: Json = serde_json::from_slice(&data).map_err(|e| e.to_string())?;
        let replies = {
            let mut chain = chain.lock().map_err(|_| "chain lock poisoned")?;
            answer(&mut chain, &request, &mut next_subscription)
        };
        for reply in replies {
            sender.send_text(reply.to_string()).await.map_err(|e| e.to_string())?;
        }
        sender.flush().await.map_err(|e| e.to_string())?;
    }
}

/// The response, then any subscription notifications.
fn answer(chain: &mut Chain, request: &Json, next_subscription: &mut u64) -> Vec<Json> {
    let id = request["id"].clone();
    let method = request["method"].as_str().unwrap_or_default();
    let params = request["params"].as_array().cloned().unwrap_or_default();
    let ok = |result: Json| json!({"jsonrpc": "2.0", "id": id, "result": result});
    let err = |code: i32, message: &str, data: Option<String>| json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": data}});
    let at = |i: usize| params.get(i).and_then(|p| p.as_str()).and_then(parse_hash);
    let mut subscription = || {
        *next_subscription += 1;
        format!("sub{next_subscription}")
    };
    let result = match method {
        "rpc_methods" => json!({"version": 1, "methods": METHODS}),
        "system_chain" | "system_name" => json!("chain-double"),
        "system_version" => json!(env!("CARGO_PKG_VERSION")),
        "system_properties" => json!({"ss58Format": 42, "tokenDecimals": 9, "tokenSymbol": "TAO"}),
        "system_health" => json!({"peers": 0, "isSyncing": false, "shouldHavePeers": false}),
        "chain_getBlockHash" => match params.first() {
            None | Some(Json::Null) => json!(hex(&chain.best().hash)),
            Some(n) => match n.as_u64().and_then(|n| chain.blocks.get(n as usize)) {
                Some(b) => json!(hex(&b.hash)),
                None => Json::Null,
            },
        },
        "chain_getFinalizedHead" => json!(hex(&chain.best().hash)),
        "chain_getHeader" => match chain.block(at(0)) {
            Some(b) => chain.header_json(b),
            None => Json::Null,
        },
        "chain_getBlock" => match chain.block(at(0)) {
            Some(b) => json!({
                "block": {"header": chain.header_json(b), "extrinsics": b.extrinsics.iter().map(|x| hex(x)).collect::<Vec<_>>()},
                "justifications": null,
            }),
            None => Json::Null,
        },
        "state_getRuntimeVersion" | "chain_getRuntimeVersion" => json!({
            "specName": "node-subtensor", "implName": "node-subtensor", "authoringVersion": 1,
            "specVersion": chain.spec_version, "implVersion": 1, "apis": [],
            "transactionVersion": chain.transaction_version, "stateVersion": 1,
        }),
        "state_getMetadata" => json!(hex(gradients::chain::call_data::FINNEY_METADATA)),
        "state_getStorage" | "state_getStorageAt" => {
            let key = params.first().and_then(|k| k.as_str()).and_then(parse_hex).unwrap_or_default();
            match chain.block(at(1)).and_then(|b| b.storage.get(&key)) {
                Some(value) => json!(hex(value)),
                None => Json::Null,
            }
        }
        "state_call" => {
            let name = params.first().and_then(|p| p.as_str()).unwrap_or_default();
            let data = params.get(1).and_then(|p| p.as_str()).and_then(parse_hex).unwrap_or_default();
            match runtime_call(chain, name, &data) {
                Some(bytes) => json!(hex(&bytes)),
                None => return vec![err(-32000, &format!("chain-double: runtime API {name} is not served"), None)],
            }
        }
        "system_accountNextIndex" | "account_nextIndex" => {
            match params.first().and_then(|p| p.as_str()).map(gradients::chain::ss58::check) {
                Some(Ok(account)) => json!(chain.world.nonce(&account)),
                _ => return vec![err(-32602, "Invalid params: not an SS58 account", None)],
            }
        }
        "chain_subscribeNewHeads" | "chain_subscribeFinalizedHeads" | "chain_subscribeAllHeads" => {
            let sub = subscription();
            let head = chain.header_json(chain.best());
            let name = match method {
                "chain_subscribeNewHeads" => "chain_newHead",
                "chain_subscribeFinalizedHeads" => "chain_finalizedHead",
                _ => "chain_allHead",
            };
            return vec![ok(json!(sub)), notification(name, &sub, head)];
        }
        "chain_unsubscribeNewHeads"
        | "chain_unsubscribeFinalizedHeads"
        | "chain_unsubscribeAllHeads"
        | "author_unwatchExtrinsic" => json!(true),
        "author_submitExtrinsic" | "author_submitAndWatchExtrinsic" => {
            let bytes = params.first().and_then(|p| p.as_str()).and_then(parse_hex).unwrap_or_default();
            return match chain.submit(&bytes) {
                Err(e) => vec![err(
                    e.code(),
                    if e.code() == 1001 { "Extrinsic has invalid format" } else { "Invalid Transaction" },
                    Some(e.to_string()),
                )],
                Ok(inc) if method == "author_submitExtrinsic" => vec![ok(json!(hex(&inc.extrinsic_hash)))],
                Ok(inc) => {
                    let sub = subscription();
                    let update = |status: Json| notification("author_extrinsicUpdate", &sub, status);
                    let block = hex(&inc.block_hash);
                    vec![
                        ok(json!(sub)),
                        update(json!("ready")),
                        update(json!({"inBlock": block})),
                        update(json!({"finalized": block})),
                    ]
                }
            };
        }
        _ => return vec![err(-32601, "Method not found", Some(format!("chain-double does not serve {method}")))],
    };
    vec![ok(result)]
}

const METHODS: &[&str] = &[
    "rpc_methods",
    "system_chain",
    "system_name",
    "system_version",
    "system_properties",
    "system_health",
    "system_accountNextIndex",
    "account_nextIndex",
    "chain_getBlockHash",
    "chain_getFinalizedHead",
    "chain_getHeader",
    "chain_getBlock",
    "chain_subscribeNewHeads",
    "chain_subscribeFinalizedHeads",
    "chain_subscribeAllHeads",
    "state_getRuntimeVersion",
    "state_getMetadata",
    "state_getStorage",
    "state_call",
    "author_submitExtrinsic",
    "author_submitAndWatchExtrinsic",
    "author_unwatchExtrinsic",
];

fn notification(method: &str, subscription: &str, result: Json) -> Json {
    json!({"jsonrpc": "2.0", "method": method, "params": {"subscription": subscription, "result": result}})
}

/// The runtime APIs a client asks for before signing.
fn runtime_call(chain: &Chain, name: &str, data: &[u8]) -> Option<Vec<u8>> {
    match name {
        "Core_version" => Some(chain.core_version()),
        "AccountNonceApi_account_nonce" => {
            let account: [u8; 32] = data.try_into().ok()?;
            Some(chain.world.nonce(&account).encode())
        }
        "Metadata_metadata_versions" => Some(vec![16u32].encode()),
        "Metadata_metadata_at_version" => {
            let version = u32::from_le_bytes(data.try_into().ok()?);
            let body = gradients::chain::call_data::FINNEY_METADATA.to_vec();
            Some(if version == 16 { Some(body) } else { None }.encode())
        }
        "Metadata_metadata" => Some(gradients::chain::call_data::FINNEY_METADATA.to_vec().encode()),
        _ => None,
    }
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.strip_prefix("0x")?;
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    parse_hex(text)?.try_into().ok()
}
