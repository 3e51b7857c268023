"""Campaigns over many class pairs, and what is made from their runs: datasets and reports."""
