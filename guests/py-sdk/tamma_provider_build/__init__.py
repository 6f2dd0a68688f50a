"""``tamma-py-build [-o OUT] [--app MODULE] [--src DIR]``: a Tamma provider
component from a Python project, with the WIT world that travels in this wheel
and the componentize-py it pins. Run it from the venv the wheel is installed in.

A module of its own (not ``tamma_provider.build``): ``tamma_provider`` imports the
bindings componentize-py generates, which exist only inside the component.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

WORLD = "tamma:provider/provider"
WIT = Path(__file__).resolve().parent / "wit"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tamma-py-build", description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--out", default="provider.wasm", help="the component to write")
    parser.add_argument("--app", default="app", help="the module defining ProviderApi (default: app)")
    parser.add_argument("--src", default="src", help="the directory of the module (default: src)")
    args = parser.parse_args(argv)

    # componentize-py sits beside this interpreter in the venv; VIRTUAL_ENV makes it
    # bundle this venv's site-packages (tamma_provider) and not the machine's.
    tool = Path(sys.executable).parent / "componentize-py"
    if not tool.exists():
        found = shutil.which("componentize-py")
        if found is None:
            print("tamma-py-build: componentize-py is not installed in this venv", file=sys.stderr)
            return 1
        tool = Path(found)
    Path(args.out).resolve().parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, VIRTUAL_ENV=sys.prefix)
    command = [str(tool), "--quiet", "-d", str(WIT), "-w", WORLD,
               "componentize", args.app, "-p", args.src, "-o", args.out]
    done = subprocess.run(command, env=env, check=False)
    if done.returncode == 0:
        print(f"tamma-py-build: wrote {args.out}", file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
