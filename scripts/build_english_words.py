"""Build the word list behind mini's language routing: viewfinder/models/weights/english_words.txt.gz.

    python scripts/build_english_words.py     # needs wordfreq ([train] extra); about 10 s

A query whose words are all in the list takes mini's English text path whatever the e5 language
test says (`multilingual.english_looking`): the test, on e5's vector alone, sent names that read
the same in many languages ("Koala", "Panda", "Opera House") and short words ("Pig", "bee") down
the other languages' path, where they score worse (docs/mini.md). A word is in the list when it is
common in English (wordfreq Zipf frequency >= 2.5, about once in 3 million words) and at least as
common there as in any of the other languages measured (fr, de, es, it, pt, ru, pl, nl, uk):
"chat", "pies" or "gato" are not; "hand" is (and means the same in German and Dutch)."""

from __future__ import annotations

import gzip
from pathlib import Path

from wordfreq import top_n_list, zipf_frequency

MIN_ZIPF = 2.5
OTHERS = ("fr", "de", "es", "it", "pt", "ru", "pl", "nl", "uk")
OUT = Path(__file__).resolve().parents[1] / "viewfinder" / "models" / "weights" / "english_words.txt.gz"


def main() -> None:
    words = []
    for word in top_n_list("en", 200_000):  # most frequent first
        if not word.isalpha():
            continue
        en = zipf_frequency(word, "en")
        if en < MIN_ZIPF:
            break
        if en >= max(zipf_frequency(word, lang) for lang in OTHERS):
            words.append(word)
    # mtime 0: the same words give the same bytes
    OUT.write_bytes(gzip.compress("\n".join(sorted(words)).encode("utf-8") + b"\n", mtime=0))
    print(f"wrote {OUT}: {len(words)} words, {OUT.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
