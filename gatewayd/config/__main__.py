import sys

from gatewayd.config.reference import main

raise SystemExit(main(sys.argv[1:]))
