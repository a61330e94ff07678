"""Run configs shipped with the package, ``NAME.yaml`` each: ``hpn train --config NAME``
(``hpn train --list-configs`` names them; :func:`hpn.training.run.packaged_configs`)."""
