"""What the gateway and central both need that is not the wire contract (see README.md)."""
