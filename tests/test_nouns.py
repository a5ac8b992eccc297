import pytest

from pipeline.mining.nouns import NounExtractor, tokenize

# (caption, expected noun lemmas in order) - COCO-style captions, including plurals,
# compounds, blacklisted framing words, punctuation, empty and non-ASCII captions.
CAPTIONS = [
    ("A dog on the grass.", ["dog", "grass"]),
    ("Two dogs playing with a frisbee in a field", ["dog", "frisbee", "field"]),
    ("A close up of a big apple to the right of a puppy on the dirt.",
     ["apple", "puppy", "dirt"]),
    ("A picture of a brown dog on the dirt.", ["dog", "dirt"]),
    ("A view of the dog", ["dog"]),
    ("a group of the striped zebra beside the street", ["zebra", "street"]),
    ("A teddy bear on the sand in the scene.", ["teddy bear", "sand"]),
    ("A picture of a zebra, a teddy bear and a spotted giraffe.",
     ["zebra", "teddy bear", "giraffe"]),
    ("Zebras and giraffes grazing near trees", ["zebra", "giraffe", "tree"]),
    ("A red fire hydrant next to a wall.", ["fire hydrant", "wall"]),
    ("A traffic light over a busy street", ["traffic light", "street"]),
    ("Traffic lights at night.", ["traffic light"]),
    ("the golden gate in the fog", ["golden gate", "fog"]),
    ("A man riding a wave on top of a surfboard.", ["man", "wave", "surfboard"]),
    ("Two buses parked beside each other", ["bus"]),
    ("A kite flying in the blue sky", ["kite", "sky"]),
    ("A cat sitting on a couch with a remote", ["cat", "couch", "remote"]),
    ("A plate of pizza on a wooden table.", ["plate", "pizza", "table"]),
    ("People walking down the sidewalk with umbrellas", ["people", "sidewalk", "umbrella"]),
    ("A woman's hat on the bed", ["woman", "hat", "bed"]),
    ("A bowl of bananas, apples and oranges!", ["bowl", "banana", "apple", "orange"]),
    ("", []),
    ("   ...   ", []),
    ("A café with chairs in front of it", ["cafe", "chair"]),
    ("Crème brûlée on a plate", ["creme brulee", "plate"]),
    ("A boat on the water near the sand", ["boat", "water", "sand"]),
    ("A snowy mountain with snow on the ground", ["mountain", "snow", "ground"]),
    ("a tiger lying in the grass", ["tiger", "grass"]),
    ("A bus is driving on the road.", ["bus", "road"]),
    ("The car and the car", ["car"]),  # each lemma once
    ("A photo of a giraffe standing next to a tree.", ["giraffe", "tree"]),
    ("Lots of boats in a harbor", ["boat", "harbor"]),
]


def lemmas(extractor, caption):
    return [lemma for _, lemma in extractor.extract(caption)]


@pytest.mark.parametrize("caption, expected", CAPTIONS)
def test_wordnet_lexicon_path(wordnet, caption, expected):
    assert lemmas(NounExtractor(wordnet), caption) == expected


def penn_tagger(tokens):
    """A stand-in for the perceptron tagger (whose data cannot be installed offline): the
    Penn tags a tagger gives these captions' words, NN for the listed nouns."""
    nouns = {lemma for _, want in CAPTIONS for lemma in want for lemma in lemma.split()}
    plural = {"dogs", "zebras", "giraffes", "trees", "lights", "buses", "people",
              "umbrellas", "bananas", "apples", "oranges", "chairs", "boats", "lots"}
    tags = []
    for t in tokens:
        if t in plural:
            tags.append((t, "NNS"))
        elif t in nouns or t in ("picture", "view", "group", "top", "front", "photo",
                                 "close", "right", "scene", "night"):
            tags.append((t, "NN"))
        else:
            tags.append((t, "DT" if t in ("a", "the") else "JJ"))
    return tags


@pytest.mark.parametrize("caption, expected", CAPTIONS)
def test_tagger_path(wordnet, caption, expected):
    extractor = NounExtractor(wordnet, tagger=penn_tagger)
    assert extractor.method == "perceptron tagger"
    assert lemmas(extractor, caption) == expected


def test_surface_forms_keep_the_caption_words(wordnet):
    got = NounExtractor(wordnet).extract("Two Teddy Bears and some zebras.")
    assert got == [("teddy bears", "teddy bear"), ("zebras", "zebra")]


def test_tokenize_drops_possessives_and_punctuation():
    assert tokenize("A man's hat, a dog-bed; CAFÉ!") == ["a", "man", "hat", "a", "dog-bed",
                                                         "cafe"]


def test_the_reader_skips_nltks_multilingual_version_map(wordnet):
    """nltk maps WordNet versions for OMW lookups on every load (over half the load time);
    without OMW data nothing reads the map, and the English lookups are unchanged."""
    assert wordnet.map30 is None and wordnet._omw_reader is None
    assert wordnet.synsets("traffic_light")[0].name() == "traffic_light.n.01"
    assert wordnet.morphy("dogs", "n") == "dog"
