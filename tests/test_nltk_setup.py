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


def test_setup_fails_saying_what_to_run_when_wordnet_cannot_be_had(tmp_path, monkeypatch,
                                                                    capsys):
    """No NLTK server, no Debian copy, no usable apt-get: `make nltk` (and so `make repro`
    and `make test`) stops before anything runs, with the commands that fix it."""
    from pipeline.mining import nltk_setup

    monkeypatch.setattr(nltk_setup, "try_download", lambda data_dir: None)
    monkeypatch.setattr(nltk_setup, "DEBIAN_WORDNET", tmp_path / "no-debian-wordnet")
    monkeypatch.setattr(nltk_setup, "apt_get_prefix", lambda: None)
    monkeypatch.setattr(nltk_setup, "wordnet_works", lambda data_dir: False)
    assert nltk_setup.main(["--dir", str(tmp_path / "nltk")]) == 1
    err = capsys.readouterr().err
    assert "apt-get install wordnet-base wordnet-sense-index" in err
    assert "nltk.download('wordnet')" in err
