"""Checking a run again from the database: reconcile, rescore, reprice."""
