"""WHEN a notification may go: per-number caps (Lua on Redis), provider-wide rates,
calling windows, the circuit breaker, the durable "not before" set, the one clock every
worker agrees on, and the claims that let one copy of a duplicate task through.

Ground floor: it imports nothing of ours (it takes a Redis client and plain values);
tasks, config and api build on it.
"""
