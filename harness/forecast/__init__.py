"""What a run will cost, before and while it runs."""
