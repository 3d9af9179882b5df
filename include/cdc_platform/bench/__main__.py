import sys

from cdc_platform.bench.cli import main

sys.exit(main())
