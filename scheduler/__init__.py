"""WHEN a notification may go: per-number caps, provider-wide rates, calling windows,
the durable "not before" set, and the beat schedule that drives them."""
