"""The gateway ↔ central contract: topic tree, envelopes, payload models. Pure code, no I/O."""

PROTOCOL_VERSION = 1
