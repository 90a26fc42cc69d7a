"""Attribution under depth routing (issue #20, item 3): does crediting each example through the depth it trained at
predict retraining better than ignoring the routing?

Command (the chorale subset ``spq4_max120`` prepared: ``govjax prepare chorales --max-works 120``):
  nice -n 10 python -m experiments.attribution --config experiments/configs/attribution_routed.py \\
      --workdir runs/attribution_routed --out experiments/results/attribution_routed.json

The setting of ``experiments/configs/attribution.py`` (40 works, 50 half-subsets x 2 seeds, 120 held-out query
windows, 3 full models), trained with the in-model depth gate and the shipped simulated rights scenario
(``governance.routing="depth"``, ``scenario="default"``): works the policy restricts train only the surface
groups, opted-out works never train. Every LDS retrain is routed the same way. Besides the scorers of the unrouted
run it scores TracIn and TracIn-Adam with the routing masks removed (``tracin_unmasked``, ``tracin_adam_unmasked``):
the same gradients credited through every group. A smaller removal test (12 outputs, 4 random sets, seeds 1 and 2)
gives the lineages of a governed run, whose works carry licences and attribution duties (simulated rights).
Runtime (measured): 134 retrains, 1,788 s on 2 shared cores (40 minutes of wall time; about 15 minutes idle).
Expected (measured) result: 34 of 40 works kept (16 at depth 1 of 4, 18 full, 6 opted out). LDS: TracIn 0.382
[0.327, 0.435], without the masks 0.249 (depth-aware credit +0.133 [+0.100, +0.166]); TracIn-Adam 0.177 (without
the masks 0.054); TRAK-style 0.546 [0.513, 0.582]; exact TRAK 0.568. 8 of 12 outputs' blamed works pass the
per-output removal rule (chance 0.2 each). Details: experiments/RESULTS.md, "Attribution validated by retraining".
"""

import dataclasses

from experiments.attribution import AttributionConfig
from experiments.configs.attribution import get_config as unrouted
from govjax.core.config import GovernanceSpec


def get_config() -> AttributionConfig:
  base = unrouted()
  train = dataclasses.replace(base.train, name="attribution-routed",
                              governance=GovernanceSpec(routing="depth", scenario="default"))
  return dataclasses.replace(base, train=train, outputs=12, random_draws=4, removal_seeds=(1, 2), removal_scorers=(),
                             datamodel_subsets=0)
