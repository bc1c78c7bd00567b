"""The demo's progress: one line rewritten in place on a terminal, plain lines otherwise."""

from __future__ import annotations

import io

from tokenledger.streams.demo.status import StatusLine


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_line_rewritten_in_place() -> None:
    out = Terminal()
    line = StatusLine(out, every_s=0)
    line.status("emitted 1")
    line.status("emitted 2")
    line.say("traffic done")
    line.status("emitted 3")
    line.close()
    assert out.getvalue() == (
        "\remitted 1\x1b[K\remitted 2\x1b[K\ntraffic done\n\remitted 3\x1b[K\n"
    )


def test_a_pipe_gets_plain_lines_at_most_every_interval() -> None:
    out = io.StringIO()
    line = StatusLine(out, every_s=3600)
    line.status("emitted 1")
    line.status("emitted 2")  # within the interval: dropped
    line.status("emitted 3", force=True)
    line.say("done")
    line.close()
    assert out.getvalue() == "emitted 1\nemitted 3\ndone\n"
