"""A hand-written synonym table for the generated review corpus (:mod:`tasks.planted_sst.corpus`).

Project-authored (not copied from any lexical resource): for the content words the corpus
grammar uses (subject nouns, adjectives, intensifiers, openers and the words of the verb
phrases) a few substitutes of the same part of speech and, for sentiment words, the same
polarity.  It plays the role of the counter-fitted neighbours of paper 000 on the embedded
default: candidate substitutes, ranked by an embedding cosine and filtered by the word- and
sentence-embedding constraints like any other resource.

Function words (articles, pronouns, connectors, auxiliaries) have no entry: they are stop
words and never modified.  The table is directional (source -> substitutes); the fragility
task also uses it to augment the reference model's training data, so that every substitute
is in the tiny-bert word vocabulary (a swap to an unknown word would only test [UNK]).
"""

from __future__ import annotations

CORPUS_SYNONYMS: dict[str, tuple[str, ...]] = {
    # --- subject and object nouns -------------------------------------------------------
    "film": ("movie", "picture", "feature", "flick"),
    "movie": ("film", "picture", "feature", "flick"),
    "plot": ("storyline", "narrative", "story"),
    "acting": ("performance", "portrayal", "performing"),
    "script": ("screenplay", "writing", "text"),
    "director": ("filmmaker", "helmer", "auteur"),
    "cast": ("ensemble", "troupe", "company"),
    "story": ("tale", "narrative", "plot", "yarn"),
    "soundtrack": ("music", "score", "songs"),
    "dialogue": ("dialog", "writing", "conversation"),
    "ending": ("finale", "conclusion", "climax", "resolution"),
    "actor": ("performer", "star", "player"),
    "actress": ("performer", "star", "player"),
    "screenplay": ("script", "writing", "scenario"),
    "editing": ("cutting", "montage"),
    "pacing": ("rhythm", "tempo", "pace"),
    "villain": ("antagonist", "baddie", "heavy"),
    "hero": ("protagonist", "lead", "champion"),
    "sequel": ("continuation", "follow-up", "installment"),
    "comedy": ("farce", "comic", "romp"),
    "thriller": ("chiller", "potboiler", "suspenser"),
    "drama": ("melodrama", "play"),
    "documentary": ("doc", "docudrama"),
    "animation": ("cartoon", "animating"),
    "score": ("soundtrack", "music"),
    "premise": ("concept", "idea", "setup", "conceit"),
    "act": ("section", "segment", "part", "stretch"),
    "scene": ("sequence", "shot", "moment"),
    "minute": ("moment", "second"),
    "audience": ("crowd", "public", "house"),
    "viewers": ("audiences", "spectators", "watchers", "fans"),
    "seat": ("chair", "armchair"),
    "edge": ("brink", "verge", "lip"),
    "credits": ("titles", "crawl"),
    "evening": ("night", "afternoon"),
    "idea": ("concept", "notion", "premise"),
    "half": ("part", "section", "portion"),
    "watch": ("clock", "timepiece", "wristwatch"),
    "nerve": ("courage", "daring", "guts"),
    "footing": ("balance", "groove", "stride"),
    # --- positive adjectives --------------------------------------------------------------
    "brilliant": ("excellent", "superb", "outstanding", "splendid", "dazzling"),
    "moving": ("touching", "affecting", "poignant", "stirring"),
    "charming": ("delightful", "lovely", "endearing", "appealing"),
    "funny": ("hilarious", "amusing", "humorous", "comic"),
    "gripping": ("riveting", "absorbing", "compelling", "engrossing"),
    "beautiful": ("gorgeous", "lovely", "exquisite", "pretty"),
    "clever": ("smart", "ingenious", "shrewd", "inventive"),
    "delightful": ("charming", "lovely", "enjoyable", "pleasant"),
    "touching": ("moving", "affecting", "poignant", "tender"),
    "smart": ("clever", "intelligent", "bright", "sharp"),
    "engaging": ("absorbing", "captivating", "involving", "compelling"),
    "fresh": ("original", "novel", "new", "innovative"),
    "powerful": ("forceful", "potent", "strong", "intense"),
    "warm": ("affectionate", "cordial", "kindly", "genial"),
    "witty": ("clever", "humorous", "droll", "sharp"),
    "stunning": ("gorgeous", "striking", "breathtaking", "dazzling"),
    "heartfelt": ("sincere", "earnest", "genuine", "honest"),
    "tender": ("gentle", "affectionate", "sweet", "loving"),
    "thrilling": ("exciting", "exhilarating", "electrifying", "riveting"),
    "memorable": ("unforgettable", "notable", "remarkable", "striking"),
    # --- negative adjectives --------------------------------------------------------------
    "dull": ("boring", "tedious", "drab", "uninteresting"),
    "boring": ("dull", "tedious", "tiresome", "monotonous"),
    "clumsy": ("awkward", "inept", "graceless", "bumbling"),
    "tedious": ("boring", "dull", "monotonous", "wearisome"),
    "flat": ("lifeless", "limp", "insipid", "dull"),
    "predictable": ("formulaic", "obvious", "foreseeable", "unoriginal"),
    "messy": ("sloppy", "chaotic", "disorganized", "untidy"),
    "bland": ("insipid", "flavorless", "vapid", "dull"),
    "shallow": ("superficial", "thin", "facile", "empty"),
    "lifeless": ("dead", "flat", "inert", "listless"),
    "awkward": ("clumsy", "stilted", "ungainly", "uncomfortable"),
    "forgettable": ("unmemorable", "unremarkable", "undistinguished", "mediocre"),
    "tiresome": ("tedious", "wearisome", "irksome", "boring"),
    "silly": ("foolish", "ridiculous", "goofy", "absurd"),
    "hollow": ("empty", "vacuous", "meaningless", "shallow"),
    "pointless": ("meaningless", "aimless", "futile", "senseless"),
    "sluggish": ("slow", "plodding", "lethargic", "leaden"),
    "stale": ("tired", "hackneyed", "trite", "musty"),
    "grating": ("irritating", "annoying", "jarring", "abrasive"),
    "muddled": ("confused", "jumbled", "incoherent", "murky"),
    # --- other adjectives -------------------------------------------------------------------
    "whole": ("entire", "full", "complete"),
    "wide": ("broad", "large", "big"),
    "patient": ("tolerant", "persevering", "forbearing"),
    "promising": ("encouraging", "hopeful", "auspicious", "intriguing"),
    "talented": ("gifted", "skilled", "accomplished", "able"),
    "endless": ("interminable", "unending", "eternal", "infinite"),
    "long": ("lengthy", "extended", "protracted"),
    "second": ("latter", "later"),
    "final": ("last", "closing", "concluding"),
    "opening": ("first", "initial", "introductory"),
    "supporting": ("secondary", "minor", "subsidiary"),
    "lead": ("leading", "main", "principal", "starring"),
    # --- intensifiers and sentence adverbs ---------------------------------------------------
    "truly": ("really", "genuinely", "honestly"),
    "rather": ("fairly", "somewhat", "pretty"),
    "remarkably": ("extraordinarily", "strikingly", "notably", "unusually"),
    "oddly": ("strangely", "curiously", "weirdly", "peculiarly"),
    "quite": ("fairly", "pretty", "really"),
    "utterly": ("completely", "totally", "thoroughly", "entirely"),
    "surprisingly": ("unexpectedly", "astonishingly", "amazingly", "startlingly"),
    "almost": ("nearly", "practically", "virtually"),
    "genuinely": ("truly", "really", "sincerely", "authentically"),
    "honestly": ("frankly", "truthfully", "candidly"),
    "sadly": ("unfortunately", "regrettably", "unhappily"),
    "thankfully": ("fortunately", "luckily", "happily"),
    "far": ("much", "way"),
    "long-winded": ("verbose", "wordy"),
    # --- verbs --------------------------------------------------------------------------------
    "seems": ("appears", "looks"),
    "feels": ("seems", "appears", "looks"),
    "remains": ("stays", "continues"),
    "kept": ("held", "had"),
    "laugh": ("chuckle", "giggle", "guffaw"),
    "earns": ("deserves", "merits", "justifies"),
    "rewards": ("repays", "gratifies", "pleases"),
    "loses": ("forfeits", "drops", "abandons"),
    "left": ("kept", "had"),
    "smiling": ("grinning", "beaming", "laughing"),
    "deserves": ("merits", "earns", "warrants"),
    "lingers": ("persists", "endures", "stays"),
    "drags": ("plods", "crawls", "trudges"),
    "finds": ("discovers", "locates", "gets"),
    "wastes": ("squanders", "misuses", "underuses"),
    "checking": ("watching", "consulting", "eyeing"),
    "falls": ("comes", "breaks"),
    "forgets": ("ignores", "neglects", "overlooks"),
    "wants": ("wishes", "means", "intends"),
    "say": ("tell", "express", "convey", "state"),
    "feel": ("seem", "appear"),
    "squanders": ("wastes", "blows", "misuses"),
}


def synonym_pairs() -> list[tuple[str, str]]:
    """The table as (source, substitute) pairs, in table order."""
    return [(src, dst) for src, dsts in CORPUS_SYNONYMS.items() for dst in dsts]


def table_vocabulary() -> set[str]:
    """Every word of the table (sources and substitutes)."""
    out = set(CORPUS_SYNONYMS)
    for dsts in CORPUS_SYNONYMS.values():
        out.update(dsts)
    return out
