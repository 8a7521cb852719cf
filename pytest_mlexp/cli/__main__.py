"""``python -m pytest_mlexp.cli``: the ``mlexp`` command."""

from . import main

raise SystemExit(main())
