"""make bench's memory sampling (benchmarks/run.py): a process tree's RSS, summed by kind."""

import os
import subprocess
import sys
import time
import types

import psutil

from benchmarks import run

#: A "JVM" (a program named java) holding 200 MB, with a child forked but not exec'd (as a JVM's
#: child is while it starts a command) and a child that has exec'd another program.
FAKE_JVM = """
import os, sys, time
held = bytearray(200 * 2**20)
for i in range(0, len(held), 4096):
    held[i] = 1
if os.fork() == 0:
    time.sleep(60)
    os._exit(0)
if os.fork() == 0:
    os.execv(sys.argv[1], [sys.argv[1], "-c", "import time; time.sleep(60)"])
print("ready", flush=True)
time.sleep(60)
"""


def programs(root):
    """The program each child of ``root`` runs (``""`` for one without a command line yet)."""
    found = []
    for child in root.children():
        try:
            argv = child.cmdline()
        except psutil.Error:
            argv = []
        found.append(argv[0] if argv else "")
    return sorted(found)


def test_a_jvm_child_not_yet_exec_d_is_not_counted_again(tmp_path):
    java = tmp_path / "java"
    os.symlink(sys.executable, java)
    fake = subprocess.Popen(
        [str(java), "-c", FAKE_JVM, sys.executable], stdout=subprocess.PIPE, text=True
    )
    try:
        assert fake.stdout.readline().strip() == "ready"
        root = psutil.Process(fake.pid)
        deadline = time.time() + 30
        while programs(root) != sorted([str(java), sys.executable]):
            # both children there, the second one exec'd (no command line while it execs)
            assert time.time() < deadline
            time.sleep(0.05)
        children = {run.process_kind(child): child for child in root.children()}
        assert sorted(children) == ["jvm", "other"]  # the fork still looks like the JVM
        assert children["jvm"].memory_info().rss > 150 * 2**20  # what would be counted again
        by_kind = run.tree_rss_by_kind(root)
        jvm = root.memory_info().rss
        assert jvm > 200 * 2**20
        # the JVM once, the fork not at all, the exec'd child as it is (within what pages
        # move between two reads)
        assert sorted(by_kind) == ["jvm", "other"]
        assert abs(by_kind["jvm"] - jvm) < 20 * 2**20
        assert abs(by_kind["other"] - children["other"].memory_info().rss) < 5 * 2**20
    finally:
        for child in psutil.Process(fake.pid).children():
            child.kill()
        fake.kill()
        fake.wait()


class Member:
    """A process as tree_rss_by_kind reads it: command line, RSS, parent, children."""

    def __init__(self, pid, argv, rss, parent=None):
        self.pid, self.argv, self.rss, self.parent = pid, argv, rss, parent
        self.kids = []
        if parent is not None:
            parent.kids.append(self)

    def cmdline(self):
        return self.argv

    def memory_info(self):
        return types.SimpleNamespace(rss=self.rss)

    def ppid(self):
        return self.parent.pid if self.parent else 1

    def children(self, recursive=False):
        found = []
        for kid in self.kids:
            found.append(kid)
            if recursive:
                found += kid.children(recursive=True)
        return found


def test_a_jvm_child_in_the_middle_of_its_exec_is_not_counted():
    jvm = Member(10, ["/usr/bin/java", "-cp", "x"], 300)
    Member(11, [], 300, jvm)  # exec'ing: no command line yet, the JVM's pages still mapped
    Member(12, ["/bin/chmod", "644", "f"], 2, jvm)
    python = Member(13, ["python", "-m", "papermill"], 50)
    Member(14, [], 40, python)  # not a JVM's: counted as it is
    python.kids.append(jvm)
    jvm.parent = python
    assert run.tree_rss_by_kind(python) == {"jvm": 300, "other": 50 + 40 + 2}
