"""Install the NLTK data the noun miner uses into a project-local folder.

Tries `nltk.download` first (WordNet 3.0 and the perceptron POS tagger). Where NLTK's
server cannot be reached, copies WordNet 3.0 from Debian's `wordnet-base` and
`wordnet-sense-index` packages (/usr/share/wordnet), adding the `lexnames` file they
lack, and installs those packages first when apt-get is usable (root, or passwordless
sudo). No POS-tagger model is available offline; the miner then falls back to a WordNet
noun lexicon. Exits non-zero, saying what to run, when WordNet cannot be had: `make repro`
then stops before the graph starts rather than at mine_pairs.

    python -m pipeline.mining.nltk_setup --dir .nltk_data
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

DEBIAN_WORDNET = Path("/usr/share/wordnet")
# WordNet 3.0 lexicographer files: number, name, syntactic category.
LEXNAMES = [
    "adj.all 3", "adj.pert 3", "adv.all 4", "noun.Tops 1", "noun.act 1", "noun.animal 1",
    "noun.artifact 1", "noun.attribute 1", "noun.body 1", "noun.cognition 1",
    "noun.communication 1", "noun.event 1", "noun.feeling 1", "noun.food 1", "noun.group 1",
    "noun.location 1", "noun.motive 1", "noun.object 1", "noun.person 1",
    "noun.phenomenon 1", "noun.plant 1", "noun.possession 1", "noun.process 1",
    "noun.quantity 1", "noun.relation 1", "noun.shape 1", "noun.state 1",
    "noun.substance 1", "noun.time 1", "verb.body 2", "verb.change 2", "verb.cognition 2",
    "verb.communication 2", "verb.competition 2", "verb.consumption 2", "verb.contact 2",
    "verb.creation 2", "verb.emotion 2", "verb.motion 2", "verb.perception 2",
    "verb.possession 2", "verb.social 2", "verb.stative 2", "verb.weather 2", "adj.ppl 3",
]
INSTALL_HELP = ("WordNet 3.0 is missing. Either allow NLTK to download it "
                "(python -c \"import nltk; nltk.download('wordnet')\") or install Debian's "
                "package (sudo apt-get install wordnet-base wordnet-sense-index) and run "
                "`make nltk` again.")


DEFAULT_DIR = Path(__file__).resolve().parents[2] / ".nltk_data"  # what `make nltk` fills


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{entry.split()[0]}\t{entry.split()[1]}\n"
                   for i, entry in enumerate(LEXNAMES))


def wordnet_reader(data_dir: str | Path | None = None):
    """nltk's WordNet corpus reader from `data_dir`, $NLTK_DATA or nltk's usual folders;
    None if WordNet is not installed (or not usable) there."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    # nltk only reads data from folders on its search path.
    for d in (data_dir, os.environ.get("NLTK_DATA"), DEFAULT_DIR):
        if d and str(Path(d).resolve()) not in nltk.data.path:
            nltk.data.path.insert(0, str(Path(d).resolve()))
    class EnglishWordNet(WordNetCorpusReader):
        """No OMW version map: nltk builds it on every load (over half the load time, about
        10 s on 2 cores) for multilingual lookups only, and this reader has no OMW data."""

        def map_wn(self, version="wordnet"):
            return None

    try:
        reader = EnglishWordNet(nltk.data.find("corpora/wordnet"), None)
        if reader.synsets("dog") and reader.synsets("traffic_light"):
            return reader
    except Exception:
        pass
    return None


def wordnet_works(data_dir: Path) -> bool:
    return wordnet_reader(data_dir) is not None


def copy_debian_wordnet(data_dir: Path, source: Path = DEBIAN_WORDNET) -> bool:
    if not (source / "data.noun").is_file() or not (source / "index.sense").is_file():
        return False
    target = data_dir / "corpora" / "wordnet"
    tmp = target.with_name(".wordnet.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in source.iterdir():
        if f.is_file():
            shutil.copyfile(f, tmp / f.name)
    if not (tmp / "lexnames").is_file():
        (tmp / "lexnames").write_text(lexnames_text())
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return True


DEBIAN_PACKAGES = ("wordnet-base", "wordnet-sense-index")


def apt_get_prefix() -> list[str] | None:
    """The command prefix that runs apt-get as root here, or None where apt-get is unusable."""
    if shutil.which("apt-get") is None:
        return None
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True).returncode == 0:
        return [sudo, "-n"]
    return None


def apt_install_wordnet() -> bool:
    """Install Debian's WordNet packages; False where apt-get is unusable or fails."""
    prefix = apt_get_prefix()
    if prefix is None:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"installing Debian's {' '.join(DEBIAN_PACKAGES)} with apt-get", file=sys.stderr)
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *DEBIAN_PACKAGES]):
        if subprocess.run(prefix + cmd, env=env).returncode != 0:
            print(f"`{' '.join(cmd)}` failed", file=sys.stderr)
            return False
    return True


def try_download(data_dir: Path, packages=("wordnet", "averaged_perceptron_tagger_eng")):
    import nltk

    socket.setdefaulttimeout(15)
    for pkg in packages:
        try:
            nltk.download(pkg, download_dir=str(data_dir), quiet=True, raise_on_error=True)
        except Exception as e:  # offline: the fallback below takes over
            print(f"nltk.download({pkg!r}) failed: {type(e).__name__}", file=sys.stderr)
    # nltk downloads WordNet as a zip; unpack it so the corpus reader finds a folder.
    z = data_dir / "corpora" / "wordnet.zip"
    if z.is_file() and not (data_dir / "corpora" / "wordnet").is_dir():
        shutil.unpack_archive(z, data_dir / "corpora")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default=".nltk_data")
    args = ap.parse_args(argv)
    data_dir = Path(args.dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # Each source only when the ones before it gave nothing: NLTK's server, then Debian's
    # packages (installed first where apt-get is usable).
    if not wordnet_works(data_dir):
        try_download(data_dir)
    if not wordnet_works(data_dir):
        if not (DEBIAN_WORDNET / "index.sense").is_file():
            apt_install_wordnet()
        if copy_debian_wordnet(data_dir):
            print(f"copied WordNet 3.0 from {DEBIAN_WORDNET} (Debian wordnet-base)")
    if wordnet_works(data_dir):
        print(f"NLTK WordNet ready in {data_dir}")
        return 0
    # Fatal: mine_pairs and the noun tests need WordNet; stop before the graph starts.
    print(f"error: {INSTALL_HELP}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
