from gatewayd.service.cli import main

raise SystemExit(main())
