"""``python -m neuronattack`` (also what ``accelerate launch -m neuronattack`` runs)."""

from neuronattack.cli import main

main()
