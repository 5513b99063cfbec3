"""`python -m cxr14 ...` is the same as the `cxr14` console script."""

from cxr14.cli import main

raise SystemExit(main())
