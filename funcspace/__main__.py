"""``python -m funcspace``: the ``funcspace`` command (:mod:`funcspace.study.cli`)."""

from funcspace.study.cli import main

raise SystemExit(main())
