"""Brazilian Portuguese: the console's words (the seed's own where it has them), one module
per area of the console; `MESSAGES` is their union. `{name}` placeholders are filled by
translate()."""
from services.gateway.console.catalogue.pt_BR import devices, frame, operations, people, tickets

AREAS = (frame, tickets, people, devices, operations)


def merged(areas) -> dict:
    """One dict of every area's keys; a key in two areas is a mistake, refused at import
    (within one dict literal the later one would silently win)."""
    messages: dict[str, str] = {}
    for area in areas:
        twice = messages.keys() & area.MESSAGES.keys()
        if twice:
            raise ValueError(f"catalogue keys in two areas ({area.__name__}): {sorted(twice)}")
        messages.update(area.MESSAGES)
    return messages


MESSAGES = merged(AREAS)
