import os
import signal
import sys

from .cli import main, terminated

signal.signal(signal.SIGTERM, terminated)
code = main()
# Exit without running C++ static destructors: MLX's teardown at interpreter exit sometimes aborts
# ("terminate called without an active exception", SIGABRT), turning a clean exit code into -6 (seen
# after `push --dry-run` refused a folder, and in the speech CLI). Every output is flushed or closed by now.
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
