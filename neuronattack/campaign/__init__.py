"""Campaigns: many class pairs and seeds from one TOML file, resumable and sharded.

:mod:`~neuronattack.campaign.config` reads and validates the file (its docstring holds the schema);
:mod:`~neuronattack.campaign.runner` runs each (pair, seed) unit with ``run_attack``, one process
or many under ``accelerate launch``, and merges the units into one ``results.jsonl``.
"""
