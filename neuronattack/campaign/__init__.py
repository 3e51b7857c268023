"""Campaigns over many class pairs, and what is made from their runs: datasets and reports.

- :mod:`~neuronattack.campaign.config` reads and validates a campaign's TOML file (its docstring
  holds the schema);
- :mod:`~neuronattack.campaign.runner` runs each (pair, seed) unit with ``run_attack``, in one
  process or many under ``accelerate launch``, and merges the units into one ``results.jsonl``
  (its docstring describes the run folder);
- :mod:`~neuronattack.campaign.export` publishes a run as a test set, and
  :mod:`~neuronattack.campaign.report` as one HTML page.
"""
