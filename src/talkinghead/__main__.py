from talkinghead.cli import main

raise SystemExit(main())
