"""Sources of wanted images besides the webhook: what nodes hold, what registries list."""
