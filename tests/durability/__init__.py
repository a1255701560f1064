"""Fault tests on PostgreSQL: processes killed while recording predictions (see harness.py)."""
