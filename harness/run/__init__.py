"""Executing a run: the plan, the runner, one attempt, sessions, resume, cache, retries."""
