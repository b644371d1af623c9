"""What a run did: images computed and skipped per model and output, seconds, non-finite
outputs and failed units, merged from the units' reports by either executor."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .units import UnitReport

log = logging.getLogger("xaicompare")


@dataclass
class RunSummary:
    computed: dict[str, int] = field(default_factory=dict)  # "model/method" -> images computed
    skipped: dict[str, int] = field(default_factory=dict)  # already in the store
    seconds: dict[str, float] = field(default_factory=dict)
    # (model, "logits" or method, image id) of every stored result with NaN or inf, found
    # when computed or, for stored results, from the chunk's `finite` flags.
    nonfinite: list[tuple[str, str, str]] = field(default_factory=list)
    # Ray executor: (model, shard, error) of units that failed for a reason in the data or
    # the code (not retried), and how many units were retried after their worker died.
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    retried: int = 0
    # "model/method" -> {"passes": forward passes, "largest": most inputs in one pass}, and
    # model -> executor.memory's largest cap on inputs per pass over its units
    # {"backward": inputs, "forward": inputs} (engine/memory.py); absent without a budget
    passes: dict[str, dict[str, int]] = field(default_factory=dict)
    pass_limits: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, key: str, computed: int, skipped: int, seconds: float) -> None:
        self.computed[key] = self.computed.get(key, 0) + computed
        self.skipped[key] = self.skipped.get(key, 0) + skipped
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds

    def merge(self, report: UnitReport) -> None:
        """Counts and non-finite outputs of one unit (warned about by `finish`)."""
        for key, computed, skipped, seconds in report.counts:
            self.add(key, computed, skipped, seconds)
        self.nonfinite.extend(report.nonfinite)
        for key, passes, largest in report.passes:
            seen = self.passes.setdefault(key, {"passes": 0, "largest": 0})
            seen["passes"] += passes
            seen["largest"] = max(seen["largest"], largest)
        if report.pass_limit is not None:  # the largest cap of the model's units
            cap = self.pass_limits.setdefault(report.model, {"backward": 0, "forward": 0})
            cap["backward"] = max(cap["backward"], report.pass_limit[0])
            cap["forward"] = max(cap["forward"], report.pass_limit[1])

    def finish(self) -> RunSummary:
        """Drop repeats (an OOM retry repeats shards) and warn once per model and output."""
        self.nonfinite = list(dict.fromkeys(self.nonfinite))
        by_output: dict[tuple[str, str], list[str]] = {}
        for model, what, image in self.nonfinite:
            by_output.setdefault((model, what), []).append(image)
        for (model, what), bad in by_output.items():
            log.warning("model '%s': non-finite %s (NaN or inf) for %d image(s): %s; excluded "
                        "from the statistics they would corrupt", model, what, len(bad),
                        ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))
        return self
