"""One module per provider API (its wire format, signing, code table and the choices its
document leaves open), the types they share (``base``), number handling (``numbers``)
and the HTTP transport (``http``).

Ground floor: it imports nothing of ours. The emulators that tests and the demo call
instead live apart, in ``sandbox/``.
"""
