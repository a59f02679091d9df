"""How the results pages write a figure: the same way in every table and in both languages."""


def us(value) -> str:
    return f"{value:.1f}"


def times(value) -> str:
    return f"{value:.2f}x"


def count(value) -> str:
    return f"{value:,.0f}"


def change(value) -> str:
    return f"{value:+.1f}"


def short(variant: str) -> str:
    """A serving path's name without the "dispatcher, " that most of them start with."""
    return variant.removeprefix("dispatcher, ")
