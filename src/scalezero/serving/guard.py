"""Run any command so that it dies with the process that started it.

``python -m scalezero.serving.guard --parent-pid PID -- COMMAND...`` sets the parent-death signal
and then replaces itself with COMMAND (the signal setting survives ``exec``). Used for
instance commands that are not Python (a native ``llama-server``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from scalezero.system.procs import set_parent_death_signal


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        sys.exit("usage: python -m scalezero.serving.guard --parent-pid PID -- COMMAND...")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m scalezero.serving.guard")
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        sys.exit("scalezero.serving.guard: no command given")
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != args.parent_pid:
        sys.exit(3)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
