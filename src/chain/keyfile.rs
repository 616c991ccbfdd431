//! The validator's hotkey, from the file a Bittensor wallet writes
//! (`~/.bittensor/wallets/<wallet>/hotkeys/<hotkey>`, or the same bytes in a Kubernetes Secret):
//! unencrypted JSON with `secretSeed` (or `secretPhrase`), `publicKey` and `ss58Address`. An
//! encrypted file (NaCl, Ansible vault or the legacy format) is refused: the sink has no password.

use serde::Deserialize;
use subxt_signer::bip39::Mnemonic;
use subxt_signer::sr25519::Keypair;

use super::ss58;

/// Why the key file gives no key; `file` names it (never its secret).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyError {
    #[error("hotkey file {file}: {message}")]
    Read { file: String, message: String },
    #[error(
        "hotkey file {file} is encrypted ({format}); the sink signs without a password: give it the \
         unencrypted hotkey file (the wallet's hotkeys are unencrypted unless created with --use-password)"
    )]
    Encrypted { file: String, format: &'static str },
    #[error("hotkey file {file}: field {field:?}: {message}")]
    Field { file: String, field: &'static str, message: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Keyfile {
    secret_seed: Option<String>,
    secret_phrase: Option<String>,
    public_key: Option<String>,
    ss58_address: Option<String>,
}

/// The signing key and its SS58 address (prefix 42).
pub struct Hotkey {
    pub keypair: Keypair,
    pub ss58: String,
}

impl std::fmt::Debug for Hotkey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hotkey").field("ss58", &self.ss58).finish_non_exhaustive()
    }
}

/// Reads and checks a hotkey file.
pub fn load(path: &std::path::Path) -> Result<Hotkey, KeyError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| KeyError::Read { file: file.clone(), message: e.to_string() })?;
    parse(&file, &bytes)
}

/// Parses the file's bytes; `file` names it in errors.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Hotkey, KeyError> {
    for (prefix, format) in
        [(&b"$NACL"[..], "NaCl secretbox"), (b"$ANSIBLE_VAULT", "Ansible vault"), (b"gAAAAA", "legacy Fernet")]
    {
        if bytes.starts_with(prefix) {
            return Err(KeyError::Encrypted { file: file.to_string(), format });
        }
    }
    let keyfile: Keyfile = serde_json::from_slice(bytes).map_err(|e| KeyError::Read {
        file: file.to_string(),
        message: format!("not a Bittensor keyfile (JSON with secretSeed, publicKey, ss58Address): {e}"),
    })?;
    let field = |field: &'static str, message: String| KeyError::Field { file: file.to_string(), field, message };
    let keypair = match (&keyfile.secret_seed, &keyfile.secret_phrase) {
        (Some(seed), _) => {
            let seed: [u8; 32] =
                hex32(seed).ok_or_else(|| field("secretSeed", "must be 0x and 64 hex digits".into()))?;
            Keypair::from_secret_key(seed).map_err(|e| field("secretSeed", e.to_string()))?
        }
        (None, Some(phrase)) => {
            let mnemonic = Mnemonic::parse(phrase).map_err(|e| field("secretPhrase", e.to_string()))?;
            Keypair::from_phrase(&mnemonic, None).map_err(|e| field("secretPhrase", e.to_string()))?
        }
        (None, None) => {
            return Err(field("secretSeed", "missing (and no secretPhrase): not a private key file".into()));
        }
    };
    let public = keypair.public_key().0;
    let address = ss58::encode(&public);
    if let Some(given) = &keyfile.public_key
        && hex32(given) != Some(public)
    {
        return Err(field("publicKey", "does not match the key derived from the secret".into()));
    }
    if let Some(given) = &keyfile.ss58_address
        && *given != address
    {
        return Err(field(
            "ss58Address",
            format!("{given} does not match the key derived from the secret ({address})"),
        ));
    }
    Ok(Hotkey { keypair, ss58: address })
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.strip_prefix("0x").unwrap_or(text);
    if text.len() != 64 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..64).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect();
    bytes?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // `subkey inspect //Alice`: its secret seed and SS58 address, as every Substrate tool prints them.
    const SEED: &str = "0xe5be9a5092b81bca64be81d212e7f2f9eba183bb7a90954f7b76361f6edb5c0a";
    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

    fn keyfile(seed: &str, address: &str) -> String {
        format!(r#"{{"secretSeed": "{seed}", "ss58Address": "{address}", "accountId": "x"}}"#)
    }

    #[test]
    fn a_wallet_hotkey_file_gives_its_key_and_address() {
        let key = parse("hk", keyfile(SEED, ALICE).as_bytes()).unwrap();
        assert_eq!(key.ss58, ALICE);
        assert_eq!(key.keypair.public_key().0, ss58::check(ALICE).unwrap());
        let phrase = "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
        let from_phrase = parse("hk", format!(r#"{{"secretPhrase": "{phrase}"}}"#).as_bytes()).unwrap();
        assert_ne!(from_phrase.ss58, ALICE, "the dev phrase without //Alice is another key");
    }

    #[test]
    fn encrypted_malformed_and_mismatched_files_are_refused_by_name() {
        let err = parse("wallets/v/hotkeys/default", b"$NACL\x01\x02").unwrap_err().to_string();
        assert!(err.contains("wallets/v/hotkeys/default") && err.contains("encrypted"), "{err}");
        let err = parse("hk", b"{not json").unwrap_err().to_string();
        assert!(err.contains("hotkey file hk") && err.contains("not a Bittensor keyfile"), "{err}");
        let err = parse("hk", br#"{"secretSeed": "0x12"}"#).unwrap_err().to_string();
        assert!(err.contains("secretSeed") && !err.contains("0x12"), "{err}");
        let other = ss58::encode(&[7; 32]);
        let err = parse("hk", keyfile(SEED, &other).as_bytes()).unwrap_err().to_string();
        assert!(err.contains("ss58Address") && err.contains(&other), "{err}");
        let err = parse("hk", br#"{"publicKey": "0x00"}"#).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
