import signal
import sys

from .cli import main, terminated

signal.signal(signal.SIGTERM, terminated)
sys.exit(main())
