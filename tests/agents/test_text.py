"""Reply parts and the synonym dictionary."""

from agents.text import apply_synonyms, split_reply


def test_split_on_marker_and_blank_lines():
    assert split_reply("Hola!|||¿Qué talle usás?\n\nTenemos S y M.\n  \n") == ["Hola!", "¿Qué talle usás?", "Tenemos S y M."]
    assert split_reply("  ") == [] and split_reply("|||") == []


def test_long_parts_cut_at_sentence_ends():
    sentence = "Las puntas de raso necesitan un buen ajuste al pie. "
    parts = split_reply(sentence * 20, max_chars=120)
    assert all(len(p) <= 120 for p in parts)
    assert all(p.endswith(".") for p in parts)
    assert " ".join(parts) == (sentence * 20).strip()


def test_a_sentence_longer_than_the_limit_is_cut_at_a_space():
    parts = split_reply("palabra " * 30, max_chars=50)
    assert all(len(p) <= 50 for p in parts) and all(not p.startswith(" ") for p in parts)
    assert " ".join(parts).split() == ["palabra"] * 30


def test_synonyms_whole_words_case_insensitive_longest_first():
    synonyms = {"mallas": "leotardos", "can can": "medias", "zapatillas de punta": "puntas", "zapatillas": "calzado"}
    assert apply_synonyms("Busco MALLAS y can can", synonyms) == "Busco leotardos y medias"
    assert apply_synonyms("zapatillas de punta talle 37", synonyms) == "puntas talle 37"
    assert apply_synonyms("mallasnegras", synonyms) == "mallasnegras"
    assert apply_synonyms("hola", {}) == "hola"
