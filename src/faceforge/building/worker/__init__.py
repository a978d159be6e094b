"""The training queue: claim, coalesce, run, recover."""
