"""pytest settings shared by ``tests/`` and the doctests under ``src/hpn``: torch threads
chosen by hpn's policy (:mod:`hpn.threads`), so a busy machine does not make every test wait
on thread barriers."""

from hpn.threads import use_threads

use_threads()
