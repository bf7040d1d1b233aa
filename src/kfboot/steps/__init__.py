"""The guide's knowledge, one module per step: each idempotent and resumable."""
