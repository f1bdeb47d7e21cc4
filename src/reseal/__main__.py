import sys

from reseal.cli import main

sys.exit(main())
