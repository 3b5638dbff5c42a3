"""One module per provider API (its wire format, signing, code table and assumptions),
the types they share (``base``), the HTTP transport, and the sandbox that emulates them."""
