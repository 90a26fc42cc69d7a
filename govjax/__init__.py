"""govjax: training governance for creative generative models in JAX/Flax.

Rights metadata decides how deep each training example may shape the model (depth-selective gradient routing);
a memorization probe inside the training step lowers that depth when an example looks memorized; provenance
traces outputs to the works that shaped them; tiered documentation lets rightsholders check use.
"""

__version__ = "0.1.0"
