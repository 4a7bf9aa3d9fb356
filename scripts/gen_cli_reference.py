"""Write docs/reference/cli.md from the command line's definition (every command, argument and option).

    python scripts/gen_cli_reference.py            # regenerate the page after changing the CLI
    python scripts/gen_cli_reference.py --check    # exit 1 if the committed page is not current

The page's text comes from docs/_ext/cli_reference.py, which the docs build also uses to check the page.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "docs" / "_ext" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the page is current")
    args = parser.parse_args()
    generator = _generator()
    text = generator.page()
    current = generator.PATH.read_text(encoding="utf-8") if generator.PATH.exists() else ""
    if args.check:
        if current != text:
            print(f"error: {generator.STALE}", file=sys.stderr)
            return 1
        print(f"{generator.PATH.relative_to(ROOT)} is current")
        return 0
    generator.PATH.write_text(text, encoding="utf-8")
    print(f"wrote {generator.PATH.relative_to(ROOT)} ({'unchanged' if current == text else 'updated'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
