"""What the webhook and the prefetcher share: image references, registry matching, config, names."""
