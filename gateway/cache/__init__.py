"""The response cache: exact and semantic, per tenant (see service.py)."""
