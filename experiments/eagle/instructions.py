"""The templated instructions the target answers for the head's training data (`experiments/eagle/data.py`): general
templates x topics and coding templates x tasks, none taken from MT-bench or HumanEval, so the evaluation prompts
stay unseen."""
from __future__ import annotations

import numpy as np

TEMPLATES = (
    "Explain {t} to a high-school student.", "Write a short story that involves {t}.",
    "What are the pros and cons of {t}?", "Give me five facts about {t}.", "Write a haiku about {t}.",
    "How would you teach a child about {t}?", "Summarize the history of {t} in a paragraph.",
    "Write a persuasive paragraph in favour of {t}.", "What are common misconceptions about {t}?",
    "Describe {t} as if you were a tour guide.", "Write an email to a friend recommending {t}.",
    "List three questions a scientist might ask about {t}, and answer them.",
    "Compare {t} with something similar and explain the differences.", "Write a product description for {t}.",
    "Give step-by-step advice for someone getting started with {t}.", "Why is {t} important today?",
    "Write a short dialogue between two friends discussing {t}.", "What would the world look like without {t}?",
    "Write a limerick about {t}.", "Describe a typical day of someone who works with {t}.",
    "Write the opening paragraph of a news article about {t}.", "What are the biggest open questions about {t}?",
    "Explain {t} using an analogy from cooking.", "Write a quiz of four multiple-choice questions about {t}.",
)
CODE_TEMPLATES = (
    "Write a Python function that {t}.", "Write a Python function that {t}, with a docstring and an example.",
    "Explain, with Python code, how to write a function that {t}.",
    "Write a Python function that {t}, and a unit test for it.", "Write a JavaScript function that {t}.",
    "Write a Python function that {t}, and explain its time complexity.",
)
TOPICS = (
    "volcanoes", "the water cycle", "photosynthesis", "the Roman empire", "jazz music", "electric cars",
    "black holes", "honey bees", "the printing press", "chess", "recycling", "the human heart", "rainforests",
    "machine learning", "the Olympic games", "coffee", "earthquakes", "the moon landing", "vaccines", "origami",
    "public libraries", "solar panels", "the Great Wall of China", "dinosaurs", "meditation", "bicycles",
    "the stock market", "coral reefs", "the internet", "classical architecture", "gardening", "penguins",
    "time management", "the French revolution", "renewable energy", "board games", "cloud computing",
    "healthy breakfast ideas", "learning a second language", "the solar system",
    "glaciers", "the Silk Road", "octopuses", "3D printing", "the immune system", "wind turbines", "ancient Egypt",
    "sourdough bread", "the Amazon river", "quantum computers", "migratory birds", "the Renaissance", "tea",
    "deserts", "electric guitars", "the periodic table", "public transport", "volunteering", "the deep sea",
    "smartphones", "the Industrial Revolution", "mushrooms", "hiking", "climate change", "the violin",
    "space stations", "the Vikings", "wolves", "bridges", "podcasts", "the Mediterranean diet", "tornadoes",
    "the human brain", "typography", "the Olympic marathon", "pottery", "antibiotics", "lighthouses",
    "cryptography", "urban gardens", "the Moon", "submarines", "chocolate", "the Maya civilisation",
    "rivers", "robotics", "ballet", "sleep", "nuclear fusion", "bees and pollination", "the metric system",
    "saving money", "trains", "the Arctic", "photography", "elephants", "composting", "the Great Barrier Reef",
    "marathons", "windmills", "the history of medicine", "social media", "the Andes", "spiders",
    "the piano", "desalination", "kites", "the Pyramids of Giza", "open-source software", "first aid",
    "whales", "clocks", "the Sahara", "video games", "sign language", "the Eiffel Tower", "bamboo",
    "ocean tides", "camping", "the theory of evolution",
)
CODE_TASKS = (
    "reverses a string", "counts the vowels in a sentence", "returns the n-th Fibonacci number",
    "merges two sorted lists", "checks whether a word is a palindrome", "computes the factorial of n",
    "finds the largest element of a list", "removes duplicates from a list while keeping order",
    "converts Celsius to Fahrenheit", "returns the sum of the digits of an integer", "sorts a list of tuples by "
    "their second element", "counts how often each word appears in a text", "checks whether a year is a leap year",
    "flattens a nested list", "returns the greatest common divisor of two integers", "validates an email address",
    "computes the mean and median of a list", "transposes a matrix given as a list of lists",
    "returns all prime numbers below n", "capitalizes the first letter of every word",
    "checks whether two strings are anagrams", "converts a Roman numeral to an integer",
    "returns the second largest number in a list", "counts the lines of a text file",
    "computes the dot product of two vectors", "finds the longest word in a sentence",
    "rotates a list by k positions", "checks whether a number is prime", "returns the binary representation of n",
    "groups a list of words by their first letter", "computes compound interest",
    "returns the intersection of two lists", "parses a date string in YYYY-MM-DD format",
    "computes the running average of a list", "finds the index of a value in a sorted list by binary search",
    "counts the uppercase letters in a string", "returns the n-th triangular number",
    "checks whether parentheses in a string are balanced", "splits a list into chunks of size n",
    "returns a dictionary that inverts keys and values", "computes the Hamming distance of two strings",
    "generates all permutations of a short string", "returns the most common element of a list",
    "converts a list of strings to integers, skipping invalid ones", "computes the area of a triangle from its sides",
    "removes all whitespace from a string", "returns the squares of the even numbers in a list",
    "checks whether a list is sorted", "computes the power set of a small list",
    "replaces every vowel in a string with a star",
)


def instruction_pool() -> list[str]:
    """Every templated instruction: each template with each topic, then each code template with each task."""
    return [t.format(t=x) for t in TEMPLATES for x in TOPICS] + [t.format(t=x) for t in CODE_TEMPLATES
                                                                for x in CODE_TASKS]


def instruction_prompts(n: int, seed: int) -> list[str]:
    """`n` distinct templated instructions (a quarter of them coding tasks, while they last), a pure function of
    the seed; ValueError when the pool holds fewer than `n`."""
    pool = instruction_pool()
    if not 0 < n <= len(pool):
        raise ValueError(f"asked for {n} instructions; the pool holds {len(pool)} distinct ones")
    rng = np.random.default_rng(seed)
    n_code = len(CODE_TEMPLATES) * len(CODE_TASKS)
    weights = np.r_[np.full(len(pool) - n_code, 0.75 / (len(pool) - n_code)), np.full(n_code, 0.25 / n_code)]
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False, p=weights)]

