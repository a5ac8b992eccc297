from pipeline.mining.nltk_setup import LEXNAMES, copy_debian_wordnet, lexnames_text


def test_lexnames_has_the_45_wordnet_files():
    lines = lexnames_text().splitlines()
    assert len(lines) == len(LEXNAMES) == 45
    assert lines[5] == "05\tnoun.animal\t1" and lines[44] == "44\tadj.ppl\t3"


def test_copy_adds_lexnames_and_refuses_incomplete_source(tmp_path):
    src = tmp_path / "debian"
    src.mkdir()
    (src / "data.noun").write_text("x")
    assert not copy_debian_wordnet(tmp_path / "out", src)  # no index.sense
    (src / "index.sense").write_text("y")
    assert copy_debian_wordnet(tmp_path / "out", src)
    target = tmp_path / "out/corpora/wordnet"
    assert (target / "lexnames").read_text() == lexnames_text()
    assert (target / "data.noun").read_text() == "x"
