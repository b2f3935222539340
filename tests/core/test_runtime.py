"""The composition root: scratch collections for comparisons never touch the live Chroma."""

from rag_health.settings import SCRATCH_PREFIX


def test_scratch_collections_live_apart_and_leave_nothing(small_corpus, make_runtime, tmp_path):
    """Regression (review of the reshaping): scratch names were built from the live name cut at 63 characters,
    so a 63-character live collection was itself the scratch one and was dropped, and embedded comparisons grew
    the live database. Now embedded scratch collections live in a folder of their own, removed afterwards."""
    live_name = "c" * 63
    rt = make_runtime(small_corpus, collection=live_name)
    rt.index.count()
    before = sorted(c.name for c in rt.chroma.list_collections())
    with rt.scratch_indexes() as new_index:
        a, b = new_index("0-sentence"), new_index("1-markdown")
        assert a.name != b.name and {a.name, b.name}.isdisjoint(before)
        assert a.name.startswith(SCRATCH_PREFIX) and a.client is not rt.chroma
        a.drop()
    assert sorted(c.name for c in rt.chroma.list_collections()) == before
    assert not list((tmp_path / "state").glob("**/*scratch*"))
