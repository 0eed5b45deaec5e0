"""Server-side conversations and the context each turn sends upstream (see service.py)."""
