"""The mutating admission webhook: relax the pull policy of managed images, learn what pods use."""
