"""Where the time went: the top functions of py-spy's folded stacks (``py-spy record -f raw``, as
``bench/e2e.py --profile`` writes them), for each thread of each process.

Run from the repository root: ``.venv/bin/python -m bench.folded FILE [--top 25] [--under FUNCTION]``.

Threads are named after what runs in them (the ingress's event loop, the processing child's, the
log writer, the checkpointers), and each function is given twice: its own samples ("self") and the
samples with it anywhere on the stack ("inclusive"), as shares of that thread's samples. With
``--under``, only the stacks through that function count, and shares are of those.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

LOCATION = re.compile(r" \(.*\)$")
ROLES = (
    ("smsroute.engines.embedded.child", "processing"),
    ("_write_loop", "log writer"),
    ("Checkpointer._run", "checkpointer"),
    ("backlog", "backlog gauges"),
    ("cli/engines.py", "ingress"),
)
"""What a thread runs, told by a frame found in its stacks (first match wins)."""


def read(path: Path) -> list[tuple[list[str], int]]:
    """Each stack as its frames (process and thread first, then outermost to innermost), with its count."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks.append((stack.split(";"), int(count)))
    return stacks


def thread_names(stacks: list[tuple[list[str], int]]) -> dict[str, str]:
    """A name for each thread frame: its role and thread id."""
    roles: dict[str, Counter[str]] = defaultdict(Counter)
    for frames, count in stacks:
        thread = next((frame for frame in frames if frame.startswith("thread (")), "")
        text = ";".join(frames)
        role = next((name for mark, name in ROLES if mark in text), "other")
        roles[thread][role] += count
    return {thread: f"{counts.most_common(1)[0][0]} {thread}" for thread, counts in roles.items()}


def summarize(stacks: list[tuple[list[str], int]], top: int, under: str | None) -> str:
    names = thread_names(stacks)
    total: Counter[str] = Counter()
    own: dict[str, Counter[str]] = defaultdict(Counter)
    anywhere: dict[str, Counter[str]] = defaultdict(Counter)
    for frames, count in stacks:
        thread = next((frame for frame in frames if frame.startswith("thread (")), "")
        functions = [LOCATION.sub("", frame) for frame in frames if not frame.startswith(("process ", "thread ("))]
        if under is not None:
            if under not in functions:
                continue
            functions = functions[functions.index(under) :]
        name = names[thread]
        total[name] += count
        if functions:
            own[name][functions[-1]] += count
        for function in set(functions):
            anywhere[name][function] += count
    lines = []
    for name, samples in total.most_common():
        lines.append(f"== {name}: {samples} samples")
        for title, counts in (("self", own[name]), ("inclusive", anywhere[name])):
            lines.append(f"  {title}:")
            shown = [(function, n) for function, n in counts.most_common() if n < samples][:top]  # not the entry points
            lines += [f"    {100 * n / samples:5.1f} %  {function}" for function, n in shown]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="py-spy raw folded stacks")
    parser.add_argument("--top", type=int, default=25, help="functions listed per thread (default 25)")
    parser.add_argument("--under", help="only the stacks through this function (e.g. LogConsumer._step)")
    args = parser.parse_args(argv)
    print(summarize(read(args.file), args.top, args.under))
    return 0


if __name__ == "__main__":
    sys.exit(main())
