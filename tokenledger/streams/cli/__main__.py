import sys

from tokenledger.streams.cli.main import main

sys.exit(main())
