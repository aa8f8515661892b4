from neurofit.cli import main

raise SystemExit(main())
