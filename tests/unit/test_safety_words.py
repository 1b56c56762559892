"""The image-prompt safety filter (pez.engine.safety): innocent image words pass, offensive words
(slurs, explicit sexual terms, swearing, with their inflections) are blocked, whole words only."""

import pytest

from pez.engine.safety import ALLOW, COMMON_BLOCKED, WordFilter

# Words pictures need. Decisions on the borderline ones (see pez/engine/safety.py's ALLOW):
# "nude"/"naked"/"breast" pass (art: a nude, life drawing; chicken breast), "drunk", "stoned"
# (a stoned path), "god", "kill", "hell", "vodka" pass (subjects of images; not slurs or sexual).
INNOCENT = """
striped stripes stripe dotted checkered plaid wooden marble glass golden rusty velvet leather
satin lace fur suede denim tweed burlap linen silk wool patina glossy matte grainy
watercolor sketch mosaic oil painting
skull skeleton torso buttocks bust thigh chest spine pelvis hips figure
essex sussex middlesex penistone cockermouth clitheroe dickinson lighthouse windmill barn
sausage meatballs hotdog wiener cream pie cherries melons peaches buns nuts jerky coconut bananas
whiskey bourbon champagne sake martini tequila gin absinthe stout
strip stripes bang bangs blow blown screw screws hooks booby
gay queer lesbian transgender
organ organs stroke strokes brushstroke slope slopes fat pot pots paddy sandbar facial naked
nude nudes nudity breast breasts drunk stoned god gods kill killer hell vodka rum wine beer
virgin virginia spaces lens weed weeds spices spiced spicy butter scatter bass class grass
assistant classic cocktail cockpit peacock hancock scunthorpe dickens analysis canal japan
pussycat titmouse tit bloody butt balls sucker snowballing shrimping bareback hoe escort
topless kinky twinkie woody willy cockatoo hooked shitake
sandbar hookah pasty loin vixen testing spacing spiked
""".split()

OFFENSIVE = """
fuck fucked fucking fucks fucker motherfucker shit shitty bitch bitches cunt cunts twat
slut sluts whore whores porn porno blowjob blowjobs handjob dildo dildos orgasm orgasms orgy
orgies masturbate masturbated masturbating threesome hentai bdsm milf incest pedophile
rape raped rapes raping rapist
nigger niggers nigga faggot faggots fag fagging kike kikes spic spics wetback wetbacks
chink retard retarded tranny paki raghead towelhead gook gooks jap japs kraut polack honky
masturbation pedophilia horny kkk nazi nazis nazism klan
""".split()


@pytest.fixture(scope="module")
def words():
    return WordFilter.default()


@pytest.mark.parametrize("word", INNOCENT)
def test_innocent_image_words_pass(words, word):
    assert not words.blocks_word(word), word
    assert not words.blocks_text(f"a {word} vase on grass")


@pytest.mark.parametrize("word", OFFENSIVE)
def test_offensive_words_are_blocked(words, word):
    assert words.blocks_word(word), word
    assert words.blocks_word(word.upper() + "!")  # case and punctuation do not hide a word
    assert words.blocks_text(f"a red {word} on grass")


def test_whole_words_only_no_prefix_or_substring(words):
    # the old chat list's prefix rule blocked "striped" ("strip" + "ed"); substrings never count
    for text in ["a striped scarf", "glasses on a classic bass", "assassin", "cocktail bar", "scunthorpe"]:
        assert not words.blocks_text(text), text


def test_phrases_match_as_consecutive_words(words):
    assert words.blocks_text("a date rape scene")
    assert words.blocks_text("two blow job")  # profanex phrase "blow job"
    assert not words.blocks_text("a blow of wind on the job site")


def test_masked_spellings(words):
    assert words.blocks_text("a f*ck sign")
    assert words.blocks_word("b00bs")
    assert not words.blocks_text("a 5-star hotel, 100% cotton")


def test_glued_pieces_are_caught_in_decoded_text(words):
    # BPE pieces that glue into a blocked word form that word in the decoded text
    assert words.blocks_text("red fu" + "cking ball")


def test_allow_list_is_explicit_and_justified():
    assert all(isinstance(reason, str) and len(reason) > 3 for reason in ALLOW.values())
    assert all(w == w.lower() and w.isalpha() for w in ALLOW)


def test_of_builds_words_phrases_and_masks():
    f = WordFilter.of(["Badword", "two words", "b@d", "hy-phen"], allow=["badwords"])
    assert f.blocks_word("badword") and f.blocks_word("BADWORDED")
    assert not f.blocks_word("badwords")  # allowed
    assert f.blocks_text("say two words") and not f.blocks_text("two and words")
    assert f.blocks_text("hy phen") and f.blocks_text("b@d day")


def test_the_issues_innocent_words_pass_and_its_gaps_are_closed(words):
    # issue 18: the old list blocked these image words; the prep's filter let the second line pass
    for (
        word
    ) in "striped organ stroke slope fat pot paddy sandbar facial naked drunk stoned god kill hell vodka".split():
        assert not words.blocks_word(word), word
    for word in "masturbation pedophilia horny kkk nazi".split():
        assert words.blocks_word(word) and words.blocks_text(f"a {word} poster"), word


def test_common_words_blocked_are_a_selection_of_the_source_list():
    """COMMON_BLOCKED adds no word of its own: each is in better-profanity's list, common in English
    (the rare ones are taken whole) and carries its reason."""
    from importlib.resources import files

    from pez.engine.readability import zipf

    source = set((files("better_profanity") / "profanity_wordlist.txt").read_text(encoding="utf-8").split())
    for word, reason in COMMON_BLOCKED.items():
        assert word in source and zipf(word) >= 3.0 and len(reason) > 3, word
    assert not set(COMMON_BLOCKED) & set(ALLOW)


def test_the_engine_uses_this_filter(tiny_clip):
    """One safety implementation: the vocabulary mask and the decoded-text check both use it."""
    import pez
    from pez.engine.vocab import VocabFilter, text_rejector, vocabulary

    vocab, tok = vocabulary(tiny_clip), tiny_clip.tokenizer
    safe = set(vocab.allowed_ids(VocabFilter(safe=True, whole_words=False)).tolist())
    for word in ("striped", "organ", "vodka"):  # whole-word tokens ("striped</w>"), innocent
        assert tok.encode(word)[0] in safe, word
    for word in ("nazi", "horny", "rapist"):
        assert tok.encode(word)[0] not in safe, word
    reject = text_rejector(pez.InvertConfig())
    assert reject("a red nazi flag") and not reject("a striped pink kite on sand")
