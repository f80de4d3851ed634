"""Service sessions from the queue feed, correlation of every evaluation with its session and
cases (flags, confidence, versioned re-issue), bad-review follow-up. See README.md."""
