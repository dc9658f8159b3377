"""softeq: tunable soft equivariance with guarantees.

Project a network's weights onto (softly) equivariant subspaces: ``soften(model, group, softness)``
makes the chosen layers soft, ``fold(model)`` turns them back into plain layers holding the
projected weights, and ``bounds.report(model)`` checks each layer against its guarantee.
"""

from softeq import bounds
from softeq.layers import fold
from softeq.soften import soften
from softeq.spec import Softening

__all__ = ["Softening", "__version__", "bounds", "fold", "soften"]
__version__ = "0.1.0"
