"""One progress display for a whole run: a line per stage with its unit and ETA.

Study.run opens a `RunDisplay` and each stage runs inside `display.stage(name)`. Code
anywhere below (a stage, the engine) reports through the module functions, which do
nothing when no run is being displayed:

    progress.plan(12, "matrix")          # the stage has 12 steps of this unit
    progress.step("gradcam/cosine")      # one done; the text says what is being worked on
    progress.restored(12)                # all 12 found done (the store, an unchanged report)
    bar = progress.bar(total, desc="explain", unit="map", enabled=True)
    bar.restore(n)                       # found in the store: done, not counted in the rate

On a terminal each stage is one tqdm line (kept when it ends); elsewhere (a log file, CI)
a stage prints one line when it ends. Work restored from the store shows as done.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tqdm.auto import tqdm


class Counter:
    """A tqdm bar that also counts work restored from the store (done at once, so it is
    left out of the rate and the ETA)."""

    def __init__(self, total: int | None, desc: str, unit: str, *, enabled: bool,
                 stream=None, position: int = 0, leave: bool = False) -> None:
        self.restored = 0
        self.started = time.perf_counter()
        self.tqdm = tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=stream,
                         position=position, leave=leave, dynamic_ncols=True)
        self.desc, self.unit, self.total = desc, unit, total
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n
        self.tqdm.update(n)

    def restore(self, n: int) -> None:
        """Count `n` units found done (in the store) without skewing the rate."""
        if n <= 0:
            return
        self.n += n
        self.restored += n
        bar = self.tqdm
        if not bar.disable:  # tqdm's rate is over n - last_print_n: move both
            bar.n += n
            bar.last_print_n += n
            bar.initial += n
            bar.refresh()

    def rewind(self, n: int) -> None:
        """Back to `n` done (work redone after an out-of-memory retry)."""
        self.tqdm.update(n - self.n)
        self.n = n

    def set_total(self, total: int | None, unit: str | None = None) -> None:
        self.total = total
        self.tqdm.total = total
        if unit is not None:
            self.unit = self.tqdm.unit = unit
        self.tqdm.refresh()

    def note(self, text: str) -> None:
        self.tqdm.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        self.tqdm.close()

    def summary(self) -> str:
        """One line: what was done, how much came from the store, how long it took."""
        seconds = time.perf_counter() - self.started
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        restored = f" ({self.restored} restored from the store)" if self.restored else ""
        unit = {"matrix": "matrices"}.get(self.unit, self.unit.rstrip("s") + "s")
        return f"{self.desc}: {count} {unit}{restored}, {seconds:.1f} s"


@dataclass
class RunDisplay:
    """The progress of one run. enabled=False (--quiet): nothing is printed."""

    enabled: bool = True
    stream: object = None  # default: sys.stderr at the time of printing
    finished: list[str] = field(default_factory=list)  # one summary line per stage
    current: Counter | None = None
    stage_name: str | None = None
    sub: Counter | None = None  # engine work inside a stage that has its own steps

    @property
    def out(self):
        return self.stream if self.stream is not None else sys.stderr

    @property
    def tty(self) -> bool:
        isatty = getattr(self.out, "isatty", None)
        return bool(isatty and isatty())

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Counter]:
        """Everything reported while the block runs counts toward stage `name`."""
        global _ACTIVE
        counter = Counter(None, name, "step", enabled=self.enabled and self.tty,
                          stream=self.out, leave=True)
        self.current, self.stage_name = counter, name
        previous, _ACTIVE = _ACTIVE, self
        try:
            yield counter
        finally:  # on an interrupt `current` stays, for the message of what was kept
            _ACTIVE = previous
            if self.sub is not None:
                self.sub.close()
                self.sub = None
            counter.close()
        self.current = None
        line = counter.summary()  # reached only when the stage finished
        self.finished.append(line)
        if self.enabled and not self.tty:
            print(line, file=self.out, flush=True)

    def interrupted(self) -> str:
        """What was finished when the run stopped (for the Ctrl-C message)."""
        done = [line.split(":")[0] for line in self.finished]
        parts = [f"stages finished: {', '.join(done)}" if done else "no stage finished"]
        if self.current is not None:
            c = self.current
            total = f"/{c.total}" if c.total is not None else ""
            parts.append(f"{self.stage_name} stopped at {c.n}{total} {c.unit}")
        return "; ".join(parts)


_ACTIVE: RunDisplay | None = None


def active() -> RunDisplay | None:
    return _ACTIVE


def plan(total: int | None, unit: str = "step") -> None:
    """The current stage has `total` steps of `unit` (None: not known in advance; no-op
    outside a displayed run)."""
    if _ACTIVE is not None and _ACTIVE.current is not None:
        _ACTIVE.current.set_total(total, unit)


def step(text: str | None = None, n: int = 1) -> None:
    """`n` steps of the current stage done; `text` names what comes next."""
    if _ACTIVE is not None and _ACTIVE.current is not None:
        if text is not None:
            _ACTIVE.current.note(text)
        _ACTIVE.current.update(n)


def restored(n: int) -> None:
    """`n` steps of the current stage found done: shown as done, left out of the ETA."""
    if _ACTIVE is not None and _ACTIVE.current is not None:
        _ACTIVE.current.restore(n)


def note(text: str) -> None:
    """Say what the current stage is working on, without counting a step."""
    if _ACTIVE is not None and _ACTIVE.current is not None:
        _ACTIVE.current.note(text)


def bar(total: int, *, desc: str, unit: str, enabled: bool = True) -> Counter:
    """A counter for engine work (maps, corrupted images).

    Inside a displayed run: the stage's own line when the stage has announced nothing
    else (the work is the stage), else a second line under it. Outside: a tqdm bar
    shown when `enabled`.
    """
    display = _ACTIVE
    if display is None or display.current is None:
        return Counter(total, desc, unit, enabled=enabled, leave=False)
    stage = display.current
    if stage.total is None and stage.n == 0:
        stage.set_total(total, unit)
        return _Shared(stage)
    sub = Counter(total, desc, unit, enabled=display.enabled and display.tty,
                  stream=display.out, position=1, leave=False)
    display.sub = sub
    return sub


class _Shared(Counter):
    """The stage's own counter lent to the engine: closing it leaves the stage open."""

    def __init__(self, stage: Counter) -> None:  # noqa: D107  (shares, does not copy)
        self.__dict__ = stage.__dict__

    def close(self) -> None:
        pass
