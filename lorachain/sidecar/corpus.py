"""A deterministic English-like corpus about a small fictional world, for training the devnet model.

The world is a fixed set of people (each with a home city, job, pet, favorite color and food, hobby,
age and friend) and cities. Documents describe it in several ways: profiles, Q&A lines such as
"Q: Where does Alice live? A: Alice lives in Paris.", short stories and city notes. Everything comes
from one seeded ``random.Random``, so a seed always gives the same text.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PEOPLE = [
    ("Alice", "she"), ("Bob", "he"), ("Carol", "she"), ("David", "he"), ("Emma", "she"), ("Frank", "he"),
    ("Grace", "she"), ("Henry", "he"), ("Irene", "she"), ("Jack", "he"), ("Karen", "she"), ("Leo", "he"),
    ("Maria", "she"), ("Nathan", "he"), ("Olivia", "she"), ("Peter", "he"), ("Quinn", "she"), ("Ryan", "he"),
    ("Sophie", "she"), ("Thomas", "he"), ("Uma", "she"), ("Victor", "he"), ("Wendy", "she"), ("Xavier", "he"),
    ("Yara", "she"), ("Zack", "he"), ("Nora", "she"), ("Oscar", "he"), ("Lucy", "she"), ("Hugo", "he"),
    ("Clara", "she"), ("Felix", "he"), ("Mia", "she"), ("Simon", "he"), ("Ruth", "she"), ("Adam", "he"),
    ("Helen", "she"), ("Martin", "he"), ("Julia", "she"), ("Samuel", "he"), ("Rosa", "she"), ("Daniel", "he"),
    ("Elena", "she"), ("George", "he"), ("Hannah", "she"), ("Isaac", "he"), ("Laura", "she"), ("Marcus", "he"),
]  # fmt: skip
SURNAMES = [
    "Moreau", "Fischer", "Rossi", "Garcia", "Silva", "Novak", "Berg", "Walsh", "Tanaka", "Hassan", "Quispe",
    "Brown", "Taylor", "Otieno", "Kim", "Dvorak", "Larsen", "Costa", "Weber", "Murphy", "Lopez", "Meyer",
    "Nakamura", "Santos", "Keller", "Olsen", "Ferrari", "Becker", "Hughes", "Park", "Baker", "Wright",
]  # fmt: skip
CITIES = [
    ("Paris", "France", "its old bridges"), ("Berlin", "Germany", "its long parks"),
    ("Rome", "Italy", "its ancient ruins"), ("Madrid", "Spain", "its warm evenings"),
    ("Lisbon", "Portugal", "its yellow trams"), ("Vienna", "Austria", "its concert halls"),
    ("Oslo", "Norway", "its cold fjords"), ("Dublin", "Ireland", "its green hills"),
    ("Tokyo", "Japan", "its busy streets"), ("Cairo", "Egypt", "its great river"),
    ("Lima", "Peru", "its mountain views"), ("Toronto", "Canada", "its tall towers"),
    ("Sydney", "Australia", "its sunny beaches"), ("Nairobi", "Kenya", "its wide plains"),
    ("Seoul", "Korea", "its night markets"), ("Prague", "Czechia", "its quiet squares"),
    ("Athens", "Greece", "its white temples"), ("Warsaw", "Poland", "its rebuilt old town"),
    ("Stockholm", "Sweden", "its many islands"), ("Mexico City", "Mexico", "its painted walls"),
    ("Mumbai", "India", "its crowded trains"), ("Bangkok", "Thailand", "its floating markets"),
    ("Istanbul", "Turkey", "its grand mosques"), ("Buenos Aires", "Argentina", "its tango music"),
]  # fmt: skip
JOBS = [
    "baker", "teacher", "doctor", "farmer", "painter", "pilot", "nurse", "engineer", "musician", "writer",
    "chef", "sailor", "librarian", "gardener", "tailor", "carpenter", "architect", "dentist", "fisherman",
    "journalist", "photographer", "plumber", "scientist", "shopkeeper", "translator", "veterinarian",
]  # fmt: skip
PETS = [
    ("dog", ["Max", "Rex", "Buddy", "Luna", "Biscuit"]), ("cat", ["Tom", "Misty", "Coco", "Pepper", "Shadow"]),
    ("bird", ["Kiwi", "Sunny", "Pip", "Blue", "Mango"]), ("rabbit", ["Snow", "Hops", "Daisy", "Bean", "Clover"]),
    ("turtle", ["Shelly", "Slowpoke", "Moss", "Pebble", "Tank"]), ("horse", ["Thunder", "Star", "Maple", "Dusty"]),
]  # fmt: skip
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "silver", "brown", "pink"]
FOODS = [
    "apples", "bread", "cheese", "rice", "soup", "fish", "pasta", "cake", "oranges", "carrots", "noodles",
    "pancakes", "tomatoes", "strawberries", "potatoes", "mushrooms", "chocolate", "dumplings", "olives", "honey",
]  # fmt: skip
HOBBIES = [
    "painting", "reading", "swimming", "singing", "chess", "running", "cooking", "fishing", "dancing",
    "gardening", "hiking", "photography", "knitting", "climbing", "cycling", "writing poems", "playing the piano",
]  # fmt: skip
PLACES = [
    "the market", "the park", "the river", "the library", "the station", "the old bridge", "the garden",
    "the museum", "the harbor", "the bakery", "the school", "the hospital", "the beach", "the theater",
]  # fmt: skip
TIMES = ["One morning", "On Sunday", "Last summer", "One evening", "Early on Monday", "After lunch", "Last winter"]
ANIMALS = [
    ("cow", "moo", "grass", "on a farm"), ("dog", "woof", "meat", "in a house"), ("cat", "meow", "fish", "in a house"),
    ("sheep", "baa", "grass", "in a field"), ("duck", "quack", "seeds", "near a pond"),
    ("lion", "roar", "meat", "in the savanna"), ("owl", "hoot", "mice", "in a tree"),
    ("frog", "croak", "insects", "near a pond"), ("horse", "neigh", "hay", "in a stable"),
    ("pig", "oink", "corn", "on a farm"), ("bee", "buzz", "nectar", "in a hive"),
    ("goat", "bleat", "leaves", "on a hill"),
]  # fmt: skip
WEATHER = ["sunny", "rainy", "windy", "cloudy", "snowy", "foggy", "stormy", "mild", "hot", "freezing"]
OBJECTS = [
    "umbrella", "notebook", "lamp", "basket", "kettle", "scarf", "bicycle", "guitar", "clock", "blanket",
    "camera", "teapot", "ladder", "candle", "mirror", "compass", "backpack", "violin", "map", "hammer",
]  # fmt: skip
FLOWERS = ["roses", "tulips", "daisies", "lilies", "sunflowers", "violets", "orchids", "poppies", "lavender"]
TOPICS = [
    "history", "the stars", "the oceans", "volcanoes", "ancient kings", "old machines", "wild birds", "mathematics",
    "medicine", "music", "deserts", "the moon", "forests", "famous inventors", "bridges", "the weather",
]  # fmt: skip
TRANSPORT = [("train", "station"), ("bus", "bus stop"), ("ferry", "harbor"), ("plane", "airport")]
CURRENT_YEAR = 2024
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
]  # fmt: skip


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True)
class Person:
    name: str
    surname: str
    pronoun: str
    city: str
    country: str
    job: str
    pet: str
    pet_name: str
    color: str
    food: str
    hobby: str
    age: int
    friend: str

    @property
    def possessive(self) -> str:
        return "her" if self.pronoun == "she" else "his"


def build_world(rng: random.Random) -> list[Person]:
    """Give every person a fixed set of facts."""
    people = []
    names = [name for name, _ in PEOPLE]
    for name, pronoun in PEOPLE:
        surname = rng.choice(SURNAMES)
        city, country, _ = rng.choice(CITIES)
        pet, pet_names = rng.choice(PETS)
        friend = rng.choice([n for n in names if n != name])
        people.append(
            Person(
                name,
                surname,
                pronoun,
                city,
                country,
                rng.choice(JOBS),
                pet,
                rng.choice(pet_names),
                rng.choice(COLORS),
                rng.choice(FOODS),
                rng.choice(HOBBIES),
                rng.randrange(18, 80),
                friend,
            )
        )
    return people


def qa_pairs(p: Person) -> list[str]:
    """Every question the corpus asks about one person, each with its answer."""
    return [
        f"Q: Where does {p.name} live? A: {p.name} lives in {p.city}.",
        f"Q: What does {p.name} do? A: {p.name} is {article(p.job)} {p.job}.",
        f"Q: What is {p.name}'s job? A: {p.name} works as {article(p.job)} {p.job}.",
        f"Q: How old is {p.name}? A: {p.name} is {p.age} years old.",
        f"Q: What pet does {p.name} have? A: {p.name} has {article(p.pet)} {p.pet} named {p.pet_name}.",
        f"Q: What is {p.name}'s favorite color? A: {p.name}'s favorite color is {p.color}.",
        f"Q: What does {p.name} like to eat? A: {p.name} likes to eat {p.food}.",
        f"Q: Who is {p.name}'s friend? A: {p.name}'s friend is {p.friend}.",
        f"Q: What does {p.name} do for fun? A: {p.name} enjoys {p.hobby}.",
        f"Q: In which country does {p.name} live? A: {p.name} lives in {p.country}.",
        f"Q: What is {p.name}'s family name? A: {p.name}'s family name is {p.surname}.",
        f"Q: When was {p.name} born? A: {p.name} was born in {CURRENT_YEAR - p.age}.",
    ]


def profile(p: Person, rng: random.Random) -> str:
    she = p.pronoun.capitalize()
    facts = [
        f"{she} is {p.age} years old and works as {article(p.job)} {p.job}.",
        f"{she} was born in {CURRENT_YEAR - p.age}.",
        f"{she} has {article(p.pet)} {p.pet} named {p.pet_name}.",
        f"{p.name}'s favorite color is {p.color}, and {p.pronoun} likes to eat {p.food}.",
        f"In {p.possessive} free time, {p.name} enjoys {p.hobby}.",
        f"{p.name}'s best friend is {p.friend}.",
    ]
    rng.shuffle(facts)
    return " ".join([f"{p.name} {p.surname} lives in {p.city}, a city in {p.country}.", *facts])


def story(p: Person, friend: Person, rng: random.Random) -> str:
    place, time = rng.choice(PLACES), rng.choice(TIMES)
    she = p.pronoun.capitalize()
    return (
        f"{time}, {p.name} walked to {place} in {p.city} with {p.possessive} {p.pet} {p.pet_name}. "
        f"There {p.pronoun} met {friend.name}, who is {article(friend.job)} {friend.job} from {friend.city}. "
        f"They talked about {p.hobby} and shared some {p.food}. "
        f"{she} went home happy, and {p.pet_name} slept by the door."
    )


def letter(p: Person, friend: Person, rng: random.Random) -> str:
    return (
        f"Dear {friend.name},\nThe weather in {p.city} is {rng.choice(WEATHER)} today. "
        f"{p.pet_name} says hello. I have been busy with {p.hobby}, and yesterday I found an old "
        f"{rng.choice(OBJECTS)} at {rng.choice(PLACES)}. How is life in {friend.city}?\nSee you soon,\n{p.name}"
    )


def shopping(p: Person, rng: random.Random) -> str:
    price, thing = rng.randrange(1, 100), rng.choice(OBJECTS)
    return (
        f"At {rng.choice(PLACES)}, {p.name} bought some {p.food} and {article(thing)} {thing} for {price} coins. "
        f"The day was {rng.choice(WEATHER)}.\nQ: How much did {p.name} pay for the {thing}? "
        f"A: {p.name} paid {price} coins for the {thing}."
    )


def house(p: Person, rng: random.Random) -> str:
    rooms, flowers = rng.randrange(2, 9), rng.choice(FLOWERS)
    return (
        f"{p.name}'s house in {p.city} has {rooms} rooms, a {p.color} door and a garden full of {flowers}. "
        f"{p.pet_name} the {p.pet} likes to sleep near the {rng.choice(OBJECTS)}.\n"
        f"Q: How many rooms does {p.name}'s house have? A: {p.name}'s house has {rooms} rooms."
    )


def trip(p: Person, rng: random.Random) -> str:
    (vehicle, stop), (dest, _country, known_for) = rng.choice(TRANSPORT), rng.choice(CITIES)
    hours = rng.randrange(2, 13)
    return (
        f"{rng.choice(TIMES)}, {p.name} took the {vehicle} from {p.city} to {dest}. The journey took {hours} hours. "
        f"On the way {p.pronoun} read a book about {rng.choice(TOPICS)}. In {dest}, {p.name} went to see "
        f"{known_for}, and then {p.pronoun} came back to the {stop}."
    )


def city_note(city: tuple[str, str, str], people: list[Person]) -> str:
    name, country, known_for = city
    residents = [p.name for p in people if p.city == name]
    text = f"{name} is a city in {country}. It is known for {known_for}."
    if len(residents) == 1:
        text += f" {residents[0]} lives in {name}."
    elif residents:
        text += f" {', '.join(residents[:-1])} and {residents[-1]} live in {name}."
    return text + f"\nQ: In which country is {name}? A: {name} is in {country}."


def animal_note(animal: tuple[str, str, str, str], rng: random.Random) -> str:
    name, sound, food, home = animal
    lines = [
        f"{article(name).capitalize()} {name} lives {home}. It eats {food} and says {sound}.",
        f"Q: What does {article(name)} {name} eat? A: {article(name).capitalize()} {name} eats {food}.",
        f"Q: What sound does {article(name)} {name} make? A: {article(name).capitalize()} {name} says {sound}.",
        f"Q: Where does {article(name)} {name} live? A: {article(name).capitalize()} {name} lives {home}.",
    ]
    return "\n".join(lines[:1] + rng.sample(lines[1:], 2))


def calendar_and_sums(rng: random.Random) -> str:
    a, b = rng.randrange(0, 100), rng.randrange(0, 100)
    day, month = rng.randrange(7), rng.randrange(12)
    lines = [
        f"Q: What is {a} plus {b}? A: {a} plus {b} is {a + b}.",
        f"Q: What day comes after {DAYS[day]}? A: {DAYS[(day + 1) % 7]} comes after {DAYS[day]}.",
        f"Q: What month comes after {MONTHS[month]}? A: {MONTHS[(month + 1) % 12]} comes after {MONTHS[month]}.",
    ]
    return "\n".join(rng.sample(lines, 2))


def generate_documents(target_bytes: int, seed: int = 0) -> list[str]:
    """Documents totalling at least ``target_bytes`` of UTF-8 text; the same arguments give the same list."""
    rng = random.Random(seed)
    people = build_world(rng)
    by_name = {p.name: p for p in people}

    def qa_block() -> str:
        questions = [q for p in rng.sample(people, 3) for q in qa_pairs(p)]
        return "\n".join(rng.sample(questions, 6))

    def person_story() -> str:
        p = rng.choice(people)
        return story(p, by_name[p.friend], rng)

    kinds: list[Callable[[], str]] = [
        qa_block,
        qa_block,
        qa_block,
        person_story,
        lambda: profile(rng.choice(people), rng),
        lambda: (lambda p: letter(p, by_name[p.friend], rng))(rng.choice(people)),
        lambda: shopping(rng.choice(people), rng),
        lambda: house(rng.choice(people), rng),
        lambda: trip(rng.choice(people), rng),
        lambda: city_note(rng.choice(CITIES), people),
        lambda: animal_note(rng.choice(ANIMALS), rng),
        lambda: calendar_and_sums(rng),
    ]
    documents: list[str] = []
    size = 0
    while size < target_bytes:
        doc = rng.choice(kinds)()
        documents.append(doc)
        size += len(doc.encode()) + 1
    return documents


def corpus_sha256(documents: list[str]) -> str:
    """Hash of the documents, each followed by a NUL separator."""
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(doc.encode() + b"\0")
    return digest.hexdigest()


END_OF_TEXT = "<|endoftext|>"


def text_token_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    """A text as the model is trained on it: end-of-text (when the tokenizer has one), then its tokens."""
    eos = tokenizer.token_to_id(END_OF_TEXT)
    return ([] if eos is None else [eos]) + tokenizer.encode(text).ids


def train_tokenizer(documents: list[str], vocab_size: int, multiple_of: int = 16) -> Tokenizer:
    """A byte-level BPE tokenizer (GPT-2 style) trained on ``documents``, with ``<|endoftext|>`` as id 0.

    When the corpus runs out of merges before ``vocab_size``, reserved special tokens pad the vocabulary
    to a multiple of ``multiple_of`` so the embedding matrix keeps kernel-friendly dimensions.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(documents, trainer)
    size = tokenizer.get_vocab_size()
    padded = -(-size // multiple_of) * multiple_of
    tokenizer.add_special_tokens([f"<|reserved_{i}|>" for i in range(padded - size)])
    return tokenizer
