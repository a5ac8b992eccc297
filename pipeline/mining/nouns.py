"""Nouns of image captions (OVSeg §3.2: the words that mask-noun pairs are mined for).

Tokens come from a regular expression (no downloaded tokenizer data). Parts of speech come
from NLTK's perceptron tagger when its data is installed; otherwise from WordNet 3.0 as a
noun lexicon: a word counts as a noun when WordNet has a noun reading of it whose
tagged-corpus frequency is at least that of its verb, adjective and adverb readings ("dog",
"kite" are nouns; "red", "sitting", "two" are not). Multi-word nouns that WordNet knows
("traffic light", "teddy bear", "golden gate") are kept whole, longest first. Nouns are
lemmatised with WordNet's morphy ("zebras" -> "zebra") and non-visual nouns are dropped
(NON_VISUAL below).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

# Nouns that name no region of the image: photo framing, positions, quantities, scenes as
# a whole. (OVSeg does not list its filter; these are the usual suspects in COCO captions.)
NON_VISUAL = frozenset("""
photo picture image pic snapshot shot view close closeup close_up scene shot background
foreground front back top bottom side middle center centre left right corner edge end
part piece lot lots group bunch couple pair number variety kind sort type array set
way thing something someone somebody anything nothing stuff area distance day night time
while camera angle shade color colour one other others top_view front_view
""".split())

# Function words WordNet happens to list as nouns ("a" the vitamin, "in" the inch, "it"
# the game); a tagger would never call them nouns.
FUNCTION_WORDS = frozenset("""
a an the this that these those some any each every all both no another such what which
who whom whose there here it its it's he she they them their his her him we us our you
your i me my mine is are was were be been being am has have had do does did will would
can could may might must shall should of on in at by for with from to into onto over
under above below near beside besides behind between among through across along around
next off out up down about against toward towards upon within without and or but nor so
as than then very too also just not only two three four five six seven eight nine ten
many few several much more most other
""".split())

# Colour and size words: "red fire" and "blue sky" are WordNet nouns, but in a caption they
# are an adjective and a noun. A multi-word noun starting with one of these is kept only
# as a proper name (WordNet capitalises those: "Red Sea", "White House").
ATTRIBUTES = frozenset("""
red orange yellow green blue purple pink brown black white gray grey silver dark light
bright pale big small little large huge tiny tall short long old young new
""".split())
DETERMINERS = frozenset("a an the this that these those some two three four several many "
                        "his her their its my your our".split())

TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z]+)*")
MAX_COMPOUND = 3  # words in the longest multi-word noun looked up

Tagger = Callable[[list[str]], list[tuple[str, str]]]


def ascii_fold(text: str) -> str:
    """"Café crème" -> "cafe creme": WordNet's lemmas are ASCII."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def tokenize(caption: str) -> list[str]:
    """Lower-case word tokens; possessive 's dropped ("man's" -> "man")."""
    tokens = TOKEN.findall(ascii_fold(caption).lower())
    return [t[:-2] if t.endswith("'s") else t for t in tokens]


def perceptron_tagger() -> Tagger | None:
    """NLTK's perceptron POS tagger, or None when its data is not installed."""
    try:
        from nltk.tag import PerceptronTagger

        tagger = PerceptronTagger()
    except (LookupError, OSError, ValueError):
        return None
    return tagger.tag


class NounExtractor:
    """`extract(caption)` -> [(surface, lemma)] of the caption's visual nouns, in order,
    each lemma once. `wordnet`: nltk's WordNet corpus reader; `tagger`: a POS tagger
    (tokens -> [(token, Penn tag)]) or None for the WordNet lexicon."""

    def __init__(self, wordnet, tagger: Tagger | None = None,
                 non_visual: frozenset[str] = NON_VISUAL):
        self.wn = wordnet
        self.tagger = tagger
        self.non_visual = non_visual
        self._noun_cache: dict[str, str | None] = {}
        self._lexicon_cache: dict[str, bool] = {}

    @property
    def method(self) -> str:
        return "perceptron tagger" if self.tagger else "wordnet lexicon"

    def noun_lemma(self, phrase: str) -> str | None:
        """WordNet's noun lemma of a word or "_"-joined phrase, or None if not a noun."""
        if phrase not in self._noun_cache:
            lemma = self.wn.morphy(phrase, "n")
            self._noun_cache[phrase] = lemma.lower() if lemma else None
        return self._noun_cache[phrase]

    def lexicon_noun(self, word: str) -> bool:
        """Is a noun reading of `word` at least as frequent as any other reading?"""
        if word not in self._lexicon_cache:
            counts = {}
            for pos in ("n", "v", "a", "r"):
                lemma = self.wn.morphy(word, pos)
                counts[pos] = -1 if lemma is None else sum(
                    lem.count() for s in self.wn.synsets(lemma, pos) for lem in s.lemmas()
                    if lem.name().lower() == lemma.lower())
            self._lexicon_cache[word] = counts["n"] >= 0 and counts["n"] >= max(
                counts["v"], counts["a"], counts["r"])
        return self._lexicon_cache[word]

    def noun_flags(self, tokens: list[str]) -> list[bool]:
        if self.tagger is not None:
            tags = [tag for _, tag in self.tagger(tokens)]
            return [t.startswith("NN") and w not in FUNCTION_WORDS for w, t in zip(tokens, tags)]
        return [w not in FUNCTION_WORDS and not w.isdigit() and self.lexicon_noun(w)
                for w in tokens]

    def compound_lemma(self, words: list[str]) -> str | None:
        """The lemma of a multi-word noun WordNet knows, e.g. "teddy bear", or None."""
        if any(w in FUNCTION_WORDS for w in words):
            return None
        phrase = "_".join(words)
        lemma = self.noun_lemma(phrase)
        if not lemma or "_" not in lemma:
            return None
        if words[0] in ATTRIBUTES and not any(
                lem.name()[0].isupper() for syn in self.wn.synsets(lemma, "n")
                for lem in syn.lemmas() if lem.name().lower() == lemma):
            return None
        return lemma.replace("_", " ")

    def extract(self, caption: str) -> list[tuple[str, str]]:
        tokens = tokenize(caption)
        is_noun = self.noun_flags(tokens)
        if self.tagger is None:
            # "with a remote": a noun reading right after a determiner, ending the phrase
            for i, w in enumerate(tokens):
                if not is_noun[i] and i > 0 and tokens[i - 1] in DETERMINERS and (
                        i + 1 == len(tokens) or tokens[i + 1] in FUNCTION_WORDS) \
                        and w not in FUNCTION_WORDS and self.noun_lemma(w):
                    is_noun[i] = True
        # right to left, longest multi-word noun first: English noun phrases end on their
        # head, so "red fire hydrant" is "fire hydrant", not "red fire"
        found, j = [], len(tokens)
        while j > 0:
            for n in range(min(MAX_COMPOUND, j), 1, -1):
                lemma = self.compound_lemma(tokens[j - n:j])
                if lemma:
                    found.append((" ".join(tokens[j - n:j]), lemma))
                    j -= n
                    break
            else:
                j -= 1
                lemma = self.noun_lemma(tokens[j]) if is_noun[j] else None
                if lemma:
                    found.append((tokens[j], lemma))
        out, seen = [], set()
        for surface, lemma in reversed(found):
            if lemma.replace(" ", "_") in self.non_visual or lemma in seen:
                continue
            seen.add(lemma)
            out.append((surface, lemma))
        return out
