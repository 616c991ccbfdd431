"""The reference SDK's side of tests/chain_double.rs (run with the SDK venv's python):

  wallet DIR          bittensor_wallet creates an unencrypted hotkey (wallet "validator",
                      hotkey "default") under DIR; prints {"path", "ss58"}.
  decode V15 HEX      the SDK's scalecodec decodes a signed extrinsic against the metadata file
                      (V15, as the SDK asks nodes for); prints its signer, era, nonce and call.
"""

import json
import sys


def wallet(directory: str) -> None:
    from bittensor_wallet import Wallet

    w = Wallet(name="validator", hotkey="default", path=directory)
    w.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
    print(json.dumps({"path": w.hotkey_file.path, "ss58": w.hotkey.ss58_address}))


def decode(metadata_path: str, extrinsic_hex: str) -> None:
    from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
    from scalecodec.type_registry import load_type_registry_preset

    config = RuntimeConfigurationObject(ss58_format=42)
    config.update_type_registry(load_type_registry_preset(name="core") or {})
    with open(metadata_path, "rb") as f:
        metadata = config.create_scale_object("MetadataVersioned", data=ScaleBytes(f.read()))
    metadata.decode()
    config.add_portable_registry(metadata)
    extrinsic = config.create_scale_object("Extrinsic", data=ScaleBytes(extrinsic_hex), metadata=metadata)
    value = extrinsic.decode()
    call = value["call"]
    print(json.dumps({
        "address": value["address"],
        "signature": value["signature"],
        "era": value["era"],
        "nonce": value["nonce"],
        "tip": value["tip"],
        "module": call["call_module"],
        "function": call["call_function"],
        "args": {a["name"]: a["value"] for a in call["call_args"]},
    }, default=str))


if __name__ == "__main__":
    {"wallet": wallet, "decode": decode}[sys.argv[1]](*sys.argv[2:])
