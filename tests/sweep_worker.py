"""`rsd sweep` with a pause between a part's rename and the manifest update.

tests/test_sweeps.py runs this as a subprocess and SIGKILLs it inside that pause, the
worst moment for the store: the chunk's part exists, the manifest does not list it.
Usage: python tests/sweep_worker.py PAUSE_SECONDS rsd-sweep-arguments...
"""

import sys
import time

from rsd import cli
from rsd.sweeps import _store

_pause = float(sys.argv[1])
_update = _store.update_manifest


def _slow_update(out):
    time.sleep(_pause)
    _update(out)


_store.update_manifest = _slow_update

if __name__ == "__main__":
    sys.exit(cli.main(["sweep"] + sys.argv[2:]))
