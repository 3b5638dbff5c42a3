"""HTTP: enqueue and status for other services, campaigns, and provider callbacks."""
