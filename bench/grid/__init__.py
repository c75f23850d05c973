"""Helpers of ``bench/transfer_grid.py``: tasks, arms, peers' recipes and the report."""
