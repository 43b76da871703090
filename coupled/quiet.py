"""Messages a user cannot act on, silenced one by one by their text (never whole categories of warnings).

Where the project causes a message it fixes the cause instead (the run folder exists before W&B starts, so
W&B finds no missing git root; the logger is given no `anonymous` setting); these are the ones left:
"""

from __future__ import annotations

import logging
import re
import warnings

#: Lightning's "Seed set to N": the seed is in the run's config.yaml, and an error that follows should be
#: the only line on stderr
SEED = re.compile(r"^(\[rank: \d+\] )?Seed set to ")
#: Lightning's advertisement for its own logger, printed at every Trainer start
LITLOGGER = re.compile(r"Tip: For seamless cloud logging")
#: Lightning 2.6's own use of a torch API deprecated in torch 2.10+ (pytorch_lightning/utilities/_pytree.py)
PYTREE = r".*isinstance\(treespec, LeafSpec\)` is deprecated"


class _DropMessages(logging.Filter):
    def __init__(self, *patterns: re.Pattern):
        super().__init__()
        self.patterns = patterns

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.getMessage())
        return not any(p.search(message) for p in self.patterns)


def quiet() -> None:
    """Install the filters (idempotent): Lightning's log records by logger, the pytree warning by text."""
    for name, patterns in (("lightning_fabric.utilities.seed", (SEED,)),
                           ("pytorch_lightning.utilities.rank_zero", (LITLOGGER,)),
                           ("lightning_fabric.utilities.rank_zero", (LITLOGGER,))):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in log.filters):
            log.addFilter(_DropMessages(*patterns))
    warnings.filterwarnings("ignore", message=PYTREE)
