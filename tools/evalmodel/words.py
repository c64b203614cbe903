"""The closed word lists of the synthetic long-context tasks.

Every word the generator can write is here, so the vocabulary (vocab.py) can give each one a
single "▁word" token. Lists whose words answer questions (names, cities, ...) are kept apart from
the filler lists, so filler text never contains an answer-like word by accident.
"""

FUNCTION = """the a of in on at to from with by for near under over behind after before while when
then is was are were has had it he she they this that there his her their its not very quite
also again each every some many few all and but or as into through across along around about
where how what which who count often did does do many times answer question document text label
story value passkey remember lives in works job pet favorite color hid hide moved move city
bought buy keeps keep pay attention important note here list keys values following words
live have say""".split()

FILLER_NOUNS = """river garden window road forest hill valley village market bridge tower field lake
harbor castle meadow path wall roof gate stone tree flower cloud rain snow wind storm
morning evening night day week year summer winter autumn spring light shadow fire smoke
sound song voice story letter book page map picture painting mirror candle lantern blanket
basket bottle cup plate bowl table chair bench shelf ladder rope wheel cart boat ship sail
coin ring key drum flag tent camp fence well pond island shore cliff cave tunnel
room hall kitchen cellar attic stair corner street square school library museum theater
station train farm barn orchard vineyard mill workshop factory office bank shop bakery""".split()

FILLER_ADJ = """old young quiet loud small large bright dark warm cold soft hard long short tall
narrow wide heavy light gentle rough smooth quick slow early late empty full clean dusty
golden silver wooden broken ancient modern distant nearby hidden open closed busy calm
strange familiar simple careful tired happy sad brave shy curious proud lonely crowded
narrow steep deep shallow""".split()

FILLER_VERB_T = """watched carried found opened closed painted repaired cleaned followed passed
visited crossed built moved lifted pushed pulled touched noticed remembered described
admired studied counted measured""".split()

FILLER_VERB_I = """walked waited rested slept laughed smiled listened wandered paused worked
sang danced stayed arrived left returned hurried lingered shivered glowed""".split()

FILLER_ADV = """slowly quickly quietly softly suddenly finally carefully gently eventually
happily silently calmly""".split()

PEOPLE_NOUNS = """man woman child boy girl farmer sailor teacher merchant traveler stranger
neighbor guard baker miller""".split()

PREPOSITIONS = """near under over behind beside across through along around toward past""".split()

NAMES = """alice bruno clara daniel elena felix greta hugo iris jonas kira lukas mara nico
olga pablo quinn rosa sven tara ulrich vera walter xenia yusuf zara anton bella cyril dora
emil fiona gideon hanna ivan julia karl lena marco nora oscar petra rafael sofia tobias
ursula viktor wanda adrian beatrix conrad delia edgar flora gustav helga igor jasmin""".split()

CITIES = """lisbon oslo vienna dublin prague madrid berlin warsaw athens cairo lima quito
bogota havana nairobi dakar tunis tokyo seoul hanoi manila jakarta delhi lahore tehran
baghdad ankara sofia riga tallinn vilnius helsinki bergen porto seville naples milan zurich
geneva lyon""".split()
CITIES = [c for c in CITIES if c not in NAMES]  # "sofia" is a name too

PROFESSIONS = """doctor lawyer painter pilot chef nurse carpenter plumber dentist architect
engineer librarian gardener butcher tailor potter jeweler banker poet sculptor""".split()

ANIMALS = """cat dog horse rabbit parrot turtle goat donkey hamster ferret lizard pony duck
goose owl fox wolf bear otter badger beaver falcon eagle heron swan crane moose bison camel
llama zebra tiger lion panther lynx seal whale dolphin shark salmon""".split()

COLORS = """red blue green yellow orange purple pink brown black white gray violet crimson
teal amber indigo""".split()

OBJECTS = """lamp watch scarf hammer compass violin kettle umbrella notebook necklace
telescope helmet wallet camera bracelet trumpet""".split()

HIDING_PLACES = """barn cellar attic drawer closet chest basement garage wardrobe cupboard
stable shed pantry locker suitcase""".split()

KV_ADJ = """amber bold brisk coral dusky eager fancy fuzzy gentle glossy humble icy jolly keen
lucky misty noble plain rapid rusty sandy shiny sleepy snowy spicy sunny tidy vivid wild
windy witty zesty""".split()

# Topics of the few-shot classification task; a sample binds a random label to each topic.
TOPICS = {
    "fruit": "apple pear plum cherry peach grape lemon mango melon banana".split(),
    "tool": "saw drill chisel wrench pliers shovel rake axe file clamp".split(),
    "weather": "thunder drizzle hail fog frost breeze sleet blizzard drought mist".split(),
    "music": "piano guitar flute cello harp banjo oboe tuba organ fiddle".split(),
    "vehicle": "car bus truck tram bicycle scooter van tractor wagon canoe".split(),
    "sport": "tennis soccer hockey rugby golf boxing rowing cricket skiing archery".split(),
    "body": "elbow knee shoulder ankle wrist thumb forehead chin spine ribs".split(),
    "furniture": "sofa stool dresser cabinet couch desk crib hammock futon ottoman".split(),
    "clothing": "jacket sweater skirt shirt glove sock boot coat vest hat".split(),
    "vegetable": "carrot onion potato celery cabbage radish turnip pea bean leek".split(),
    "gem": "ruby emerald sapphire diamond opal topaz pearl jade garnet quartz".split(),
    "spice": "pepper cinnamon ginger nutmeg clove saffron vanilla basil thyme mint".split(),
}
LABELS = """alpha beta gamma delta epsilon zeta eta theta iota kappa lambda sigma omega""".split()
FEWSHOT_FRAMES = [
    "we talked about the {0}, the {1} and the {2}.",
    "my list had the {0} and the {1}, then the {2}.",
    "someone mentioned a {0}, a {1} and a {2}.",
    "the note was about the {0}, the {2} and the {1}.",
]

# Repeated events of the counting task: (sentence as written, question phrase).
EVENTS = [
    ("the bell rang", "the bell rang"),
    ("a dog barked", "a dog barked"),
    ("the phone buzzed", "the phone buzzed"),
    ("a door slammed", "a door slammed"),
    ("the kettle whistled", "the kettle whistled"),
    ("an owl hooted", "an owl hooted"),
    ("the clock chimed", "the clock chimed"),
    ("a baby cried", "a baby cried"),
    ("the engine roared", "the engine roared"),
    ("a horn honked", "a horn honked"),
]
EVENT_WORDS = """an rang barked phone buzzed slammed kettle whistled hooted chimed baby cried
engine roared horn honked bell clock door""".split()

# Words that start a line (after "\\n"), so they get whole-word pieces without the "▁" marker.
LINE_START = ["document", "question", "answer", "text", "label"]


def all_words():
    """Every word the generator may write, deduplicated, in a fixed order."""
    lists = [FUNCTION, FILLER_NOUNS, FILLER_ADJ, FILLER_VERB_T, FILLER_VERB_I, FILLER_ADV,
             PEOPLE_NOUNS, PREPOSITIONS, NAMES, CITIES, PROFESSIONS, ANIMALS, COLORS, OBJECTS,
             HIDING_PLACES, KV_ADJ, LABELS, EVENT_WORDS]
    lists += [TOPICS[t] for t in sorted(TOPICS)]
    for frame in FEWSHOT_FRAMES:
        lists.append([w for w in frame.split() if not w.startswith("{")])
    seen, out = set(), []
    for lst in lists:
        for w in lst:
            if w not in seen:
                seen.add(w)
                out.append(w)
    return out
