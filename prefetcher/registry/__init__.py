"""Talking to container registries: credentials from pull secrets, the OCI distribution API."""
