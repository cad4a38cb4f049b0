"""Model cards: typed data (cards.data), jinja2 templates (cards/templates), atomic writing (cards.publish)."""

from cards.data import CardData, build, from_directory, from_spec
from cards.publish import write_card, write_card_for_directory, write_cards
from cards.render import render, save

__all__ = ["CardData", "build", "from_directory", "from_spec", "render", "save", "write_card",
           "write_card_for_directory", "write_cards"]
