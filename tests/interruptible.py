"""Child processes that a test interrupts with SIGINT must start with SIGINT's default action.

A shell starts background jobs (`cmd &` without job control, as CI and nohup wrappers do) with SIGINT
ignored, children inherit that, and Python then installs no KeyboardInterrupt handler: the test's
Ctrl-C would be lost and the run would simply finish.
"""

import signal


def default_sigint() -> None:
    """Popen(preexec_fn=default_sigint)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
