"""Print the memory held by the running local environment: RSS per component (its
whole process tree) and the sum. Usage: .venv/bin/python hack/env_memory.py"""

import psutil

from supercheck_localenv.cli import COMPONENTS
from supercheck_localenv.layout import default_layout
from supercheck_localenv.procs import Proc

total = 0
for name in COMPONENTS:
    pid = Proc(default_layout(), name).pid
    if pid is None:
        print(f"{name:26} stopped")
        continue
    root = psutil.Process(pid)
    rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)] if p.is_running())
    total += rss
    print(f"{name:26} {rss / 2**20:8.1f} MiB")
print(f"{'total':26} {total / 2**20:8.1f} MiB")
