"""好差评: the versioned mapping's configuration and the feed of evaluations upward."""
