"""``python -m hpn``: the same as the ``hpn`` command (:func:`hpn.cli.main`)."""

from hpn.cli import main

raise SystemExit(main())
