"""Intervals, sequential stopping and sampling."""
