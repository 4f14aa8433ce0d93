import sys

from masuka.cli import main

sys.exit(main())
