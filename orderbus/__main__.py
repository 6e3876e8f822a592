import sys

from orderbus.cli import main

sys.exit(main())
