"""`make test`'s security checks (check.py) and their one allow-list (allowlist.yaml)."""
