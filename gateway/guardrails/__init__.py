"""Guardrails: PII, prompt injection and moderation checks on input and output."""
