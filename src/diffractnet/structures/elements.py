"""Element symbols ↔ atomic numbers, validated with one clear error."""

from __future__ import annotations

from functools import lru_cache

from diffractnet.errors import StructureError

MAX_Z = 103


@lru_cache(maxsize=None)
def _symbol_table() -> dict[str, int]:
    from pymatgen.core.periodic_table import Element

    return {el.symbol: el.Z for el in Element if el.Z <= MAX_Z}


def atomic_number(symbol: str, where: str = "") -> int:
    """Atomic number Z of an element symbol ('Fe' → 26); raises ``StructureError`` if unknown.

    Oxidation-state suffixes ('Fe2+', 'O2-') are stripped first.
    """
    clean = str(symbol).strip().rstrip("+-").rstrip("0123456789")
    table = _symbol_table()
    if clean not in table:
        place = f" in {where}" if where else ""
        raise StructureError(f"unknown element '{symbol}'{place}; use a symbol from H to Lr (Z <= {MAX_Z})")
    return table[clean]


def element_symbol(symbol: str, where: str = "") -> str:
    """The clean element symbol ('Fe2+' → 'Fe'), validated."""
    clean = str(symbol).strip().rstrip("+-").rstrip("0123456789")
    atomic_number(clean, where)
    return clean
