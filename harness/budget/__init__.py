"""The run's hard cap: the durable ledger, the shares of a split budget, the gate."""
