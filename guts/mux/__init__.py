"""Layer 2 of the stack: stream multiplexers (yamux)."""
