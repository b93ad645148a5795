"""The findability probe's pure parts and its ranking, against a fake xAI client (no HTTP)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from docsync_cli.errors import AuthError, NotFoundError
from docsync_cli.reports.findability import pick_phrase, probe
from docsync_cli.reports.search import snippet
from docsync_cli.reports.verify import VerifyReport, sample_candidates
from docsync_cli.xai.answers import SearchHit


def test_the_phrase_prefers_long_rare_words_over_stop_words() -> None:
    text = ("Sehr geehrte Damen und Herren, in der Sache und in der Sache und in der Sache. "
            "Der Mietvertrag über die Gewerbeeinheit Kastanienallee endet vorzeitig. Mit freundlichen Grüßen")
    phrase = pick_phrase(text)
    assert phrase is not None and "Kastanienallee" in phrase and "Gewerbeeinheit" in phrase
    assert len(phrase.split()) == 8


def test_too_little_text_gives_no_phrase_and_pdfium_hyphen_markers_are_dropped() -> None:
    assert pick_phrase("") is None
    assert pick_phrase("1 2 3 a b c und der die") is None
    assert pick_phrase("Grund\x02buch\x02auszug Flurkarte Teilungserklärung") == (
        "Grundbuchauszug Flurkarte Teilungserklärung")


class FakeXai:
    """Answers searches from a script: collection id → hits (or an exception)."""

    def __init__(self, answers: dict[str, list[SearchHit] | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, list[str], int]] = []

    def search(self, query: str, collection_ids: list[str], limit: int = 10) -> list[SearchHit]:
        self.calls.append((query, collection_ids, limit))
        answer = self.answers[collection_ids[0]]
        if isinstance(answer, Exception):
            raise answer
        return answer


def hit(file_id: str, score: float = 1.0) -> SearchHit:
    return SearchHit(file_id, "c", "text", score, ())


def test_probe_ranks_distinct_files_and_reports_what_came_back_instead() -> None:
    many = [hit("f_other1"), hit("f_other1"), hit("f_other2"), hit("f_other3"), hit("f_other4"),
            hit("f_other5"), hit("f_mine")]
    fake = FakeXai({"c_found": [hit("f_other1"), hit("f_mine"), hit("f_mine")], "c_deep": many,
                    "c_absent": [hit("f_other1")], "c_gone": NotFoundError("xai", "POST", "/s", 404, "nope")})
    xai: Any = fake
    found, deep, absent, gone = probe(xai, "phrase", "f_mine", ["c_found", "c_deep", "c_absent", "c_gone"], top=5)
    assert (found.found, found.rank, [h.file_id for h in found.others]) == (True, 2, ["f_other1"])
    assert (deep.found, deep.rank) == (False, 6)
    assert [h.file_id for h in deep.others] == ["f_other1", "f_other2", "f_other3", "f_other4", "f_other5"]
    assert (absent.found, absent.rank, [h.file_id for h in absent.others]) == (False, None, ["f_other1"])
    assert (gone.found, "404" in gone.error) == (False, True)
    assert [c[2] for c in fake.calls] == [20] * 4 and all(len(c[1]) == 1 for c in fake.calls)


def test_an_authentication_failure_stops_the_probe() -> None:
    xai: Any = FakeXai({"c": AuthError("xai", 401)})
    with pytest.raises(AuthError):
        probe(xai, "phrase", "f", ["c"], top=5)


def test_sampling_takes_everything_when_few_and_a_bounded_random_draw_when_many() -> None:
    rng = random.Random(7)
    assert sorted(sample_candidates(30, 20, rng)) == list(range(30))
    draw = list(sample_candidates(1_000_000, 20, rng))
    assert len(draw) == 80 and len(set(draw)) == 80 and all(0 <= d < 1_000_000 for d in draw)


def test_the_share_and_the_threshold() -> None:
    report = VerifyReport(top=5, threshold=90.0, wanted=20, candidates=0)
    assert report.share is None and report.passed  # nothing to probe is not a failure


def test_snippet_centres_on_the_query_and_drops_control_characters() -> None:
    text = "Vorwort " * 50 + "Die Kaution\x03 beträgt drei \u202eMonatsmieten" + " Nachwort" * 50
    cut = snippet(text, "Kaution", width=60)
    assert "Kaution beträgt drei  Monatsmieten"[:20] in cut and cut.startswith("…") and cut.endswith("…")
    assert "\x03" not in cut and "\u202e" not in cut
    assert snippet("kurz", "x") == "kurz"
