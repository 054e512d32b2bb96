"""Progress lines outside a terminal, and the participant on every line."""

from __future__ import annotations

import logging

from bids_recon.log import _logged_progress, participant_context, setup_logging


def test_progress_lines_every_tenth_with_an_eta(caplog):
    with caplog.at_level(logging.INFO, logger="bids_recon"):
        items = list(_logged_progress(range(40), "reconstruction batches", None))
    assert items == list(range(40))
    lines = [r.getMessage() for r in caplog.records if "reconstruction batches" in r.getMessage()]
    assert len(lines) == 10 and lines[0].startswith("reconstruction batches: 4/40 (10 %)")
    assert lines[-1].startswith("reconstruction batches: 40/40 (100 %)") and "left" in lines[-1]


def test_lines_name_the_participant_once(capsys):
    setup_logging(0)
    logger = logging.getLogger("bids_recon.test")
    with participant_context("07"):
        logger.info("decoding VC")
        logger.info("sub-07: decode stage took 1 s")
    logger.info("outside")
    err = capsys.readouterr().err.splitlines()
    assert err[-3].endswith("bids_recon.test: sub-07: decoding VC")
    assert err[-2].endswith("bids_recon.test: sub-07: decode stage took 1 s")
    assert err[-1].endswith("bids_recon.test: outside")
