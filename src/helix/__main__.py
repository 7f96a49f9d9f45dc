from helix.cli import main

raise SystemExit(main())
