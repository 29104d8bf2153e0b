"""Money, prices and what a call costs."""
