"""sigterm_requests: a SIGTERM inside the window sets a flag instead of ending the process; DDP asks every rank."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

from lightning_modules.pretraining import DDP_POLL_EVERY, sigterm_requests


def test_a_sigterm_inside_the_window_is_a_request_and_the_old_handler_comes_back():
    seen = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append("old"))
    try:
        with sigterm_requests(SimpleNamespace(world_size=1)) as requested:
            assert not requested()
            os.kill(os.getpid(), signal.SIGTERM)  # delivered to the main thread at once
            assert requested() and requested()  # it stays set; this process is still here
        assert seen == []  # the window's handler took it, not the previous one
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == ["old"]  # restored on exit
    finally:
        signal.signal(signal.SIGTERM, old)


def test_under_ddp_the_request_is_the_ranks_any():
    votes = []

    def reduce_boolean_decision(decision, all=True):
        votes.append((decision, all))
        return True  # another rank was signalled

    trainer = SimpleNamespace(world_size=2, strategy=SimpleNamespace(reduce_boolean_decision=reduce_boolean_decision))
    with sigterm_requests(trainer) as requested:
        assert requested()  # this rank got nothing, another did: stop here too
        assert not any(requested() for _ in range(DDP_POLL_EVERY - 1))  # no collective between votes
        assert requested() and requested(now=True)
    assert votes == [(False, False)] * 3  # its own "no", reduced with any(), not all(); once per DDP_POLL_EVERY


def test_under_ddp_a_signal_between_votes_waits_for_the_next_or_for_now():
    def reduce_boolean_decision(decision, all=True):
        return decision  # the only rank: the vote is its own flag

    trainer = SimpleNamespace(world_size=2, strategy=SimpleNamespace(reduce_boolean_decision=reduce_boolean_decision))
    old = signal.getsignal(signal.SIGTERM)
    with sigterm_requests(trainer) as requested:
        assert not requested()  # the first call votes: nothing yet
        os.kill(os.getpid(), signal.SIGTERM)
        assert not requested()  # not a voting call: the flag waits
        assert requested(now=True)  # pretraining's last call votes whatever the count (pretrain_in_fit)
    assert signal.getsignal(signal.SIGTERM) is old
