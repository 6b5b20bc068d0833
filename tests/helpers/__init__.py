"""Small helpers shared by the store tests (a child-process script and folder snapshots)."""
