import sys

from orderbus.commands.cli import main

sys.exit(main())
