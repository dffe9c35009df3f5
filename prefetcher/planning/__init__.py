"""The planner's stages, one module each; `prefetcher.planner.plan` runs them in order."""
