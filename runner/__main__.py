"""python -m runner [SUBCOMMAND] ...  (no subcommand = run)"""

from runner.cli import main

raise SystemExit(main())
