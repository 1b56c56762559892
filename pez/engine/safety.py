"""The offensive-word filter for image prompts: slurs, explicit sexual terms and swearing,
matched as whole words (never as prefixes or substrings, so "striped" and "class" pass).

Sources (both pinned in requirements.txt, read from the installed packages, never copied):
  1. profanex's categorised lexicon (code MIT; lexicon CC BY 4.0, derived from Shutterstock's
     "List of Dirty, Naughty, Obscene, and Otherwise Bad Words" and reviewed by its maintainers
     for false positives). We keep the categories a public image-prompt tool must not print:
       sexual    explicit sexual terms        slurs     ethnic, homophobic and ableist slurs
       general   swearing                     violence  sexual violence ("rape")
     and leave out `excretory` ("anus", "crap", "piss": anatomy and mild words). profanex's
     sexual list is a subset (few entries after "e"), and its slurs are few (21).
  2. glin-profanity's English list (MIT), for what profanex lacks ("orgasm", "handjob", "kike",
     "spic", "wetback", ...). Uncategorised and broad, so only its single words are taken (its
     phrases such as "tied up" or "girl on" read innocently word by word, and a PEZ prompt is a
     bag of words), and ALLOW lifts the innocent image words it holds.
  3. better-profanity's list (MIT; pez's old list, chat-oriented), for the slurs and compounds
     both lack ("gook", "jap", "kraut", "polack", "fingerfuck"). Only its RARE words are taken
     whole: wordfreq Zipf frequency below RARE_ZIPF (pez.engine.readability). Its common words
     are where its chat-oriented false positives live ("god", "kill", "organ", "stroke", "vodka",
     "naked", "facial"); its rare ones are slang spellings, compounds and slurs, plus a few
     image words that ALLOW lifts ("sandbar", "hookah", "pasty"). Of its ~170 common words,
     COMMON_BLOCKED names the few whose offensive reading dominates (explicit sexual terms such
     as "masturbation", "horny"; hate terms such as "nazi", "kkk"), each with its reason; a test
     checks that every one of them is in better-profanity's list (a selection, not a new list).

Rules, applied by code to the entries as they are (no entry is edited by hand):
  - an entry of letters only is a word; profanex entries of letter words separated by spaces or
    hyphens are phrases ("date rape"), matched as consecutive words of a text;
  - an entry with other characters is a masked spelling ("f*ck", "b00bs"), matched against a
    whitespace-separated chunk of a text as it is written;
  - a word is also blocked in a plural or verb form: -s, -es (after s, x, z, ch, sh), -d (after
    e), -ed, -ing, with a dropped final e ("raping") or a doubled final consonant ("fagging");
    -ies for a final y ("orgies"); agent nouns (-er) are not derived: the sources list the real ones ("fucker") and the rule
    would catch "butter";
  - ALLOW takes precedence: innocent image words that the sources or the inflection rule would
    block, each with its reason. tests/unit/test_safety_words.py checks that innocent image words
    pass and that offensive ones (with inflections) are blocked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

from .readability import zipf

CATEGORIES = ("sexual", "slurs", "general", "violence")  # profanex categories we block
RARE_ZIPF = 3.0  # better-profanity words below this frequency are taken (see the docstring)
# Innocent words that a source or the inflection rule would block, and why they are image words.
# Words whose offensive reading dominates stay blocked even when they have an innocent one
# ("cock", "ass", "dick", "coon", "bondage", "lolita"): a lost synonym costs a prompt little.
ALLOW: dict[str, str] = {
    # anatomy in art and medicine (profanex's maintainers also exclude these as context-neutral)
    "nude": "art term: a nude, nude painting, nude colour",
    "nudity": "art term",
    "nipple": "anatomy (art, nursing, baby bottles)",
    "nipples": "anatomy",
    "breasts": "anatomy, poultry (chicken breasts)",
    "penis": "anatomy (medical illustration, classical sculpture)",
    "vagina": "anatomy (medical illustration)",
    "vulva": "anatomy (botany too)",
    "genitals": "anatomy",
    "rectum": "anatomy (medical illustration)",
    "erotic": "art genre (erotic art, profanex excludes it too)",
    # ordinary words that a broad chat list holds for a rare slang sense
    "bloody": "a bloody knife (horror posters), British emphasis; profanex's violence category",
    "butt": "a cigarette butt, a rifle butt",
    "balls": "tennis balls, ballet balls (profanex excludes it as a homograph)",
    "suck": "verb",
    "sucks": "verb",
    "snatch": "verb",
    "tit": "a bird (blue tit, great tit)",
    "hoe": "a garden tool",
    "escort": "a ship or car escort (profanex excludes it too)",
    "topless": "a topless car (convertible), art",
    "kinky": "kinky hair",
    "domination": "games, sport, history",
    "bareback": "riding a horse without a saddle",
    "eunuch": "history, art",
    "scat": "scat singing; animal droppings in nature guides",
    "swinger": "golf, swing dancing",
    "twinkie": "a snack cake",
    "shrimping": "fishing for shrimp",
    "snowballing": "throwing snowballs",
    "scissoring": "cutting with scissors",
    "cocked": "inflection of 'cock': a cocked hat, a cocked pistol",
    "pricked": "inflection of 'prick': a pricked finger, pricked ears",
    "spiced": "spice + d, not an inflection of the slur it also parses as",
    "fingering": "music (piano fingering)",
    "anus": "anatomy (profanex files it as excretory, which we do not block)",
    # rare words of better-profanity's list that pictures need
    "sandbar": "a bar of sand in a river or by the coast (issue 18)",
    "cowgirl": "western art",
    "cowgirls": "western art",
    "hookah": "a water pipe",
    "loin": "a cut of meat (pork loin)",
    "loins": "a cut of meat; classical art",
    "pasty": "a baked pastry (Cornish pasty); a pale skin tone",
    "peyote": "a cactus",
    "reefer": "a refrigerated ship or container",
    "teat": "a cow's teat, a baby bottle's teat",
    "hoar": "hoar frost",
    "niggle": "a small worry (not a slur)",
    "flange": "engineering, plumbing",
    "muff": "a fur muff, earmuffs",
    "nappy": "a baby's nappy (British)",
    "dopey": "one of the seven dwarfs; sleepy-looking",
    "ovary": "anatomy, botany",
    "ovum": "anatomy",
    "ovums": "anatomy",
    "labia": "anatomy (medical illustration)",
    "foreskin": "anatomy (medical illustration)",
    "scrotum": "anatomy (medical illustration)",
    "hymen": "anatomy; the Greek god of marriage (classical art)",
    "sodom": "biblical art (Sodom and Gomorrah)",
    "leper": "history, biblical art",
    "napalm": "history (war photography)",
    "vixen": "a female fox",
    "titi": "a monkey",
}
# better-profanity's common words (Zipf >= RARE_ZIPF) that are blocked after all: the offensive
# reading dominates and no image needs the word. The other common ones stay allowed ("god", "organ").
COMMON_BLOCKED: dict[str, str] = {
    "masturbation": "explicit sexual term",
    "pedophilia": "child sexual abuse",
    "horny": "sexual slang (horned animals are 'horned')",
    "sexual": "sexual term; image prompts never need it",
    "goddamn": "swearing",
    "gtfo": "swearing (abbreviation)",
    "nazi": "hate: Nazism",
    "nazism": "hate: Nazism",
    "kkk": "hate: the Ku Klux Klan",
    "klan": "hate: the Ku Klux Klan",
    "aryan": "hate: white-supremacist usage dominates",
}
_SUFFIXES = ("s", "es", "d", "ed", "ing")
_SIBILANTS = ("s", "x", "z", "ch", "sh")  # -es follows these only ("kisses", not "spices")
_NOT_LETTERS = re.compile(r"[^a-z]+")
_WORD_SEPARATORS = re.compile(r"[\s\-]+")


@dataclass(frozen=True)
class WordFilter:
    """Blocked words, phrases and masked spellings; see the module docstring for the rules."""

    words: frozenset[str]  # letters only, lower case
    phrases: frozenset[tuple[str, ...]]  # two or more words
    masked: frozenset[str]  # spellings with digits or symbols, lower case, as written
    allow: frozenset[str] = frozenset()

    @classmethod
    @cache
    def default(cls) -> WordFilter:
        """profanex's lexicon, categories CATEGORIES, with ALLOW."""
        from importlib.resources import files

        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when present (100x faster)
        lexicon = yaml.load((files("profanex") / "data" / "banned_words.yaml").read_text(encoding="utf-8"), loader)
        entries = [e for cat in CATEGORIES for e in lexicon.get(cat, [])]
        glin = files("glin_profanity") / "data" / "dictionaries" / "english.json"
        broad = json.loads(glin.read_text(encoding="utf-8"))["words"]
        entries += [e for e in broad if len(_WORD_SEPARATORS.split(e.strip())) == 1]  # its single words
        chat = (files("better_profanity") / "profanity_wordlist.txt").read_text(encoding="utf-8").split()
        entries += [w for w in chat if w.isalpha() and zipf(w.lower()) < RARE_ZIPF]  # its rare words
        entries += [w for w in chat if w.lower() in COMMON_BLOCKED]  # and the chosen common ones
        return cls.of(entries, allow=ALLOW)

    @classmethod
    def of(cls, entries, allow=()) -> WordFilter:
        """A filter from lexicon entries (words, phrases, masked spellings) and allowed words."""
        words, phrases, masked = set(), set(), set()
        for entry in entries:
            e = str(entry).strip().lower()
            parts = [p for p in _WORD_SEPARATORS.split(e) if p]
            if not parts:
                continue
            if all(p.isascii() and p.isalpha() for p in parts):
                if len(parts) == 1:
                    words.add(parts[0])
                else:
                    phrases.add(tuple(parts))
            else:
                masked.add(e)
        return cls(frozenset(words), frozenset(phrases), frozenset(masked), frozenset(a.lower() for a in allow))

    def blocks_word(self, word: str) -> bool:
        """True when `word` (any text; only its letters count) is a blocked word or an inflection
        of one, and not allowed. Masked spellings are checked on the text as written."""
        raw = word.strip().lower()
        if raw in self.masked:
            return True
        w = _NOT_LETTERS.sub("", raw)
        if not w or w in self.allow:
            return False
        if w in self.words:
            return True
        bases = [b for b in _bases(w) if b in self.words and b not in self.allow]
        if not bases:  # most words: no frequency lookup needed
            return False
        common = zipf(w) >= RARE_ZIPF
        return any(not common or zipf(b) >= RARE_ZIPF for b in bases)

    def blocks_text(self, text: str) -> bool:
        """True when a word of `text`, a listed phrase (consecutive words) or a masked spelling
        (a whitespace-separated chunk) is blocked. Decoded prompts are checked with this, so
        sub-word pieces that glue into a blocked word are caught."""
        chunks = [c.strip(".,;:!?\"'()[]") for c in text.lower().split()]
        if any(c in self.masked for c in chunks if c):
            return True
        words = [w for w in _NOT_LETTERS.split(text.lower()) if w]
        if any(self.blocks_word(w) for w in words):
            return True
        for phrase in self.phrases:
            n = len(phrase)
            if any(tuple(words[i : i + n]) == phrase for i in range(len(words) - n + 1)):
                return True
        return False


def _bases(w: str):
    """Words that `w` may inflect: 'raped' -> 'rape', 'rap'; 'fagging' -> 'fagg', 'fag'."""
    if w.endswith("ies") and len(w) > 4:
        yield w[:-3] + "y"  # orgies -> orgy
    for suffix in _SUFFIXES:
        if len(w) > len(suffix) + 1 and w.endswith(suffix):
            base = w[: -len(suffix)]
            if suffix == "es" and not base.endswith(_SIBILANTS):
                continue
            if suffix == "d" and not base.endswith("e"):
                continue
            yield base
            if suffix in ("ed", "ing"):
                yield base + "e"  # raping -> rape
                if len(base) > 2 and base[-1] == base[-2]:
                    yield base[:-1]  # fagging -> fag


__all__ = ["ALLOW", "CATEGORIES", "COMMON_BLOCKED", "WordFilter"]
