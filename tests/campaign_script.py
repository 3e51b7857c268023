"""Runs a campaign the way the CLI will, for tests that launch it in a subprocess (accelerate
launch, kills): ``python tests/campaign_script.py CONFIG``; exit 2 on a NeuronAttackError and
130 on Ctrl-C, like ``neuronattack``."""

import sys

from neuronattack.campaign.config import load_campaign
from neuronattack.campaign.runner import run_campaign
from neuronattack.errors import NeuronAttackError

try:
    run_campaign(load_campaign(sys.argv[1]), show_progress=True)
except NeuronAttackError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
except KeyboardInterrupt:
    sys.exit(130)
