"""The reference SDK's call data for set_mechanism_weights: one hex line per JSON case (a line of
the cases file given second).

This is what bittensor's `compose_call` does (async_substrate_interface: a scalecodec runtime
configuration with the core preset plus the metadata's portable registry, then a `Call` object
encoded from module, function and named arguments), without a node: the metadata comes from
the file given (V15: the SDK's scalecodec decodes metadata up to V15, and asks nodes for V15).
"""

import json
import sys

from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.type_registry import load_type_registry_preset


def main() -> None:
    config = RuntimeConfigurationObject(ss58_format=42)
    config.update_type_registry(load_type_registry_preset(name="core") or {})
    with open(sys.argv[1], "rb") as f:
        metadata = config.create_scale_object("MetadataVersioned", data=ScaleBytes(f.read()))
    metadata.decode()
    config.add_portable_registry(metadata)
    with open(sys.argv[2]) as f:
        lines = f.read().splitlines()
    for line in lines:
        call = config.create_scale_object(type_string="Call", metadata=metadata)
        call.encode({"call_module": "SubtensorModule", "call_function": "set_mechanism_weights",
                     "call_args": json.loads(line)})
        print(call.data.to_hex())


if __name__ == "__main__":
    main()
