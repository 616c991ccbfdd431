//! SS58 addresses as Bittensor writes hotkeys: base58 of `prefix ‖ public key ‖ checksum`, the
//! checksum being the first two bytes of blake2b-512(`"SS58PRE" ‖ prefix ‖ public key`).
//! Hotkeys are compared as strings, so only Bittensor's prefix (42) is accepted: the same key
//! under another prefix would be a different string and silently match nothing.

use blake2::{Blake2b512, Digest};

/// Bittensor's SS58 address format (the generic Substrate one).
pub const BITTENSOR_PREFIX: u8 = 42;

/// Checks that `address` is an SS58 account address with prefix 42; returns its public key.
pub fn check(address: &str) -> Result<[u8; 32], String> {
    let bytes = bs58::decode(address).into_vec().map_err(|e| format!("not base58 ({e})"))?;
    if bytes.len() != 35 {
        return Err(format!("{} bytes decoded, an account address has 35", bytes.len()));
    }
    let (body, checksum) = bytes.split_at(33);
    let mut hash = Blake2b512::new();
    hash.update(b"SS58PRE");
    hash.update(body);
    if hash.finalize()[..2] != *checksum {
        return Err("wrong checksum (a mistyped character?)".into());
    }
    if body[0] != BITTENSOR_PREFIX {
        return Err(format!("SS58 prefix {}, Bittensor uses {BITTENSOR_PREFIX}", body[0]));
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&body[1..]);
    Ok(key)
}

/// The prefix-42 address of a public key (tests build hotkeys with it).
pub fn encode(key: &[u8; 32]) -> String {
    let mut body = vec![BITTENSOR_PREFIX];
    body.extend_from_slice(key);
    let mut hash = Blake2b512::new();
    hash.update(b"SS58PRE");
    hash.update(&body);
    body.extend_from_slice(&hash.finalize()[..2]);
    bs58::encode(body).into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Alice's well-known dev key (//Alice), as every Substrate tool prints it.
    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    const ALICE_KEY: &str = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d";

    #[test]
    fn known_address_decodes_to_its_key_and_back() {
        let key = check(ALICE).unwrap();
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, ALICE_KEY);
        assert_eq!(encode(&key), ALICE);
    }

    #[test]
    fn mistyped_truncated_and_foreign_addresses_are_refused() {
        let typo = ALICE.replacen("Grwv", "Grwx", 1);
        assert!(check(&typo).unwrap_err().contains("checksum"));
        assert!(check(&ALICE[..40]).unwrap_err().contains("bytes decoded"));
        assert!(check("5F-alice").unwrap_err().contains("base58"));
        // Alice on Polkadot (prefix 0).
        assert!(check("15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5").unwrap_err().contains("prefix 0"));
    }
}
