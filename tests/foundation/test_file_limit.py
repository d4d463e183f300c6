"""The open-files limit a process needs for BFF_MAX_INFLIGHT (app/pools.py): raised at start-up
as far as the hard limit allows, and a warning when that is not far enough. Each case runs in
its own interpreter, whose limits it may lower without touching the test process's."""

from __future__ import annotations

import json
import subprocess
import sys

from app.pools import file_descriptors_needed

PROBE = """
import json, logging, resource, sys
records = []
class Keep(logging.Handler):
    def emit(self, record):
        extra = {k: getattr(record, k, None) for k in ("limit", "needed")}
        records.append({"event": record.getMessage(), **extra})
logging.getLogger("app.pools").addHandler(Keep())
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))
from app.pools import raise_file_limit
raise_file_limit(int(sys.argv[3]))
print(json.dumps({"soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "records": records}))
"""


def _probe(soft: int, hard: int, max_inflight: int) -> dict[str, object]:
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", PROBE, str(soft), str(hard), str(max_inflight)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_soft_limit_is_raised_to_what_the_cap_needs() -> None:
    needed = file_descriptors_needed(1024)
    assert needed > 1024  # the usual soft limit would not do
    result = _probe(1024, needed + 100, 1024)
    assert result == {"soft": needed, "records": []}


def test_a_limit_already_high_enough_is_left_alone() -> None:
    needed = file_descriptors_needed(64)
    assert _probe(needed + 50, needed + 100, 64) == {"soft": needed + 50, "records": []}


def test_a_hard_limit_too_low_is_reached_and_said() -> None:
    needed = file_descriptors_needed(1024)
    result = _probe(256, 1500, 1024)
    assert result["soft"] == 1500
    assert result["records"] == [
        {"event": "process.file_limit_low", "limit": 1500, "needed": needed}
    ]
