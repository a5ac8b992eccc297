"""Class names to WordNet synsets, the nodes between which Open mIoU's WordNet similarity
is measured (pipeline/similarity/wordnet_similarity.py).

A shipped synset file, `pipeline/similarity/wordnet_synsets/<set>.json`, maps every class
of a benchmark (and of the synthetic world) to one noun synset:

    {"name": "ade20k_150", "wordnet": "3.0", "classes": [
        {"name": "plant", "synset": "plant.n.02", "by": "hand",
         "gloss": "(botany) a living organism lacking the power of locomotion"}, ...]}

"by" says how the synset was chosen: "first sense" (WordNet's most frequent noun sense of
the first synonym found in WordNet), "first physical sense" (the first sense that names
a thing one can see, when the most frequent does not: "table"'s most frequent sense is a
table of data, "van"'s the vanguard), "head noun" (the phrase is not in WordNet, its last
word is: "crt screen" -> screen) or "hand" (checked and set by hand where the automatic
pick is wrong: ADE's "plant" is flora, not a factory; "earth, ground" the ground, not
the planet). `python -m pipeline.similarity.synset_files <set>` rewrites the automatic
entries of a file and keeps the "hand" ones.

Names no file lists (a user's own class list) get the automatic pick at evaluation time.
"""

from __future__ import annotations

import json
from importlib import resources

from pipeline.clip.text_classifier import split_synonyms

# Lexicographer files of things one can point at in an image (WordNet 3.0 lexnames), in
# two tiers: objects first, then people and groups, which a class name means less often
# ("monitor"'s first sense is a person, "van"'s a group, "table"'s a table of data). The
# other noun files hold acts, attributes, communications... ("road"'s second sense is the
# act of travelling), which a segmentation class name does not mean.
PHYSICAL_LEXNAMES = (
    frozenset({"noun.artifact", "noun.object", "noun.animal", "noun.plant", "noun.food",
               "noun.substance", "noun.body", "noun.location", "noun.phenomenon",
               "noun.Tops"}),
    frozenset({"noun.person", "noun.group"}),
)
SYNSET_DIR = "wordnet_synsets"  # under pipeline/similarity
# Evaluation sets that share one synset file: the synthetic world's two splits.
SYNSET_FILE_OF = {"world_full": "world", "world_things": "world"}


def _lemma(word: str) -> str:
    return word.strip().lower().replace(" ", "_").replace("-", "_")


def automatic_synset(wordnet, name: str) -> tuple[str | None, str]:
    """(synset name, how it was chosen) for a class name: the first synonym WordNet has as
    a noun, at its first sense that names a physical thing (else its first sense); if no
    synonym is in WordNet, the same for the last word of each synonym; (None, "none") when
    nothing is."""
    for by_head in (False, True):
        for word in split_synonyms(name):
            lemma = _lemma(word.split()[-1] if by_head else word)
            senses = wordnet.synsets(lemma, pos="n")
            if not senses:
                continue
            physical = [s for tier in PHYSICAL_LEXNAMES for s in senses
                        if s.lexname() in tier]
            chosen = physical[0] if physical else senses[0]
            how = "head noun" if by_head else (
                "first sense" if chosen == senses[0] else "first physical sense")
            return chosen.name(), how
    return None, "none"


def synset_file_name(dataset: str) -> str:
    return SYNSET_FILE_OF.get(dataset, dataset)


def shipped_synsets(dataset: str) -> dict[str, str | None]:
    """class name -> synset name from the shipped file of `dataset` (a canonical eval set
    name, or "world"); {} when the project ships none for it."""
    ref = resources.files("pipeline.similarity") / SYNSET_DIR / \
        f"{synset_file_name(dataset)}.json"
    if not ref.is_file():
        return {}
    return {c["name"]: c["synset"] for c in json.loads(ref.read_text("utf-8"))["classes"]}


def class_synsets(wordnet, names: list[str], dataset: str) -> tuple[list[str | None], int]:
    """The synset of each class name, from the set's shipped file where it lists the name,
    else chosen automatically; and how many were chosen automatically."""
    shipped = shipped_synsets(dataset)
    out, automatic = [], 0
    for name in names:
        if name in shipped:
            out.append(shipped[name])
        else:
            out.append(automatic_synset(wordnet, name)[0])
            automatic += 1
    return out, automatic
