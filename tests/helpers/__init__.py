"""Test helpers (offline fixtures written to disk)."""
