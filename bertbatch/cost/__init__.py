"""What a run will cost (the estimate and its tables) and what it cost (the ledger), the cost cap and
the idle cost of a deployment."""
