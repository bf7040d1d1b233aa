"""Test helpers shared by the test modules (never test modules themselves)."""
