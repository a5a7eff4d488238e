"""Space-group derived labels: crystal system, point group, Laue class, Bravais lattice.

Everything is computed from the space-group number with spglib's tables, never typed per group.
"""

from __future__ import annotations

from functools import lru_cache

from diffractnet.errors import StructureError

CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")
_SYSTEM_LAST_NUMBER = (2, 15, 74, 142, 167, 194, 230)
_SYSTEM_LETTER = {"triclinic": "a", "monoclinic": "m", "orthorhombic": "o", "tetragonal": "t",
                  "trigonal": "h", "hexagonal": "h", "cubic": "c"}
# The 11 centrosymmetric Laue classes; each point group maps to the one with its inversion added.
LAUE_CLASSES = ("-1", "2/m", "mmm", "4/m", "4/mmm", "-3", "-3m", "6/m", "6/mmm", "m-3", "m-3m")
_LAUE_OF_POINT_GROUP = {
    "1": "-1", "-1": "-1",
    "2": "2/m", "m": "2/m", "2/m": "2/m",
    "222": "mmm", "mm2": "mmm", "mmm": "mmm",
    "4": "4/m", "-4": "4/m", "4/m": "4/m",
    "422": "4/mmm", "4mm": "4/mmm", "-42m": "4/mmm", "4/mmm": "4/mmm",
    "3": "-3", "-3": "-3",
    "32": "-3m", "3m": "-3m", "-3m": "-3m",
    "6": "6/m", "-6": "6/m", "6/m": "6/m",
    "622": "6/mmm", "6mm": "6/mmm", "-6m2": "6/mmm", "6/mmm": "6/mmm",
    "23": "m-3", "m-3": "m-3",
    "432": "m-3m", "-43m": "m-3m", "m-3m": "m-3m",
}
BRAVAIS_LATTICES = ("aP", "mP", "mC", "oP", "oC", "oI", "oF", "tP", "tI", "hR", "hP", "cP", "cI", "cF")


def _check(number: int) -> int:
    if not isinstance(number, (int,)) or isinstance(number, bool) or not 1 <= number <= 230:
        raise StructureError(f"space group number must be an integer in 1..230, got {number!r}")
    return number


@lru_cache(maxsize=None)
def _spglib_type(number: int):
    """spglib's space-group type record for the standard setting of ``number``."""
    import spglib

    for hall in range(1, 531):
        record = spglib.get_spacegroup_type(hall)
        if record.number == number:
            return record
    raise StructureError(f"spglib has no space group {number}")  # pragma: no cover


def space_group_symbol(number: int) -> str:
    """Short Hermann–Mauguin symbol, e.g. 225 → 'Fm-3m'."""
    return _spglib_type(_check(number)).international_short


def crystal_system(number: int) -> str:
    """One of ``CRYSTAL_SYSTEMS`` for a space-group number."""
    _check(number)
    for system, last in zip(CRYSTAL_SYSTEMS, _SYSTEM_LAST_NUMBER):
        if number <= last:
            return system
    raise AssertionError("unreachable")


def point_group(number: int) -> str:
    """Hermann–Mauguin point group (crystal class), e.g. 227 → 'm-3m'."""
    return _spglib_type(_check(number)).pointgroup_international.strip()


def laue_class(number: int) -> str:
    """One of the 11 ``LAUE_CLASSES``: the point group with inversion added."""
    return _LAUE_OF_POINT_GROUP[point_group(number)]


def bravais_lattice(number: int) -> str:
    """Pearson-style Bravais lattice symbol, one of ``BRAVAIS_LATTICES`` (e.g. 229 → 'cI')."""
    system = crystal_system(number)
    centring = space_group_symbol(number)[0]
    if system == "monoclinic" or system == "orthorhombic":
        centring = "C" if centring in "ABC" else centring
    if system == "trigonal":
        return "hR" if centring == "R" else "hP"
    return _SYSTEM_LETTER[system] + centring


def labels_of(number: int) -> dict:
    """All labels of a space group: number, symbol, crystal system, point group, Laue class, Bravais."""
    return {
        "space_group": number,
        "space_group_symbol": space_group_symbol(number),
        "crystal_system": crystal_system(number),
        "point_group": point_group(number),
        "laue_class": laue_class(number),
        "bravais_lattice": bravais_lattice(number),
    }
