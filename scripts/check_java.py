"""Stop with one clear line when Java 17+ (needed by Spark 3.5) is missing or too old.

Runs with any Python 3 (before the virtual environment exists): ``python3 scripts/check_java.py``.
"""

import re
import shutil
import subprocess
import sys

REQUIRED = 17
HINT = "install Java 17 (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"


def java_major() -> int:
    """Major version of the ``java`` on PATH (or under JAVA_HOME), 0 when there is none."""
    java = shutil.which("java")
    if java is None:
        return 0
    output = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8" means Java 8


def main() -> int:
    major = java_major()
    if major == 0:
        print(f"Java not found: Spark needs Java {REQUIRED}+; {HINT}.", file=sys.stderr)
        return 1
    if major < REQUIRED:
        print(f"Java {major} is too old: Spark needs Java {REQUIRED}+; {HINT}.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
