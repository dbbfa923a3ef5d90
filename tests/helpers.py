"""Small programs the tests plug into recipes as generators."""

from zephyr_recipes.embedded import tasks


def sloppy(messages):
    """Answers with the task's typical mistake."""
    instruction = messages[-1]["content"]
    answer = tasks.solve(instruction)
    words = answer.split()
    return " ".join(words[:-1]) if len(words) > 1 else str(int(answer) + 1) if answer.isdigit() else "?"
