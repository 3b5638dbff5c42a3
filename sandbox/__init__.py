"""Emulators of the five provider APIs, written from the seeds' own text — a second
opinion that imports none of the clients (``sandbox/seeds.py``) — on one port
(their paths do not collide), for tests, the demo and the benchmarks: signatures, time
stamps, provider-side caps and windows, receipts with the providers' retry rules,
seedable outcomes, fault injection, and a ledger of every call at ``GET /_sandbox/calls``.

It stands alone: it imports nothing of ours, and nothing in production imports it but
``notifyq sandbox`` (both kept by ``make lint``).
"""
