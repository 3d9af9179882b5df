import sys

from cdc_local.bench.cli import main

sys.exit(main())
