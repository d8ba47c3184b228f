from fchannel.cli import main

raise SystemExit(main())
