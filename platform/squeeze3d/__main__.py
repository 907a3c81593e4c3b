import sys

from squeeze3d.cli import main

sys.exit(main())
