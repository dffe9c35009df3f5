"""Certificates for the webhook: a private CA and a serving certificate, kept renewed."""
