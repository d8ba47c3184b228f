from __future__ import annotations

from tests.agent.helpers import agents  # noqa: F401 - the fixture

# one line per multi-hop run: what was sent, delivered, lost and duplicated;
# shown in the terminal summary so every run reports its duplicates
DELIVERY_REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if DELIVERY_REPORT:
        terminalreporter.section("multi-hop delivery (at least once)")
        for line in DELIVERY_REPORT:
            terminalreporter.write_line(line)
