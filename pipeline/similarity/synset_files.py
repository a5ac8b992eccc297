"""Write the shipped synset files, `pipeline/similarity/wordnet_synsets/<set>.json`
(pipeline/similarity/synsets.py says what they hold): the automatic pick for every class,
each with its WordNet gloss for a reader checking it, keeping the entries set by hand.

    python -m pipeline.similarity.synset_files world ade20k_150 ade20k_847 \
        pascal_context_59 pascal_context_459 pascal_voc_20
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from pipeline.similarity.synsets import SYNSET_DIR, automatic_synset


def synset_entries(wordnet, names: list[str], keep: dict[str, dict]) -> list[dict]:
    """A synset file's class entries for `names`: the entries of `keep` (by name) that were
    set by hand, and the automatic pick for the others, each with its WordNet gloss."""
    entries = []
    for name in names:
        if keep.get(name, {}).get("by") == "hand":
            entry = dict(keep[name])
        else:
            synset, how = automatic_synset(wordnet, name)
            entry = {"name": name, "synset": synset, "by": how}
        entry["gloss"] = wordnet.synset(entry["synset"]).definition() if entry["synset"] \
            else ""
        entries.append(entry)
    return entries


def _class_names_of(file_name: str) -> list[str]:
    if file_name == "world":
        from pipeline.world.classes import EVAL_VOCABS

        names = []
        for vocab in EVAL_VOCABS:
            names += [n for n in vocab.names if n not in names]
        return names
    from pipeline.data.class_lists import builtin_class_list

    return list(builtin_class_list(file_name).names)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", nargs="+", help="world, ade20k_150, ade20k_847, "
                    "pascal_context_59, pascal_context_459, pascal_voc_20, coco_stuff_171")
    args = ap.parse_args(argv)
    from pipeline.mining.nltk_setup import INSTALL_HELP, wordnet_reader

    wordnet = wordnet_reader()
    if wordnet is None:
        raise SystemExit(INSTALL_HELP)
    folder = Path(__file__).resolve().parent / SYNSET_DIR
    folder.mkdir(exist_ok=True)
    for name in args.sets:
        path = folder / f"{name}.json"
        keep = {}
        if path.is_file():
            keep = {c["name"]: c for c in json.loads(path.read_text("utf-8"))["classes"]}
        entries = synset_entries(wordnet, _class_names_of(name), keep)
        doc = {"name": name, "wordnet": wordnet.get_version(),
               "note": "class name -> WordNet noun synset for Open mIoU; 'by': how it was "
                       "chosen (pipeline/similarity/synsets.py); 'hand' entries are kept "
                       "when the file is rewritten",
               "classes": entries}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", "utf-8")
        tmp.replace(path)
        counts = Counter(e["by"] for e in entries)
        print(f"{path}: {len(entries)} classes, " +
              ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
