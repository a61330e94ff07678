from hpn.cli import main

raise SystemExit(main())
